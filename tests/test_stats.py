"""Hypothesis statistics: known answers against scipy, calibration by simulation, Holm, power, verdicts."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from core.errors import BenchmarkError
from benchmark.analysis.stats import (
    MAX_SEEDS,
    RULED_OUT,
    SUPPORTED,
    UNDECIDED,
    decide,
    holm,
    minimum_detectable_effect,
    paired_shifted_test,
    seeds_by_tasks_summary,
    seeds_for_power,
    shifted_null_pvalue,
    tost_noninferiority,
)

A = np.array([0.80, 0.83, 0.79, 0.85, 0.81])
B = np.array([0.77, 0.80, 0.79, 0.80, 0.78])  # diffs .03 .03 .00 .05 .03


def test_paired_shifted_test_matches_scipy():
    diffs = A - B
    r = paired_shifted_test(A, B, delta=0.02)
    shifted = stats.ttest_1samp(diffs - 0.02, 0.0, alternative="greater")
    assert r.n == 5 and r.mean_diff == pytest.approx(0.028) and r.sd_diff == pytest.approx(np.std(diffs, ddof=1))
    assert r.t == pytest.approx(shifted.statistic) and r.p_shifted == pytest.approx(shifted.pvalue)
    assert r.p_zero == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue)
    half = stats.t.ppf(0.975, 4) * r.sd_diff / np.sqrt(5)
    assert r.ci95 == pytest.approx((0.028 - half, 0.028 + half))
    assert r.p_shifted == pytest.approx(float(shifted_null_pvalue(A, B, 0.02)))
    assert r.p_below == pytest.approx(stats.ttest_1samp(diffs - 0.02, 0.0, alternative="less").pvalue)
    assert r.p_shifted + r.p_below == pytest.approx(1.0) and r.decisive_p == min(r.p_shifted, r.p_below)
    one_sided = stats.t.ppf(0.95, 4) * r.sd_diff / np.sqrt(5)
    assert (r.lower_bound, r.upper_bound) == pytest.approx((0.028 - one_sided, 0.028 + one_sided))
    assert r.note == ""


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_mde_has_80_percent_power(n):
    sd, delta, alpha = 0.01, 0.02, 0.05
    mde = minimum_detectable_effect(n, sd, delta, alpha)
    # power of the one-sided shifted t-test when the true mean difference is the MDE
    crit = stats.t.ppf(1 - alpha, n - 1)
    power = stats.nct.sf(crit, n - 1, (mde - delta) / sd * np.sqrt(n))
    assert power == pytest.approx(0.8, abs=1e-3)


def test_mde_monotone_in_n():
    mdes = [minimum_detectable_effect(n, 0.01, 0.02) for n in range(2, 31)]
    assert all(later < earlier for earlier, later in zip(mdes, mdes[1:]))
    assert mdes[-1] > 0.02  # never below the shifted threshold itself
    with pytest.raises(BenchmarkError, match="at least 2 seeds"):
        minimum_detectable_effect(1, 0.01)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_rule_out_mde_mirrors_support_and_has_80_percent_power(n):
    sd, delta, alpha = 0.01, 0.02, 0.05
    mde = minimum_detectable_effect(n, sd, delta, alpha, side="rule_out")
    assert delta - mde == pytest.approx(minimum_detectable_effect(n, sd, delta, alpha) - delta)
    # power of the below test (H0: diff >= delta) when the true mean difference is the rule-out MDE
    power = stats.nct.cdf(-stats.t.ppf(1 - alpha, n - 1), n - 1, (mde - delta) / sd * np.sqrt(n))
    assert power == pytest.approx(0.8, abs=1e-3)
    with pytest.raises(BenchmarkError, match="side"):
        minimum_detectable_effect(n, sd, delta, alpha, side="below")


def test_shifted_null_calibration_and_power_by_simulation():
    rng = np.random.default_rng(12345)
    experiments, seeds, delta, sd = 2000, 5, 0.02, 0.015
    b = 0.75 + rng.normal(0.0, 0.03, (experiments, seeds))  # seed-to-seed variation shared by the pair
    noise = rng.normal(0.0, sd, (experiments, seeds))
    p_null = shifted_null_pvalue(b + delta + noise, b, delta)
    p_alt = shifted_null_pvalue(b + delta + 3 * sd + noise, b, delta)
    assert 0.03 <= np.mean(p_null < 0.05) <= 0.07
    assert np.mean(p_alt < 0.05) > 0.8
    # the vectorized p is the one the per-hypothesis test reports
    for i in range(3):
        one = paired_shifted_test(b[i] + delta + noise[i], b[i], delta)
        assert one.p_shifted == pytest.approx(p_null[i])


def test_at_a_true_difference_of_delta_each_verdict_comes_out_at_alpha_and_some_verdict_at_2_alpha():
    """The documented error rates: each direction at alpha, so 2 alpha in all when the truth sits on delta."""
    rng = np.random.default_rng(2024)
    experiments, seeds, delta, sd = 6000, 5, 0.02, 0.015
    b = 0.75 + rng.normal(0.0, 0.03, (experiments, seeds))
    a = b + delta + rng.normal(0.0, sd, (experiments, seeds))
    p_above = shifted_null_pvalue(a, b, delta)
    supported, ruled_out = np.mean(p_above < 0.05), np.mean(1.0 - p_above < 0.05)  # p_below = 1 - p_above
    assert 0.04 <= supported <= 0.06 and 0.04 <= ruled_out <= 0.06
    assert 0.085 <= supported + ruled_out <= 0.115
    for i in range(20):  # decide follows the same rule
        r = paired_shifted_test(a[i], b[i], delta)
        expected = SUPPORTED if p_above[i] < 0.05 else RULED_OUT if 1.0 - p_above[i] < 0.05 else UNDECIDED
        assert decide(r, r.decisive_p, 1).outcome == expected


@pytest.mark.filterwarnings("error")  # degenerate cases must not reach scipy's divide-by-zero paths
def test_degenerate_inputs_are_undecided_never_supported():
    one = paired_shifted_test(np.array([0.9]), np.array([0.5]), delta=0.02)
    assert one.p_shifted is None and one.p_zero is None and one.ci95 is None and one.decisive_p is None
    assert "1 seed" in one.note
    flat = paired_shifted_test(B + 0.05, B, delta=0.02)  # large but perfectly constant difference
    assert flat.p_shifted is None and flat.sd_diff == 0.0 and "zero spread" in flat.note
    assert flat.mean_diff == pytest.approx(0.05)
    for r in (one, flat):
        d = decide(r, holm({"H": r.decisive_p})["H"], family_size=1)
        assert d.outcome == UNDECIDED and "untestable" in d.reason and "p = 1" in d.reason
        assert d.mde_support is None and d.seeds_needed is None and d.seeds_delta_vs_zero is None
    assert tost_noninferiority(B + 0.001, B).p is None


@pytest.mark.parametrize(
    "a, b, needle",
    [
        (np.array([0.1, np.nan]), np.array([0.1, 0.2]), "NaN"),
        (np.array([0.1, 0.2]), np.array([0.1, 0.2, 0.3]), "equal length"),
        (np.array([]), np.array([]), "no seeds"),
    ],
)
def test_bad_inputs_raise(a, b, needle):
    with pytest.raises(BenchmarkError, match=needle):
        paired_shifted_test(a, b, delta=0.02)


def test_holm_hand_worked():
    # sorted 0.01, 0.03, 0.04 -> x3 = 0.03, x2 = 0.06, x1 = 0.04 raised to the running max 0.06
    assert holm({"H1": 0.01, "H2": 0.04, "H3": 0.03}) == pytest.approx({"H1": 0.03, "H2": 0.06, "H3": 0.06})
    # an untestable hypothesis still counts in the family (as p = 1): 0.02 x 2 = 0.04
    assert holm({"H1": 0.02, "H2": None}) == {"H1": pytest.approx(0.04), "H2": None}
    assert holm({}) == {}
    with pytest.raises(BenchmarkError, match="'H1'"):
        holm({"H1": 1.5})


def test_tost_against_scipy():
    rng = np.random.default_rng(7)
    b = rng.uniform(0.7, 0.8, 8)
    close = b + rng.normal(0.0, 0.002, 8)
    r = tost_noninferiority(close, b, margin=0.01)
    d = close - b
    assert r.p_lower == pytest.approx(stats.ttest_1samp(d, -0.01, alternative="greater").pvalue)
    assert r.p_upper == pytest.approx(stats.ttest_1samp(d, 0.01, alternative="less").pvalue)
    assert r.p == pytest.approx(max(r.p_lower, r.p_upper)) and r.p < 0.05
    assert "(equivalent)" in r.line and "+-1.00 points" in r.line
    far = tost_noninferiority(b - 0.05 + rng.normal(0.0, 0.002, 8), b)
    assert far.p > 0.05 and "equivalence not shown" in far.line and "non-inferiority not shown" in far.line
    with pytest.raises(BenchmarkError, match="margin"):
        tost_noninferiority(close, b, margin=0.0)


def _decided(diffs: np.ndarray, delta: float = 0.02, family_size: int = 1):
    r = paired_shifted_test(0.7 + diffs, np.full(diffs.size, 0.7), delta)
    return r, decide(r, r.decisive_p if family_size == 1 else min(1.0, family_size * r.decisive_p), family_size)


def test_each_outcome_on_hand_made_differences():
    r, d = _decided(np.array([0.061, 0.058, 0.064, 0.060, 0.057]))
    assert d.outcome == SUPPORTED and r.lower_bound > 0.02 and "the gain exceeds delta" in d.reason
    r, d = _decided(np.array([-0.004, 0.001, -0.010, 0.003, -0.006]))
    assert d.outcome == RULED_OUT and r.upper_bound < 0.02 and "a gain of delta or more is excluded" in d.reason
    r, d = _decided(np.array([0.05, -0.03, 0.08, -0.01, 0.04]))
    assert d.outcome == UNDECIDED and r.lower_bound < 0.02 < r.upper_bound
    for piece in ("per-seed SD", "80% power", "(support)", "(rule out)", f"about {d.seeds_needed} seeds",
                  f"seeds to tell delta from 0 at the observed SD: about {d.seeds_delta_vs_zero} seeds would tell a "
                  "true difference of 2.00 points from one of 0"):
        assert piece in d.reason, piece
    r, d = _decided(np.full(5, 0.001))
    assert d.outcome == UNDECIDED and "zero spread" in d.reason  # untestable: never a verdict either way


def test_without_correction_the_outcome_is_the_one_sided_bound_against_delta():
    rng = np.random.default_rng(3)
    for _ in range(200):
        r, d = _decided(rng.normal(rng.uniform(-0.02, 0.06), rng.uniform(0.002, 0.03), 5))
        assert (d.outcome == SUPPORTED) == (r.lower_bound > 0.02)
        assert (d.outcome == RULED_OUT) == (r.upper_bound < 0.02)


def test_holm_can_turn_a_verdict_into_undecided():
    r = paired_shifted_test(0.7 + np.array([0.030, 0.018, 0.036, 0.022, 0.032]), np.full(5, 0.7), 0.02)
    assert 0.025 < r.p_shifted < 0.05  # SUPPORTED alone, not in a family of two
    assert decide(r, holm({"H": r.decisive_p})["H"], 1).outcome == SUPPORTED
    adjusted = holm({"H": r.decisive_p, "other": 0.5})
    d = decide(r, adjusted["H"], 2)
    assert d.outcome == UNDECIDED and d.p_adjusted == pytest.approx(2 * r.p_shifted)
    assert "Holm-adjusted decisive p" in d.reason and "family of 2" in d.reason


def test_planning_figures_use_the_strictest_holm_step():
    r, d = _decided(np.array([0.05, -0.03, 0.08, -0.01, 0.04]), family_size=4)
    assert d.planning_alpha == pytest.approx(0.0125)
    assert d.mde_support == pytest.approx(minimum_detectable_effect(5, r.sd_diff, 0.02, 0.0125))
    assert d.mde_rule_out == pytest.approx(minimum_detectable_effect(5, r.sd_diff, 0.02, 0.0125, "rule_out"))
    assert d.mde_support - 0.02 == pytest.approx(0.02 - d.mde_rule_out)
    assert d.seeds_needed == seeds_for_power(r.mean_diff - 0.02, r.sd_diff, 0.0125)
    assert d.seeds_delta_vs_zero == _brute_force_seeds(0.02, r.sd_diff, 0.0125)
    with pytest.raises(BenchmarkError, match="family"):
        decide(r, 0.5, family_size=0)


def _brute_force_seeds(effect: float, sd: float, alpha: float) -> int | None:
    for n in range(2, MAX_SEEDS + 1):
        if TTestPower().power(effect_size=abs(effect) / sd, nobs=n, alpha=alpha, alternative="larger") >= 0.8:
            return n
    return None


@pytest.mark.parametrize("effect, sd, alpha", [(0.01, 0.04, 0.05), (-0.03, 0.02, 0.05), (0.02, 0.045, 0.025),
                                               (0.05, 0.01, 0.05), (0.004, 0.05, 0.05), (1e-4, 0.05, 0.05)])
def test_seeds_needed_match_brute_force_power(effect, sd, alpha):
    n = seeds_for_power(effect, sd, alpha)
    assert n == _brute_force_seeds(effect, sd, alpha)
    if n is not None and n > 2:  # independently: the noncentral t gives >= 80% at n, less at n - 1
        power = [stats.nct.sf(stats.t.ppf(1 - alpha, k - 1), k - 1, abs(effect) / sd * np.sqrt(k)) for k in (n - 1, n)]
        assert power[0] < 0.8 <= power[1]


def test_seeds_needed_edge_cases():
    assert seeds_for_power(0.0, 0.01) is None  # mean exactly at delta: no number of seeds decides it
    assert seeds_for_power(0.5, 0.01) == 2
    with pytest.raises(BenchmarkError, match="SD must be positive"):
        seeds_for_power(0.01, 0.0)


def test_seeds_by_tasks_summary():
    scores = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    s = seeds_by_tasks_summary(scores, ["iou", "f1"])
    assert s["n_seeds"] == 3
    # task "iou": mean 3, sd 2, half-width t(.975, 2) * 2 / sqrt(3)
    half = stats.t.ppf(0.975, 2) * 2 / np.sqrt(3)
    assert s["per_task"]["iou"]["mean"] == 3.0 and s["per_task"]["iou"]["sd"] == pytest.approx(2.0)
    assert s["per_task"]["iou"]["ci95"] == pytest.approx((3 - half, 3 + half))
    # aggregate: per-seed means 1.5, 3.5, 7.0 -> mean 4.0, interval across seeds
    agg = s["aggregate"]
    assert agg["mean"] == pytest.approx(4.0) and agg["sd"] == pytest.approx(np.std([1.5, 3.5, 7.0], ddof=1))
    lo, hi = stats.t.interval(0.95, 2, loc=4.0, scale=agg["sd"] / np.sqrt(3))
    assert agg["ci95"] == pytest.approx((lo, hi))
    single = seeds_by_tasks_summary(scores[:1])
    assert single["per_task"]["0"] == {"mean": 1.0, "sd": None, "ci95": None}
    with pytest.raises(BenchmarkError, match="NaN"):
        seeds_by_tasks_summary(np.array([[np.nan, 1.0]]))
    with pytest.raises(BenchmarkError, match="1 task names for 2 tasks"):
        seeds_by_tasks_summary(scores, ["iou"])


@pytest.mark.parametrize("delta, diffs, family_size", [
    (0.02, np.array([0.05, -0.03, 0.08, -0.01, 0.04]), 1),  # UNDECIDED, mean near delta
    (0.02, np.array([0.019, 0.022, 0.021, 0.018, 0.020]), 4),  # mean on delta: seeds needed > MAX_SEEDS
    (0.015, np.array([0.061, 0.058, 0.064, 0.060, 0.057]), 2),  # SUPPORTED
    (0.0135, np.array([-0.004, 0.001, -0.010, 0.003, -0.006]), 1),  # RULED OUT
    (0.02, np.array([0.9, -0.8, 0.7, -0.9, 0.8]), 1),  # SD 40x delta: beyond MAX_SEEDS
])
def test_seeds_to_tell_delta_from_zero_match_a_brute_force_power_loop(delta, diffs, family_size):
    """Smallest n at which a one-sided t-test at alpha/m has 80% power for the effect size delta / SD."""
    r, d = _decided(diffs, delta, family_size)
    alpha = 0.05 / family_size
    brute = None
    for n in range(2, MAX_SEEDS + 1):
        if TTestPower().power(effect_size=delta / r.sd_diff, nobs=n, alpha=alpha, alternative="larger") >= 0.8:
            brute = n
            break
    assert d.seeds_delta_vs_zero == brute
    need = "more than 1000 seeds" if brute is None else f"about {brute} seeds"
    assert f"seeds to tell delta from 0 at the observed SD: {need}" in d.reason
    if brute is not None and brute > 2:  # independently: the noncentral t gives >= 80% at n, less at n - 1
        power = [stats.nct.sf(stats.t.ppf(1 - alpha, k - 1), k - 1, delta / r.sd_diff * np.sqrt(k))
                 for k in (brute - 1, brute)]
        assert power[0] < 0.8 <= power[1]


def test_seeds_to_tell_delta_from_zero_rule_out_a_null_effect_4_times_in_5():
    """What the figure promises, by simulation: with that many seeds and no effect at all, RULED OUT in ~80%."""
    delta, sd = 0.02, 0.025
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    r, d = _decided(x * sd / np.std(x, ddof=1), delta)  # observed mean 0, observed SD exactly sd
    assert r.sd_diff == pytest.approx(sd)
    n = d.seeds_delta_vs_zero
    assert n is not None and 5 < n < 60
    rng = np.random.default_rng(99)
    b = 0.75 + rng.normal(0.0, 0.03, (4000, n))
    a = b + rng.normal(0.0, sd, (4000, n))  # true difference 0
    for k in (n, n - 1):
        ruled_out = np.mean(1.0 - shifted_null_pvalue(a[:, :k], b[:, :k], delta) < 0.05)  # p_below < alpha
        power = TTestPower().power(effect_size=delta / sd, nobs=k, alpha=0.05, alternative="larger")
        assert ruled_out == pytest.approx(power, abs=0.025), (k, ruled_out, power)
        assert (power >= 0.8) == (k == n)
