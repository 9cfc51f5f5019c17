"""The hypotheses under each model-selection rule (``benchmark.engine.selection`` scores them).

The primary verdicts use each job's own weights on whole targets. Here each rule's weights are
scored on the same images (every target's share not held out for the oracle) and the same
hypotheses, Holm families and decision rule are applied to them, so a reader sees whether the rule
changes a verdict. The oracle rule peeks at the test domain: it bounds what any rule could reach and
is never part of the primary verdicts.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from benchmark.analysis.hypotheses import NOT_EVALUATED, HypothesisReport, evaluate_all
from benchmark.record.vocabulary import METRICS, SELECTION_METRICS, SELECTION_RULES

ORACLE = "oracle"
"""The rule that is an upper bound, not a verdict."""

RULE_TEXT = {"train_val": "training-domain validation (best epoch)", "last": "last epoch",
             "oracle": "test-domain oracle (upper bound)"}


def rule_frame(df: pd.DataFrame, rule: str) -> pd.DataFrame | None:
    """The summary as if ``rule`` had picked every job's weights (its scores in place of ``iou`` and
    ``macro_f1``); None when no row holds the rule's scores (results from before the rules existed).

    Every other metric is blanked: a rule's weights are scored on the selection metrics only, and
    keeping the primary weights' accuracy would show a hypothesis on accuracy as if decided under
    the rule (it is NOT EVALUATED there instead)."""
    cols = {m: f"{m}__{rule}" for m in SELECTION_METRICS}
    if df[list(cols.values())].isna().all().all():
        return None
    unscored = {m: float("nan") for m in METRICS if m in df.columns and m not in SELECTION_METRICS}
    return df.assign(**{m: df[c] for m, c in cols.items()}, **unscored)


@dataclass(frozen=True)
class RuleVerdicts:
    """Each rule's hypothesis report (rules without scores left out) and the verdicts that differ
    between the non-oracle rules."""

    reports: dict[str, HypothesisReport]
    changed: list[str]
    """``"<experiment> <H>: train_val SUPPORTED, last UNDECIDED"`` for every hypothesis whose
    verdict depends on the (non-oracle) rule."""


def _verdicts(report: HypothesisReport) -> dict[tuple[str, str], str]:
    out = {}
    for ex in report.experiments:
        for ev in ex.evaluations:
            out[(f"{ex.protocol}/{ex.budget}/{ex.treatment}", ev.name)] = ev.verdict
    return out


def evaluate_rules(df: pd.DataFrame) -> RuleVerdicts:
    """Every hypothesis under every rule that has scores, and where the honest rules disagree."""
    reports = {}
    for rule in SELECTION_RULES:
        frame = rule_frame(df, rule)
        if frame is not None:
            reports[rule] = evaluate_all(frame)
    honest = {r: _verdicts(rep) for r, rep in reports.items() if r != ORACLE}
    changed = []
    keys = sorted({k for v in honest.values() for k in v})
    for key in keys:
        seen = {r: v.get(key, NOT_EVALUATED) for r, v in honest.items()}
        if len(set(seen.values())) > 1:
            changed.append(f"{key[0]} {key[1]}: " + ", ".join(f"{r} {v}" for r, v in seen.items()))
    return RuleVerdicts(reports, changed)
