"""Hypothesis statistics over seeds: plain arrays in, estimates with intervals out.

A hypothesis "the component raises the metric by at least ``delta``" is decided by two
one-sided paired t-tests over seeds against ``delta`` (model and ablation trained with the
same seed form a pair):

- *above*: H0 mean paired difference <= delta (the shifted null); rejecting it SUPPORTS the claim;
- *below*: H0 mean paired difference >= delta; rejecting it RULES OUT the claimed size.

The two p-values add up to 1, so at most one can be small; the smaller is the hypothesis's
*decisive* p, which :func:`holm` corrects across a family and :func:`decide` turns into one of
three outcomes. Before correction, SUPPORTED means the one-sided 95% lower bound of the mean
difference is above delta and RULED OUT that the one-sided 95% upper bound is below it;
UNDECIDED means the seeds cannot tell, and then the minimum detectable effect (MDE) and the
seeds needed say how far the experiment is from deciding.

Error rates: each one-sided test runs at the full alpha, so each verdict errs in its own
direction with probability at most alpha (SUPPORTED when the true difference is <= delta, RULED
OUT when it is >= delta). At a true difference of exactly delta both nulls hold, and *some*
verdict comes out with probability up to 2 alpha (alpha each way). This is deliberate: the two
verdicts are different claims, each is the one-sided 95% bound the benchmark's rule defines, and
testing each side at alpha / 2 would cost power that a handful of seeds cannot spare, to guard
only against a truth sitting exactly on the boundary.

Planning figures (all at one-sided 80% power, see :class:`Decision`): the MDE at this n and the
observed SD; the seeds needed were the observed mean the true one (|mean - delta| / SD, often
"more than MAX_SEEDS" when the mean sits near delta); and the seeds needed to tell a true
difference of delta from one of 0 at the observed SD (effect size delta / SD), the figure to
plan a sweep with.

Degenerate inputs are reported, not papered over: with one seed, or when every paired
difference is the same (zero spread), no t-test exists; p-values are then None, ``note`` says
why, and the outcome is UNDECIDED (never SUPPORTED).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from core.errors import BenchmarkError

POWER = 0.8
"""Target power of the minimum detectable effect and of the seeds needed."""

POINTS_PER_UNIT = 100.0
"""Reports give differences of [0, 1] metrics in points: 1 point = 0.01 of the metric."""

SUPPORTED, RULED_OUT, UNDECIDED = "SUPPORTED", "RULED OUT", "UNDECIDED"
OUTCOMES: tuple[str, ...] = (SUPPORTED, RULED_OUT, UNDECIDED)

MAX_SEEDS = 1000
"""Seeds needed beyond this are reported as "more than MAX_SEEDS": the effect is too close to delta to plan for."""


def _paired(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as float arrays after checking they are paired, finite and non-empty."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise BenchmarkError(f"{what}: expected two per-seed score vectors of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise BenchmarkError(f"{what}: no seeds (empty score vectors)")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise BenchmarkError(f"{what}: scores contain NaN or infinite values (a={a.tolist()}, b={b.tolist()})")
    return a, b


def _has_spread(x: np.ndarray) -> bool:
    """False when all values are equal up to rounding, where a t statistic is undefined."""
    return x.size >= 2 and float(np.ptp(x)) > 1e-12 * max(1.0, float(np.max(np.abs(x))))


def _t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float | None, tuple[float, float] | None]:
    """Mean, sample SD and two-sided t-interval of the mean; SD and interval None for n < 2.

    With zero spread the interval collapses to the mean (the data show no variation)."""
    mean = float(np.mean(x))
    if x.size < 2:
        return mean, None, None
    sd = float(np.std(x, ddof=1))
    if not _has_spread(x):
        return mean, 0.0, (mean, mean)
    lo, hi = stats.t.interval(level, df=x.size - 1, loc=mean, scale=sd / np.sqrt(x.size))
    return mean, sd, (float(lo), float(hi))


def _shifted_ttest(a: np.ndarray, b: np.ndarray, delta: float, alternative: str = "greater"):
    """scipy's paired t-test of a vs b + delta, one-sided, seeds on the last axis."""
    return stats.ttest_rel(a, b + delta, axis=-1, alternative=alternative)


def shifted_null_pvalue(a: np.ndarray, b: np.ndarray, delta: float) -> np.ndarray:
    """One-sided paired t-test p of H0: mean(a - b) <= delta, vectorized over leading axes.

    ``a`` and ``b`` are (..., n) with seeds on the last axis; used directly by simulations
    and through :func:`paired_shifted_test` for one experiment."""
    return _shifted_ttest(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), delta).pvalue


def standardized_effect(n: int, alpha: float = 0.05) -> float:
    """d such that the one-sided t-test over ``n`` seeds at ``alpha`` has 80% power when the true
    mean sits d SDs of the paired differences beyond delta (statsmodels ``TTestPower``, df n - 1)."""
    if n < 2:
        raise BenchmarkError(f"standardized_effect: needs at least 2 seeds, got {n}")
    return float(TTestPower().solve_power(nobs=n, alpha=alpha, power=POWER, alternative="larger"))


def minimum_detectable_effect(n: int, sd: float, delta: float = 0.0, alpha: float = 0.05,
                              side: str = "support") -> float:
    """The true mean paired difference the one-sided shifted test decides with 80% power at ``n`` seeds.

    The test statistic is (mean - delta) / (sd / sqrt(n)), so its power depends on the
    standardized distance d = |true mean - delta| / sd (:func:`standardized_effect`), using the
    observed SD as the estimate of the true one. ``side`` "support": the smallest true difference
    the *above* test SUPPORTS with 80% power, delta + d * sd; "rule_out": the largest one the
    *below* test RULES OUT with 80% power, delta - d * sd (the same test mirrored)."""
    if side not in ("support", "rule_out"):
        raise BenchmarkError(f"minimum_detectable_effect: side must be 'support' or 'rule_out', got {side!r}")
    if n < 2:
        raise BenchmarkError(f"minimum_detectable_effect: needs at least 2 seeds, got {n}")
    d = standardized_effect(n, alpha) * sd
    return float(delta + d if side == "support" else delta - d)


def seeds_for_power(effect: float, sd: float, alpha: float = 0.05, max_n: int = MAX_SEEDS) -> int | None:
    """Smallest number of seeds n >= 2 at which a one-sided paired t-test at ``alpha`` has 80% power
    when the true mean difference lies ``effect`` away from the null value it is tested against and
    the differences scatter with SD ``sd`` (effect size |effect| / sd); None when even ``max_n``
    seeds fall short (including ``effect`` = 0). :func:`decide` asks it with effect = observed mean
    - delta (seeds needed) and with effect = delta (seeds to tell delta from 0).

    Power grows with n for a fixed effect, so the smallest such n is found by bisection on
    statsmodels' ``TTestPower``."""
    if sd <= 0:
        raise BenchmarkError(f"seeds_for_power: the SD must be positive, got {sd}")
    d = abs(effect) / sd

    def powered(n: int) -> bool:
        return d > 0 and float(TTestPower().power(effect_size=d, nobs=n, alpha=alpha, alternative="larger")) >= POWER

    if not powered(max_n):
        return None
    lo, hi = 1, max_n  # powered(lo) is False by convention (no test with one seed), powered(hi) True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if powered(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class PairedTestResult:
    """Both one-sided paired tests of one hypothesis; differences are model minus ablation (raw units).

    ``p_shifted``: p of H0 mean diff <= ``delta`` (the *above* test); ``p_below``: p of H0 mean diff
    >= ``delta``; ``p_zero``: two-sided p against 0; ``lower_bound`` / ``upper_bound``: one-sided
    (1 - ``alpha``) confidence bounds of the mean difference; ``ci95``: two-sided 95% t-interval.
    Fields that cannot be computed (n < 2, zero spread) are None and ``note`` says why."""

    n: int
    delta: float
    alpha: float
    mean_diff: float
    sd_diff: float | None
    ci95: tuple[float, float] | None
    lower_bound: float | None
    upper_bound: float | None
    t: float | None
    p_shifted: float | None
    p_below: float | None
    p_zero: float | None
    note: str = ""

    @property
    def decisive_p(self) -> float | None:
        """The smaller one-sided p (the direction the data lean to); None when untestable."""
        return None if self.p_shifted is None else min(self.p_shifted, self.p_below)


def paired_shifted_test(a: np.ndarray, b: np.ndarray, delta: float, alpha: float = 0.05) -> PairedTestResult:
    """Test whether model scores ``a`` exceed ablation scores ``b`` by more than ``delta``, both ways.

    ``a`` and ``b`` are per-seed scores (n,), pair i sharing seed i."""
    a, b = _paired(a, b, "paired_shifted_test")
    diffs = a - b
    n = diffs.size
    mean, sd, ci = _t_interval(diffs)
    if n < 2:
        return PairedTestResult(n, delta, alpha, mean, None, None, None, None, None, None, None, None,
                                note="1 seed: no variance estimate, so no test and no interval")
    if not _has_spread(diffs):
        return PairedTestResult(
            n, delta, alpha, mean, 0.0, ci, mean, mean, None, None, None, None,
            note=f"all {n} paired differences are equal ({mean:+.4g}): zero spread, a t-test is undefined",
        )
    above = _shifted_ttest(a, b, delta, "greater")
    half = float(stats.t.ppf(1 - alpha, n - 1)) * sd / np.sqrt(n)
    return PairedTestResult(
        n=n,
        delta=delta,
        alpha=alpha,
        mean_diff=mean,
        sd_diff=sd,
        ci95=ci,
        lower_bound=mean - half,
        upper_bound=mean + half,
        t=float(above.statistic),
        p_shifted=float(above.pvalue),
        p_below=float(_shifted_ttest(a, b, delta, "less").pvalue),
        p_zero=float(stats.ttest_rel(a, b).pvalue),
    )


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm-adjusted p-values across a hypothesis family.

    A hypothesis whose p is None (untestable) still counts in the family size, conservatively
    as p = 1, so the others are not corrected for fewer tests than were planned; its adjusted
    p stays None."""
    for name, p in pvalues.items():
        if p is not None and not 0.0 <= p <= 1.0:
            raise BenchmarkError(f"holm: p-value of {name!r} is {p}, not in [0, 1]")
    if not pvalues:
        return {}
    names = list(pvalues)
    raw = [1.0 if pvalues[k] is None else float(pvalues[k]) for k in names]
    adjusted = multipletests(raw, method="holm")[1]
    return {k: None if pvalues[k] is None else float(p) for k, p in zip(names, adjusted)}


@dataclass(frozen=True)
class Decision:
    """The outcome of one hypothesis after the family's Holm correction, with its planning figures.

    ``planning_alpha`` = alpha / ``family_size``: the strictest step of Holm in this family, so the
    planning figures hold whatever the other hypotheses show. All figures are for a one-sided
    t-test at ``planning_alpha`` with 80% power, using the observed per-seed SD of the paired
    differences as the true one; None where untestable (n < 2, zero spread).

    - ``mde_support``: smallest true difference SUPPORTED at this n (delta + d * SD);
      ``mde_rule_out``: largest true difference RULED OUT at this n (delta - d * SD);
      d from :func:`standardized_effect`.
    - ``seeds_needed``: seeds giving 80% power to decide in the direction the data lean, were the
      observed mean the true one (effect size |mean - delta| / SD); None: more than MAX_SEEDS, which
      is what it reads whenever the mean sits near delta.
    - ``seeds_delta_vs_zero``: seeds to tell delta from 0 at the observed SD: the smallest n >= 2 with
      P(T'(n - 1, sqrt(n) * delta / SD) > t(1 - planning_alpha, n - 1)) >= 0.8, T' the noncentral t;
      about ((z(1 - planning_alpha) + z(0.8)) * SD / delta)^2 for large n. With that many seeds a
      true difference of 0 is RULED OUT (and one of 2 delta SUPPORTED) with 80% power: the figure
      to plan a sweep with. None: more than MAX_SEEDS."""

    outcome: str
    p_adjusted: float | None
    family_size: int
    planning_alpha: float
    mde_support: float | None
    mde_rule_out: float | None
    seeds_needed: int | None
    seeds_delta_vs_zero: int | None
    reason: str


def pts(x: float | None, signed: bool = True) -> str:
    """A [0, 1] metric or difference in points (x 100), 2 decimals, signed unless ``signed`` is False; "—" for None.

    The one formatter of points in the verdicts, used by :func:`decide` and the hypotheses report."""
    if x is None:
        return "—"
    v = round(x * POINTS_PER_UNIT, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _seeds_text(n: int | None) -> str:
    return f"about {n} seeds" if n is not None else f"more than {MAX_SEEDS} seeds"


def decide(result: PairedTestResult, p_adjusted: float | None, family_size: int, alpha: float = 0.05) -> Decision:
    """SUPPORTED / RULED OUT / UNDECIDED from a test and its Holm-adjusted decisive p, reason in words.

    SUPPORTED iff the adjusted p < ``alpha`` and the data lean above delta; RULED OUT iff it is <
    ``alpha`` and they lean below; otherwise (and always when untestable) UNDECIDED. Each direction
    is tested at the full ``alpha``: at a true difference of exactly delta a verdict comes out with
    probability up to 2 ``alpha`` (see the module docstring). Differences are given in points
    (metric x 100), the unit in which the hypotheses state their thresholds."""
    if family_size < 1:
        raise BenchmarkError(f"decide: the family must hold at least this hypothesis, got size {family_size}")
    level = alpha / family_size
    delta = pts(result.delta, False)
    head = (f"mean {pts(result.mean_diff)} points, per-seed SD {pts(result.sd_diff, False)} "
            f"points, {result.n} seeds")
    if result.decisive_p is None or p_adjusted is None:
        reason = f"{head}; untestable: {result.note or 'no p-value'}; it counts in the Holm family as p = 1"
        return Decision(UNDECIDED, None, family_size, level, None, None, None, None, reason)
    mde_support, mde_rule_out = (minimum_detectable_effect(result.n, result.sd_diff, result.delta, level, side)
                                 for side in ("support", "rule_out"))
    seeds = seeds_for_power(result.mean_diff - result.delta, result.sd_diff, level)
    delta_vs_zero = seeds_for_power(result.delta, result.sd_diff, level)
    above = result.p_shifted <= result.p_below
    bounds = (f"one-sided {1 - result.alpha:.0%} bounds [{pts(result.lower_bound)}, "
              f"{pts(result.upper_bound)}] around delta {delta}")
    tests = (f"p(H0: diff <= {delta})={result.p_shifted:.3g}, p(H0: diff >= {delta})={result.p_below:.3g}, "
             f"Holm-adjusted decisive p={p_adjusted:.3g} (family of {family_size}); "
             f"plain test vs 0 p={result.p_zero:.3g}")
    plan = (f"seeds to tell delta from 0 at the observed SD: {_seeds_text(delta_vs_zero)} would tell a true "
            f"difference of {delta} points from one of 0 with 80% power at alpha/{family_size} = {level:.3g}")
    if p_adjusted < alpha:
        outcome = SUPPORTED if above else RULED_OUT
        what = ("the gain exceeds delta" if above else "a gain of delta or more is excluded")
        reason = f"{head}; {bounds}: {what}; {tests}; {plan}"
    else:
        outcome = UNDECIDED
        reason = (f"{head}; {bounds}; {tests}; at alpha/{family_size} = {level:.3g} and {result.n} seeds this test "
                  f"decides with 80% power only a true difference >= {pts(mde_support)} (support) or <= "
                  f"{pts(mde_rule_out)} (rule out) points; were the observed mean the true one, "
                  f"{_seeds_text(seeds)} would give 80% power to {'support' if above else 'rule out'} the claim; "
                  f"{plan}")
    return Decision(outcome, p_adjusted, family_size, level, mde_support, mde_rule_out, seeds, delta_vs_zero, reason)


@dataclass(frozen=True)
class TostResult:
    """Paired TOST of equivalence within +-``margin`` (raw units), descriptive only.

    ``p_lower`` tests H0 diff <= -margin (its rejection is non-inferiority), ``p_upper`` H0
    diff >= +margin; ``p`` = max of both (equivalence). None where the test is undefined."""

    margin: float
    mean_diff: float
    p: float | None
    p_lower: float | None
    p_upper: float | None
    line: str


def tost_noninferiority(a: np.ndarray, b: np.ndarray, margin: float = 0.01, alpha: float = 0.05) -> TostResult:
    """Whether ``a`` and ``b`` are equivalent within +-``margin`` (statsmodels ``ttost_paired``)."""
    if margin <= 0:
        raise BenchmarkError(f"tost_noninferiority: margin must be positive, got {margin}")
    a, b = _paired(a, b, "tost_noninferiority")
    diffs = a - b
    mean = float(diffs.mean())
    m_pts, d_pts = margin * POINTS_PER_UNIT, mean * POINTS_PER_UNIT
    if not _has_spread(diffs):
        why = "1 seed" if diffs.size < 2 else "zero spread of the paired differences"
        line = f"TOST +-{m_pts:.2f} points: mean {d_pts:+.2f} points; not testable ({why})"
        return TostResult(margin, mean, None, None, None, line)
    p, (_, p_lower, _), (_, p_upper, _) = ttost_paired(a, b, -margin, margin)
    p, p_lower, p_upper = float(p), float(p_lower), float(p_upper)
    outcome = "equivalent" if p < alpha else "equivalence not shown"
    noninf = "non-inferior" if p_lower < alpha else "non-inferiority not shown"
    line = (
        f"TOST +-{m_pts:.2f} points: mean {d_pts:+.2f} points, p={p:.3g} ({outcome}); "
        f"lower-bound p={p_lower:.3g} ({noninf})"
    )
    return TostResult(margin, mean, p, p_lower, p_upper, line)


def seeds_by_tasks_summary(scores: np.ndarray, task_names: Sequence[str] | None = None) -> dict:
    """Mean, SD and 95% t-interval across seeds per task, and for the aggregate.

    ``scores`` is (seeds, tasks). The aggregate averages the tasks within each seed first and
    then takes the interval across seeds (rliable-style: the seed is the unit of
    replication). SD and interval are None with a single seed."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise BenchmarkError(f"seeds_by_tasks_summary: expected a non-empty (seeds, tasks) array, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise BenchmarkError("seeds_by_tasks_summary: scores contain NaN or infinite values")
    names = [str(i) for i in range(scores.shape[1])] if task_names is None else list(task_names)
    if len(names) != scores.shape[1]:
        raise BenchmarkError(f"seeds_by_tasks_summary: {len(names)} task names for {scores.shape[1]} tasks")

    def summary(x: np.ndarray) -> dict:
        mean, sd, ci = _t_interval(x)
        return {"mean": mean, "sd": sd, "ci95": ci}

    return {
        "n_seeds": scores.shape[0],
        "per_task": {name: summary(scores[:, j]) for j, name in enumerate(names)},
        "aggregate": summary(scores.mean(axis=1)),
    }
