"""Committed reference folders are data a user's run never overwrites, and ``report`` and
``hypotheses`` re-derive them from ``summary.csv`` alone (their job folders are not committed)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from benchmark.cli.main import RUNS_DIR, main
from benchmark.record.jobs import completed_job_dirs

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_JOBS = ROOT / "tests" / "fixtures" / "results_tiny" / "jobs"


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "jobs" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """The tiny fixture's jobs, reported and decided the way a user's run is."""
    out = tmp_path_factory.mktemp("reported")
    shutil.copytree(FIXTURE_JOBS, out / "jobs")
    assert main(["report", "--out", str(out)]) == 0
    assert main(["hypotheses", "--out", str(out)]) == 0
    return out


def test_a_folder_with_only_its_summary_is_rederived_byte_for_byte(reported, tmp_path):
    """What a fresh clone holds of a committed folder: everything but jobs/. Re-deriving it must give
    every file back unchanged, the severity figures included (they are drawn from the summary)."""
    before = _snapshot(reported)
    assert any(name.startswith("figures/iou_vs_severity") for name in before), "the fixture draws a severity figure"
    clone = shutil.copytree(reported, tmp_path / "clone", ignore=shutil.ignore_patterns("jobs"))
    for name in [n for n in before if n.startswith("figures/iou_vs_severity") or n.startswith("tables/")]:
        (clone / name).unlink()  # so they must be redrawn, not merely left in place
    assert main(["report", "--out", str(clone)]) == 0
    assert main(["hypotheses", "--out", str(clone)]) == 0
    after = _snapshot(clone)
    assert sorted(after) == sorted(before)
    assert [n for n in before if before[n] != after[n]] == []


def test_a_run_into_a_reference_folder_is_refused_before_it_trains(reported, tmp_path, capsys):
    reference = shutil.copytree(reported, tmp_path / "reference", ignore=shutil.ignore_patterns("jobs"))
    before = _snapshot(reference)
    rc = main(["run", "--protocol", "cross_stain_synthetic", "--models", "classical", "--seeds", "1",
               "--budget", "smoke", "--jobs", "1", "--out", str(reference)])
    assert rc == 2
    assert "would drop their rows" in capsys.readouterr().err
    assert not (reference / "jobs").exists() and _snapshot(reference) == before


def test_a_report_that_would_drop_rows_is_refused_and_writes_nothing(reported, tmp_path, capsys):
    """Some job folders gone (deleted by hand, or a run into a reference's copy): rebuilding from the
    rest would silently lose rows, so the report stops with the way out."""
    partial = shutil.copytree(reported, tmp_path / "partial")
    shutil.rmtree(completed_job_dirs(partial)[0])
    before = _snapshot(partial)
    assert main(["report", "--out", str(partial)]) == 2
    assert "delete" in capsys.readouterr().err
    assert _snapshot(partial) == before


def test_a_job_folder_deleted_to_rerun_it_is_no_loss(tmp_path, capsys):
    """The documented way to rerun one job (delete its folder) still works: the run writes it again,
    so the report drops nothing; a deleted job the run will not redo is refused."""
    from benchmark.engine.budgets import get_budget
    from benchmark.engine.plan import Sweep
    from benchmark.engine.sweep import run_sweep

    out = tmp_path / "mine"
    sweep = Sweep("cross_stain_synthetic", ["classical", "constant_mask"], [0], get_budget("smoke"), out)
    run_sweep(sweep, workers=1, log=lambda _: None)
    assert main(["report", "--out", str(out)]) == 0
    victim = completed_job_dirs(out)[0]
    shutil.rmtree(victim)
    run_sweep(sweep, workers=1, log=lambda _: None)
    assert (out / "jobs" / victim.name / "done").exists()
    shutil.rmtree(victim)
    other = Sweep("cross_stain_synthetic", [victim.name.split("__")[0]], [1], get_budget("smoke"), out)
    with pytest.raises(Exception, match="would drop their rows"):
        run_sweep(other, workers=1, log=lambda _: None)


def test_runs_go_to_the_ignored_runs_folder_by_default(tmp_path):
    """`make benchmark` with no OUT, and `run` with no --out, never touch results/ (tracked)."""
    dry = subprocess.run(["make", "-s", "-n", "benchmark", "PROTOCOL=cross_stain"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert f"--out {RUNS_DIR}/cross_stain" in dry and "results/" not in dry
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{RUNS_DIR}/cross_stain/summary.csv"], cwd=ROOT)
    assert ignored.returncode == 0, f"{RUNS_DIR}/ must be git-ignored"
