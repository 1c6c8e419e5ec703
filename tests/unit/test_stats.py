"""harness.core.stats: every formula against a hand value or an independent implementation (scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from harness.core import stats as s


def test_mean_interval_by_hand_and_edge_cases():
    iv = s.mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert (iv.estimate, iv.low, iv.high, iv.n, iv.df) == pytest.approx((2.0, 2 - half, 2 + half, 3, 2))
    assert iv.method == "t" and iv.has_interval and not iv.very_wide and not iv.resolved
    one = s.mean_interval([0.7])
    assert one.estimate == 0.7 and math.isnan(one.low) and math.isnan(one.high) and one.method == "none"
    assert not one.resolved and not one.very_wide
    two = s.mean_interval([1.0, 2.0])
    assert two.very_wide and two.high - two.low == pytest.approx(2 * 12.706204736174698 * 0.5)
    assert s.mean_interval([5.0, 6.0, 7.0]).resolved
    with pytest.raises(ValueError, match="no values"):
        s.mean_interval([])
    with pytest.raises(ValueError, match="finite"):
        s.mean_interval([1.0, float("nan")])


def test_welch_and_paired_match_scipy():
    a, b = [3.0, 4.0, 5.0], [1.0, 2.0, 3.0]
    w = s.welch_interval(a, b)
    assert w.df == pytest.approx(4.0) and w.se == pytest.approx(math.sqrt(2 / 3))  # by hand
    ref = st.ttest_ind(a, b, equal_var=False)
    assert (w.low, w.high) == pytest.approx(tuple(ref.confidence_interval()))
    assert s.t_pvalue(w) == pytest.approx(ref.pvalue)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=6), rng.normal(size=6)
    p = s.paired_interval(x, y)
    ref = st.ttest_rel(x, y)
    assert p.method == "paired t" and (p.low, p.high) == pytest.approx(tuple(ref.confidence_interval()))
    assert s.t_pvalue(p) == pytest.approx(ref.pvalue)
    assert s.welch_interval([1.0], [1.0, 2.0]).method == "none"


def test_diff_interval_pairs_only_when_the_seeds_match():
    a, b = [3.0, 4.0, 5.5], [3.0, 2.0, 1.0]  # b listed in seed order 2, 1, 0
    paired = s.diff_interval(a, b, [0, 1, 2], [2, 1, 0])
    assert paired.method == "paired t"
    assert paired.estimate == pytest.approx(np.mean(np.array(a) - np.array([1.0, 2.0, 3.0])))
    assert paired.se == pytest.approx(np.std([2.0, 2.0, 2.5], ddof=1) / math.sqrt(3))
    assert s.diff_interval(a, b, [0, 1, 2], [0, 1, 3]).method == "Welch t"
    assert s.diff_interval(a, b).method == "Welch t"
    assert not s.paired_by_seed([0, 0, 1], [0, 1, 1])
    constant = s.diff_interval([2.0, 3.0], [1.0, 2.0], [0, 1], [0, 1])  # identical paired differences
    assert (constant.low, constant.high) == (1.0, 1.0) and constant.resolved and s.t_pvalue(constant) == 0.0


def test_permutation_pvalues_exact_and_against_scipy():
    assert s.permutation_pvalue([4, 5, 6], [1, 2, 3], paired=False) == (pytest.approx(2 / 20), True)
    assert s.permutation_pvalue([4, 5, 6], [1, 2, 3], paired=True) == (pytest.approx(2 / 8), True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.8, 1, 5), rng.normal(0, 1, 4)
    ref = st.permutation_test((x, y), lambda a, b, axis: np.abs(np.mean(a, axis=axis) - np.mean(b, axis=axis)),
                              permutation_type="independent", n_resamples=np.inf, alternative="greater")
    assert s.permutation_pvalue(x, y, paired=False)[0] == pytest.approx(ref.pvalue)
    p, exact = s.permutation_pvalue(rng.normal(size=12), rng.normal(size=12), paired=False)  # C(24,12) > 50k
    assert not exact and 0 < p <= 1


def test_prob_better_ties_half_and_matches_mann_whitney():
    assert s.prob_better([1.0, 2.0], [2.0, 3.0]) == pytest.approx(0.5 / 4)
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 5).astype(float)
    assert s.prob_better(x, y) == pytest.approx(st.mannwhitneyu(x, y).statistic / 35)


def test_newcombe_interval_solves_its_equation():
    iv = s.prob_better_interval([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    z2, cc = 1.959963984540054**2, 0.5 / 9
    assert iv.estimate == 1.0 and iv.high == 1.0
    assert (1 - iv.low - cc) ** 2 == pytest.approx(z2 * s._newcombe_var(iv.low, 3, 3), abs=1e-9)
    assert iv.low < 0.5  # all 3 beat all 3: exact two-sided p 0.10, so 0.5 stays inside a 95% interval
    grid = np.linspace(1e-6, 1 - 1e-6, 200001)  # independent check: the set where the inequality holds
    inside = grid[np.maximum(np.abs(1 - grid) - cc, 0) ** 2 <= z2 * np.array([s._newcombe_var(t, 3, 3) for t in grid])]
    assert inside.min() == pytest.approx(iv.low, abs=1e-5)
    mid = s.prob_better_interval([1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 6.0])
    assert 0 < mid.low < mid.estimate < mid.high < 1


def test_two_level_bootstrap_reduces_to_each_level():
    rng = np.random.default_rng(2)
    seeds_only = np.repeat(rng.normal(10, 2, size=(5, 1)), 40, axis=1)  # no problem variation
    iv, t = s.two_level_interval(seeds_only), s.mean_interval(seeds_only[:, 0])
    assert iv.df == pytest.approx(4) and iv.se == pytest.approx(t.se, rel=0.05) and iv.estimate == pytest.approx(t.estimate)
    problems_only = np.repeat(rng.normal(0, 1, size=(1, 30)), 4, axis=0)  # every seed identical
    iv = s.two_level_interval(problems_only)
    assert iv.df == pytest.approx(29) and iv.se == pytest.approx(problems_only[0].std(ddof=1) / math.sqrt(30), rel=0.05)
    x, y = rng.normal(size=(4, 20)), rng.normal(size=(4, 20))
    paired = s.two_level_interval(x, y, paired=True)
    assert paired.estimate == pytest.approx((x - y).mean()) and paired.method == "two-level bootstrap"
    unpaired = s.two_level_interval(x, y, paired=False)
    assert unpaired.method == "two-level bootstrap (unpaired)" and unpaired.has_interval
    assert s.two_level_interval(x[:1]).method == "none"
    with pytest.raises(ValueError, match="same problems"):
        s.two_level_interval(x, y[:, :5], paired=False)


def test_rliable_aggregates_by_hand():
    assert s.iqm([np.arange(1.0, 9.0)]) == pytest.approx(4.5)  # middle half of 1..8: 3, 4, 5, 6
    assert s.iqm([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]) == pytest.approx(4.5)  # pooled over tasks
    x, y = [[3.0, 4.0], [1.0, 1.0]], [[1.0, 2.0], [1.0, 1.0]]
    assert s.average_prob_better(x, y) == pytest.approx((1.0 + 0.5) / 2)  # identical task counts 0.5
    iv = s.stratified_bootstrap(s.iqm, [np.arange(5.0), np.arange(5.0) + 10], reps=500)
    assert iv.low <= iv.estimate <= iv.high and iv.method == "stratified bootstrap"
    again = s.stratified_bootstrap(s.iqm, [np.arange(5.0), np.arange(5.0) + 10], reps=500)
    assert (again.low, again.high) == (iv.low, iv.high)  # seeded
    with pytest.raises(ValueError, match="same tasks"):
        s.average_prob_better(x, y[:1])


def test_holm_by_hand():
    adj = s.holm([0.01, 0.04, 0.03, float("nan")])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])
    assert s.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert len(s.holm([])) == 0


def test_power_matches_published_tables():
    # Cohen (1988): d = 1 needs 17 per group (two-sample, power 0.807); one-sample d = 1, n = 10: 0.803
    assert s.t_power(17, 1.0, 1.0, paired=False) == pytest.approx(0.807, abs=1e-3)
    assert s.seeds_for_power(1.0, 1.0, paired=False) == 17
    assert s.t_power(10, 1.0, 1.0) == pytest.approx(0.803, abs=1e-3) and s.seeds_for_power(1.0, 1.0) == 10
    assert s.t_power(9, 1.0, 1.0) < 0.8
    assert s.seeds_for_power(1.0, 0.0) == 2
    with pytest.raises(ValueError, match="effect"):
        s.seeds_for_power(0.0, 1.0)


def test_compare_one_cell():
    c = s.compare([3.0, 4.0, 5.0], [1.0, 2.0, 3.5], [0, 1, 2], [0, 1, 2])
    assert c.paired and c.diff.method == "paired t" and c.p_exact and c.p_perm == pytest.approx(0.25)
    assert c.p_t == pytest.approx(st.ttest_rel([3.0, 4.0, 5.0], [1.0, 2.0, 3.5]).pvalue)
    w = s.compare([3.0, 4.0, 5.0], [1.0, 2.0, 3.5])
    assert not w.paired and w.diff.method == "Welch t"
    one = s.compare([3.0], [1.0, 2.0])
    assert one.diff.estimate == pytest.approx(1.5) and not one.diff.has_interval and math.isnan(one.p_perm)
