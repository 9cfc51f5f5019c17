"""The paper's hypotheses, decided from the summary (written out by ``benchmark.reports.hypotheses``).

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
split hash, which :func:`benchmark.record.summary.build_summary` checks for every report), decided by
:func:`benchmark.analysis.stats.decide`: SUPPORTED, RULED OUT or UNDECIDED.
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

import pandas as pd

from benchmark.analysis.paper import paper_value
from benchmark.analysis.selection import protocol_targets, target_sort_key
from benchmark.analysis.stats import (PairedTestResult, decide, holm, paired_shifted_test, seeds_by_tasks_summary,
                                      standardized_effect, tost_noninferiority)
from benchmark.record.summary import canonical
from benchmark.record.vocabulary import IN_DOMAIN, NO_TREATMENT, display_name

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
    protocol's own targets count (:func:`benchmark.reports.tables.protocol_targets`), never ones added by ``evaluate``."""
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
