"""The paper's hypotheses, decided from the summary: ``<out>/hypotheses.md`` and ``hypotheses.json``.

Each hypothesis compares SG-CLDFF with one ablation on one metric under one condition:

- H1: saliency alignment (sg_cldff vs sg_cldff_no_align) raises IoU by >= 0.02 under cross-stain
  conditions: the re-stained (``restain:*``) and HED-perturbed (``hed:*``) targets;
- H2: cross-layer fusion (sg_cldff vs sg_cldff_no_cldff) raises macro-F1 by >= 0.015 under domain
  shift: every shifted target.

Per seed the metric is averaged over the condition's targets (and sources), giving paired
per-seed scores (pairs share the seed), tested with the shifted-null paired t-test of
:mod:`benchmark.stats` and Holm-corrected across the hypotheses evaluated for the same
experiment (protocol, budget, stain treatment). A hypothesis that cannot be evaluated (a model
or the metric missing, fewer than two paired seeds, no target of its condition) is reported as
NOT EVALUATED with the reason, never as PASS or FAIL.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from benchmark.atomic import write_json, write_text
from benchmark.stats import (
    POINTS_PER_UNIT,
    PairedTestResult,
    holm,
    minimum_detectable_effect,
    paired_shifted_test,
    seeds_by_tasks_summary,
    tost_noninferiority,
    verdict,
)
from benchmark.summary import IN_DOMAIN, NO_TREATMENT, build_summary, canonical, display_name
from benchmark.tables import target_sort_key

ALPHA = 0.05
IN_DOMAIN_MARGIN = 0.01
"""TOST margin of the descriptive in-domain comparison: +-1 point."""

NOT_EVALUATED = "NOT EVALUATED"
TYPICAL_SEEDS = 5


@dataclass(frozen=True)
class Hypothesis:
    name: str
    statement: str
    model: str
    ablation: str
    metric: str
    delta: float
    condition: str

    def targets(self, g: pd.DataFrame) -> pd.DataFrame:
        """The rows of the condition's targets."""
        if self.condition == "cross_stain":
            return g[g["target"].str.startswith(("restain:", "hed:"))]
        return g[g["shifted"]]


HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis("H1", "saliency alignment raises segmentation IoU by at least 2 points (0.02) under cross-stain "
               "conditions versus the same model without it", "sg_cldff", "sg_cldff_no_align", "iou", 0.02,
               "cross_stain"),
    Hypothesis("H2", "cross-layer fusion raises classification macro-F1 by at least 1.5 points (0.015) under "
               "domain shift versus the same model without it", "sg_cldff", "sg_cldff_no_cldff", "macro_f1",
               0.015, "shifted"),
)
CONDITION_TEXT = {
    "cross_stain": "cross-stain targets (restain:* and hed:*)",
    "shifted": "every shifted target (all targets but in_domain)",
}


def _round(x: float | None) -> float | None:
    """6 significant digits: enough for any reading, stable against last-bit noise in goldens."""
    return None if x is None else float(f"{x:.6g}")


def _task_name(source: str, target: str, n_sources: int) -> str:
    return target if n_sources == 1 else f"{source} -> {target}"


def _seed_list(seeds: set) -> str:
    return "[" + ", ".join(str(int(s)) for s in sorted(seeds)) + "]"


def _scores(rows: pd.DataFrame, metric: str, n_sources: int) -> pd.DataFrame:
    """Seeds x tasks table of ``metric`` (NaN where a seed lacks a task or the metric is null)."""
    tasks = rows.assign(task=[_task_name(s, t, n_sources) for s, t in zip(rows["source"], rows["target"])])
    return tasks.pivot_table(index="seed", columns="task", values=metric, aggfunc="first", dropna=False)


def _ordered_tasks(rows: pd.DataFrame, n_sources: int) -> list[str]:
    """Tasks in table order: by source, then in_domain, re-stains, HED severities, other domains."""
    pairs = rows[["source", "target", "severity"]].drop_duplicates(["source", "target"])
    ordered = sorted(pairs.itertuples(index=False), key=lambda p: (p.source, target_sort_key(p.target, p.severity)))
    return [_task_name(p.source, p.target, n_sources) for p in ordered]


@dataclass
class Evaluation:
    """Everything the reports say about one hypothesis in one experiment."""

    name: str
    statement: str
    model: str
    ablation: str
    metric: str
    delta: float
    condition: str
    verdict: str
    reason: str
    tasks: list[str]
    seeds: list[int]
    dropped_seeds: str
    scores_model: list[float]
    scores_ablation: list[float]
    test: dict | None
    holm_p: float | None
    per_task: dict | None
    in_domain_tost: str


def _not_evaluated(h: Hypothesis, a: str, b: str, why: str, tasks: list[str] | None = None) -> Evaluation:
    return Evaluation(h.name, h.statement, a, b, h.metric, h.delta, h.condition, NOT_EVALUATED, why,
                      tasks or [], [], "", [], [], None, None, None, "")


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
    present = set(g["display"])
    missing = [m for m in (a, b) if m not in present]
    if missing:
        return _not_evaluated(h, a, b, f"no results for {' and '.join(missing)} in this experiment"), None
    rows = h.targets(g)
    if rows.empty:
        return _not_evaluated(h, a, b, f"this protocol has none of the targets the claim needs: {CONDITION_TEXT[h.condition]}"), None
    n_sources = g["source"].nunique()
    sa = _scores(rows[rows["display"] == a], h.metric, n_sources)
    sb = _scores(rows[rows["display"] == b], h.metric, n_sources)
    tasks = _ordered_tasks(rows, n_sources)
    for m, s in ((a, sa), (b, sb)):
        if s.isna().all().all():
            return _not_evaluated(h, a, b, f"{h.metric} is n/a for {m} (the model has no output for it)", tasks), None
    sa, sb = sa.reindex(columns=tasks), sb.reindex(columns=tasks)
    complete_a = set(sa.index[sa.notna().all(axis=1)])
    complete_b = set(sb.index[sb.notna().all(axis=1)])
    seeds = sorted(int(s) for s in complete_a & complete_b)
    dropped = sorted(int(s) for s in (set(sa.index) | set(sb.index)) - set(seeds))
    dropped_text = (f"seeds {', '.join(map(str, dropped))} left out: not every target has {h.metric} for both models"
                    if dropped else "")
    if len(seeds) < 2:
        why = (f"only {len(seeds)} seed(s) with {h.metric} on every target for both models "
               f"({a}: seeds {_seed_list(complete_a)}; {b}: seeds {_seed_list(complete_b)}); "
               "a paired t-test needs at least 2")
        return _not_evaluated(h, a, b, why, tasks), None
    ma, mb = sa.loc[seeds].to_numpy(), sb.loc[seeds].to_numpy()
    ya, yb = ma.mean(axis=1), mb.mean(axis=1)
    result = paired_shifted_test(ya, yb, h.delta, ALPHA)
    ev = Evaluation(
        h.name, h.statement, a, b, h.metric, h.delta, h.condition, "", "", tasks, seeds, dropped_text,
        [_round(x) for x in ya], [_round(x) for x in yb], _rounded_test(result), None,
        seeds_by_tasks_summary(ma - mb, tasks), _in_domain_line(g, a, b, h.metric),
    )
    return ev, result


def _rounded_test(r: PairedTestResult) -> dict:
    d = asdict(r)
    for k, v in d.items():
        if isinstance(v, float):
            d[k] = _round(v)
        elif isinstance(v, tuple):
            d[k] = [_round(x) for x in v]
    return d


def _round_tree(obj):
    if isinstance(obj, float):
        return _round(obj)
    if isinstance(obj, dict):
        return {k: _round_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_tree(v) for v in obj]
    return obj


@dataclass
class Experiment:
    protocol: str
    budget: str
    treatment: str
    family: list[str]
    evaluations: list[Evaluation]


def evaluate_all(df: pd.DataFrame) -> list[Experiment]:
    """Every hypothesis in every experiment (protocol, budget, treatment), Holm within each."""
    df = canonical(df)
    experiments = []
    keyed = df.groupby(["protocol", "budget", "treatment"], sort=True)
    for (protocol, budget, treatment), g in sorted(keyed, key=lambda kg: (*kg[0][:2], kg[0][2] != NO_TREATMENT)):
        pairs = [(h, *evaluate(h, g, treatment)) for h in HYPOTHESES]
        tested = {h.name: r.p_shifted for h, _, r in pairs if r is not None}
        adjusted = holm(tested)
        for h, ev, r in pairs:
            if r is None:
                continue
            ev.holm_p = _round(adjusted[h.name])
            ev.verdict, ev.reason = verdict(r, adjusted[h.name], ALPHA)
        experiments.append(Experiment(protocol, budget, treatment, sorted(tested), [ev for _, ev, _ in pairs]))
    return experiments


def standardized_mde(n: int) -> float:
    """How many SDs of the paired differences the true mean must exceed delta by, for 80% power."""
    return minimum_detectable_effect(n, 1.0, 0.0, ALPHA)


def power_note() -> str:
    d5, d3 = standardized_mde(TYPICAL_SEEDS), standardized_mde(3)
    return (
        f"**Read this first.** Each hypothesis claims an effect of *at least* delta, so it is tested against a "
        f"shifted null (H0: mean paired difference <= delta), one-sided, over seeds. With {TYPICAL_SEEDS} seeds "
        f"this test can only pass for a large, steady effect: it has 80% power only when the true mean difference "
        f"exceeds delta by {d5:.2f} standard deviations of the per-seed differences ({d3:.2f} with 3 seeds). "
        f"For example, if the per-seed differences scatter with an SD of 1 point, H1 (delta 2 points) needs a true "
        f"gain of about {2 + d5:.1f} points to be detected in 4 of 5 repetitions of the whole experiment. A FAIL "
        f"therefore often means *not shown*, not *absent*; each test's minimum detectable effect (MDE) is given "
        f"with it."
    )


def _pts(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "—"
    v = round(x * POINTS_PER_UNIT, 2) + 0.0
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _evaluation_md(ev: Evaluation) -> list[str]:
    lines = [f"### {ev.name}: {ev.verdict}", "",
             f"*Claim*: {ev.statement}.", "",
             f"*Comparison*: `{ev.model}` minus `{ev.ablation}`, metric `{ev.metric}`, delta {_pts(ev.delta, False)} "
             f"points, over {CONDITION_TEXT[ev.condition]}; per seed the targets are averaged, seeds are pairs.", "",
             f"*Verdict*: **{ev.verdict}** — {ev.reason}.", ""]
    if ev.verdict == NOT_EVALUATED:
        return lines
    t = ev.test
    if t["mde"] is not None:
        lines += [f"*Power*: with {t['n']} paired seeds and the observed SD of the differences "
                  f"({_pts(t['sd_diff'], False)} points), the smallest true effect this test detects with 80% power "
                  f"is {_pts(t['mde'], False)} points (the claim's threshold is {_pts(ev.delta, False)}).", ""]
    if ev.dropped_seeds:
        lines += [f"*Note*: {ev.dropped_seeds}.", ""]
    lines += ["| Seed | " + ev.model + " | " + ev.ablation + " | Difference (points) |", "|--:|--:|--:|--:|"]
    for s, x, y in zip(ev.seeds, ev.scores_model, ev.scores_ablation):
        lines.append(f"| {s} | {_pts(x, False)} | {_pts(y, False)} | {_pts(x - y)} |")
    lines += ["", "Per-target breakdown of the paired difference (points; mean, SD and 95% t-interval over seeds):",
              "", "| Target | Mean | SD | 95% CI |", "|:--|--:|--:|--:|"]
    rows = list(ev.per_task["per_task"].items()) + [("mean over targets", ev.per_task["aggregate"])]
    for name, s in rows:
        ci = "—" if s["ci95"] is None else f"[{_pts(s['ci95'][0])}, {_pts(s['ci95'][1])}]"
        lines.append(f"| {name} | {_pts(s['mean'])} | {_pts(s['sd'], False)} | {ci} |")
    lines += ["", f"*Descriptive*: {ev.in_domain_tost}.", ""]
    return lines


def render_markdown(experiments: list[Experiment]) -> str:
    lines = ["# Hypotheses", "", power_note(), "",
             f"Verdicts: PASS when the Holm-adjusted shifted-null p < {ALPHA} (family: the hypotheses evaluated "
             f"in the same experiment); FAIL otherwise; {NOT_EVALUATED} when the data cannot decide it (the "
             "reason is given). Differences are in points (metric x 100).", ""]
    for ex in experiments:
        treat = "" if ex.treatment == NO_TREATMENT else f", stain treatment {ex.treatment}"
        family = ", ".join(ex.family) if ex.family else "none (no hypothesis could be evaluated)"
        lines += [f"## Protocol {ex.protocol}, budget {ex.budget}{treat}", "",
                  f"Holm family: {family}.", ""]
        for ev in ex.evaluations:
            lines += _evaluation_md(ev)
    return "\n".join(lines).rstrip("\n") + "\n"


def to_json(experiments: list[Experiment]) -> dict:
    return _round_tree({
        "alpha": ALPHA,
        "standardized_mde_5_seeds": standardized_mde(TYPICAL_SEEDS),
        "experiments": [
            {"protocol": ex.protocol, "budget": ex.budget, "treatment": ex.treatment, "holm_family": ex.family,
             "hypotheses": [asdict(ev) for ev in ex.evaluations]}
            for ex in experiments
        ],
    })


def write_hypotheses(df: pd.DataFrame, out_dir: Path) -> list[Experiment]:
    experiments = evaluate_all(df)
    write_text(out_dir / "hypotheses.md", render_markdown(experiments))
    write_json(out_dir / "hypotheses.json", to_json(experiments))
    return experiments


def main_hypotheses(out_dir: Path) -> int:
    """``hypotheses``: decide H1/H2 from a results folder; writes hypotheses.md/json, prints verdicts."""
    out_dir = Path(out_dir)
    experiments = write_hypotheses(build_summary(out_dir), out_dir)
    for ex in experiments:
        treat = "" if ex.treatment == NO_TREATMENT else f" treatment {ex.treatment}"
        for ev in ex.evaluations:
            print(f"{ex.protocol} {ex.budget}{treat} {ev.name}: {ev.verdict} ({ev.reason})")
    print(f"wrote {out_dir / 'hypotheses.md'} and {out_dir / 'hypotheses.json'}")
    return 0
