"""What every launcher shares: the registry, the request it is given, the outcome it yields per job,
and the worker side (device settings, data loaded once per process, the job run).

A launcher only executes: the sweep plans the jobs once (``benchmark.engine.plan.Plan``), skips
the done ones, reports progress and collects failures, so the job hash, the ``done`` marker,
resume and the progress lines are the same whichever launcher runs the jobs. A launcher is a
function ``(LaunchRequest) -> Iterator[Outcome]`` that yields one outcome per job as jobs finish;
register one with ``@register_launcher(name, description=...)`` (DomainBed's command launchers).
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.engine.devices import make_deterministic, resolve_device
from benchmark.engine.job import run_job
from benchmark.engine.plan import Job, Plan
from core.errors import BenchmarkError
from core.registry import Registry
from core.sample import Sample
from protocols.registry import Extension
from protocols.resolve import load_by_domain
from protocols.split import Split


@dataclass(frozen=True)
class Outcome:
    """A finished job: its folder, or the error that stopped it (nothing of it is written then)."""

    job: Job
    path: Path | None
    error: str | None = None


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs besides the job: the device it trains on and, when several jobs share
    a GPU, each process's cap on that device's memory."""

    device: str
    memory_fraction: float | None = None


@dataclass(frozen=True)
class LaunchRequest:
    """What a launcher is given: the plan, the jobs of it still to run, the workers' settings, how
    many jobs run at once, and where to run them (a Ray address; None: here)."""

    plan: Plan
    todo: list[tuple[Job, Split]]
    settings: WorkerSettings
    workers: int
    address: str | None = None


Launcher = Callable[[LaunchRequest], Iterator[Outcome]]

LAUNCHERS: Registry[Launcher] = Registry(
    "launcher", builtins=("benchmark.engine.launchers.local", "benchmark.engine.launchers.ray"))


def register_launcher(name: str, *, description: str) -> Callable[[Launcher], Launcher]:
    return LAUNCHERS.register(name, description)


def describe_error(e: BaseException) -> str:
    """A job's error as one line for the failure list: a BenchmarkError's message says what and
    where; anything else (a bug, often in a plugin's model) gets its type and the file, line and
    function that raised it, which is where to look."""
    if isinstance(e, BenchmarkError):
        return str(e)
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (raised at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    message = " ".join(str(e).split())
    return f"{type(e).__name__}: {message}{where}" if message else f"{type(e).__name__}{where}"


def prepare_worker(settings: WorkerSettings) -> torch.device:
    """A worker's device, indexed (``cuda`` -> ``cuda:0``), with determinism switched on before the
    first CUDA call (cuBLAS reads its workspace setting once) and the process's memory cap applied."""
    device = resolve_device(settings.device)
    make_deterministic(device)
    if device.type == "cuda" and settings.memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(settings.memory_fraction, device)
        torch.set_num_threads(1)  # packed processes share the cores; each one's CPU work is light
    return device


_process_samples: dict[tuple, dict[str, Sample]] = {}
"""A worker process's loaded samples by id, per (protocol, size, extension): loaded once per
process, however many jobs the pool or Ray gives it."""


def worker_samples(protocol: str, size: int, extension: Extension | None) -> dict[str, Sample]:
    key = (protocol, size, extension)
    if key not in _process_samples:
        by_domain = load_by_domain(protocol, size, extension)
        _process_samples[key] = {s.id: s for samples in by_domain.values() for s in samples}
    return _process_samples[key]


def run_in_worker(job: Job, split: Split, protocol: str, out_dir: Path, extension: Extension | None,
                  settings: WorkerSettings) -> str:
    """One job in a worker process (a spawned pool process or a Ray task): apply the device settings,
    take the data (loaded once per process), run it; returns the job folder."""
    device = prepare_worker(settings)
    by_id = worker_samples(protocol, job.budget.img_size, extension)
    return str(run_job(job, split, by_id, out_dir, device=device, progress=False))
