"""Launchers are a registry that takes one plan: a plugin's launcher runs a sweep like a built-in one,
the sweep is planned and its data loaded once, and a worker process loads its data once however many
jobs it is given."""
from __future__ import annotations

from collections.abc import Iterator

import benchmark.engine.launchers.base as base
import benchmark.engine.plan as plan_module
from benchmark.engine.budgets import get_budget
from benchmark.engine.job import run_job
from benchmark.engine.launchers.base import LAUNCHERS, LaunchRequest, Outcome, WorkerSettings
from benchmark.engine.plan import Sweep
from benchmark.engine.sweep import run_sweep
from benchmark.record.jobs import completed_job_dirs
from core.study import REFERENCE_MODELS

PROTOCOL = "cross_stain_synthetic"


def _sweep(out) -> Sweep:
    return Sweep(PROTOCOL, list(REFERENCE_MODELS), [0], get_budget("smoke"), out)


def test_builtin_launchers_are_registered() -> None:
    assert LAUNCHERS.names() == ["local", "ray"]


def test_a_registered_launcher_runs_the_sweep_from_the_one_plan(tmp_path, monkeypatch) -> None:
    requests: list[LaunchRequest] = []

    def inline(request: LaunchRequest) -> Iterator[Outcome]:
        requests.append(request)
        for job, split in request.todo:
            yield Outcome(job, run_job(job, split, request.plan.by_id, request.plan.sweep.out_dir))

    monkeypatch.setitem(LAUNCHERS._entries, "inline", inline)
    monkeypatch.setitem(LAUNCHERS._descriptions, "inline", "test")
    monkeypatch.setitem(LAUNCHERS._metadata, "inline", None)
    done = run_sweep(_sweep(tmp_path), workers=1, log=lambda _: None, launcher="inline")
    (request,) = requests
    assert request.todo == request.plan.jobs and len(done) == len(REFERENCE_MODELS)
    assert [p.name for p in completed_job_dirs(tmp_path)] == sorted(p.name for p in done)


def test_a_sweep_loads_its_data_once(tmp_path, monkeypatch) -> None:
    """Planning, resuming and running in this process share the one load."""
    calls = []
    real = plan_module.load_by_domain
    monkeypatch.setattr(plan_module, "load_by_domain", lambda *a, **k: calls.append(a) or real(*a, **k))
    run_sweep(_sweep(tmp_path), workers=1, log=lambda _: None)
    assert len(calls) == 1
    run_sweep(_sweep(tmp_path), workers=1, log=lambda _: None)  # all done: planned again, nothing run
    assert len(calls) == 2


def test_a_worker_loads_its_data_once_for_many_jobs(tmp_path, monkeypatch) -> None:
    jobs = _sweep(tmp_path).plan().jobs
    calls = []
    real = base.load_by_domain
    monkeypatch.setattr(base, "load_by_domain", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(base, "_process_samples", {})
    for job, split in jobs:
        base.run_in_worker(job, split, PROTOCOL, tmp_path, None, WorkerSettings("cpu"))
    assert len(jobs) == len(REFERENCE_MODELS) and len(calls) == 1
    assert len(completed_job_dirs(tmp_path)) == len(jobs)
