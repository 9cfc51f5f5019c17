"""Run a sweep: plan it once, clear what killed runs left, run the jobs not yet done with a registered
launcher, print progress with an ETA, and list the failures at the end."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmark.engine.devices import memory_fraction, mps_active, resolve_device
from benchmark.engine.launchers.base import LAUNCHERS, LaunchRequest, WorkerSettings
from benchmark.engine.lockfile import pid_alive
from benchmark.engine.plan import Job, Plan, Sweep
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import check_rebuildable
from core.errors import BenchmarkError
from protocols.split import Split


def default_workers() -> int:
    """One job per core on CPU: each job is single-threaded (on a GPU, ``worker_plan`` packs by memory)."""
    return os.cpu_count() or 1


def remove_stale_temporaries(out_dir: Path) -> list[str]:
    """Delete the temporary job directories (``.<job>.tmp-<pid>``) of processes that no longer
    run: what a killed worker left. A live process's temporary is left alone. Returns the names."""
    root = out_dir / "jobs"
    removed = []
    for tmp in sorted(root.glob(".*.tmp-*")) if root.is_dir() else []:
        pid = tmp.name.rsplit(".tmp-", 1)[1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp.name)
    return removed


def run_sweep(sweep: Sweep, workers: int | None = None, log: Callable[[str], None] = print,
              device: torch.device | None = None, launcher: str = "local", ray_address: str | None = None) -> list[Path]:
    """Run every job not yet done (after clearing what killed runs left) with ``launcher``; prints
    jobs done / total and an ETA. ``workers`` None picks one job per core on a CPU and packs jobs
    by memory on a GPU. A job that fails does not stop the others: the failures are listed at the
    end, in a BenchmarkError, and left no job folder."""
    launch = LAUNCHERS.get(launcher)
    device = device or resolve_device(None)
    if not completed_job_dirs(sweep.out_dir):
        check_rebuildable(sweep.out_dir)  # a reference folder (a summary, no job folders): refused before planning writes
    plan = sweep.plan()
    check_rebuildable(sweep.out_dir, frozenset(j.id for j, _ in plan.jobs))  # before training, as the report will
    stale = remove_stale_temporaries(sweep.out_dir)
    if stale:
        log(f"removed {len(stale)} unfinished job folder(s) of runs that no longer run: {', '.join(stale)}")
    todo = plan.todo()
    settings, workers = worker_plan(plan, todo, device, workers, log)
    total, before = len(plan.jobs), len(plan.jobs) - len(todo)
    log(f"{sweep.protocol}: {total} jobs, {before} already done, {len(todo)} to run "
        f"(budget {sweep.budget.name}, device {device}, {workers} worker(s), launcher {launcher})")
    t0, done, failed = time.perf_counter(), [], []
    for i, outcome in enumerate(launch(LaunchRequest(plan, todo, settings, workers, ray_address)), 1):
        el = time.perf_counter() - t0
        eta = el / i * (len(todo) - i)
        if outcome.error is None:
            done.append(outcome.path)
            log(f"[{before + i}/{total}] {outcome.job.label} done; elapsed {el / 60:.1f} min, ETA {eta / 60:.1f} min")
        else:
            failed.append(f"{outcome.job.dirname}: {outcome.error}")
            log(f"[{before + i}/{total}] {outcome.job.label} FAILED: {outcome.error}")
    if failed:
        raise BenchmarkError(f"{len(failed)} of {len(todo)} job(s) failed and wrote nothing (the other "
                             f"{len(done)} are done; rerun to retry the failed ones):\n  " + "\n  ".join(failed))
    return done


def worker_plan(plan: Plan, todo: list[tuple[Job, Split]], device: torch.device, workers: int | None,
                log: Callable[[str], None] = print) -> tuple[WorkerSettings, int]:
    """The workers' device settings and how many jobs run at once: ``--jobs`` when given; on a CPU
    one per core; on a GPU as many as its memory takes (``benchmark.engine.packing``), each process
    capped at its share."""
    if device.type != "cuda" or not todo:
        return WorkerSettings(str(device)), workers or default_workers()
    from benchmark.engine.packing import plan_gpu_in_subprocess

    models = {job.model: job.model_kwargs for job, _ in todo}
    packing = plan_gpu_in_subprocess(plan.sweep.out_dir, models, plan.sweep.budget, device)
    log(packing.describe() + ("" if workers is None else f"; --jobs {workers} overrides the count"))
    jobs = workers or packing.jobs
    if jobs > 1 and not mps_active():
        log("CUDA MPS is not running: packed jobs take turns on the GPU instead of running at once "
            "(start it with `nvidia-cuda-mps-control -d`; docs/gpu.md)")
    return WorkerSettings(str(device), memory_fraction(jobs) if jobs > 1 else None), jobs
