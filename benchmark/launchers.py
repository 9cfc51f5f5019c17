"""How a sweep's jobs are executed: ``local`` (this process, or a pool of spawned processes on this
host) or ``ray`` (one Ray task per job, on a local Ray instance or a cluster; ``benchmark.ray_launcher``).

A launcher only executes: the runner plans the jobs, skips the done ones, reports progress and
collects failures, so the job hash, the ``done`` marker, resume and the progress lines are the
same whichever launcher runs the jobs. Each launcher yields one :class:`Outcome` per job as the
jobs finish.
"""
from __future__ import annotations

import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.errors import BenchmarkError
from protocols.registry import Extension
from protocols.split import Split

if TYPE_CHECKING:
    from benchmark.runner import Job, Sweep

LAUNCHERS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class Outcome:
    """A finished job: its folder, or the error that stopped it (nothing of it is written then)."""

    job: "Job"
    path: Path | None
    error: str | None = None


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs besides the job: the device it trains on and, when several jobs share
    a GPU, each process's cap on that device's memory."""

    device: str
    memory_fraction: float | None = None


def describe_error(e: BaseException) -> str:
    """A job's error for the failure list: a BenchmarkError's message says what and where; anything
    else is a bug, so its traceback's last frames come along."""
    if isinstance(e, BenchmarkError):
        return str(e)
    return "".join(traceback.format_exception(type(e), e, e.__traceback__, limit=-4)).strip()


def prepare_worker(settings: WorkerSettings) -> torch.device:
    """A worker's device, indexed (``cuda`` -> ``cuda:0``), with determinism switched on before the
    first CUDA call (cuBLAS reads its workspace setting once) and the process's memory cap applied."""
    from benchmark.devices import make_deterministic, resolve_device

    device = resolve_device(settings.device)
    make_deterministic(device)
    if device.type == "cuda" and settings.memory_fraction is not None:
        torch.cuda.set_per_process_memory_fraction(settings.memory_fraction, device)
        torch.set_num_threads(1)  # packed processes share the cores; each one's CPU work is light
    return device


def run_in_worker(job: "Job", split: Split, protocol: str, out_dir: Path, extension: Extension | None,
                  settings: WorkerSettings) -> str:
    """One job in a worker process (a spawned pool process or a Ray task): load the data, apply the
    device settings, run it; returns the job folder."""
    from benchmark.runner import run_job
    from protocols.resolve import load_by_domain

    device = prepare_worker(settings)
    by_domain = load_by_domain(protocol, job.budget.img_size, extension)
    by_id = {s.id: s for ss in by_domain.values() for s in ss}
    return str(run_job(job, split, by_id, out_dir, device=device, progress=False))


def launch_local(todo: list[tuple["Job", Split]], sweep: "Sweep", settings: WorkerSettings,
                 workers: int) -> Iterator[Outcome]:
    """One process (``workers`` 1; the jobs of a split share their transformed test images) or a
    pool of ``workers`` spawned processes."""
    from benchmark.runner import run_job
    from benchmark.targets import TargetBuilder

    if workers <= 1 or len(todo) <= 1:
        device = prepare_worker(settings)
        by_domain = sweep.samples_by_domain()
        by_id = {s.id: s for ss in by_domain.values() for s in ss}
        builders: dict[str, TargetBuilder] = {}
        for job, split in todo:
            builder = builders.setdefault(split.hash, TargetBuilder(split, by_id))
            try:
                yield Outcome(job, run_job(job, split, by_id, sweep.out_dir, device=device, builder=builder))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # noqa: BLE001 - one job's failure is reported; the others still run
                yield Outcome(job, None, describe_error(e))
        return
    extension = sweep.extension()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_in_worker, j, s, sweep.protocol, sweep.out_dir, extension, settings): j for j, s in todo}
        for fut in as_completed(futures):
            try:
                yield Outcome(futures[fut], Path(fut.result()))
            except Exception as e:  # noqa: BLE001 - as above; a dead pool process fails its job here
                yield Outcome(futures[fut], None, describe_error(e))
