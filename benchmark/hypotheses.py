"""The paper's hypotheses, decided from the summary: ``<out>/hypotheses.md`` and ``hypotheses.json``.

Each hypothesis compares SG-CLDFF with one ablation on one metric under one condition:

- H1: saliency alignment (sg_cldff vs sg_cldff_no_align) raises IoU by >= 0.02 under cross-stain
  conditions: the targets of the stain kinds :data:`CROSS_STAIN_KINDS`, re-stained and HED-perturbed
  (read from the ``target_kind`` column, so the scanner shifts of ``cross_scanner`` do not count);
- H2: cross-layer fusion (sg_cldff vs sg_cldff_no_cldff) raises macro-F1 by >= 0.015 under domain
  shift: every shifted target;
- H3 / H4: the paper's Table 3 ablations, decided on ``within_dataset`` only (in-domain test):
  saliency preprocessing (vs sg_cldff_no_saliency) raises IoU by >= 0.03, cross-layer fusion
  (vs sg_cldff_no_cldff) raises accuracy by >= 0.0135. Each delta is half the paper's reported
  gap (0.82 vs 0.76; 95.8 vs 93.1): SUPPORTED then means at least half the reported gain
  reproduces, RULED OUT that even half of it is excluded. Testing at the full gap would put a
  faithful reproduction on the null's boundary, where it is SUPPORTED only by chance.

Per seed the metric is averaged over each source's targets and then over the sources (every
source weighs the same), giving paired per-seed scores (pairs share the seed, and with it the
split hash, which :func:`benchmark.summary.build_summary` checks for every report), decided by
:func:`benchmark.stats.decide`: SUPPORTED, RULED OUT or UNDECIDED.
Holm runs over every hypothesis one results folder evaluates, in two families: the primary one
(untreated models, across protocols and budgets) and the stain-treatment one, corrected
separately so that secondary questions do not dilute the primary verdicts. A hypothesis that
cannot be evaluated (a model or the metric missing, fewer than two paired seeds, no target of its
condition, a protocol it is not registered for) is NOT EVALUATED with the reason and belongs to
no family. Tasks (source x target) on which either model has no value at all (e.g. IoU on a
source without masks) are left out and named.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.atomic import write_json, write_text
from benchmark.claims import paper_value, write_claims
from benchmark.stats import (
    MAX_SEEDS,
    UNDECIDED,
    PairedTestResult,
    decide,
    holm,
    paired_shifted_test,
    pts,
    seeds_by_tasks_summary,
    standardized_effect,
    tost_noninferiority,
)
from benchmark.summary import IN_DOMAIN, NO_TREATMENT, build_summary, canonical, display_name
from benchmark.tables import protocol_targets, target_sort_key

ALPHA = 0.05
IN_DOMAIN_MARGIN = 0.01
"""TOST margin of the descriptive in-domain comparison: +-1 point."""

NOT_EVALUATED = "NOT EVALUATED"
CROSS_STAIN_KINDS: tuple[str, ...] = ("restain", "hed")
"""Target kinds of H1's cross-stain condition: the paper's claim is about stain, not the scanner."""
TYPICAL_SEEDS = 5
PRIMARY, TREATED = "primary", "stain treatments"
"""The two Holm families of a results folder: untreated models, and models under a stain treatment."""


@dataclass(frozen=True)
class Hypothesis:
    name: str
    statement: str
    model: str
    ablation: str
    metric: str
    delta: float
    condition: str
    protocols: tuple[str, ...] | None = None
    """Protocols the claim is decided on; None: every protocol that has the condition's targets."""
    delta_why: str = ""
    paper: tuple[float, float] | None = None
    """The paper's reported (model, ablation) means, shown beside ours."""

    def targets(self, g: pd.DataFrame) -> pd.DataFrame:
        """The rows of the condition's targets."""
        if self.condition == "cross_stain":
            return g[g["target_kind"].isin(CROSS_STAIN_KINDS)]
        if self.condition == "in_domain":
            return g[g["target"] == IN_DOMAIN]
        return g[g["shifted"]]


def _half_gap(model: str, ablation: str, metric: str) -> float:
    return round((paper_value(model, metric) - paper_value(ablation, metric)) / 2, 6)


HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis("H1", "saliency alignment raises segmentation IoU by at least 2 points (0.02) under cross-stain "
               "conditions versus the same model without it", "sg_cldff", "sg_cldff_no_align", "iou", 0.02,
               "cross_stain",
               delta_why="the paper's own claim in its abstract: '>= 2 IoU improvement in cross-stain scenarios'"),
    Hypothesis("H2", "cross-layer fusion raises classification macro-F1 by at least 1.5 points (0.015) under "
               "domain shift versus the same model without it", "sg_cldff", "sg_cldff_no_cldff", "macro_f1",
               0.015, "shifted",
               delta_why="the paper's own hypothesis: 'F1-score by >= 1.5 points under domain-shift scenarios'"),
    Hypothesis("H3", "saliency-guided preprocessing raises segmentation IoU within a dataset (paper's Table 3: "
               "0.82 vs 0.76 without it)", "sg_cldff", "sg_cldff_no_saliency", "iou",
               _half_gap("sg_cldff", "sg_cldff_no_saliency", "iou"), "in_domain", ("within_dataset",),
               "half the paper's reported gap of 6 points",
               (paper_value("sg_cldff", "iou"), paper_value("sg_cldff_no_saliency", "iou"))),
    Hypothesis("H4", "cross-layer fusion raises classification accuracy within a dataset (paper's Table 3: 95.8 "
               "vs 93.1 without it)", "sg_cldff", "sg_cldff_no_cldff", "accuracy",
               _half_gap("sg_cldff", "sg_cldff_no_cldff", "accuracy"), "in_domain", ("within_dataset",),
               "half the paper's reported gap of 2.7 points",
               (paper_value("sg_cldff", "accuracy"), paper_value("sg_cldff_no_cldff", "accuracy"))),
)
CONDITION_TEXT = {
    "cross_stain": "cross-stain targets (re-stained and HED-perturbed)",
    "shifted": "every shifted target (all targets but in_domain)",
    "in_domain": "the in-domain test of each source, as the paper's Table 3 ablations",
}


def _round(x: float | None) -> float | None:
    """6 significant digits: enough for any reading, stable against last-bit noise in goldens."""
    return None if x is None else float(f"{x:.6g}")


def _round_tree(obj):
    if isinstance(obj, float):
        return _round(obj)
    if isinstance(obj, dict):
        return {k: _round_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_tree(v) for v in obj]
    return obj


def _task_name(source: str, target: str, n_sources: int) -> str:
    return target if n_sources == 1 else f"{source} -> {target}"


def _seed_list(seeds: set) -> str:
    return "[" + ", ".join(str(int(s)) for s in sorted(seeds)) + "]"


def _scores(rows: pd.DataFrame, metric: str, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Seeds x (source, target) table of ``metric`` in ``pairs`` order (NaN where a seed lacks it)."""
    table = rows.set_index(["seed", "source", "target"])[metric].unstack(["source", "target"])
    return table.reindex(columns=pd.MultiIndex.from_tuples(pairs, names=["source", "target"]))


def _ordered_pairs(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(source, target) in table order: by source, then in_domain, re-stains, graded kinds by severity,
    other domains."""
    pairs = rows[["source", "target", "target_kind", "severity"]].drop_duplicates(["source", "target"])
    ordered = sorted(pairs.itertuples(index=False),
                     key=lambda p: (p.source, target_sort_key(p.target, p.target_kind, p.severity)))
    return [(p.source, p.target) for p in ordered]


@dataclass
class Evaluation:
    """Everything the reports say about one hypothesis in one experiment."""

    name: str
    statement: str
    model: str
    ablation: str
    metric: str
    delta: float
    delta_why: str
    condition: str
    paper: list[float] | None
    verdict: str
    reason: str
    family: str = ""
    tasks: list[str] = field(default_factory=list)
    excluded_tasks: str = ""
    seeds: list[int] = field(default_factory=list)
    dropped_seeds: str = ""
    scores_model: list[float] = field(default_factory=list)
    scores_ablation: list[float] = field(default_factory=list)
    test: dict | None = None
    decision: dict | None = None
    per_task: dict | None = None
    per_source: dict | None = None
    in_domain_tost: str = ""


def _evaluation(h: Hypothesis, a: str, b: str, verdict: str = "", reason: str = "") -> Evaluation:
    return Evaluation(h.name, h.statement, a, b, h.metric, h.delta, h.delta_why, h.condition,
                      None if h.paper is None else list(h.paper), verdict, reason)


def _in_domain_line(g: pd.DataFrame, a: str, b: str, metric: str) -> str:
    """Descriptive TOST of the two models on the in-domain targets (seed means over sources)."""
    ind = g[g["target"] == IN_DOMAIN]
    sa = ind[ind["display"] == a].groupby("seed")[metric].mean()
    sb = ind[ind["display"] == b].groupby("seed")[metric].mean()
    both = pd.concat([sa.rename("a"), sb.rename("b")], axis=1).dropna().sort_index()
    if both.empty:
        return f"in-domain: no seed with in-domain {metric} for both models, no equivalence check"
    tost = tost_noninferiority(both["a"].to_numpy(), both["b"].to_numpy(), IN_DOMAIN_MARGIN, ALPHA)
    return f"in-domain {metric}, {len(both)} paired seeds, {a} minus {b}: {tost.line}"


def evaluate(h: Hypothesis, g: pd.DataFrame, treatment: str) -> tuple[Evaluation, PairedTestResult | None]:
    """Paired per-seed scores of one hypothesis in one experiment, tested; or why it cannot be."""
    a, b = display_name(h.model, treatment), display_name(h.ablation, treatment)
    protocol = g["protocol"].iloc[0]
    if h.protocols is not None and protocol not in h.protocols:
        why = (f"registered for {', '.join(h.protocols)} only, not {protocol}: it is decided on "
               f"{CONDITION_TEXT[h.condition]}")
        return _evaluation(h, a, b, NOT_EVALUATED, why), None
    rows = h.targets(g)
    if rows.empty:
        why = f"this protocol has none of the targets the claim needs: {CONDITION_TEXT[h.condition]}"
        return _evaluation(h, a, b, NOT_EVALUATED, why), None
    missing = [m for m in (a, b) if m not in set(g["display"])]
    if missing:
        return _evaluation(h, a, b, NOT_EVALUATED, f"no results for {' and '.join(missing)} in this experiment"), None
    absent = [m for m in (a, b) if m not in set(rows["display"])]
    if absent:
        why = f"no results for {' and '.join(absent)} on {CONDITION_TEXT[h.condition]}"
        return _evaluation(h, a, b, NOT_EVALUATED, why), None
    pairs = _ordered_pairs(rows)
    n_sources = len({s for s, _ in pairs})
    sa, sb = (_scores(rows[rows["display"] == m], h.metric, pairs) for m in (a, b))
    for m, s in ((a, sa), (b, sb)):
        if s.isna().all().all():
            why = f"{h.metric} is n/a for {m} (the model has no output for it)"
            return _evaluation(h, a, b, NOT_EVALUATED, why), None
    applicable = [p for p in pairs if sa[p].notna().any() and sb[p].notna().any()]
    excluded = [_task_name(*p, n_sources) for p in pairs if p not in applicable]
    ev = _evaluation(h, a, b)
    ev.tasks = [_task_name(*p, n_sources) for p in applicable]
    if excluded:
        ev.excluded_tasks = f"left out, no {h.metric} for one of the models on any seed: {', '.join(excluded)}"
    sa, sb = sa[applicable], sb[applicable]
    complete_a = set(sa.index[sa.notna().all(axis=1)])
    complete_b = set(sb.index[sb.notna().all(axis=1)])
    seeds = sorted(int(s) for s in complete_a & complete_b)
    dropped = sorted(int(s) for s in (set(sa.index) | set(sb.index)) - set(seeds))
    if dropped:
        ev.dropped_seeds = (f"seeds {', '.join(map(str, dropped))} left out: not every target has {h.metric} "
                            "for both models")
    if len(seeds) < 2:
        ev.verdict = NOT_EVALUATED
        ev.reason = (f"only {len(seeds)} seed(s) with {h.metric} on every target for both models "
                     f"({a}: seeds {_seed_list(complete_a)}; {b}: seeds {_seed_list(complete_b)}); "
                     "a paired t-test needs at least 2")
        return ev, None
    sa, sb = sa.loc[seeds], sb.loc[seeds]
    # per seed: mean over each source's targets, then over sources (every source weighs the same)
    src_a, src_b = (s.T.groupby(level="source", sort=True).mean().T for s in (sa, sb))
    ya, yb = src_a.mean(axis=1).to_numpy(), src_b.mean(axis=1).to_numpy()
    result = paired_shifted_test(ya, yb, h.delta, ALPHA)
    by_source = seeds_by_tasks_summary((src_a - src_b).to_numpy(), list(src_a.columns))
    ev.seeds = seeds
    ev.scores_model, ev.scores_ablation = [_round(x) for x in ya], [_round(x) for x in yb]
    ev.test = _round_tree(asdict(result))
    ev.per_task = _round_tree(seeds_by_tasks_summary((sa - sb).to_numpy(), ev.tasks)["per_task"])
    ev.per_source = _round_tree({"per_source": by_source["per_task"], "pooled": by_source["aggregate"]})
    ev.in_domain_tost = "" if h.condition == "in_domain" else _in_domain_line(g, a, b, h.metric)
    return ev, result


@dataclass
class Experiment:
    protocol: str
    budget: str
    treatment: str
    family: str
    """The Holm family its evaluated hypotheses belong to."""
    evaluations: list[Evaluation]


@dataclass
class HypothesisReport:
    experiments: list[Experiment]
    families: dict[str, list[str]]
    """Holm family name -> its members ("protocol/budget[/treatment] H")."""


def _member(protocol: str, budget: str, treatment: str, name: str) -> str:
    return f"{protocol}/{budget}{'' if treatment == NO_TREATMENT else '/' + treatment} {name}"


def evaluate_all(df: pd.DataFrame) -> HypothesisReport:
    """Every hypothesis in every experiment (protocol, budget, treatment) of a results folder, then
    Holm over each family: untreated hypotheses together, stain-treatment ones together. Only the
    protocol's own targets count (:func:`benchmark.tables.protocol_targets`), never ones added by ``evaluate``."""
    df = protocol_targets(canonical(df))
    experiments, tested = [], []
    keyed = df.groupby(["protocol", "budget", "treatment"], sort=True)
    for (protocol, budget, treatment), g in sorted(keyed, key=lambda kg: (*kg[0][:2], kg[0][2] != NO_TREATMENT)):
        family = PRIMARY if treatment == NO_TREATMENT else TREATED
        evaluations = []
        for h in HYPOTHESES:
            ev, result = evaluate(h, g, treatment)
            if result is not None:
                ev.family = family
                tested.append((family, _member(protocol, budget, treatment, h.name), ev, result))
            evaluations.append(ev)
        experiments.append(Experiment(protocol, budget, treatment, family, evaluations))
    families = {}
    for family in (PRIMARY, TREATED):
        members = [(label, ev, r) for f, label, ev, r in tested if f == family]
        families[family] = [label for label, _, _ in members]
        adjusted = holm({label: r.decisive_p for label, _, r in members})
        for label, ev, r in members:
            d = decide(r, adjusted[label], len(members), ALPHA)
            ev.verdict, ev.reason = d.outcome, d.reason
            ev.decision = _round_tree({k: v for k, v in asdict(d).items() if k not in ("outcome", "reason")})
    return HypothesisReport(experiments, families)


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


def render_markdown(report: HypothesisReport) -> str:
    lines = ["# Hypotheses", "", power_note(), "", rule_text(), "", "**Holm families in this folder.**", ""]
    for family, members in report.families.items():
        lines.append(f"- {family}, m = {len(members)}: {', '.join(members) if members else 'none evaluated'}.")
    lines += ["", "**Verdicts at a glance** (points; NOT EVALUATED ones are listed per experiment below):", "",
              *_summary_rows(report), ""]
    for ex in report.experiments:
        treat = "" if ex.treatment == NO_TREATMENT else f", stain treatment {ex.treatment}"
        lines += [f"## Protocol {ex.protocol}, budget {ex.budget}{treat}", "",
                  f"Holm family of its evaluated hypotheses: {ex.family}.", ""]
        for ev in ex.evaluations:
            lines += _evaluation_md(ev)
    return "\n".join(lines).rstrip("\n") + "\n"


def to_json(report: HypothesisReport) -> dict:
    return _round_tree({
        "alpha": ALPHA,
        "standardized_mde_5_seeds": standardized_effect(TYPICAL_SEEDS, ALPHA),
        "holm_families": report.families,
        "experiments": [
            {"protocol": ex.protocol, "budget": ex.budget, "treatment": ex.treatment, "holm_family": ex.family,
             "hypotheses": [asdict(ev) for ev in ex.evaluations]}
            for ex in report.experiments
        ],
    })


def write_hypotheses(df: pd.DataFrame, out_dir: Path) -> HypothesisReport:
    report = evaluate_all(df)
    write_text(out_dir / "hypotheses.md", render_markdown(report))
    write_json(out_dir / "hypotheses.json", to_json(report))
    return report


def main_hypotheses(out_dir: Path) -> int:
    """``hypotheses``: decide H1-H4 from a results folder; writes hypotheses.md/json and claims.md/tex,
    prints each verdict with its reason and the Holm families."""
    out_dir = Path(out_dir)
    df = build_summary(out_dir)
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
