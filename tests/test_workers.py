"""The process-pool path, the default on CPU: results do not depend on the worker count, and a
run killed mid-job resumes to the same results with nothing of the killed run left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.engine.budgets import get_budget
from benchmark.engine.lockfile import pid_alive
from benchmark.engine.plan import Sweep
from benchmark.engine.sweep import run_sweep
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import build_summary
from core.study import REFERENCE_MODELS

PROTOCOL = "cross_stain_synthetic"
ROOT = Path(__file__).resolve().parent.parent


MODELS = ["sg_cldff", "sg_cldff_no_align", *REFERENCE_MODELS]
"""What the CLI plans for `--models sg_cldff,sg_cldff_no_align` (it adds the floors)."""


def _sweep(out: Path) -> Sweep:
    return Sweep(PROTOCOL, MODELS, [0], get_budget("smoke"), out)


def _metrics(out: Path) -> pd.DataFrame:
    return build_summary(out).drop(columns=["env_id", "code_commit"])


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory) -> pd.DataFrame:
    """The reference: both jobs run in this process, one after the other."""
    out = tmp_path_factory.mktemp("one")
    run_sweep(_sweep(out), workers=1, log=lambda _: None)
    return _metrics(out)


def test_one_and_two_workers_give_identical_results(tmp_path, one_worker):
    run_sweep(_sweep(tmp_path), workers=2, log=lambda _: None)
    pd.testing.assert_frame_equal(_metrics(tmp_path), one_worker)


def _unfinished(out: Path) -> list[Path]:
    return list((out / "jobs").glob(".*.tmp-*")) if (out / "jobs").is_dir() else []


def test_a_run_killed_mid_job_resumes_with_nothing_left_behind(tmp_path, one_worker):
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "benchmark", "run", "--protocol", PROTOCOL, "--models", "sg_cldff,sg_cldff_no_align",
           "--seeds", "1", "--budget", "smoke", "--out", str(out), "--jobs", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _unfinished(out):
        assert proc.poll() is None, "the run ended before any job started"
        assert time.monotonic() < deadline, "no job started within 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the workers die with the parent, mid-job
    proc.wait()
    owners = [int(p.name.rsplit(".tmp-", 1)[1]) for p in _unfinished(out)]
    while any(pid_alive(pid) for pid in owners):  # the kernel takes a moment to end them
        assert time.monotonic() < deadline, f"worker processes {owners} still alive after SIGKILL"
        time.sleep(0.05)
    assert _unfinished(out), "the kill left no unfinished job: nothing was tested"
    done_before = len(completed_job_dirs(out))
    log: list[str] = []
    run_sweep(_sweep(out), workers=2, log=log.append)
    assert any(line.startswith("removed ") for line in log)
    assert [p.name for p in (out / "jobs").iterdir() if p.name.startswith(".")] == []
    assert len(completed_job_dirs(out)) == len(MODELS) > done_before
    pd.testing.assert_frame_equal(_metrics(out), one_worker)
