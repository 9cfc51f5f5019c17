"""95% bootstrap intervals of a mean over seeds, for the report tables (rliable-style: a plain array
of scores in, the estimate with its interval out).

The seed is the unit of replication: a (seeds, tasks) array is first averaged over its tasks within
each seed, and the bootstrap resamples seeds of those per-seed means, so the targets of one seed stay
together (a shifted mean over several targets is one number per seed).

Method: :func:`scipy.stats.bootstrap`, percentile interval, :data:`RESAMPLES` resamples, from a
generator seeded with :data:`RNG_SEED` afresh for every interval, so an interval depends only on its
own scores and a table's bytes do not depend on which cells came before. Percentile rather than BCa:
BCa's jackknife acceleration is unstable or undefined on 2-5 values with ties, while a percentile
interval always lies within the range of the per-seed values. With few seeds it is narrower than a
t-interval (the bootstrap variance of a mean is (n-1)/n of the sample's, and the interval never
reaches past the extreme seeds): it describes the seeds' spread, it does not promise 95% coverage.

Degenerate cases: one seed has no interval (None); per-seed values all equal give [v, v] without
resampling.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from core.errors import BenchmarkError

LEVEL = 0.95
RESAMPLES = 9999
RNG_SEED = 0
METHOD = "percentile"


@dataclass(frozen=True)
class SeedInterval:
    """Mean over ``n_seeds`` per-seed values and its bootstrap interval (None with one seed)."""

    estimate: float
    low: float | None
    high: float | None
    n_seeds: int


def per_seed_means(scores: ArrayLike) -> np.ndarray:
    """(seeds,) or (seeds, tasks) scores -> one value per seed (tasks averaged within a seed)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0 or x.size == 0:
        raise BenchmarkError(f"seed_mean_interval: expected a non-empty (seeds,) or (seeds, tasks) array, "
                             f"got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise BenchmarkError(f"seed_mean_interval: scores contain NaN or infinite values ({x.tolist()})")
    return x if x.ndim == 1 else x.mean(axis=1)


def seed_mean_interval(scores: ArrayLike, level: float = LEVEL) -> SeedInterval:
    """The mean over seeds of ``scores`` and its percentile bootstrap interval over seeds."""
    v = per_seed_means(scores)
    estimate = float(np.mean(v))
    if v.size == 1:
        return SeedInterval(estimate, None, None, 1)
    if np.all(v == v[0]):
        return SeedInterval(estimate, float(v[0]), float(v[0]), int(v.size))
    res = stats.bootstrap((v,), np.mean, n_resamples=RESAMPLES, confidence_level=level, method=METHOD,
                          rng=np.random.default_rng(RNG_SEED))
    ci = res.confidence_interval
    return SeedInterval(estimate, float(ci.low), float(ci.high), int(v.size))
