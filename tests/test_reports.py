"""Reports from a results folder: golden files of the committed tiny fixture, and the rules behind them.

Regenerate the fixture and its goldens after an intended change with
``python scripts/make_results_fixture.py --update-golden`` and review the diff.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.errors import BenchmarkError
from benchmark.figures import write_png, iou_severity_figure, job_predictions
from benchmark.hypotheses import NOT_EVALUATED, evaluate_all, main_hypotheses, render_markdown
from benchmark.summary import build_summary, completed_job_dirs, main_report, read_summary
from benchmark.tables import build_tables, main_comparison, render_markdown as tables_markdown

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "results_tiny"
GOLDEN = FIXTURE / "golden"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_results_fixture", ROOT / "scripts" / "make_results_fixture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def report(tmp_path_factory, script) -> Path:
    """The fixture's summary, tables and hypotheses, built the way the goldens were."""
    out = tmp_path_factory.mktemp("results")
    shutil.copytree(FIXTURE / "jobs", out / "jobs")
    script.build_reports(out)
    return out


@pytest.fixture(scope="module")
def summary(report) -> pd.DataFrame:
    return build_summary(report)


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_reports_match_golden_files(report):
    golden = _files(GOLDEN)
    assert golden, "golden files missing: run scripts/make_results_fixture.py --update-golden"
    assert [p for p in _files(report) if p.parts[0] != "jobs"] == golden
    for rel in golden:
        assert (report / rel).read_bytes() == (GOLDEN / rel).read_bytes(), (
            f"{rel} differs from its golden copy; if intended, regenerate with "
            "`python scripts/make_results_fixture.py --update-golden`"
        )


def test_report_commands_write_everything(tmp_path, capsys):
    """main_report / main_hypotheses on part of the fixture (fewer models keep the figures quick)."""
    keep = ("sg_cldff__", "sg_cldff_no_align__", "resnext_cc__")
    for job in completed_job_dirs(FIXTURE):
        if job.name.startswith(keep):
            shutil.copytree(job, tmp_path / "jobs" / job.name)
    assert main_report(tmp_path) == 0 and main_hypotheses(tmp_path) == 0
    printed = capsys.readouterr().out
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == sorted(["iou_boxplot__cross_stain__tiny.png", "iou_vs_severity__cross_stain__tiny.png",
                              *[f"roc_pr__cross_stain__tiny__{m}.png" for m in ("resnext_cc", "sg_cldff",
                                                                               "sg_cldff_no_align")]])
    for name in figures:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
        assert b"Software" not in data and b"matplotlib" not in data  # no version stamp
        assert name in printed
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "tables" / "main.tex").exists()
    assert "H1: PASS" in printed and "H2: NOT EVALUATED (no results for sg_cldff_no_cldff" in printed


def test_fixture_generator_is_deterministic_and_committed(tmp_path, script):
    script.build_fixture(tmp_path)
    assert _files(tmp_path / "jobs") == _files(FIXTURE / "jobs")
    for rel in _files(FIXTURE / "jobs"):
        assert (tmp_path / "jobs" / rel).read_bytes() == (FIXTURE / "jobs" / rel).read_bytes(), rel


def test_figure_bytes_are_stable(summary, tmp_path):
    colours = {d: (0.2, 0.4, 0.6, 1.0) for d in summary["display"].unique()}
    paths = [write_png(iou_severity_figure(summary, colours, "t"), tmp_path / f"{i}.png") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_jobs_without_done_and_temp_dirs_are_ignored(summary, tmp_path):
    jobs = FIXTURE / "jobs"
    unfinished = [p for p in jobs.iterdir() if not (p / "done").exists()]
    hidden = [p for p in jobs.iterdir() if p.name.startswith(".")]
    assert len(unfinished) == 1 and len(hidden) == 1 and (hidden[0] / "done").exists()
    assert sorted(summary.loc[summary["display"] == "sg_cldff", "seed"].unique()) == [0, 1, 2]
    assert len(completed_job_dirs(FIXTURE)) == 15 and summary["job_id"].nunique() == 15
    # the same directory counts once it has its marker: the rule is the marker, nothing else
    shutil.copytree(jobs, tmp_path / "jobs")
    (tmp_path / "jobs" / unfinished[0].name / "done").write_text("now done\n")
    assert 3 in set(build_summary(tmp_path).query("display == 'sg_cldff'")["seed"])


def _cells(md: str, model: str) -> list[str]:
    row = next(line for line in md.splitlines() if line.startswith(f"| {model} |"))
    return [c.strip() for c in row.strip("|").split("|")][1:]


def test_missing_cells_render_dash_and_not_applicable_renders_na(summary):
    md = tables_markdown(main_comparison(summary))
    assert _cells(md, "resnext_cc")[3] == "n/a" and _cells(md, "resnext_cc")[7] == "n/a"  # IoU: no segmenter
    assert _cells(md, "resnext_cc")[0].endswith("(n=2)")  # fewer seeds than the others: n shown
    no_in_domain = summary[~((summary["display"] == "sg_cldff_no_align") & (summary["target"] == "in_domain"))]
    cells = _cells(tables_markdown(main_comparison(no_in_domain)), "sg_cldff_no_align")
    assert cells[:4] == ["—"] * 4 and all("±" in c for c in cells[4:])


def test_n_is_stated_once_when_every_cell_has_the_same_seeds(summary):
    variants = summary[summary["model"].str.startswith("sg_cldff") & (summary["treatment"] == "none")]
    md = tables_markdown(main_comparison(variants))
    assert "n = 3 seeds per cell" in md and "(n=" not in md


def test_tables_do_not_depend_on_row_order(summary):
    shuffled = summary.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert not shuffled["job_id"].equals(summary["job_id"])
    assert build_tables(shuffled) == build_tables(summary)
    assert render_markdown(evaluate_all(shuffled)) == render_markdown(evaluate_all(summary))


def test_summary_csv_round_trips(report, summary):
    back = read_summary(report / "summary.csv")
    pd.testing.assert_frame_equal(back, summary)
    assert build_tables(back) == build_tables(summary)


def _verdicts(df: pd.DataFrame, treatment: str = "none") -> dict:
    ex = next(e for e in evaluate_all(df) if e.treatment == treatment)
    return {ev.name: ev for ev in ex.evaluations} | {"family": ex.family}


def test_hypotheses_of_the_fixture(summary):
    v = _verdicts(summary)
    assert v["H1"].verdict == "PASS" and v["H2"].verdict == "FAIL" and v["family"] == ["H1", "H2"]
    assert v["H1"].tasks == ["restain:a", "hed:0.1", "hed:0.3"] and v["H1"].seeds == [0, 1, 2]
    treated = _verdicts(summary, "macenko")
    assert treated["H1"].verdict == NOT_EVALUATED and "sg_cldff_no_align+macenko" in treated["H1"].reason


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda df: df[df["model"] != "sg_cldff_no_align"], "no results for sg_cldff_no_align"),
        (lambda df: df.assign(iou=np.where(df["model"] == "sg_cldff_no_align", np.nan, df["iou"])), "iou is n/a"),
        (lambda df: df[(df["seed"] == 0) | (df["model"] != "sg_cldff_no_align")], "only 1 seed"),
        (lambda df: df[~df["target"].str.startswith(("restain:", "hed:"))], "none of the targets the claim needs: cross-stain"),
    ],
)
def test_unevaluable_hypothesis_is_not_evaluated(summary, change, reason):
    v = _verdicts(change(summary))
    assert v["H1"].verdict == NOT_EVALUATED and reason in v["H1"].reason
    assert "H1" not in v["family"]


def test_hypotheses_markdown_states_the_power_limit(report):
    md = (report / "hypotheses.md").read_text()
    assert "With 5 seeds this test can only pass for a large, steady effect" in md
    assert "smallest true effect this test detects with 80% power" in md


def test_tables_and_figures_skip_what_has_no_data(summary, capsys):
    no_hed = summary[~summary["target"].str.startswith("hed:")]
    assert isinstance(build_tables(no_hed)["iou_vs_severity"], str)
    assert iou_severity_figure(no_hed, {}, "t") is None
    no_variants = summary[summary["model"] == "resnext_cc"]
    assert "no SG-CLDFF variant" in build_tables(no_variants)["ablation"]


def test_empty_or_missing_results_folder_is_an_error(tmp_path):
    with pytest.raises(BenchmarkError, match="no completed jobs"):
        main_report(tmp_path / "nowhere")
    (tmp_path / "jobs" / "m__s__seed0__x").mkdir(parents=True)  # unfinished only
    with pytest.raises(BenchmarkError, match="no completed jobs"):
        main_hypotheses(tmp_path)


def test_corrupt_or_duplicate_jobs_are_errors(tmp_path):
    shutil.copytree(FIXTURE / "jobs", tmp_path / "jobs")
    job = sorted(completed_job_dirs(tmp_path))[0]
    shutil.copytree(job, tmp_path / "jobs" / (job.name + "_copy"))
    with pytest.raises(BenchmarkError, match="several completed jobs"):
        build_summary(tmp_path)
    shutil.rmtree(tmp_path / "jobs" / (job.name + "_copy"))
    (job / "metrics.json").write_text("{not json")
    with pytest.raises(BenchmarkError, match="metrics.json is not valid JSON"):
        build_summary(tmp_path)


def test_corrupt_predictions_are_errors_naming_the_file(tmp_path):
    job = tmp_path / "job"
    shutil.copytree(completed_job_dirs(FIXTURE)[0], job)
    rows = [json.loads(line) for line in gzip.open(job / "predictions.jsonl.gz", "rt")]
    rows[3]["pred_mask"] = {"shape": [4, 4], "values": [0], "counts": [16]}  # another image size
    with gzip.open(job / "predictions.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with pytest.raises(BenchmarkError, match=r"predictions.jsonl.gz line 4, sample .*differ in shape"):
        job_predictions(job)
    (job / "predictions.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(BenchmarkError, match="predictions.jsonl.gz is corrupt"):
        job_predictions(job)
