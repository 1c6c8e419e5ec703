"""Statistics for reports and planning: the only place intervals, tests and power are computed.

Pure numpy/scipy. Every formula is written out in docs/statistics.md:
- per-variant means: Student t-interval over seeds (one seed: none; two: flagged very wide);
- differences: paired t over seeds when both sides have the same seeds (same warm start, prompts and
  evaluation stream), else Welch t;
- an optional two-level bootstrap over seeds, then problems, with t critical values;
- probability of improvement P(a > b) (Mann-Whitney U / (m n)) with Newcombe's score interval;
- exact permutation p-values (sign flips when paired, relabelling when not; Monte Carlo past a size);
- across benchmarks: rliable's IQM and average probability of improvement with stratified bootstrap CIs;
- Holm's step-down correction; power of the t-test and the seeds it needs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import optimize, special, stats

CONFIDENCE = 0.95
NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """An estimate and its two-sided interval; low/high are NaN where there is none (one seed).

    n: seeds (a difference: pairs, or the smaller side); method: "t", "paired t", "Welch t",
    "two-level bootstrap", "Newcombe", "stratified bootstrap" or "none"; se and df: of the t-interval.
    """

    estimate: float
    low: float
    high: float
    n: int
    method: str
    se: float = NAN
    df: float = NAN

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def very_wide(self) -> bool:
        """Two seeds: the t critical value is 12.7 (one degree of freedom)."""
        return self.has_interval and self.n == 2

    @property
    def resolved(self) -> bool:
        """The interval excludes 0 (never true without an interval)."""
        return self.has_interval and (self.low > 0 or self.high < 0)


def _arr(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: values must be finite")
    return arr


def _t_interval(est: float, se: float, df: float, n: int, method: str, confidence: float) -> Interval:
    half = 0.0 if se == 0 else float(special.stdtrit(df, 0.5 + confidence / 2)) * se  # t quantile
    return Interval(float(est), float(est - half), float(est + half), int(n), method, float(se), float(df))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE, method: str = "t") -> Interval:
    """Mean over seeds with the t-interval mean ± t_{1-a/2, n-1} s / sqrt(n); values [n]. One value: none."""
    x = _arr(values, "mean_interval")
    if x.size == 1:
        return Interval(float(x[0]), NAN, NAN, 1, "none")
    return _t_interval(x.mean(), x.std(ddof=1) / math.sqrt(x.size), x.size - 1, x.size, method, confidence)


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean(a) - mean(b) with Welch's t-interval (Welch-Satterthwaite degrees of freedom); a [m], b [n]."""
    x, y = _arr(a, "welch_interval a"), _arr(b, "welch_interval b")
    diff, n = float(x.mean() - y.mean()), min(x.size, y.size)
    if n < 2:
        return Interval(diff, NAN, NAN, n, "none")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se2 = va + vb
    df = math.inf if se2 == 0 else se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return _t_interval(diff, math.sqrt(se2), df, n, "Welch t", confidence)


def paired_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean(a - b) with the t-interval of the paired differences; a, b [n], aligned by seed."""
    x, y = _arr(a, "paired_interval a"), _arr(b, "paired_interval b")
    if x.shape != y.shape:
        raise ValueError(f"paired_interval: a and b must pair up, got {x.size} and {y.size} values")
    return mean_interval(x - y, confidence, method="paired t")


def paired_by_seed(seeds_a: Sequence | None, seeds_b: Sequence | None) -> bool:
    """The design pairs a and b: both list the same seeds, each once."""
    if seeds_a is None or seeds_b is None:
        return False
    sa, sb = list(seeds_a), list(seeds_b)
    return len(set(sa)) == len(sa) and len(set(sb)) == len(sb) and set(sa) == set(sb)


def align(
    a: Sequence[float], seeds_a: Sequence, b: Sequence[float], seeds_b: Sequence
) -> tuple[np.ndarray, np.ndarray]:
    """a and b reordered so that position i holds the same seed on both sides (paired_by_seed must hold)."""
    ia, ib = {s: i for i, s in enumerate(seeds_a)}, {s: i for i, s in enumerate(seeds_b)}
    order = sorted(ia)
    return (
        np.asarray(a, dtype=float)[[ia[s] for s in order]],
        np.asarray(b, dtype=float)[[ib[s] for s in order]],
    )


def diff_interval(a: Sequence[float], b: Sequence[float], seeds_a: Sequence | None = None,
                  seeds_b: Sequence | None = None, confidence: float = CONFIDENCE) -> Interval:
    """mean(a) - mean(b): paired t when both sides have the same seeds, else Welch t."""
    if paired_by_seed(seeds_a, seeds_b):
        return paired_interval(*align(a, seeds_a, b, seeds_b), confidence=confidence)
    return welch_interval(a, b, confidence)


def t_pvalue(iv: Interval) -> float:
    """Two-sided p-value of the t-test behind an interval (estimate / se on df); NaN without one."""
    if not iv.has_interval:
        return NAN
    if iv.se == 0:
        return 1.0 if iv.estimate == 0 else 0.0
    return float(2 * special.stdtr(iv.df, -abs(iv.estimate) / iv.se))  # 2 P(T_df < -|t|)


# ------------------------------------------------------------------------------ permutation and P(better)
def permutation_pvalue(a: Sequence[float], b: Sequence[float], paired: bool, max_exact: int = 50_000,
                       n_mc: int = 20_000, seed: int = 0) -> tuple[float, bool]:
    """Two-sided permutation p-value of |mean difference| -> (p, exact).

    paired (a, b aligned [n]): every sign flip of the differences (2^n). Unpaired: every split of the
    pooled values into groups of |a| and |b| (C(m+n, m)). Exact up to max_exact arrangements, past
    that n_mc random ones with p = (1 + hits) / (1 + n_mc).
    """
    x, y = _arr(a, "permutation_pvalue a"), _arr(b, "permutation_pvalue b")
    rng = np.random.default_rng(seed)
    if paired:
        d = x - y
        exact = 2 ** d.size <= max_exact
        signs = (((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1) * 2 - 1 if exact
                 else rng.choice([-1.0, 1.0], size=(n_mc, d.size)))
        null, obs = np.abs(signs @ d) / d.size, abs(d.mean())
    else:
        pooled, m = np.concatenate([x, y]), x.size
        exact = math.comb(pooled.size, m) <= max_exact
        idx = (np.array(list(itertools.combinations(range(pooled.size), m))) if exact
               else np.argsort(rng.random((n_mc, pooled.size)), axis=1)[:, :m])
        sum_a = pooled[idx].sum(axis=1)
        null = np.abs(sum_a / m - (pooled.sum() - sum_a) / y.size)
        obs = abs(x.mean() - y.mean())
    hits = int(np.sum(null >= obs - 1e-9 * max(1.0, abs(obs))))
    return (hits / len(null), True) if exact else ((1 + hits) / (1 + n_mc), False)


def prob_better(a: Sequence[float], b: Sequence[float]) -> float:
    """P(a seed of a beats a seed of b), ties counting half: Mann-Whitney U / (m n)."""
    x, y = _arr(a, "prob_better a"), _arr(b, "prob_better b")
    return float(np.mean(x[:, None] > y[None, :]) + 0.5 * np.mean(x[:, None] == y[None, :]))


def _newcombe_var(theta: float, m: int, n: int) -> float:
    """Hanley-McNeil variance of U/(mn) with m-1 and n-1 replaced by N/2 - 1 (Newcombe 2006, method 5)."""
    k = (m + n) / 2 - 1
    return theta * (1 - theta) / (m * n) * (1 + k * ((1 - theta) / (2 - theta) + theta / (1 + theta)))


def prob_better_interval(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """P(better) with Newcombe's score interval, continuity-corrected: every theta with
    max(|theta_hat - theta| - 1/(2mn), 0)^2 <= z^2 V(theta). Inside [0, 1], never degenerate at 0 or 1."""
    x, y = _arr(a, "prob_better_interval a"), _arr(b, "prob_better_interval b")
    m, n, th = x.size, y.size, prob_better(x, y)
    z2, cc = special.ndtri(0.5 + confidence / 2) ** 2, 0.5 / (m * n)
    f = lambda t: max(abs(th - t) - cc, 0.0) ** 2 - z2 * _newcombe_var(t, m, n)  # noqa: E731
    low = optimize.brentq(f, 0.0, th - cc, xtol=1e-10) if th > cc else 0.0
    high = optimize.brentq(f, th + cc, 1.0, xtol=1e-10) if th < 1 - cc else 1.0
    return Interval(th, float(low), float(high), min(m, n), "Newcombe")


# ------------------------------------------------------------------------------ two-level bootstrap
def _draw_weights(rng: np.random.Generator, size: int, reps: int) -> np.ndarray:
    """[reps, size] weights of size-1 draws with replacement (each row sums to 1; size 1: all weight on it).

    Drawing size-1 of size makes the bootstrap variance of a mean s^2 / size exactly (not (size-1)/size of it).
    """
    if size == 1:
        return np.ones((reps, 1))
    return rng.multinomial(size - 1, np.full(size, 1.0 / size), size=reps) / (size - 1)


def two_level_interval(x: np.ndarray, y: np.ndarray | None = None, paired: bool = True,
                       confidence: float = CONFIDENCE, reps: int = 4000, seed: int = 0) -> Interval:
    """Mean of x [seeds, problems] (or mean(x) - mean(y), y [seeds_y, problems]) with a two-level bootstrap.

    Each replicate draws seeds, then problems (the same problems for every seed and both sides: the design
    crosses them). The interval is estimate ± t_df * sd(replicates), df by Welch-Satterthwaite from the
    seed-only and problem-only bootstrap variances. paired: y has x's seeds in x's order.
    """
    x = np.asarray(x, dtype=float)
    if paired and y is not None:
        x, y = x - np.asarray(y, dtype=float), None
    sides = [x] if y is None else [x, np.asarray(y, dtype=float)]
    if any(s.ndim != 2 or s.shape[1] != x.shape[1] for s in sides) or x.shape[1] == 0:
        raise ValueError("two_level_interval: matrices [seeds, problems] over the same problems")
    signs = [1.0, -1.0][: len(sides)]
    est = float(sum(sg * s.mean() for sg, s in zip(signs, sides)))
    n = min(s.shape[0] for s in sides)
    method = "two-level bootstrap" + ("" if y is None else " (unpaired)")
    if n < 2:
        return Interval(est, NAN, NAN, n, "none")
    rng, n_prob = np.random.default_rng(seed), x.shape[1]
    r = _draw_weights(rng, n_prob, reps)
    total, parts, dfs = np.zeros(reps), [], []
    prob_only = np.zeros(reps)
    for sg, s in zip(signs, sides):
        c = _draw_weights(rng, s.shape[0], reps)
        total += sg * np.sum((c @ s) * r, axis=1)
        parts.append(np.var(c @ s.mean(axis=1)))
        dfs.append(s.shape[0] - 1)
        prob_only += sg * (r @ s.mean(axis=0))
    parts.append(np.var(prob_only))
    dfs.append(n_prob - 1)
    var = float(np.var(total))
    denom = sum(p**2 / d for p, d in zip(parts, dfs) if d > 0)
    df = math.inf if denom == 0 else sum(parts) ** 2 / denom
    return _t_interval(est, math.sqrt(var), df, n, method, confidence)


# ------------------------------------------------------------------------------ across benchmarks (rliable)
def iqm(scores: Sequence[Sequence[float]]) -> float:
    """Interquartile mean over every run of every task: the 25% trimmed mean of all scores pooled."""
    return float(stats.trim_mean(np.concatenate([_arr(s, "iqm") for s in scores]), 0.25, axis=None))


def average_prob_better(x: Sequence[Sequence[float]], y: Sequence[Sequence[float]]) -> float:
    """rliable's probability of improvement: P(x_m > y_m) per task m (ties half), averaged over tasks."""
    if len(x) != len(y) or not len(x):
        raise ValueError("average_prob_better: x and y need the same tasks (at least one)")
    return float(np.mean([prob_better(a, b) for a, b in zip(x, y)]))


def stratified_bootstrap(func: Callable[..., float], *groups: Sequence[Sequence[float]],
                         confidence: float = CONFIDENCE, reps: int = 2000, seed: int = 0) -> Interval:
    """rliable's stratified percentile bootstrap: runs resampled within each task, each group independently.

    groups: one or more lists of per-task score arrays; func(*groups) -> float.
    """
    rng = np.random.default_rng(seed)
    arrays = [[_arr(t, "stratified_bootstrap") for t in g] for g in groups]
    draws = np.empty(reps)
    for i in range(reps):
        draws[i] = func(*[[t[rng.integers(0, t.size, t.size)] for t in g] for g in arrays])
    lo, hi = np.quantile(draws, [0.5 - confidence / 2, 0.5 + confidence / 2])
    n = min(t.size for g in arrays for t in g)
    return Interval(float(func(*arrays)), float(lo), float(hi), n, "stratified bootstrap")


# ------------------------------------------------------------------------------ families and power
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: max over j <= i of min(1, (m - j + 1) p_(j)); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def t_power(n: int, effect: float, sd: float, paired: bool = True, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test at n seeds per variant: paired (sd of differences, df n-1) or
    two-sample (sd within a variant, df 2n-2); noncentral t."""
    if n < 2:
        return NAN
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    df, nc = (
        (n - 1, effect / (sd / math.sqrt(n))) if paired else (2 * n - 2, effect / (sd * math.sqrt(2 / n)))
    )
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_for_power(effect: float, sd: float, paired: bool = True, power: float = 0.8, alpha: float = 0.05,
                    n_max: int = 100_000) -> int:
    """The smallest n >= 2 seeds per variant whose t-test power reaches `power` (n_max when none does)."""
    if effect <= 0 or sd < 0:
        raise ValueError("seeds_for_power: effect must be > 0 and sd >= 0")
    lo = 2
    if t_power(lo, effect, sd, paired, alpha) >= power:
        return lo
    hi = lo
    while t_power(hi, effect, sd, paired, alpha) < power:  # power grows with n: double, then bisect
        if hi >= n_max:
            return n_max
        lo, hi = hi, min(2 * hi, n_max)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if t_power(mid, effect, sd, paired, alpha) < power else (lo, mid)
    return hi


# ------------------------------------------------------------------------------ one comparison, as reported
@dataclass(frozen=True)
class Comparison:
    """a vs b over seeds: the difference's interval, P(better) with its interval, the permutation p-value
    (exact when `p_exact`) and the t-test p-value of the interval; paired: the design paired the seeds."""

    diff: Interval
    p_better: Interval
    p_perm: float
    p_exact: bool
    p_t: float
    paired: bool


def compare(
    a: Sequence[float],
    b: Sequence[float],
    seeds_a: Sequence | None = None,
    seeds_b: Sequence | None = None,
    confidence: float = CONFIDENCE,
    diff: Interval | None = None,
) -> Comparison:
    """Everything a comparison cell shows. diff: an interval computed elsewhere (the two-level bootstrap);
    by default diff_interval. With one seed on a side: no interval, P(better) or p-values (NaN)."""
    paired = paired_by_seed(seeds_a, seeds_b)
    x, y = align(a, seeds_a, b, seeds_b) if paired else (_arr(a, "compare a"), _arr(b, "compare b"))
    if diff is not None:
        iv = diff
    else:
        iv = paired_interval(x, y, confidence) if paired else welch_interval(x, y, confidence)
    if min(x.size, y.size) < 2:
        none = Interval(NAN, NAN, NAN, min(x.size, y.size), "none")
        return Comparison(Interval(iv.estimate, NAN, NAN, iv.n, "none"), none, NAN, False, NAN, paired)
    p_perm, exact = permutation_pvalue(x, y, paired=paired)
    return Comparison(iv, prob_better_interval(x, y, confidence), p_perm, exact, t_pvalue(iv), paired)
