"""Table cells: per-seed values, how they aggregate and how they are written (Markdown and LaTeX
booktabs). Every report table is built from these, so they all follow the same conventions:

- values are percentages with one decimal (metric x 100), differences are in points; a cell may
  carry another scale (HD95 in pixels), which its table's caption states;
- a cell holds one value per seed; within a seed, several targets (or sources) are averaged
  first, so the seed stays the unit of replication;
- a table shows each cell as mean ± SD over seeds, or as mean [95% bootstrap interval over seeds]
  (:mod:`benchmark.analysis.intervals`);
- "—" marks a cell without any result, "n/a" a metric that does not apply to the model (every
  seed's value is null);
- when the number of seeds differs between cells of a table, every cell shows its own n; a
  mean over fewer seeds is never shown without saying so.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.analysis.intervals import LEVEL, METHOD, RESAMPLES, seed_mean_interval

NO_DATA = "—"
NOT_APPLICABLE = "n/a"

SD, INTERVAL = "sd", "interval"
"""How a table shows the spread over seeds: mean ± SD, or mean [bootstrap interval]."""

PAIR_KEYS: list[str] = ["seed", "source", "target"]
"""What a model and the floor must share for their scores to be paired."""

VALUE_NOTE = (
    "Values in percent (metric x 100, one decimal; differences in points); — no result; "
    "n/a metric does not apply to the model."
)
SPREAD_TEXT = {
    SD: "Mean ± SD over seeds",
    INTERVAL: (f"Mean [{100 * LEVEL:g}% bootstrap interval over seeds: {METHOD} method, {RESAMPLES} resamples of "
               "the per-seed values, fixed seed; none with one seed]"),
}


@dataclass(frozen=True)
class Cell:
    """One table cell: its per-seed ``values`` when ``state`` is "ok" ("missing", "na" otherwise),
    shown times ``scale`` with ``decimals`` digits (percent by default)."""

    state: str
    values: tuple[float, ...] = ()
    signed: bool = False
    scale: float = 100.0
    decimals: int = 1

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def sd(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None


@dataclass(frozen=True)
class Table:
    caption: str
    label: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    n_text_columns: int
    """Leading columns holding names (left-aligned); the rest hold numbers (right-aligned)."""


# ---- aggregation ----------------------------------------------------------------------------

def seed_values(rows: pd.DataFrame, metric: str) -> pd.Series:
    """Per-seed value of ``metric``: the mean over that seed's rows where it is defined.

    A seed whose rows all lack the metric is NaN (it then does not count in n)."""
    return rows.groupby("seed")[metric].mean().sort_index()


def cell_of(rows: pd.DataFrame, metric: str, signed: bool = False, scale: float = 100.0, decimals: int = 1) -> Cell:
    if rows.empty:
        return Cell("missing")
    return cell_from_seeds(seed_values(rows, metric), signed, scale, decimals)


def cell_from_seeds(values: pd.Series, signed: bool = False, scale: float = 100.0, decimals: int = 1) -> Cell:
    if values.empty:
        return Cell("missing")
    v = values.dropna().to_numpy(dtype=np.float64)
    if v.size == 0:
        return Cell("na")
    return Cell("ok", tuple(float(x) for x in v), signed, scale, decimals)


def paired_difference(rows_a: pd.DataFrame, rows_b: pd.DataFrame, metric: str) -> Cell:
    """Per-seed difference a - b over the seeds both have a value for (pairs share the seed)."""
    if rows_a.empty or rows_b.empty:
        return Cell("missing")
    a, b = seed_values(rows_a, metric), seed_values(rows_b, metric)
    if a.isna().all() or b.isna().all():
        return Cell("na")
    diff = (a - b).dropna()
    return cell_from_seeds(diff, signed=True) if not diff.empty else Cell("missing")


def gain_over_floor(rows: pd.DataFrame, floor: pd.DataFrame, metric: str) -> Cell:
    """Per-seed mean of ``rows`` minus ``floor`` paired on seed, source and target, so both sides
    average the same targets; "na" when the model lacks the metric, "missing" when no pair exists."""
    if rows.empty:
        return Cell("missing")
    if rows[metric].isna().all():
        return Cell("na")
    pairs = rows[PAIR_KEYS + [metric]].merge(floor[PAIR_KEYS + [metric]], on=PAIR_KEYS, suffixes=("", "_floor"))
    diff = (pairs[metric] - pairs[f"{metric}_floor"]).groupby(pairs["seed"]).mean().dropna()
    return cell_from_seeds(diff, signed=True) if not diff.empty else Cell("missing")


# ---- formatting -----------------------------------------------------------------------------

def number(x: float, signed: bool = False, scale: float = 100.0, decimals: int = 1) -> str:
    r = round(scale * x, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{r:+.{decimals}f}" if signed else f"{r:.{decimals}f}"


def format_cell(cell: Cell, show_n: bool, spread: str = SD) -> str:
    if cell.state == "missing":
        return NO_DATA
    if cell.state == "na":
        return NOT_APPLICABLE
    text = number(cell.mean, cell.signed, cell.scale, cell.decimals)
    has_spread = cell.n > 1
    if has_spread and spread == SD:
        text += f" ± {number(cell.sd, False, cell.scale, cell.decimals)}"
    elif has_spread:
        ci = seed_mean_interval(cell.values)
        text += " [" + ", ".join(number(x, cell.signed, cell.scale, cell.decimals) for x in (ci.low, ci.high)) + "]"
    if show_n or not has_spread:
        text += f" (n={cell.n})"
    return text


def finish(caption: str, label: str, header: Iterable[str], rows: list[list[str | Cell]], n_text: int,
           spread: str = SD) -> Table:
    """Format the cells; n goes into every cell when cells of the table differ in seed count."""
    ns = {c.n for row in rows for c in row if isinstance(c, Cell) and c.state == "ok"}
    show_n = len(ns) > 1
    if show_n:
        seeds = "n (seeds) is given per cell because it differs between cells"
    elif ns:
        seeds = f"n = {ns.pop()} seeds per cell"
    else:
        seeds = "no cell has a value"
    body = tuple(tuple(format_cell(c, show_n, spread) if isinstance(c, Cell) else c for c in row) for row in rows)
    return Table(f"{caption} {SPREAD_TEXT[spread]}; {seeds}. {VALUE_NOTE}", label, tuple(header), body, n_text)


def render_markdown(tables: list[Table]) -> str:
    parts = []
    for t in tables:
        align = [":--"] * t.n_text_columns + ["--:"] * (len(t.header) - t.n_text_columns)
        lines = [f"**{t.caption}**", "", "| " + " | ".join(t.header) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in t.rows]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "—": "---",
    "Δ": r"$\Delta$", "→": r"$\to$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(tables: list[Table]) -> str:
    """One booktabs ``table`` environment per table (needs ``\\usepackage{booktabs}``)."""
    parts = []
    for t in tables:
        spec = "l" * t.n_text_columns + "r" * (len(t.header) - t.n_text_columns)
        lines = [
            r"\begin{table}[htbp]", r"\centering", r"\small",
            rf"\caption{{{latex_escape(t.caption)}}}", rf"\label{{{t.label}}}",
            rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule",
        ]
        lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in t.rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def group_title(protocol: str, budget: str, g: pd.DataFrame) -> str:
    sources = sorted(g["source"].unique())
    return f"Protocol {protocol}, budget {budget}, source{'s' if len(sources) > 1 else ''} {', '.join(sources)}."


def table_label(kind: str, protocol: str, budget: str) -> str:
    return f"tab:{kind}:{protocol}:{budget}"
