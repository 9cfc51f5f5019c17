"""The Ray launcher: a smoke sweep through a local Ray instance gives the local launcher's results
bit for bit, a Ray worker killed mid-job is retried with nothing lost, the local instance listens
on 127.0.0.1 only, and a cluster that cannot see the results folder or runs without token
authentication is refused."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray  # noqa: F401 - the launcher's extra is part of `make install`: CI must have it

from benchmark.engine.budgets import get_budget
from benchmark.engine.launchers.ray import check_shared_folder, import_ray
from benchmark.engine.lockfile import pid_alive
from benchmark.engine.plan import Sweep
from benchmark.engine.sweep import run_sweep
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import build_summary
from core.errors import BenchmarkError
from core.study import REFERENCE_MODELS

PROTOCOL = "cross_stain_synthetic"
ROOT = Path(__file__).resolve().parent.parent
MODELS = ["unet", *REFERENCE_MODELS]
RUN = [sys.executable, "-m", "benchmark", "run", "--protocol", PROTOCOL, "--models", "unet", "--seeds", "1",
       "--budget", "smoke", "--jobs", "2", "--launcher", "ray"]


def _summary(out: Path) -> pd.DataFrame:
    return build_summary(out)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> pd.DataFrame:
    """The reference: the local launcher, every job in this process."""
    out = tmp_path_factory.mktemp("local")
    run_sweep(Sweep(PROTOCOL, MODELS, [0], get_budget("smoke"), out), workers=1, log=lambda _: None)
    return _summary(out)


def test_ray_launcher_gives_the_local_launchers_summary_bit_for_bit(tmp_path, local):
    out = tmp_path / "ray"
    done = subprocess.run([*RUN, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launcher ray" in done.stdout and f"[{len(MODELS)}/{len(MODELS)}]" in done.stdout
    pd.testing.assert_frame_equal(_summary(out), local)
    # a rerun through Ray finds everything done and counts nothing twice
    again = subprocess.run([*RUN, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(MODELS)} already done, 0 to run" in again.stdout
    assert len(completed_job_dirs(out)) == len(MODELS)


def _unfinished(out: Path) -> list[Path]:
    return list((out / "jobs").glob(".*.tmp-*")) if (out / "jobs").is_dir() else []


def test_a_ray_worker_killed_mid_job_is_retried_and_nothing_is_lost(tmp_path, local):
    out = tmp_path / "res"
    proc = subprocess.Popen([*RUN, "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not _unfinished(out):
            assert proc.poll() is None, f"the run ended before any job started: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no job started within 300 s"
            time.sleep(0.05)
        victim = _unfinished(out)[0]
        pid = int(victim.name.rsplit(".tmp-", 1)[1])
        assert pid != proc.pid, "the job ran in the driver, not in a Ray worker"
        os.kill(pid, signal.SIGKILL)  # the Ray worker dies mid-job; the driver lives on
        while pid_alive(pid):
            assert time.monotonic() < deadline, f"Ray worker {pid} still alive after SIGKILL"
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert [p.name for p in (out / "jobs").iterdir() if p.name.startswith(".")] == [], "a temporary was left behind"
    assert len(completed_job_dirs(out)) == len(MODELS)
    pd.testing.assert_frame_equal(_summary(out), local)


def test_a_local_ray_instance_listens_on_loopback_with_token_authentication(tmp_path):
    script = ("import json, torch\n"
              "from benchmark.engine.launchers.ray import import_ray, start\n"
              "ray = import_ray(local=True)\n"
              "start(ray, None, 1, torch.device('cpu'))\n"
              "import os\n"
              "print(json.dumps({'nodes': [n['NodeManagerAddress'] for n in ray.nodes()],"
              " 'auth': os.environ.get('RAY_AUTH_MODE')}))\n"
              "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"nodes": ["127.0.0.1"], "auth": "token"}


def test_joining_with_token_authentication_switched_off_is_refused(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(BenchmarkError, match="RAY_AUTH_MODE=disabled.*token authentication"):
        import_ray(local=False)


SAME_DISK = "a" * 56


class _NodeThatSeesAnotherDisk:
    """A stand-in for ``ray`` with two alive nodes, the second of which cannot read the driver's files."""

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "NodeID": SAME_DISK, "NodeManagerAddress": "10.0.0.1"},
                {"Alive": True, "NodeID": "b" * 56, "NodeManagerAddress": "10.0.0.2"},
                {"Alive": False, "NodeID": "c" * 56, "NodeManagerAddress": "10.0.0.3"}]

    def remote(self, **_):
        def wrap(fn):
            class Task:
                def options(self, scheduling_strategy):
                    node = scheduling_strategy.node_id

                    class Bound:
                        @staticmethod
                        def remote(path):
                            return fn(path) if node == SAME_DISK else fn(path + ".elsewhere")
                    return Bound()
            return Task()
        return wrap

    def get(self, values):
        return values


def test_a_results_folder_a_node_cannot_see_is_refused_naming_the_node(tmp_path):
    with pytest.raises(BenchmarkError, match=r"not reachable from Ray node\(s\) 10\.0\.0\.2:"):
        check_shared_folder(_NodeThatSeesAnotherDisk(), tmp_path)
    assert list(tmp_path.iterdir()) == [], "the check file was left behind"


def test_failed_jobs_are_listed_at_the_end_and_the_others_finish(tmp_path, monkeypatch):
    import benchmark.engine.launchers.local as local

    real = local.run_job

    def flaky(job, *args, **kwargs):
        if job.model == "constant_mask":
            raise BenchmarkError("non-finite loss nan at epoch 0 step 0 (test)")
        return real(job, *args, **kwargs)

    monkeypatch.setattr(local, "run_job", flaky)
    log: list[str] = []
    sweep = Sweep(PROTOCOL, ["majority_class", "constant_mask"], [0], get_budget("smoke"), tmp_path)
    with pytest.raises(BenchmarkError, match=r"(?s)1 of 2 job\(s\) failed.*constant_mask.*non-finite loss"):
        run_sweep(sweep, workers=1, log=log.append)
    assert any("constant_mask" in line and "FAILED" in line for line in log)
    assert [p.name.split("__")[0] for p in completed_job_dirs(tmp_path)] == ["majority_class"]


def test_an_unknown_launcher_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="unknown launcher 'slurm'; valid launchers: local, ray"):
        run_sweep(Sweep(PROTOCOL, ["majority_class"], [0], get_budget("smoke"), tmp_path), launcher="slurm")
