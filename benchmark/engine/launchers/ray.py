"""The ``ray`` launcher (``--launcher ray``): each job is a Ray task with its CPU and GPU request; a
fractional GPU request packs several jobs onto one device. Ray schedules, retries and moves the
jobs; the harness keeps what makes a result a result (job hash, ``done`` marker, atomic folders).

- **Local instance** (no ``--ray-address``): started here with the sweep's worker count as its CPUs,
  bound to 127.0.0.1 (Ray's loopback mode), without the dashboard, and with token authentication.
- **Cluster** (``--ray-address HOST:PORT`` or ``auto``): joined with Ray's token authentication on
  (``RAY_AUTH_MODE=token`` and the cluster's token); joining with it switched off is refused. Never
  expose the head's ports beyond the cluster network: Ray's job API runs whatever it is sent.
- **Shared results folder**: workers write job folders straight into ``--out``; before any job
  starts, every alive node must read a check file written there, or the sweep stops with the
  node named (docs/cluster.md).
- **Failures**: a task whose worker process or node dies is retried up to ``MAX_RETRIES`` times,
  and so is one that fails with an ``OSError`` (a shared file system's hiccup); a job's own error
  (a BenchmarkError, e.g. a non-finite loss) is deterministic and is not. A job that still fails is
  reported with its error; it left no folder, only a temporary that its rerun removes.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch

from benchmark.engine.launchers.base import (LaunchRequest, Outcome, WorkerSettings, describe_error,
                                             register_launcher, run_in_worker)
from core.errors import BenchmarkError
from core.isa import PIN_ENV, PINNED

MAX_RETRIES = 2
"""Reruns of a job whose worker or node died (or that hit an OSError) before it is reported failed."""

FORWARDED_ENV: tuple[str, ...] = (
    "WBC_DATA_DIR", "WBC_DATA_MIRROR", "WBC_PLUGINS", "WBC_DATASETS", "HF_HUB_OFFLINE", "HF_HOME",
    "TORCH_HOME", "CUBLAS_WORKSPACE_CONFIG", "WBC_CUDA_DETERMINISTIC", PIN_ENV, *PINNED,
)
"""Environment a worker on another node needs to find the same data, plugins and cached weights."""

LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch that makes a node take the loopback address (127.0.0.1) instead of its network IP,
so a local instance's GCS, raylet and workers listen on 127.0.0.1 only; read when ray is imported."""


def import_ray(local: bool):
    """``ray``, or a clear error naming the extra that installs it. A local instance is set to bind
    127.0.0.1 before the import (Ray reads the switch then) and to use token authentication."""
    if local:
        os.environ.setdefault(LOOPBACK_SWITCH, "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"].lower() != "token":
        raise BenchmarkError(f"RAY_AUTH_MODE={os.environ['RAY_AUTH_MODE']}: the Ray launcher keeps Ray's token "
                             f"authentication on (an unauthenticated Ray runs any code it is sent); unset it or set "
                             f"RAY_AUTH_MODE=token and give the cluster's token (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)")
    try:
        import ray
    except ImportError as e:
        raise BenchmarkError("--launcher ray needs Ray: `pip install -e '.[ray]'` (`make install` includes it)") from e
    return ray


def start(ray, address: str | None, cpus: int, device: torch.device) -> None:
    """Join the cluster at ``address``, or start a local instance with ``cpus`` CPUs (and the GPUs
    torch sees when the sweep runs on CUDA)."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    if "WBC_DATA_DIR" in env:
        env["WBC_DATA_DIR"] = str(Path(env["WBC_DATA_DIR"]).resolve())
    runtime_env = {"env_vars": env} if env else None
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BenchmarkError(f"--ray-address {address}: could not join the Ray cluster: {e}") from e
        return
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, runtime_env=runtime_env,
             logging_level=logging.WARNING, log_to_driver=True)


def check_shared_folder(ray, out_dir: Path) -> None:
    """Every alive node must see the results folder the driver writes to: a check file written here
    is read back by a zero-CPU task pinned to each node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probe = out_dir / f".ray-shared-check-{token}"
    probe.write_text(token)

    def read(path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        reader = ray.remote(num_cpus=0)(read)
        seen = ray.get([reader.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                        .remote(str(probe)) for n in nodes])
    finally:
        probe.unlink(missing_ok=True)
    blind = [n["NodeManagerAddress"] for n, s in zip(nodes, seen) if s != token]
    if blind:
        raise BenchmarkError(f"results folder {out_dir} is not reachable from Ray node(s) {', '.join(blind)}: every "
                             f"node writes its jobs there, so --out must be on a file system all nodes share at the "
                             f"same path (docs/cluster.md)")


@register_launcher("ray", description="one Ray task per job, on a local Ray instance or the cluster at --ray-address")
def launch_ray(request: LaunchRequest) -> Iterator[Outcome]:
    """Submit every job as a Ray task (1 CPU; on CUDA ``settings.memory_fraction`` of a GPU) and
    yield the outcomes as tasks finish. The local instance, if started here, is shut down after."""
    settings, address = request.settings, request.address
    if not request.todo:
        return
    device = torch.device(settings.device)
    if address and device.type == "cuda" and device.index not in (None, 0):  # cuda is cuda:0 once resolved
        raise BenchmarkError(f"--device {settings.device} with --launcher ray: Ray assigns each task its GPU; "
                             f"use --device cuda")
    ray = import_ray(local=not address)
    started_here = not ray.is_initialized()
    if started_here:
        start(ray, address, request.workers, device)
    try:
        yield from _submit(ray, request)
    finally:
        if started_here:
            ray.shutdown()


def _submit(ray, request: LaunchRequest) -> Iterator[Outcome]:
    plan, settings = request.plan, request.settings
    device = torch.device(settings.device)
    out_dir = plan.sweep.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    check_shared_folder(ray, out_dir)
    gpus = (settings.memory_fraction or 1.0) if device.type == "cuda" else 0
    task = ray.remote(run_in_worker).options(num_cpus=1, num_gpus=gpus, max_retries=MAX_RETRIES,
                                             retry_exceptions=[OSError])
    worker_settings = WorkerSettings("cuda" if device.type == "cuda" else "cpu", settings.memory_fraction)
    pending = {task.remote(job, split, plan.sweep.protocol, out_dir, plan.extension, worker_settings): job
               for job, split in request.todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            job = pending.pop(ref)
            try:
                yield Outcome(job, Path(ray.get(ref)))
            except ray.exceptions.RayTaskError as e:
                yield Outcome(job, None, describe_error(e.cause if e.cause is not None else e))
            except ray.exceptions.RayError as e:  # the worker or node died more often than MAX_RETRIES
                yield Outcome(job, None, f"{type(e).__name__} after {MAX_RETRIES} retries: {e}")
