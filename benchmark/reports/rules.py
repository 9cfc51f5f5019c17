"""The verdicts under each model-selection rule (:mod:`benchmark.analysis.rules`), as the section
of ``hypotheses.md`` and the ``selection_rules`` entry of ``hypotheses.json``."""
from __future__ import annotations

from benchmark.analysis.hypotheses import NOT_EVALUATED, HypothesisReport
from benchmark.analysis.rules import ORACLE, RULE_TEXT, RuleVerdicts
from benchmark.analysis.stats import pts
from benchmark.record.vocabulary import NO_TREATMENT, SELECTION_METRICS

UNSCORED = "n/a"
"""A rule's cell for a hypothesis on a metric the rules do not score (accuracy)."""


def _cells(report: HypothesisReport, scored_only: bool = False) -> dict[tuple[str, str], str]:
    out = {}
    for ex in report.experiments:
        where = f"{ex.protocol}/{ex.budget}{'' if ex.treatment == NO_TREATMENT else '/' + ex.treatment}"
        for ev in ex.evaluations:
            if scored_only and ev.metric not in SELECTION_METRICS:
                out[(where, ev.name)] = UNSCORED
                continue
            diff = "" if ev.verdict == NOT_EVALUATED else f" ({pts(ev.test['mean_diff'])})"
            out[(where, ev.name)] = f"{ev.verdict}{diff}"
    return out


def rules_markdown(primary: HypothesisReport, rules: RuleVerdicts) -> list[str]:
    """The side-by-side table, primary first; a note instead when the jobs predate the rules."""
    lines = ["## Verdicts under each model-selection rule", ""]
    if not rules.reports:
        return lines + ["The jobs of this folder were run before the selection rules were recorded: only the "
                        "primary verdicts exist (docs/models.md, \"Model-selection rules side by side\").", ""]
    names = list(rules.reports)
    first = _cells(primary)
    per_rule = {r: _cells(rep, scored_only=True) for r, rep in rules.reports.items()}
    shown = {key: verdict for key, verdict in first.items()
             if verdict != NOT_EVALUATED or any(per_rule[r].get(key, NOT_EVALUATED) not in (NOT_EVALUATED, UNSCORED)
                                                for r in names)}
    unscored = any(per_rule[r].get(key) == UNSCORED for key in shown for r in names)
    lines += ["Primary: each job's own weights (its budget's rule) on whole targets, as above. The other columns score "
              "each rule's weights on the same images, the share of each target not held out for the oracle, and "
              "apply the same tests and Holm families. " + "; ".join(f"`{r}`: {RULE_TEXT[r]}" for r in names) + ". "
              "The oracle peeks at the test domain and is never a verdict of this benchmark."
              + (f" {UNSCORED}: the rules score only {', '.join(SELECTION_METRICS)}, so a hypothesis on another "
                 "metric has its primary verdict only." if unscored else ""), "",
              "| Experiment | Hypothesis | Primary | " + " | ".join(f"`{r}`" for r in names) + " |",
              "|:--|:--|:--|" + "|".join(":--" for _ in names) + "|"]
    for key, verdict in shown.items():
        lines.append(f"| {key[0]} | {key[1]} | {verdict} | " +
                     " | ".join(per_rule[r].get(key, NOT_EVALUATED) for r in names) + " |")
    honest = [r for r in names if r != ORACLE]
    if rules.changed:
        lines += ["", f"**The rule changes a verdict** ({', '.join(honest)}):", "", *(f"- {c}" for c in rules.changed)]
    else:
        lines += ["", f"**The rule changes no verdict** among {', '.join(f'`{r}`' for r in honest)}."]
    return lines + [""]


def rules_json(rules: RuleVerdicts) -> dict:
    """rule -> experiment -> hypothesis -> {verdict, mean_diff}, and the verdicts the rule changes."""
    out: dict = {"changed": rules.changed, "rules": {}}
    for rule, report in rules.reports.items():
        per = out["rules"].setdefault(rule, {})
        for ex in report.experiments:
            where = f"{ex.protocol}/{ex.budget}/{ex.treatment}"
            per[where] = {ev.name: {"verdict": ev.verdict,
                                    "mean_diff": None if ev.test is None else float(f"{ev.test['mean_diff']:.6g}")}
                          for ev in ex.evaluations}
    return out
