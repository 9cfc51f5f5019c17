"""The calibration, boundary, explanation and invariance tables (benchmark.reports.metric_tables), on
the tiny fixture's summary; its invariance columns are filled with invented numbers (conftest), as the
fixture's jobs predate them."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from benchmark.analysis.intervals import seed_mean_interval
from benchmark.record.vocabulary import INVARIANCE_METRICS
from benchmark.reports.cells import render_markdown
from benchmark.reports.metric_tables import INVARIANCE, boundary, calibration, explanation, invariance
from benchmark.reports.tables import SKIP_REASONS, TABLES, build_tables, write_tables

@pytest.fixture(scope="module")
def summary(tiny_summary) -> pd.DataFrame:
    return tiny_summary


def _row(md: str, *first: str) -> list[str]:
    prefix = "| " + " | ".join(first) + " |"
    line = next(line for line in md.splitlines() if line.startswith(prefix))
    return [c.strip() for c in line.strip("|").split("|")][len(first):]


def _interval_text(values: pd.Series, scale: float = 100.0, decimals: int = 1, signed: bool = False) -> str:
    ci = seed_mean_interval(values.to_numpy())
    sign = "+" if signed else ""
    return (f"{scale * ci.estimate:{sign}.{decimals}f} [{scale * ci.low:{sign}.{decimals}f}, "
            f"{scale * ci.high:{sign}.{decimals}f}]")


def test_the_new_tables_are_registered_with_a_skip_reason():
    for name in ("calibration", "boundary", "explanation", "invariance"):
        assert name in TABLES and name in SKIP_REASONS
    assert tuple(c.metric for c in INVARIANCE) == INVARIANCE_METRICS


def test_invariance_by_kind_and_severity_with_intervals(tiny_summary_with_invariance):
    df = tiny_summary_with_invariance
    md = render_markdown(invariance(df))
    cs = df[(df["protocol"] == "cross_stain") & (df["display"] == "sg_cldff") & (df["target"] == "hed:0.3")]
    per_seed = cs.groupby("seed")["flip_rate"].mean()  # the two sources averaged within a seed
    table = md[md.index("Protocol cross_stain"):]
    cells = _row(table, "sg_cldff", "hed", "0.3")
    assert cells[0] == _interval_text(per_seed) + " (n=3)"  # n differs between rows (resnext_cc has 2 seeds)
    drift = cs.groupby("seed")["feature_drift"].mean()
    assert cells[2] == _interval_text(drift, scale=1.0, decimals=3) + " (n=3)"
    assert _row(table, "sg_cldff", "restain", "all (1 target pooled)")[1].startswith("-")  # signed IoU change
    assert _row(table, "resnext_cc", "hed", "0.1")[1] == "n/a"  # no masks, no IoU change
    assert _row(table, "constant_mask", "hed", "0.1")[0] == "n/a"  # no classes, no flips
    assert "| majority_class | hed | 0.1 |" in table  # its flips and drift are values (constant, yet measured)
    assert "in_domain" not in md and "| Model | Target kind | Severity | Flip rate | IoU change | Feature drift |" in md
    scanner = md[md.index("Protocol cross_scanner"):md.index("Protocol cross_stain")]
    kinds = [line.split("|")[2:4] for line in scanner.splitlines() if line.startswith("| sg_cldff |")]
    assert [(k.strip(), s.strip()) for k, s in kinds] == [
        ("defocus", "1 (radius_frac=0.01)"), ("defocus", "5 (radius_frac=0.06)"), ("jpeg", "2 (quality=70)"),
        ("jpeg", "5 (quality=10)")]
    assert "within_dataset" not in md  # no shifted targets there


def test_a_metric_missing_on_some_rows_shows_na_and_all_missing_skips_the_table(summary, tiny_summary_with_invariance):
    df = tiny_summary_with_invariance
    partial = df.assign(feature_drift=np.nan)
    md = render_markdown(invariance(partial))
    assert _row(md[md.index("Protocol cross_stain"):], "sg_cldff", "hed", "0.3")[2] == "n/a"
    none = df.assign(**{m: np.nan for m in INVARIANCE_METRICS})  # jobs that predate the measures
    assert invariance(none) == [] and build_tables(none)["invariance"] == SKIP_REASONS["invariance"]


def test_skipped_tables_are_named_when_written(summary, tmp_path, capsys):
    no_explain = summary.assign(saliency_consistency=np.nan, **{m: np.nan for m in INVARIANCE_METRICS})
    written = {p.name for p in write_tables(no_explain, tmp_path)}
    printed = capsys.readouterr().out
    assert f"skipped table invariance: {SKIP_REASONS['invariance']}" in printed
    assert f"skipped table explanation: {SKIP_REASONS['explanation']}" in printed
    assert {"calibration.md", "calibration.tex", "boundary.md", "boundary.tex"} <= written
    assert not {"explanation.md", "invariance.md"} & written


def test_calibration_shows_the_worst_shifted_target_by_the_highest_ece(summary):
    md = render_markdown(calibration(summary))
    table = md[md.index("Protocol cross_stain"):md.index("Protocol within_dataset")]
    mine = summary[(summary["protocol"] == "cross_stain") & (summary["display"] == "sg_cldff_no_align")]
    shifted = mine[mine["shifted"]]
    by_target = shifted.groupby("target")["ece"].mean()
    worst = by_target.idxmax()
    cells = _row(table, "sg_cldff_no_align")
    assert cells[-1] == worst
    assert cells[2] == _interval_text(shifted[shifted["target"] == worst].groupby("seed")["ece"].mean()) + " (n=3)"
    assert cells[1] == _interval_text(shifted.groupby("seed")["ece"].mean()) + " (n=3)"
    assert "| constant_mask |" not in table  # no classifier: left out, not a row of n/a
    assert "sg_cldff+macenko | " in table and _row(table, "sg_cldff+macenko")[0].endswith("(n=1)")
    within = md[md.index("Protocol within_dataset"):]
    assert "| Model | ECE (in-domain) |\n" in within and "has no shifted targets" in within


def test_boundary_gives_hd95_in_pixels_and_explanation_its_share(summary):
    md = render_markdown(boundary(summary))
    mine = summary[(summary["protocol"] == "cross_scanner") & (summary["display"] == "constant_mask")]
    in_domain = mine[mine["target"] == "in_domain"].groupby("seed")["hd95"].mean()
    cells = _row(md[md.index("Protocol cross_scanner"):], "constant_mask")
    assert cells[1] == _interval_text(in_domain, scale=1.0, decimals=2)
    assert "| resnext_cc |" not in md  # classification only
    ex = render_markdown(explanation(summary))
    assert "Saliency consistency (shifted)" in ex and "| constant_mask |" not in ex
    assert explanation(summary.assign(saliency_consistency=np.nan)) == []
