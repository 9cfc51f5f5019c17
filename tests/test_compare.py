"""benchmark.analysis.compare: a rerun against a results folder, on the committed tiny fixture (two sources)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli.main import main
from benchmark.analysis.compare import compare, parse_seed_sets, render_markdown
from benchmark.record.summary import build_summary, write_summary
from core.errors import BenchmarkError

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results_tiny"


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return build_summary(FIXTURE)


def test_a_folder_reproduces_itself(summary) -> None:
    c = compare(summary, summary.copy())
    assert c.shared_rows == len(summary) and c.identical_rows == c.shared_rows
    assert c.only_reference == c.only_results == 0
    assert not c.drift.empty and (c.drift["max_abs_diff"] == 0).all()
    assert not c.verdicts.empty and c.verdicts["same_verdict"].all() and c.verdicts["bounds_overlap"].all()


def test_drift_is_measured_where_it_is(summary) -> None:
    """+5 IoU points on one model's re-stained targets shows there, in that sign, and nowhere else."""
    res = summary.copy()
    hit = (res["model"] == "sg_cldff") & (res["target_kind"] == "restain") & res["iou"].notna()
    assert hit.any()
    res.loc[hit, "iou"] += 0.05
    c = compare(summary, res)
    assert c.identical_rows == c.shared_rows - int(hit.sum())
    iou = c.drift[c.drift["metric"] == "iou"].set_index(["model", "targets"])
    assert iou.loc[("sg_cldff", "restain"), "mean_diff"] == pytest.approx(5.0)
    assert (iou.drop(("sg_cldff", "restain"))["max_abs_diff"] == 0).all()


def test_a_partial_rerun_compares_on_the_jobs_it_has(summary) -> None:
    seeds = sorted(summary["seed"].unique())
    assert len(seeds) >= 3, "the fixture needs 3 seeds for a 2-seed rerun to be tested"
    part = summary[summary["seed"].isin(seeds[:2])]
    c = compare(summary, part, parse_seed_sets(f"{seeds[0]}"))
    assert c.only_reference == len(summary) - len(part) and c.only_results == 0
    assert set(c.verdicts["seeds"]) == {f"{seeds[0]}-{seeds[1]}"}  # a 1-seed set decides nothing; the shared 2 do
    assert (c.verdicts["n"] == 2).all()


def test_verdicts_that_differ_are_flagged(summary) -> None:
    """Raising the ablation's shifted IoU by 30 points turns H1 (SUPPORTED on the fixture) into another verdict."""
    res = summary.copy()
    hit = (res["model"] == "sg_cldff_no_align") & res["shifted"] & res["iou"].notna()
    res.loc[hit, "iou"] = (res.loc[hit, "iou"] + 0.3).clip(upper=1.0)
    c = compare(summary, res)
    h1 = c.verdicts[c.verdicts["hypothesis"] == "H1"]
    assert not h1.empty and not h1["same_verdict"].any() and not h1["bounds_overlap"].any()
    assert "| **no** |" in render_markdown(c, FIXTURE, FIXTURE)


def test_folders_of_other_sweeps_are_refused(summary) -> None:
    other = summary.assign(job_id=summary["job_id"] + "x")
    with pytest.raises(BenchmarkError, match="share no job"):
        compare(summary, other)


@pytest.mark.parametrize("text, message", [("0-x", "not a seed or a range"), ("5-2", "runs backwards"), ("", "not a seed")])
def test_bad_seed_sets(text, message) -> None:
    with pytest.raises(BenchmarkError, match=message):
        parse_seed_sets(text)


def test_cli_prints_the_report_and_writes_nothing(summary, tmp_path, capsys) -> None:
    for name in ("a", "b"):
        write_summary(summary, tmp_path / name / "summary.csv")
    before = sorted(tmp_path.rglob("*"))
    assert main(["compare", "--reference", str(tmp_path / "a"), "--results", str(tmp_path / "b"), "--sets", "0-1"]) == 0
    out = capsys.readouterr().out
    assert f"bit-identical rows (every metric equal): {len(summary)} of {len(summary)}" in out
    assert sorted(tmp_path.rglob("*")) == before


def test_cli_missing_folder_exits_2(tmp_path, capsys) -> None:
    missing = tmp_path / "nope"
    assert main(["compare", "--reference", str(missing), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"results folder {missing} does not exist" in err
    assert not missing.exists()
