"""Smoke tests of the reliability diagram and the flip-rate panel of the severity figure, on the tiny
fixture's jobs and summary (its invariance columns filled with invented numbers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.record.metrics import expected_calibration_error
from benchmark.reports.figures import all_predictions, iou_severity_figure, reliability_figure, write_png

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results_tiny"


@pytest.fixture(scope="module")
def preds() -> pd.DataFrame:
    p = all_predictions(FIXTURE)
    return p[p["protocol"] == "cross_stain"]


def _legend(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_reliability_diagram_pools_seeds_in_domain_and_shifted(preds, tmp_path):
    mine = preds[preds["display"] == "sg_cldff"]
    fig = reliability_figure(mine, "t")
    assert len(fig.axes) == 2  # the diagram and the share of samples per bin
    in_domain = mine[(mine["target"] == "in_domain") & (mine["label"] >= 0)]
    ece = expected_calibration_error(in_domain["label"].to_numpy(), np.stack(in_domain["proba"].to_list()))
    assert _legend(fig) == ["perfect calibration", f"in-domain (n={len(in_domain)}, pooled ECE {100 * ece:.1f})",
                            f"shifted (n={int(((mine['target'] != 'in_domain') & (mine['label'] >= 0)).sum())}, "
                            f"pooled ECE {_pooled_ece(mine[mine['target'] != 'in_domain']):.1f})"]
    paths = [write_png(reliability_figure(mine, "t"), tmp_path / f"{i}.png") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def _pooled_ece(rows: pd.DataFrame) -> float:
    rows = rows[rows["label"] >= 0]
    return 100 * expected_calibration_error(rows["label"].to_numpy(), np.stack(rows["proba"].to_list()))


def test_reliability_diagram_is_skipped_without_probabilities(preds):
    assert reliability_figure(preds[preds["display"] == "constant_mask"], "t") is None  # a segmenter only
    only_in_domain = preds[(preds["display"] == "sg_cldff") & (preds["target"] == "in_domain")]
    assert [t.split(" (")[0] for t in _legend(reliability_figure(only_in_domain, "t"))] == [
        "perfect calibration", "in-domain"]


def test_severity_figure_gets_a_flip_rate_panel_when_the_summary_has_one(tiny_summary, tiny_summary_with_invariance):
    summary = tiny_summary.assign(flip_rate=np.nan)  # jobs that predate flip rates
    sources = sorted(summary.loc[summary["target_kind"] == "hed", "source"].unique())
    colours = {d: (0.2, 0.4, 0.6, 1.0) for d in summary["display"].unique()}
    assert len(iou_severity_figure(summary, "hed", colours, "t").axes) == len(sources)
    fig = iou_severity_figure(tiny_summary_with_invariance, "hed", colours, "t")
    assert len(fig.axes) == 2 * len(sources) and fig.axes[1].get_ylabel().startswith("flip rate")
    assert "in-domain" not in " ".join(t.get_text() for t in fig.axes[1].get_xticklabels())


def test_severity_figure_has_a_panel_per_source_and_one_legend_off_the_data(tiny_summary_with_invariance):
    """A line per model and source in one panel (15 lines, a colour per model only) was unreadable."""
    g = tiny_summary_with_invariance
    sources = sorted(g.loc[g["target_kind"] == "hed", "source"].unique())
    assert len(sources) > 1, "the fixture must have several sources for this check"
    displays = list(g["display"].unique())
    colours = {d: (i / len(displays), 0.3, 0.5, 1.0) for i, d in enumerate(displays)}
    fig = iou_severity_figure(g, "hed", colours, "t")
    assert [ax.get_title() for ax in fig.axes[::2]] == [f"trained on {s}" for s in sources]
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    drawn = {label for ax in fig.axes for label in ax.get_legend_handles_labels()[1]}
    assert {t.get_text() for t in fig.legends[0].get_texts()} == drawn, "a line of some panel is not in the legend"
    for ax in fig.axes:
        line_colours = [tuple(line.get_color()) for line in ax.lines if line.get_marker() == "o"]
        assert line_colours
        assert len(line_colours) == len(set(line_colours)), f"two lines share a colour in {ax.get_title()}"
