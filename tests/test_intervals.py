"""The bootstrap interval of a mean over seeds (benchmark.analysis.intervals): hand-counted cases,
the seed as the unit, the degenerate cases, and the same bytes on every run."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.analysis.intervals import SeedInterval, seed_mean_interval
from benchmark.reports.cells import INTERVAL, Cell, format_cell
from core.errors import BenchmarkError


def test_two_seeds_span_both_values():
    """Resampled means of [0.2, 0.4]: 0.2, 0.3, 0.4 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    97.5% percentiles are the two values themselves."""
    assert seed_mean_interval([0.2, 0.4]) == SeedInterval(pytest.approx(0.3), 0.2, 0.4, 2)


def test_percentiles_of_the_counted_bootstrap_distribution():
    """Five seeds [0, 0, 0, 0, 1]: a resample's mean is k/5 with k ~ Binomial(5, 1/5), whose CDF is
    0.328, 0.737, 0.942, 0.993 at k = 0..3: the 2.5% percentile is 0 and the 97.5% one 3/5, not the
    largest seed."""
    ci = seed_mean_interval([0.0, 0.0, 0.0, 0.0, 1.0])
    assert (ci.estimate, ci.low, ci.high, ci.n_seeds) == (pytest.approx(0.2), 0.0, pytest.approx(0.6), 5)


def test_tasks_are_averaged_within_a_seed_before_resampling():
    scores = np.array([[0.0, 1.0], [0.2, 0.4], [0.9, 0.9]])  # seeds x tasks
    assert seed_mean_interval(scores) == seed_mean_interval(scores.mean(axis=1))
    assert seed_mean_interval(scores) != seed_mean_interval(scores.ravel())  # cells are not the unit


def test_one_seed_has_no_interval_and_equal_seeds_a_point():
    assert seed_mean_interval([0.7]) == SeedInterval(0.7, None, None, 1)
    assert seed_mean_interval([[0.5, 0.7]]) == SeedInterval(pytest.approx(0.6), None, None, 1)
    assert seed_mean_interval([0.25] * 4) == SeedInterval(0.25, 0.25, 0.25, 4)


@pytest.mark.parametrize("bad", [[], [[]], [0.5, np.nan], np.zeros((2, 2, 2))])
def test_empty_or_non_finite_scores_are_errors(bad):
    with pytest.raises(BenchmarkError, match="seed_mean_interval"):
        seed_mean_interval(bad)


def test_the_interval_is_the_same_on_every_call_whatever_came_before():
    x = [0.61, 0.66, 0.64, 0.70, 0.59]
    first = seed_mean_interval(x)
    seed_mean_interval([0.1, 0.9, 0.3])  # another interval in between draws from its own generator
    assert seed_mean_interval(x) == first
    assert first.low < first.estimate < first.high and 0.59 <= first.low and first.high <= 0.70


def test_cells_show_the_interval_or_why_there_is_none():
    cell = Cell("ok", (0.631, 0.672, 0.654), signed=False)
    ci = seed_mean_interval(cell.values)
    assert format_cell(cell, False, INTERVAL) == f"65.2 [{100 * ci.low:.1f}, {100 * ci.high:.1f}]"
    assert format_cell(Cell("ok", (0.02, 0.04), signed=True), True, INTERVAL) == "+3.0 [+2.0, +4.0] (n=2)"
    assert format_cell(Cell("ok", (0.5,)), False, INTERVAL) == "50.0 (n=1)"
    assert format_cell(Cell("ok", (1.5, 1.5), scale=1.0, decimals=2), False, INTERVAL) == "1.50 [1.50, 1.50]"
    assert format_cell(Cell("na"), False, INTERVAL) == "n/a" and format_cell(Cell("missing"), False, INTERVAL) == "—"
