"""Tables of the metrics beside the headline ones: calibration (ECE), boundary quality (Boundary IoU,
HD95), explanation (saliency consistency) and invariance (flip rate, IoU change, feature drift).

Pure functions of the summary DataFrame, one :class:`~benchmark.reports.cells.Table` per (protocol,
budget), every mean with its 95% bootstrap interval over seeds. A model with no value in a table is
left out of it, and a table whose metrics are null on every row is not built (the registry in
:mod:`benchmark.reports.tables` then prints :data:`SKIP_REASONS`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from benchmark.analysis.selection import graded_kinds, groups, ordered_displays, protocol_targets, severity_levels
from benchmark.record.metrics import LOWER_IS_BETTER
from benchmark.record.vocabulary import NO_SHIFT
from benchmark.reports.cells import INTERVAL, NO_DATA, Cell, Table, cell_of, finish, group_title, table_label


@dataclass(frozen=True)
class Column:
    """A metric column: its summary column, header, and how it is shown (percent unless scaled)."""

    metric: str
    name: str
    signed: bool = False
    scale: float = 100.0
    decimals: int = 1

    def cell(self, rows: pd.DataFrame) -> Cell:
        return cell_of(rows, self.metric, self.signed, self.scale, self.decimals)


ECE = Column("ece", "ECE")
BOUNDARY = (Column("boundary_iou", "Boundary IoU"), Column("hd95", "HD95 (px)", scale=1.0, decimals=2))
EXPLANATION = (Column("saliency_consistency", "Saliency consistency"),)
INVARIANCE = (Column("flip_rate", "Flip rate"), Column("iou_change", "IoU change", signed=True),
              Column("feature_drift", "Feature drift", scale=1.0, decimals=3))


def _has_values(g: pd.DataFrame, columns: tuple[Column, ...]) -> bool:
    return bool(g[[c.metric for c in columns]].notna().any().any())


def _has_value(cells: list) -> bool:
    return any(isinstance(c, Cell) and c.state == "ok" for c in cells)


def _sources_note(g: pd.DataFrame) -> str:
    n = g["source"].nunique()
    return f" Each seed's value averages the {n} sources." if n > 1 else ""


def worst_shifted(rows: pd.DataFrame, column: Column) -> tuple[str, Cell]:
    """The shifted target with the worst mean over seeds (highest for a lower-is-better metric) and
    its cell; (NO_DATA, cell) when no target has a value. Ties go to the first target name."""
    sign = -1.0 if column.metric in LOWER_IS_BETTER else 1.0
    cells = {t: column.cell(rows[rows["target"] == t]) for t in sorted(rows["target"].unique())}
    scored = [(sign * c.mean, t) for t, c in cells.items() if c.state == "ok"]
    if not scored:
        return NO_DATA, column.cell(rows)
    target = min(scored)[1]
    return target, cells[target]


def _conditions_table(df: pd.DataFrame, kind: str, title: str, columns: tuple[Column, ...],
                      note: str, worst: Column | None = None) -> list[Table]:
    """Each column in-domain and as the mean over the protocol's shifted targets (within a seed);
    with ``worst``, that metric on the worst shifted target too."""
    tables = []
    for protocol, budget, g in groups(protocol_targets(df)):
        if not _has_values(g, columns):
            continue
        shifted = g["shifted"]
        conditions = [("in-domain", ~shifted)] + ([("shifted", shifted)] if shifted.any() else [])
        header = ["Model", *(f"{c.name} ({cond})" for cond, _ in conditions for c in columns)]
        with_worst = worst is not None and shifted.any()
        header += [f"{worst.name} (worst shifted)", "Worst shifted target"] if with_worst else []
        rows = []
        for display in ordered_displays(g):
            mine = g["display"] == display
            cells: list[str | Cell] = [c.cell(g[mine & mask]) for _, mask in conditions for c in columns]
            if with_worst:
                target, cell = worst_shifted(g[mine & shifted], worst)
                cells += [cell, target]
            if _has_value(cells):
                rows.append([display, *cells])
        how = ("Shifted = mean over the protocol's shifted targets within a seed." if shifted.any()
               else "This protocol has no shifted targets.")
        caption = (f"{title} {group_title(protocol, budget, g)} {how}{_sources_note(g)} {note} "
                   "Models without any value are left out.")
        tables.append(finish(caption, table_label(kind, protocol, budget), header, rows, 1, INTERVAL))
    return tables


def calibration(df: pd.DataFrame) -> list[Table]:
    """ECE in-domain, over the shifted targets and on the worst shifted target (the highest ECE)."""
    note = ("ECE: top-label expected calibration error, 15 equal-width confidence bins, lower is better. Worst "
            "shifted = the shifted target with the highest mean ECE over seeds, named in the last column.")
    return _conditions_table(df, "calibration", "Calibration.", (ECE,), note, worst=ECE)


def boundary(df: pd.DataFrame) -> list[Table]:
    """Boundary IoU and HD95, in-domain and over the shifted targets."""
    note = ("Boundary IoU (Cheng et al. 2021) in percent, higher is better; HD95 = 95th-percentile symmetric "
            "Hausdorff distance in pixels (two decimals), lower is better.")
    return _conditions_table(df, "boundary", "Boundary quality.", BOUNDARY, note)


def explanation(df: pd.DataFrame) -> list[Table]:
    """Saliency consistency (share of Grad-CAM energy inside the WBC mask), in-domain and shifted."""
    note = "Saliency consistency = share of Grad-CAM energy inside the true WBC mask, higher is better."
    return _conditions_table(df, "explanation", "Explanation.", EXPLANATION, note)


def kind_levels(s: pd.DataFrame) -> list[tuple[str, str, pd.Series]]:
    """(target kind, severity label, row mask) of shifted rows ``s``: per-domain kinds (no severity)
    pooled over their targets first, then each graded kind by severity, then other datasets."""
    graded = set(graded_kinds(s))
    out = []
    for kind in sorted(s["target_kind"].unique(), key=lambda k: (k in graded, k == NO_SHIFT, k)):
        of_kind = s["target_kind"] == kind
        if kind in graded:
            out += [(kind, label, of_kind & (s["severity"] == sev)) for sev, label in severity_levels(s, kind)]
        else:
            n = s.loc[of_kind, "target"].nunique()
            out.append((kind, f"all ({n} target{'s' if n > 1 else ''} pooled)", of_kind))
    return out


INVARIANCE_NOTE = (
    "Flip rate = share of cells whose predicted class changes, lower is better; IoU change = mean per-cell IoU "
    "shifted minus unshifted, in points (negative is a loss); feature drift = mean cosine distance between the "
    "pooled features of the two copies (0 = same direction, 1 = orthogonal; three decimals, not percent), lower is "
    "better. A kind without severities pools its targets within a seed."
)


def invariance(df: pd.DataFrame) -> list[Table]:
    """Flip rate, IoU change and feature drift per model, target kind and severity (shifted targets)."""
    tables = []
    for protocol, budget, g in groups(df):
        s = g[g["shifted"]]
        if not _has_values(s, INVARIANCE):
            continue
        levels = kind_levels(s)
        rows = []
        for display in ordered_displays(s):
            mine = s["display"] == display
            for kind, label, mask in levels:
                cells: list[str | Cell] = [c.cell(s[mine & mask]) for c in INVARIANCE]
                if _has_value(cells):
                    rows.append([display, kind, label, *cells])
        caption = (f"Invariance of each shifted target against the unshifted copy of the same cells. "
                   f"{group_title(protocol, budget, g)} {INVARIANCE_NOTE}{_sources_note(s)} n/a: the model has no "
                   "such output, or the target no unshifted copy; rows without any value are left out.")
        tables.append(finish(caption, table_label("invariance", protocol, budget),
                             ["Model", "Target kind", "Severity", *(c.name for c in INVARIANCE)], rows, 3, INTERVAL))
    return tables


TABLES: dict[str, Callable[[pd.DataFrame], list[Table]]] = {
    "calibration": calibration,
    "boundary": boundary,
    "explanation": explanation,
    "invariance": invariance,
}
SKIP_REASONS: dict[str, str] = {
    "calibration": "no ECE in the results (no classifier)",
    "boundary": "no Boundary IoU or HD95 in the results (no segmenter)",
    "explanation": "no saliency_consistency in the results (no model with Grad-CAM, or explain_images 0)",
    "invariance": ("no flip_rate, iou_change or feature_drift in the results (jobs run before the invariance "
                   "measures, or no shifted target with an unshifted copy)"),
}
