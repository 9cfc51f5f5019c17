"""``<out>/hypotheses.md`` and ``hypotheses.json``: the verdicts of :mod:`benchmark.analysis.hypotheses`
written out with how they were reached, the power each test had, and the seeds behind them; the
``hypotheses`` command also writes the claims table (``benchmark.reports.claims``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analysis.hypotheses import (ALPHA, CONDITION_TEXT, NOT_EVALUATED, TYPICAL_SEEDS, Evaluation,
                                           HypothesisReport, evaluate_all, to_json)
from benchmark.analysis.rules import RuleVerdicts, evaluate_rules
from benchmark.analysis.stats import MAX_SEEDS, UNDECIDED, pts, standardized_effect
from benchmark.record.atomic import write_json, write_text
from benchmark.record.summary import load_summary
from benchmark.record.vocabulary import NO_TREATMENT
from benchmark.reports.claims import write_claims
from benchmark.reports.rules import rules_json, rules_markdown


def power_note() -> str:
    d5, d3 = standardized_effect(TYPICAL_SEEDS, ALPHA), standardized_effect(3, ALPHA)
    return (
        f"**Read this first.** Each hypothesis claims an effect of *at least* delta, so it is tested against "
        f"delta, one-sided, over seeds. With {TYPICAL_SEEDS} seeds this test can only decide a large, steady "
        f"effect: even before any multiplicity correction it has 80% power only when the true mean difference "
        f"lies {d5:.2f} standard deviations of the per-seed differences beyond delta ({d3:.2f} with 3 seeds). "
        f"For example, if the per-seed differences scatter with an SD of 1 point, H1 (delta 2 points) is "
        f"SUPPORTED in 4 of 5 repetitions of the whole experiment only for a true gain of about {2 + d5:.1f} "
        f"points, and RULED OUT only for a true gain below about {2 - d5:.1f}. UNDECIDED therefore means *the "
        f"seeds cannot tell*, not *absent*; RULED OUT is the verdict that says the claimed size is absent."
    )


def rule_text() -> str:
    return (
        "**How a verdict is reached.** Two one-sided paired t-tests over seeds against delta: *above* (H0: mean "
        "difference <= delta, the shifted null) and *below* (H0: mean difference >= delta). Their p-values add up "
        "to 1, so at most one is small; the smaller is the hypothesis's decisive p. Holm corrects the decisive p's "
        f"of each family. **SUPPORTED**: Holm-adjusted p < {ALPHA} above delta (uncorrected: the one-sided 95% "
        "lower bound of the mean difference is above delta). **RULED OUT**: Holm-adjusted p < "
        f"{ALPHA} below delta (uncorrected: the one-sided 95% upper bound is below delta, so the claimed size is "
        "excluded). **UNDECIDED**: neither; also when the differences have zero spread (no t statistic; such a "
        f"hypothesis counts in its family as p = 1). **{NOT_EVALUATED}**: the data cannot decide it (the reason "
        "is given); it belongs to no family.\n\n"
        "**Error rates.** Each direction is tested at the full alpha, so each verdict errs in its own direction "
        f"with probability at most {ALPHA} (Holm: across its family): SUPPORTED when the true difference is <= "
        "delta, RULED OUT when it is >= delta. When the true difference is exactly delta, both nulls hold and one "
        f"of the two verdicts comes out with probability up to 2 x {ALPHA} = {2 * ALPHA:g}. This is deliberate: the "
        "two verdicts are different claims, each is a one-sided 95% bound, and testing each side at alpha/2 would "
        "cost power that a few seeds cannot spare, to guard only against a truth sitting exactly on delta.\n\n"
        "**Families.** Holm runs over every verdict this results folder gives, in two families: the *primary* "
        "family holds every hypothesis evaluated on untreated models, across protocols and budgets; the *stain "
        "treatments* family holds those evaluated under a stain treatment and is corrected separately, so that "
        "secondary questions do not dilute the primary verdicts.\n\n"
        "**Planning figures** use alpha/m, the strictest Holm step in a family of m, so they hold whatever the "
        "rest of the family shows. MDE: with n seeds and the observed per-seed SD, the test decides with 80% power "
        "a true difference >= delta + d·SD (SUPPORTED) or <= delta − d·SD (RULED OUT), d from statsmodels' "
        "`TTestPower` (one-sided, n − 1 degrees of freedom). **Seeds for 80% power at the observed mean**: the "
        "smallest n whose power reaches 80% for the effect size |mean − delta| / SD in the direction the data lean, "
        "i.e. were the observed mean the true one; the observed mean is itself noisy, and near delta this reads "
        f"more than {MAX_SEEDS}. **Seeds to tell delta from 0**, the figure to plan a sweep with: the smallest n >= 2 "
        "at which the one-sided t-test at alpha/m has 80% power for the effect size delta / SD (SD the "
        "observed per-seed SD), i.e. P(T′ > t(1 − alpha/m, n − 1)) >= 0.8 with T′ noncentral t on n − 1 "
        "degrees of freedom and noncentrality √n · delta / SD; about ((z(1 − alpha/m) + z(0.8)) · SD / delta)² "
        "for large n. With that many seeds a true difference of 0 is RULED OUT, and one of 2·delta SUPPORTED, in "
        "4 of 5 repetitions. "
        "Both seed counts are planning figures, not promises: the SD is itself estimated from few seeds.\n\n"
        "Per seed the metric is averaged over each source's targets, then over the sources; the seed is the unit "
        "of replication. Every job of one protocol, source and seed must carry the same split hash (checked when "
        "the summary is built), so pairs on a seed compare models, not data. Differences are in points "
        "(metric x 100)."
    )


def _ci(s: dict) -> str:
    return "—" if s["ci95"] is None else f"[{pts(s['ci95'][0])}, {pts(s['ci95'][1])}]"


def _breakdown_table(title: str, rows: list[tuple[str, dict]]) -> list[str]:
    lines = [title, "", "| | Mean | SD | 95% CI |", "|:--|--:|--:|--:|"]
    lines += [f"| {name} | {pts(s['mean'])} | {pts(s['sd'], False)} | {_ci(s)} |" for name, s in rows]
    return lines + [""]


def _evaluation_md(ev: Evaluation) -> list[str]:
    why = f" ({ev.delta_why})" if ev.delta_why else ""
    lines = [f"### {ev.name}: {ev.verdict}", "",
             f"*Claim*: {ev.statement}.", "",
             f"*Comparison*: `{ev.model}` minus `{ev.ablation}`, metric `{ev.metric}`, delta {pts(ev.delta, False)} "
             f"points{why}, over {CONDITION_TEXT[ev.condition]}; per seed the targets of each source are averaged, "
             "then the sources; seeds are pairs.", "",
             f"*Verdict*: **{ev.verdict}** — {ev.reason}.", ""]
    if ev.verdict == NOT_EVALUATED:
        return lines
    if ev.paper is not None:
        ours_a, ours_b = np.mean(ev.scores_model), np.mean(ev.scores_ablation)
        lines += [f"*Paper vs ours*: the paper reports {pts(ev.paper[0], False)} for `{ev.model}` and "
                  f"{pts(ev.paper[1], False)} without the component, a gap of {pts(ev.paper[0] - ev.paper[1])} "
                  f"points (its Table 3, on BCCD); ours: {pts(ours_a, False)} vs {pts(ours_b, False)}, a gap of "
                  f"{pts(ours_a - ours_b)} points (mean over seeds of the pooled scores; the like-for-like figure is "
                  "the BCCD row of the per-source table where BCCD is a source).", ""]
    d = ev.decision
    if d["mde_support"] is not None and ev.verdict != UNDECIDED:
        need = f"more than {MAX_SEEDS}" if d["seeds_needed"] is None else str(d["seeds_needed"])
        lines += [f"*Power*: at alpha/{d['family_size']} = {d['planning_alpha']:.3g} and {ev.test['n']} seeds, "
                  f"the test decides with 80% power a true difference >= {pts(d['mde_support'])} (support) or <= "
                  f"{pts(d['mde_rule_out'])} points (rule out); at the observed mean and per-seed SD, {need} seeds "
                  "give 80% power.", ""]
    for label, note in (("Left out", ev.excluded_tasks), ("Note", ev.dropped_seeds)):
        if note:
            lines += [f"*{label}*: {note}.", ""]
    lines += [f"| Seed | {ev.model} | {ev.ablation} | Difference (points) |", "|--:|--:|--:|--:|"]
    for s, x, y in zip(ev.seeds, ev.scores_model, ev.scores_ablation):
        lines.append(f"| {s} | {pts(x, False)} | {pts(y, False)} | {pts(x - y)} |")
    lines.append("")
    pooled = ("pooled (the tested mean)", ev.per_source["pooled"])
    if len(ev.per_source["per_source"]) > 1:
        lines += _breakdown_table("Per source (points; each source's targets averaged per seed; mean, SD and 95% "
                                  "t-interval over seeds):", [*ev.per_source["per_source"].items(), pooled])
    n_sources = len(ev.per_source["per_source"])
    if n_sources == 1 or len(ev.per_task) > n_sources:  # else each source has one target: the same rows
        lines += _breakdown_table("Per target (points; mean, SD and 95% t-interval over seeds):",
                                  [*ev.per_task.items(), pooled])
    if ev.in_domain_tost:
        lines += [f"*Descriptive*: {ev.in_domain_tost}.", ""]
    return lines


def _summary_rows(report: HypothesisReport) -> list[str]:
    lines = ["| Experiment | Hypothesis | Verdict | Mean diff | Per-seed SD | Seeds | One-sided 95% bounds | Delta "
             "| Holm p | Seeds for 80% power at the observed mean | Seeds to tell delta from 0 |",
             "|:--|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for ex in report.experiments:
        where = f"{ex.protocol}/{ex.budget}{'' if ex.treatment == NO_TREATMENT else '/' + ex.treatment}"
        for ev in ex.evaluations:
            if ev.verdict == NOT_EVALUATED:
                continue
            t, d = ev.test, ev.decision
            bounds = "—" if t["lower_bound"] is None else f"[{pts(t['lower_bound'])}, {pts(t['upper_bound'])}]"
            holm_p = "—" if d["p_adjusted"] is None else f"{d['p_adjusted']:.3g}"
            need, plan = ("—" if t["sd_diff"] in (None, 0.0) else f"> {MAX_SEEDS}" if n is None else str(n)
                          for n in (d["seeds_needed"], d["seeds_delta_vs_zero"]))
            lines.append(f"| {where} | {ev.name} | {ev.verdict} | {pts(t['mean_diff'])} | {pts(t['sd_diff'], False)}"
                         f" | {t['n']} | {bounds} | {pts(ev.delta, False)} | {holm_p} | {need} | {plan} |")
    return lines


def render_markdown(report: HypothesisReport, rules: RuleVerdicts) -> str:
    lines = ["# Hypotheses", "", power_note(), "", rule_text(), "", "**Holm families in this folder.**", ""]
    for family, members in report.families.items():
        lines.append(f"- {family}, m = {len(members)}: {', '.join(members) if members else 'none evaluated'}.")
    lines += ["", "**Verdicts at a glance** (points; NOT EVALUATED ones are listed per experiment below):", "",
              *_summary_rows(report), "", *rules_markdown(report, rules)]
    for ex in report.experiments:
        treat = "" if ex.treatment == NO_TREATMENT else f", stain treatment {ex.treatment}"
        lines += [f"## Protocol {ex.protocol}, budget {ex.budget}{treat}", "",
                  f"Holm family of its evaluated hypotheses: {ex.family}.", ""]
        for ev in ex.evaluations:
            lines += _evaluation_md(ev)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_hypotheses(df: pd.DataFrame, out_dir: Path) -> HypothesisReport:
    report, rules = evaluate_all(df), evaluate_rules(df)
    write_text(out_dir / "hypotheses.md", render_markdown(report, rules))
    write_json(out_dir / "hypotheses.json", {**to_json(report), "selection_rules": rules_json(rules)})
    return report


def main_hypotheses(out_dir: Path) -> int:
    """``hypotheses``: decide H1-H4 from a results folder; writes hypotheses.md/json and claims.md/tex,
    prints each verdict with its reason and the Holm families."""
    out_dir = Path(out_dir)
    df, _ = load_summary(out_dir)
    report = write_hypotheses(df, out_dir)
    for ex in report.experiments:
        treat = "" if ex.treatment == NO_TREATMENT else f" treatment {ex.treatment}"
        for ev in ex.evaluations:
            print(f"{ex.protocol} {ex.budget}{treat} {ev.name}: {ev.verdict} ({ev.reason})")
    for family, members in report.families.items():
        print(f"Holm family {family} (m = {len(members)}): {', '.join(members) or 'none evaluated'}")
    written = [out_dir / "hypotheses.md", out_dir / "hypotheses.json", *write_claims(df, out_dir)]
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
