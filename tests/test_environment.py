"""The environment behind a number: the lock pins what is installed, and every job records it."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.engine.budgets import get_budget
from benchmark.engine.environment import LOCK_FILE, RECORDED_PACKAGES, environment_record, package_versions
from benchmark.record.jobs import env_id
from benchmark.engine.job import run_job
from benchmark.engine.plan import Sweep
from benchmark.record.summary import build_summary, environments
from core.errors import BenchmarkError
from core.isa import ISA_FLAGS, PIN_ENV, PINNED, pin_mode


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_lock_pins_every_recorded_package_and_the_venv_matches_it():
    """`make install` installs through the lock; a venv that drifted from it would make every
    committed number irreproducible, so the suite says so."""
    pins = _locked()
    installed = package_versions()
    missing = [p for p in RECORDED_PACKAGES if p not in pins]
    assert not missing, f"requirements.lock pins none of {missing}; run `make lock`"
    drift = {p: (installed[p], pins[p]) for p in RECORDED_PACKAGES if installed[p] != pins[p]}
    assert not drift, f"installed != locked (installed, locked): {drift}; reinstall with `make install`"


def test_env_id_ignores_the_commit_but_not_packages_or_threads():
    rec = environment_record(threads=1)
    other_commit = {**rec, "code": {"commit": "0" * 40, "dirty": False}}
    assert env_id(rec) == env_id(other_commit)
    assert env_id(rec) != env_id({**rec, "threads": 2})
    assert env_id(rec) != env_id({**rec, "packages": {**rec["packages"], "timm": "0.0.1"}})


def test_env_id_separates_processors_and_kernels_a_model_string_hides():
    """Two hosts named "AMD EPYC" with and without AVX-512, or one host pinned and not, train to
    other numbers: their ids must differ although the model string is the same."""
    rec = environment_record(threads=1)
    flags = {**rec, "processor": {**rec["processor"], "flags": [*rec["processor"]["flags"], "avx512f"]}}
    native = {**rec, "kernels": {**rec["kernels"], "pin": "native", "onednn": "native"}}
    vendor = {**rec, "processor": {**rec["processor"], "vendor": "AuthenticAMD"}}
    assert len({env_id(r) for r in (rec, {**flags, "processor": {**flags["processor"], "flags": ["x"]}}, native, vendor)}) == 4


def test_importing_the_package_pins_every_library_to_avx2_unless_told_native():
    """Each library reads its setting once; the pin has to be in place before torch's first
    operation, in this process and every worker (which inherits the environment)."""
    code = ("import benchmark, torch, os, json; torch.ones(2).sum(); "
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), "
            "{k: os.environ.get(k) for k in ('ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY', 'MKL_CBWR')}]))")
    clean = {k: v for k, v in os.environ.items() if k not in (*PINNED, PIN_ENV)}

    def probe(**env: str) -> list:
        done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], check=True)
        return json.loads(done.stdout)

    capability, pinned = probe()
    assert pinned == PINNED and capability == "AVX2"
    assert probe(WBC_CPU_ISA="native")[1] == dict.fromkeys(PINNED)
    assert probe(ONEDNN_MAX_CPU_ISA="AVX512_CORE")[1]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE", "the user's own value wins"


def test_an_unknown_pin_mode_is_named():
    with pytest.raises(BenchmarkError, match="WBC_CPU_ISA.*avx2, native"):
        os.environ[PIN_ENV] = "avx9"
        try:
            pin_mode()
        finally:
            del os.environ[PIN_ENV]


def test_a_job_records_the_installed_environment_and_the_summary_links_it(tmp_path, by_domain):
    by_id = {s.id: s for ss in by_domain.values() for s in ss}
    (job, split), = Sweep("cross_stain_synthetic", ["classical"], [0], get_budget("smoke"), tmp_path).plan().jobs
    job_dir = run_job(job, split, by_id, tmp_path, device=torch.device("cpu"), progress=False)
    rec = json.loads((job_dir / "config.json").read_text())["environment"]
    pins = _locked()
    assert rec["packages"] == {p: pins[p] for p in RECORDED_PACKAGES}, "the job ran outside the locked environment"
    assert rec["threads"] == torch.get_num_threads() == 1
    assert rec["cpu"] and rec["python"]
    assert rec["kernels"] == {"pin": "avx2", "aten": torch.backends.cpu.get_cpu_capability(),
                              "onednn": "AVX2", "mkl": "AVX2"}, "the test process runs pinned, as the CLI does"
    assert rec["processor"]["vendor"] and set(rec["processor"]["flags"]) <= set(ISA_FLAGS)
    lock = Path(__file__).resolve().parents[1] / "requirements.lock"
    assert rec["lock"] == hashlib.sha256(lock.read_bytes()).hexdigest()[:12], "the lock the job ran under is not named"
    if rec["code"]["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", rec["code"]["commit"])
    df = build_summary(tmp_path)
    assert set(df["env_id"]) == {env_id(rec)}
    envs = environments(tmp_path)
    assert list(envs) == [env_id(rec)] and envs[env_id(rec)]["jobs"] == 1
    assert envs[env_id(rec)]["packages"] == rec["packages"]
