"""Hypothesis statistics over seeds: plain arrays in, estimates with intervals out.

A hypothesis "the component raises the metric by at least ``delta``" is tested against a
shifted null, H0: mean paired difference <= delta vs H1: > delta, with a one-sided paired
t-test over seeds (model and ablation trained with the same seed form a pair). With few seeds
such a test can only pass for a large and steady effect, so every result carries the
minimum detectable effect (MDE) and the verdict states it in words.

Degenerate inputs are reported, not papered over: with one seed, or when every paired
difference is the same (zero spread), no t-test exists; p-values are then None and the
``note`` says why. Such a hypothesis never passes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

from benchmark.errors import BenchmarkError

POWER = 0.8
"""Target power of the minimum detectable effect."""

POINTS_PER_UNIT = 100.0
"""Reports give differences of [0, 1] metrics in points: 1 point = 0.01 of the metric."""


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


def _shifted_ttest(a: np.ndarray, b: np.ndarray, delta: float):
    """scipy's paired t-test of a vs b + delta, one-sided 'greater', seeds on the last axis."""
    return stats.ttest_rel(a, b + delta, axis=-1, alternative="greater")


def shifted_null_pvalue(a: np.ndarray, b: np.ndarray, delta: float) -> np.ndarray:
    """One-sided paired t-test p of H0: mean(a - b) <= delta, vectorized over leading axes.

    ``a`` and ``b`` are (..., n) with seeds on the last axis; used directly by simulations
    and through :func:`paired_shifted_test` for one experiment."""
    return _shifted_ttest(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), delta).pvalue


def minimum_detectable_effect(n: int, sd: float, delta: float = 0.0, alpha: float = 0.05) -> float:
    """Smallest true mean paired difference the one-sided shifted test detects with 80% power.

    The test statistic is (mean - delta) / (sd / sqrt(n)), so its power depends on the
    standardized distance d = (true mean - delta) / sd; statsmodels solves for the d that
    gives 80% power at this ``n`` and ``alpha``, hence MDE = delta + d * sd (raw units,
    using the observed SD as the estimate of the true one)."""
    if n < 2:
        raise BenchmarkError(f"minimum_detectable_effect: needs at least 2 seeds, got {n}")
    d = TTestPower().solve_power(nobs=n, alpha=alpha, power=POWER, alternative="larger")
    return float(delta + float(d) * sd)


@dataclass(frozen=True)
class PairedTestResult:
    """Shifted-null paired test of one hypothesis; differences are model minus ablation (raw units).

    ``p_shifted``: one-sided p of H0 mean diff <= ``delta``; ``p_zero``: two-sided p against 0;
    ``mde``: smallest true mean difference detectable with 80% power at this n and observed SD.
    Fields that cannot be computed (n < 2, zero spread) are None and ``note`` says why."""

    n: int
    delta: float
    alpha: float
    mean_diff: float
    sd_diff: float | None
    ci95: tuple[float, float] | None
    t: float | None
    p_shifted: float | None
    p_zero: float | None
    mde: float | None
    note: str = ""


def paired_shifted_test(a: np.ndarray, b: np.ndarray, delta: float, alpha: float = 0.05) -> PairedTestResult:
    """Test whether model scores ``a`` exceed ablation scores ``b`` by more than ``delta``.

    ``a`` and ``b`` are per-seed scores (n,), pair i sharing seed i."""
    a, b = _paired(a, b, "paired_shifted_test")
    diffs = a - b
    n = diffs.size
    mean, sd, ci = _t_interval(diffs)
    if n < 2:
        return PairedTestResult(
            n, delta, alpha, mean, None, None, None, None, None, None,
            note="1 seed: no variance estimate, so no test and no interval",
        )
    if not _has_spread(diffs):
        return PairedTestResult(
            n, delta, alpha, mean, 0.0, ci, None, None, None, None,
            note=f"all {n} paired differences are equal ({mean:+.4g}): zero spread, a t-test is undefined",
        )
    shifted = _shifted_ttest(a, b, delta)
    zero = stats.ttest_rel(a, b)
    return PairedTestResult(
        n=n,
        delta=delta,
        alpha=alpha,
        mean_diff=mean,
        sd_diff=sd,
        ci95=ci,
        t=float(shifted.statistic),
        p_shifted=float(shifted.pvalue),
        p_zero=float(zero.pvalue),
        mde=minimum_detectable_effect(n, sd, delta, alpha),
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


def verdict(result: PairedTestResult, adjusted_p: float | None, alpha: float = 0.05) -> tuple[str, str]:
    """("PASS" | "FAIL", reason in words). PASS iff the Holm-adjusted shifted-null p < alpha.

    Differences are given in points (metric x 100), the unit in which the hypotheses state
    their thresholds."""
    pts = POINTS_PER_UNIT
    head = f"mean {result.mean_diff * pts:+.2f} points (metric x 100) over {result.n} seeds"
    if result.p_shifted is None or adjusted_p is None:
        return "FAIL", f"{head}; untestable: {result.note or 'no p-value'}"
    lo, hi = result.ci95
    reason = (
        f"{head}, 95% CI [{lo * pts:+.2f}, {hi * pts:+.2f}]; "
        f"shifted-null (H0: diff <= {result.delta * pts:.2f} points) p={result.p_shifted:.3g} "
        f"(Holm {adjusted_p:.3g}); plain test vs 0 p={result.p_zero:.3g}; "
        f"needs >= {result.mde * pts:.2f} points to be detectable with {result.n} seeds at "
        f"{POWER:.0%} power (observed SD {result.sd_diff * pts:.2f} points)"
    )
    return ("PASS" if adjusted_p < alpha else "FAIL"), reason


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
