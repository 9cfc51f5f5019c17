"""Result tables (Markdown and LaTeX booktabs) built from the summary DataFrame by pure functions,
and the registry of every table a results folder gets (:data:`TABLES`).

Cells follow :mod:`benchmark.reports.cells`; the main and per-domain tables give each mean with its
95% bootstrap interval over seeds, the others mean ± SD. Each builder takes the summary DataFrame and
returns :class:`~benchmark.reports.cells.Table` objects, one per (protocol, budget) group; rows are
sorted first, so the output does not depend on the row order. The tables of the secondary metrics
(calibration, boundary, explanation, invariance) are in :mod:`benchmark.reports.metric_tables`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmark.analysis.selection import (graded_kinds, groups, model_sort_key, ordered_displays, ordered_targets,
                                          protocol_targets, severity_levels)
from benchmark.record.atomic import write_text
from benchmark.record.metrics import LOWER_IS_BETTER
from benchmark.record.vocabulary import IN_DOMAIN, NO_TREATMENT
from benchmark.reports import metric_tables
from benchmark.reports.cells import (INTERVAL, NO_DATA, NOT_APPLICABLE, Cell, Table, cell_of, finish, gain_over_floor,
                                     group_title, number, paired_difference, render_latex, render_markdown,
                                     table_label)
from core.study import SG_CLDFF_VARIANTS
from wbcdata.target_kinds import severity_text

FULL_MODEL = SG_CLDFF_VARIANTS[0]

IOU_FLOOR = "constant_mask"
"""The floor (one of ``REFERENCE_MODELS``) every segmenter's IoU gain is measured against."""

MAIN_METRICS: tuple[tuple[str, str], ...] = (
    ("accuracy", "Acc."), ("macro_f1", "Macro-F1"), ("auc_macro_ovr", "AUC"), ("iou", "IoU"),
)
PER_DOMAIN_METRICS: tuple[tuple[str, str], ...] = (
    ("iou", "IoU"), ("boundary_iou", "Boundary IoU"), ("macro_f1", "macro-F1"),
)


# ---- the tables -----------------------------------------------------------------------------

def main_comparison(df: pd.DataFrame) -> list[Table]:
    """Paper Table 2: accuracy, macro-F1, AUC, IoU in-domain and averaged over shifted targets, and
    each model's IoU gain over the constant-mask floor (:data:`IOU_FLOOR`) on the same targets."""
    tables = []
    for protocol, budget, g in groups(protocol_targets(df)):
        has_shift = bool(g["shifted"].any())
        conditions = [("in-domain", ~g["shifted"])] + ([("shifted", g["shifted"])] if has_shift else [])
        header = ["Model"] + [h for cond, _ in conditions
                              for h in [*(f"{name} ({cond})" for _, name in MAIN_METRICS), f"ΔIoU vs floor ({cond})"]]
        floor = (g["model"] == IOU_FLOOR) & (g["treatment"] == NO_TREATMENT)
        rows = []
        for display in ordered_displays(g):
            mine = g["display"] == display
            cells: list[str | Cell] = [display]
            for _, mask in conditions:
                cells += [cell_of(g[mine & mask], m) for m, _ in MAIN_METRICS]
                cells.append("ref" if display == IOU_FLOOR else gain_over_floor(g[mine & mask], g[floor & mask], "iou"))
            rows.append(cells)
        how = ("Shifted = mean over all shifted targets (every target but in_domain) within a seed."
               if has_shift else "This protocol has no shifted targets.")
        n_src = g["source"].nunique()
        if n_src > 1:
            how += f" Each seed's value averages the {n_src} sources."
        how += (f" ΔIoU vs floor = IoU minus that of {IOU_FLOOR} (the mean training mask, image ignored) on the "
                "same seed, source and target, averaged within a seed"
                + ("" if floor.any() else f"; — throughout: {IOU_FLOOR} is not in these results") + ".")
        added = df[(df["protocol"] == protocol) & (df["budget"] == budget) & df["evaluated"]]["target"].unique()
        if len(added):
            how += (f" Targets added by `evaluate` ({', '.join(sorted(added))}) are not in the shifted mean, which "
                    "stays the protocol's own: see the per-domain tables.")
        tables.append(finish(f"Main comparison. {group_title(protocol, budget, g)} {how}",
                             table_label("main", protocol, budget), header, rows, 1, INTERVAL))
    return tables


def ablation(df: pd.DataFrame) -> list[Table]:
    """Paper Table 3: the four SG-CLDFF variants and their paired difference to the full model."""
    tables = []
    for protocol, budget, g in groups(protocol_targets(df)):
        g = g[g["model"].isin(SG_CLDFF_VARIANTS)]
        if g.empty:
            continue
        has_shift = bool(g["shifted"].any())
        conditions = [("in-domain", False)] + ([("shifted (mean)", True)] if has_shift else [])
        header = ["Condition", "Model"] + [h for _, name in MAIN_METRICS for h in (name, f"Δ{name}")]
        treatments = sorted(g["treatment"].unique(), key=lambda t: (t != NO_TREATMENT, t))
        rows = []
        for cond, shifted in conditions:
            rows_c = g[g["shifted"] == shifted]
            for treatment in treatments:
                rows_t = rows_c[rows_c["treatment"] == treatment]
                full = rows_t[rows_t["model"] == FULL_MODEL]
                listed = SG_CLDFF_VARIANTS if treatment == NO_TREATMENT else \
                    [m for m in SG_CLDFF_VARIANTS if m in set(rows_t["model"])]
                for model in listed:
                    mine = rows_t[rows_t["model"] == model]
                    cells: list[str | Cell] = [cond, mine["display"].iloc[0] if len(mine) else
                                               (model if treatment == NO_TREATMENT else f"{model}+{treatment}")]
                    for m, _ in MAIN_METRICS:
                        delta = "ref" if model == FULL_MODEL else paired_difference(mine, full, m)
                        cells += [cell_of(mine, m), delta]
                    rows.append(cells)
        caption = (f"Ablation of SG-CLDFF. {group_title(protocol, budget, g)} Δ = variant minus {FULL_MODEL} "
                   "(same stain treatment), paired over the seeds both have; shifted = mean over shifted targets "
                   "within a seed. Under a stain treatment only the variants run with it are listed.")
        tables.append(finish(caption, table_label("ablation", protocol, budget), header, rows, 2))
    return tables


def _source_rows(g: pd.DataFrame) -> list[tuple[str, str]]:
    order = {d: i for i, d in enumerate(ordered_displays(g))}
    pairs = g[["display", "source"]].drop_duplicates().itertuples(index=False)
    return sorted(((p.display, p.source) for p in pairs), key=lambda p: (order[p[0]], p[1]))


def per_domain(df: pd.DataFrame, metric: str, name: str) -> list[Table]:
    """Score on every target (domain) and the worst one, per model and source; the worst is the
    highest mean for a metric in :data:`~benchmark.record.metrics.LOWER_IS_BETTER`."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    tables = []
    for protocol, budget, g in groups(df):
        targets = ordered_targets(g)
        rows = []
        for display, source in _source_rows(g):
            mine = g[(g["display"] == display) & (g["source"] == source)]
            cells = [cell_of(mine[mine["target"] == t], metric) for t in targets]
            scored = [(sign * c.mean, t, c.mean) for c, t in zip(cells, targets) if c.state == "ok"]
            if scored:
                _, worst, value = min(scored)
                worst_text = f"{worst} ({number(value)})"
            else:
                worst_text = NOT_APPLICABLE if any(c.state == "na" for c in cells) else NO_DATA
            rows.append([display, source, *cells, worst_text])
        caption = (f"{name} per target domain. {group_title(protocol, budget, g)} Worst = target with the "
                   f"{'highest' if sign < 0 else 'lowest'} mean (its mean in parentheses).")
        tables.append(finish(caption, table_label(f"per-domain-{metric}", protocol, budget),
                             ["Model", "Source", *targets, "Worst"], rows, 2, INTERVAL))
    return tables


def iou_vs_severity(df: pd.DataFrame) -> list[Table]:
    """IoU against severity, one table per graded target kind (HED jitter, each acquisition shift);
    severity 0 = the untouched in-domain test."""
    tables = []
    for protocol, budget, g in groups(df):
        for kind in graded_kinds(g):
            levels = severity_levels(g, kind)
            header = ["Model", "Source", "0 (in-domain)", *[label for _, label in levels]]
            rows = []
            for display, source in _source_rows(g):
                mine = g[(g["display"] == display) & (g["source"] == source)]
                cells = [cell_of(mine[mine["target"] == IN_DOMAIN], "iou")]
                cells += [cell_of(mine[(mine["target_kind"] == kind) & (mine["severity"] == s)], "iou")
                          for s, _ in levels]
                rows.append([display, source, *cells])
            caption = f"IoU against {severity_text(kind)}. {group_title(protocol, budget, g)}"
            tables.append(finish(caption, table_label(f"iou-vs-severity-{kind}", protocol, budget), header, rows, 2))
    return tables


TREATMENT_METRICS: tuple[tuple[str, str], ...] = (("macro_f1", "Macro-F1"), ("iou", "IoU"))


def treatment_comparison(df: pd.DataFrame) -> list[Table]:
    """Stain treatments head to head: every model run under more than one treatment, one column per
    treatment and the paired difference of each to no treatment (same model, split and seed)."""
    tables = []
    for protocol, budget, g in groups(protocol_targets(df)):
        treatments = sorted(g["treatment"].unique(), key=lambda t: (t != NO_TREATMENT, t))
        models = sorted({m for m, n in g.groupby("model")["treatment"].nunique().items() if n > 1},
                        key=lambda m: model_sort_key(m, NO_TREATMENT))
        if not models or NO_TREATMENT not in treatments:
            continue
        others = [t for t in treatments if t != NO_TREATMENT]
        conditions = [("in-domain", False)] + ([("shifted", True)] if g["shifted"].any() else [])
        header = ["Model", "Metric", "Condition", *treatments, *[f"Δ{t}" for t in others]]
        rows = []
        for model in models:
            mine = g[g["model"] == model]
            for metric, name in TREATMENT_METRICS:
                for cond, shifted in conditions:
                    rows_c = mine[mine["shifted"] == shifted]
                    by_t = {t: rows_c[rows_c["treatment"] == t] for t in treatments}
                    cells = [cell_of(by_t[t], metric) for t in treatments]
                    if all(c.state == "na" for c in cells):
                        continue
                    deltas = [paired_difference(by_t[t], by_t[NO_TREATMENT], metric) for t in others]
                    rows.append([model, name, cond, *cells, *deltas])
        caption = (f"Stain treatments head to head. {group_title(protocol, budget, g)} Models run under more "
                   "than one treatment; Δ = treatment minus none, paired over the seeds both have; shifted = "
                   "mean over shifted targets within a seed.")
        tables.append(finish(caption, table_label("treatments", protocol, budget), header, rows, 3))
    return tables


TABLES: dict[str, Callable[[pd.DataFrame], list[Table]]] = {
    "main": main_comparison,
    "ablation": ablation,
    **{f"per_domain_{m}": (lambda df, m=m, n=n: per_domain(df, m, n)) for m, n in PER_DOMAIN_METRICS},
    "iou_vs_severity": iou_vs_severity,
    "treatments": treatment_comparison,
    **metric_tables.TABLES,
}
SKIP_REASONS: dict[str, str] = {
    "ablation": f"no SG-CLDFF variant ({', '.join(SG_CLDFF_VARIANTS)}) in the results",
    "iou_vs_severity": "no targets with a severity (HED jitter, acquisition shifts) in the results (cross_stain and "
                       "cross_scanner protocols have them)",
    "treatments": "no model was run under a stain treatment and without one (run with --treatments none,...)",
    **metric_tables.SKIP_REASONS,
}


def build_tables(df: pd.DataFrame) -> dict[str, tuple[str, str] | str]:
    """Every table as (markdown, latex), or the reason it has no content."""
    out: dict[str, tuple[str, str] | str] = {}
    for name, builder in TABLES.items():
        tables = builder(df)
        out[name] = (render_markdown(tables), render_latex(tables)) if tables else SKIP_REASONS[name]
    return out


def write_tables(df: pd.DataFrame, table_dir: Path) -> list[Path]:
    """Write ``<name>.md`` and ``<name>.tex`` per table; prints why a table is skipped."""
    written = []
    for name, result in build_tables(df).items():
        if isinstance(result, str):
            print(f"skipped table {name}: {result}")
            continue
        for ext, text in zip(("md", "tex"), result):
            path = table_dir / f"{name}.{ext}"
            write_text(path, text)
            written.append(path)
    return written
