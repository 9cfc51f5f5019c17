"""Figures of a results folder (PNG, matplotlib Agg, byte-stable: no timestamp or version metadata).

- ``iou_vs_severity__<protocol>__<budget>__<kind>.png``: IoU against severity per model, one
  figure per graded target kind (HED jitter, each acquisition shift), one row of panels per source,
  mean +- SD over seeds (severity 0 = the untouched in-domain test), from the summary's
  ``target_kind`` and ``severity``; with a flip-rate panel beside each when the summary has
  ``flip_rate`` values. The only figure a folder without job folders can redraw;
- ``roc_pr__<protocol>__<budget>__<model>.png``: one-vs-rest ROC and precision-recall curves per
  class on the in-domain test, predictions pooled over seeds (and sources);
- ``reliability__<protocol>__<budget>__<model>.png``: reliability diagram (accuracy against
  confidence in ECE's 15 equal-width bins), in-domain and shifted, predictions pooled over seeds;
- ``iou_boxplot__<protocol>__<budget>.png``: per-image IoU per target domain, one panel per model,
  pooled over seeds, recomputed from the run-length-encoded masks in ``predictions.jsonl.gz``;
- ``explain__<protocol>__<budget>.png``: image, learned saliency S and Grad-CAM overlay (WBC mask
  outlined) for a few test images per target, from ``explain_examples.npz`` of the full model's
  lowest-seed job.

A figure whose data is absent (no graded targets, no classifier, no masks) is skipped with the
reason printed. Figures are drawn on :class:`matplotlib.figure.Figure` objects directly, never
through pyplot, so no global backend or figure state is touched.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from core.sample import CLASSES
from core.errors import BenchmarkError
from benchmark.record.metrics import (ECE_BINS, calibration_bins, expected_calibration_error, rle_to_mask,
                                      segmentation_metrics)
from benchmark.record.jobs import JobConfig, require_jobs
from benchmark.record.vocabulary import IN_DOMAIN, NO_TREATMENT
from benchmark.analysis.selection import graded_kinds, groups, ordered_displays, ordered_targets, severity_levels
from benchmark.reports.cells import seed_values
from wbcdata.target_kinds import severity_text

DPI = 100
PNG_METADATA = {"Software": None}
"""Drop matplotlib's version stamp so the same data gives the same bytes."""


def write_png(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=PNG_METADATA)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return path


def _margins(fig: Figure, left: float, right: float, top: float, bottom: float, **space: float) -> None:
    """Fixed margins in inches: much cheaper than tight_layout, which draws every figure twice."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h, **space)


def _colours(displays: list[str]) -> dict[str, tuple]:
    """One colour per model, the same in every figure of a results folder."""
    tab = colormaps["tab10"]
    return {d: tab(i % 10) for i, d in enumerate(displays)}


# ---- per-sample predictions -----------------------------------------------------------------

def _image_iou(rec: dict, where: str) -> float:
    """Binary WBC IoU of one image, by the same definition as the tables (both empty -> 1)."""
    try:
        pred, true = rle_to_mask(rec["pred_mask"]), rle_to_mask(rec["true_mask"])
        return float(segmentation_metrics(pred[None], true[None], score_nucleus=False)["iou"])
    except BenchmarkError as e:
        raise BenchmarkError(f"{where}, sample {rec.get('id')!r}: {e}") from e


def job_predictions(job_dir: Path) -> pd.DataFrame:
    """Per-sample rows of one job: keys, target, label, proba (array or None), iou (NaN without masks)."""
    cfg = JobConfig.read(job_dir)
    keys = {"protocol": cfg.protocol, "budget": cfg.budget_name, "display": cfg.display, "source": cfg.source,
            "seed": cfg.seed}
    path = job_dir / "predictions.jsonl.gz"
    rows = []
    try:
        with gzip.open(path, "rt") as f:
            for i, line in enumerate(f, 1):
                rec = json.loads(line)
                where = f"{path} line {i}"
                has_masks = rec.get("pred_mask") is not None and rec.get("true_mask") is not None
                proba = rec.get("proba")
                rows.append({**keys, "target": rec["target"], "label": int(rec["label"]),
                             "proba": None if proba is None else np.asarray(proba, dtype=np.float64),
                             "iou": _image_iou(rec, where) if has_masks else np.nan})
    except FileNotFoundError as e:
        raise BenchmarkError(f"{path} is missing: the job directory is incomplete; delete it to rerun the job") from e
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BenchmarkError(
            f"{path} is corrupt ({type(e).__name__}: {e}); delete the job directory to rerun it"
        ) from e
    return pd.DataFrame(rows, columns=[*keys, "target", "label", "proba", "iou"])


def all_predictions(out_dir: Path) -> pd.DataFrame:
    return pd.concat([job_predictions(j) for j in require_jobs(out_dir)], ignore_index=True)


# ---- the figures ----------------------------------------------------------------------------

def _severity_series(ax, g: pd.DataFrame, kind: str, metric: str, colours: dict[str, tuple],
                     in_domain: bool) -> None:
    """One line per model of ``metric``'s mean +- SD over seeds against ``kind``'s severities (``g``
    holds one source), from severity 0 (the in-domain test) when ``in_domain``."""
    severities = [s for s, _ in severity_levels(g, kind)]
    for display in ordered_displays(g):
        mine = g[g["display"] == display]
        points = [(0.0, mine[mine["target"] == IN_DOMAIN])] if in_domain else []
        points += [(s, mine[(mine["target_kind"] == kind) & (mine["severity"] == s)]) for s in severities]
        xs, means, sds = [], [], []
        for x, rows in points:
            v = seed_values(rows, metric).dropna() if not rows.empty else pd.Series(dtype=float)
            if v.empty:
                continue
            xs.append(x)
            means.append(v.mean())
            sds.append(v.std(ddof=1) if len(v) > 1 else 0.0)
        if xs:
            ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=display, color=colours[display])


def iou_severity_figure(g: pd.DataFrame, kind: str, colours: dict[str, tuple], title: str) -> Figure | None:
    """Mean +- SD over seeds of IoU at severity 0 (in-domain) and each severity of target kind
    ``kind``, and beside it the flip rate per severity when the summary has one: one row of panels
    per source (so no two lines share a colour), one legend outside the data; None if no data."""
    of_kind = g["target_kind"] == kind
    if not of_kind.any() or g["iou"].isna().all():
        return None
    levels = severity_levels(g, kind)
    panels = [("iou", "IoU (mean ± SD over seeds)", True)]
    if g.loc[of_kind, "flip_rate"].notna().any():
        panels.append(("flip_rate", "flip rate (mean ± SD over seeds)", False))
    sources = sorted(g.loc[of_kind, "source"].unique())
    fig = Figure(figsize=(4.5 * len(panels) + 2.2, 3.2 * len(sources) + 0.6))
    axes = np.asarray(fig.subplots(len(sources), len(panels), squeeze=False))
    for row, source in zip(axes, sources):
        for ax, (metric, ylabel, in_domain) in zip(row, panels):
            _severity_series(ax, g[g["source"] == source], kind, metric, colours, in_domain)
            ticks = [(0.0, "0\n(in-domain)")] if in_domain else []
            ticks += [(s, label.replace(" (", "\n(")) for s, label in levels]
            ax.set_xticks([x for x, _ in ticks])
            ax.set_xticklabels([t for _, t in ticks], fontsize=7)
            ax.set_xlabel(severity_text(kind), fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(f"trained on {source}", fontsize=8)
            ax.grid(alpha=0.3)
    legend: dict[str, object] = {}  # every model of every panel (a classifier has no IoU, a segmenter no flips)
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    order = [d for d in ordered_displays(g) if d in legend]
    fig.legend([legend[d] for d in order], order, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    _margins(fig, left=0.7, right=2.2, top=0.75, bottom=0.7, wspace=0.3, hspace=0.6)
    return fig


def _conditions(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [("in-domain", rows[rows["target"] == IN_DOMAIN]), ("shifted", rows[rows["target"] != IN_DOMAIN])]


def reliability_figure(preds: pd.DataFrame, title: str) -> Figure | None:
    """Reliability diagram of one model: accuracy against mean confidence in the equal-width bins of
    :func:`~benchmark.record.metrics.expected_calibration_error`, in-domain and over the shifted
    targets, samples pooled over seeds (and sources), with each bin's share of samples below; None
    without labelled probabilities."""
    labelled = preds[(preds["label"] >= 0) & preds["proba"].notna()]
    if labelled.empty:
        return None
    fig = Figure(figsize=(5, 6))
    ax, share_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    for (name, rows), colour in zip(_conditions(labelled), ("tab:blue", "tab:orange")):
        if rows.empty:
            continue
        y, p = rows["label"].to_numpy(), np.stack(rows["proba"].to_list())
        count, correct, conf = calibration_bins(y, p)
        seen = count > 0
        ece = expected_calibration_error(y, p)
        ax.plot(conf[seen] / count[seen], correct[seen] / count[seen], marker="o", color=colour,
                label=f"{name} (n={len(y)}, pooled ECE {100 * ece:.1f})")
        share_ax.stairs(count / len(y), edges, color=colour)
    ax.set(ylabel="accuracy in bin", xlim=(0, 1), ylim=(0, 1.02), title=f"{ECE_BINS} equal-width confidence bins")
    share_ax.set(xlabel="confidence (max probability)", ylabel="share of samples")
    for a in (ax, share_ax):
        a.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    _margins(fig, left=0.8, right=0.2, top=0.7, bottom=0.6, hspace=0.1)
    return fig


def roc_pr_figure(preds: pd.DataFrame, title: str) -> Figure | None:
    """One-vs-rest ROC and PR curves per class present; None without labelled probabilities."""
    rows = preds[(preds["target"] == IN_DOMAIN) & (preds["label"] >= 0) & preds["proba"].notna()]
    if rows.empty:
        return None
    y = rows["label"].to_numpy()
    p = np.stack(rows["proba"].to_list())
    fig = Figure(figsize=(9, 4))
    roc_ax, pr_ax = fig.subplots(1, 2)
    for k, name in enumerate(CLASSES):
        pos = y == k
        if not pos.any() or pos.all():
            continue  # one-vs-rest needs both positives and negatives
        fpr, tpr, _ = roc_curve(pos, p[:, k])
        prec, rec, _ = precision_recall_curve(pos, p[:, k])
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        pr_ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(pos, p[:, k]):.3f}, n={int(pos.sum())})")
    roc_ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one-vs-rest)")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall (one-vs-rest)", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=7, loc="lower right" if ax is roc_ax else "lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    _margins(fig, left=0.7, right=0.2, top=0.6, bottom=0.6, wspace=0.25)
    return fig


def iou_boxplot_figure(preds: pd.DataFrame, displays: list[str], targets: list[str], title: str) -> Figure | None:
    """Per-image IoU per target, one panel per model with masks; None when no model has masks."""
    with_masks = [d for d in displays if preds.loc[preds["display"] == d, "iou"].notna().any()]
    if not with_masks:
        return None
    fig = Figure(figsize=(max(5.0, 0.9 * len(targets) + 2), 1.9 * len(with_masks) + 0.8))
    axes = np.atleast_1d(fig.subplots(len(with_masks), 1, sharex=True, sharey=True))
    for ax, display in zip(axes, with_masks):
        mine = preds[(preds["display"] == display) & preds["iou"].notna()]
        data = [(i, mine.loc[mine["target"] == t, "iou"].to_numpy()) for i, t in enumerate(targets)]
        data = [(i, v) for i, v in data if v.size]
        ax.boxplot([v for _, v in data], positions=[i for i, _ in data], widths=0.6)
        ax.set_title(display, fontsize=8, loc="left")
        ax.set_ylabel("IoU per image")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3, axis="y")
    axes[-1].set_xticks(range(len(targets)))
    axes[-1].set_xticklabels(targets, rotation=30, ha="right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _margins(fig, left=0.8, right=0.2, top=0.75, bottom=0.8, hspace=0.35)
    return fig


EXPLAIN_IMAGES_PER_TARGET = 2


def explain_panel_figure(examples: dict[str, np.ndarray], targets: list[str], title: str) -> Figure | None:
    """Rows: test images of each target; columns: image, learned saliency, Grad-CAM over the image."""
    rows = [(t, i) for t in targets if f"{t}|image" in examples
            for i in range(min(EXPLAIN_IMAGES_PER_TARGET, len(examples[f"{t}|image"])))]
    if not rows:
        return None
    fig = Figure(figsize=(6.6, 2.0 * len(rows) + 0.6), dpi=DPI)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (t, i) in enumerate(rows):
        img, mask, cam = examples[f"{t}|image"][i], examples[f"{t}|mask"][i], examples[f"{t}|cam"][i]
        sal = examples.get(f"{t}|saliency")
        pred, label = int(examples[f"{t}|predicted"][i]), int(examples[f"{t}|label"][i])
        truth = CLASSES[label] if label >= 0 else "unlabelled"
        axes[r, 0].imshow(img)
        axes[r, 0].text(1, 1, f"{t}\n{truth} -> {CLASSES[pred]}", fontsize=6, va="top",
                        bbox={"facecolor": "white", "alpha": 0.8, "pad": 1})
        if sal is not None:
            axes[r, 1].imshow(sal[i], cmap="magma", vmin=0, vmax=1)
        else:
            axes[r, 1].text(0.5, 0.5, "no saliency module", ha="center", va="center", fontsize=7)
        axes[r, 2].imshow(img)
        axes[r, 2].imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes[r, 2].contour(mask > 0, levels=[0.5], colors="white", linewidths=0.8)
        for c, name in enumerate(["image", "learned saliency S", "Grad-CAM (fused layer), WBC outline"]):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=8)
    _margins(fig, 0.02, 0.98, 1 - 0.45 / (2.0 * len(rows) + 0.6), 0.01, hspace=0.08, wspace=0.04)
    return fig


def panel_targets(g: pd.DataFrame) -> list[str]:
    """The explanation panel's targets: every target in table order, but of each graded kind only
    its strongest severity (the mild ones look alike)."""
    strongest = g[g["severity"].notna() & (g["target"] != IN_DOMAIN)].groupby("target_kind")["severity"].max()
    keep = g[~g["target_kind"].isin(strongest.index) | (g["severity"] == g["target_kind"].map(strongest))]
    return [t for t in ordered_targets(g) if t in set(keep["target"])]


def _explain_examples(out_dir: Path, g: pd.DataFrame) -> tuple[dict[str, np.ndarray], str] | None:
    """The full model's lowest-seed untreated job that saved explanation examples."""
    jobs = g[(g["model"] == "sg_cldff") & (g["treatment"] == NO_TREATMENT)].sort_values(["seed", "source"])
    for job_id, seed in jobs[["job_id", "seed"]].drop_duplicates().itertuples(index=False):
        for path in (out_dir / "jobs").glob(f"*__{job_id}/explain_examples.npz"):
            with np.load(path) as z:
                return {k: z[k] for k in z.files}, f"sg_cldff seed {seed}"
    return None


def write_figures(out_dir: Path, df: pd.DataFrame, fig_dir: Path, from_jobs: bool = True) -> list[Path]:
    """Every figure of a results folder; prints the reason for each figure skipped. Without job
    folders (``from_jobs`` False: a committed reference folder) only the severity figures, drawn
    from ``df``, are redrawn; the others need the jobs' predictions and are left as they are."""
    preds = all_predictions(out_dir) if from_jobs else None
    if preds is None:
        print(f"kept the roc_pr, reliability, iou_boxplot and explain figures of {out_dir} as they are: "
              f"they are drawn from the job folders' predictions, which are not here")
    written = []
    for protocol, budget, g in groups(df):
        tag, what = f"{protocol}__{budget}", f"{protocol}, budget {budget}"
        colours = _colours(ordered_displays(g))
        written += _severity_figures(g, tag, what, colours, fig_dir)
        if preds is not None:
            p = preds[(preds["protocol"] == protocol) & (preds["budget"] == budget)]
            written += _prediction_figures(out_dir, g, p, tag, what, fig_dir)
    return written


def _severity_figures(g: pd.DataFrame, tag: str, what: str, colours: dict[str, tuple], fig_dir: Path) -> list[Path]:
    kinds = graded_kinds(g)
    if not kinds:
        print(f"skipped figure iou_vs_severity__{tag}: no targets with a severity in {what}")
    written = []
    for kind in kinds:
        fig = iou_severity_figure(g, kind, colours, f"IoU vs {kind} severity: {what}")
        if fig is None:
            print(f"skipped figure iou_vs_severity__{tag}__{kind}: no IoU in {what}")
        else:
            written.append(write_png(fig, fig_dir / f"iou_vs_severity__{tag}__{kind}.png"))
    return written


def _prediction_figures(out_dir: Path, g: pd.DataFrame, p: pd.DataFrame, tag: str, what: str,
                        fig_dir: Path) -> list[Path]:
    displays = ordered_displays(g)
    written = []
    for display in displays:
        fig = roc_pr_figure(p[p["display"] == display], f"{display}, in-domain test pooled over seeds: {what}")
        if fig is None:
            print(f"skipped figure roc_pr__{tag}__{display}: no class probabilities on labelled in-domain samples")
        else:
            written.append(write_png(fig, fig_dir / f"roc_pr__{tag}__{display}.png"))
        fig = reliability_figure(p[p["display"] == display], f"Reliability of {display}, pooled over seeds: {what}")
        if fig is None:
            print(f"skipped figure reliability__{tag}__{display}: no class probabilities on labelled samples")
        else:
            written.append(write_png(fig, fig_dir / f"reliability__{tag}__{display}.png"))

    fig = iou_boxplot_figure(p, displays, ordered_targets(g), f"Per-image IoU per target, pooled over seeds: {what}")
    if fig is None:
        print(f"skipped figure iou_boxplot__{tag}: no model with predicted and true masks in {what}")
    else:
        written.append(write_png(fig, fig_dir / f"iou_boxplot__{tag}.png"))

    found = _explain_examples(out_dir, g)
    fig = None if found is None else explain_panel_figure(
        found[0], panel_targets(g), f"Saliency and Grad-CAM, {found[1]}: {what}")
    if fig is None:
        print(f"skipped figure explain__{tag}: no sg_cldff job with explain_examples.npz in {what}")
    else:
        written.append(write_png(fig, fig_dir / f"explain__{tag}.png"))
    return written
