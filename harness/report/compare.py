"""The report's statistics, row by row: which interval a table shows and what counts as resolved.

Every number comes from harness.core.stats (docs/statistics.md). Two intervals exist:
- "seeds" (default): t over seeds, paired by seed where both sides have the same seeds, else Welch; the
  benchmark's problems are fixed (the claim is about this benchmark);
- "seeds+problems": the two-level bootstrap over seeds, then problems (the claim is about problems like
  these), from each run's per-problem AUC contributions (the benchmark AUC is their mean).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from harness.core.stats import (
    CONFIDENCE,
    Interval,
    average_prob_better,
    compare,
    diff_interval,
    holm,
    iqm,
    mean_interval,
    paired_by_seed,
    stratified_bootstrap,
    t_pvalue,
    two_level_interval,
)
from harness.core.errors import UserError

INTERVALS = ("seeds", "seeds+problems")
ALPHA = 1 - CONFIDENCE
INTERVAL_WORDS = {
    "seeds": f"{int(CONFIDENCE * 100)}% t-interval over seeds (paired by seed where both sides share seeds, "
             "else Welch); the benchmark's problems held fixed",
    "seeds+problems": f"{int(CONFIDENCE * 100)}% two-level bootstrap over seeds, then problems (t critical "
                      "value, Satterthwaite df); the benchmark's finite size counts",
}
COMPARISON_COLUMNS = [
    "variant",
    "benchmark",
    "reference",
    "diff",
    "ci_low",
    "ci_high",
    "p_improve",
    "n_seeds",
    "n_ref_seeds",
    "resolved",
    "interval",
    "p_improve_low",
    "p_improve_high",
    "p_perm",
    "fw_low",
    "fw_high",
    "resolved_fw",
    "family",
]


def signed(x: float, digits: int = 2) -> str:
    """+1.23 / -1.23, and +0.00 for anything that rounds to zero (never "-0.00")."""
    return f"{(x if round(x, digits) != 0 else 0.0):+.{digits}f}"


def check_interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise UserError(f"--interval {interval!r}: use one of {', '.join(INTERVALS)}")
    return interval


def _matrix(problems: pd.DataFrame, variant: str, bench: str, seeds: Sequence) -> np.ndarray:
    """[len(seeds), problems] per-problem AUCs of one variant on one benchmark, rows in `seeds` order."""
    d = problems[(problems["variant"] == variant) & (problems["benchmark"] == bench)]
    wide = d.pivot_table(index="seed", columns="problem_id", values="auc", aggfunc="mean")
    return wide.reindex(index=list(seeds)).to_numpy(dtype=float)


def _common(mats: Sequence[np.ndarray]) -> list[np.ndarray]:
    keep = np.all([~np.isnan(m).any(axis=0) for m in mats], axis=0)
    return [m[:, keep] for m in mats]


def mean_of(vals: np.ndarray, seeds: Sequence, problems: pd.DataFrame | None = None, variant: str = "",
            bench: str = "") -> Interval:
    """A variant's mean over seeds with the interval the report shows (problems given: two-level)."""
    if problems is None or len(vals) < 2:
        return mean_interval(vals, CONFIDENCE)
    (m,) = _common([_matrix(problems, variant, bench, seeds)])
    return two_level_interval(m, confidence=CONFIDENCE)


def diff_of(
    a: np.ndarray,
    seeds_a: Sequence,
    b: np.ndarray,
    seeds_b: Sequence,
    problems: pd.DataFrame | None = None,
    variant: str = "",
    reference: str = "",
    bench: str = "",
    confidence: float = CONFIDENCE,
) -> Interval:
    """mean(a) - mean(b) with the report's interval: seeds (paired t / Welch) or seeds+problems."""
    if problems is None or min(len(a), len(b)) < 2:
        return diff_interval(a, b, seeds_a, seeds_b, confidence)
    paired = paired_by_seed(seeds_a, seeds_b)
    sa = sorted(seeds_a) if paired else list(seeds_a)
    sb = sa if paired else list(seeds_b)
    ma, mb = _common([_matrix(problems, variant, bench, sa), _matrix(problems, reference, bench, sb)])
    return two_level_interval(ma, mb, paired=paired, confidence=confidence)


def comparison_row(a: np.ndarray, seeds_a: Sequence, b: np.ndarray, seeds_b: Sequence,
                   problems: pd.DataFrame | None = None, variant: str = "", reference: str = "",
                   bench: str = "") -> dict:
    """The statistics of one comparison cell: diff, ci_low, ci_high, p_improve (+ interval), p_perm,
    resolved (the interval excludes 0) and interval (its method, 'none' with one seed on a side)."""
    iv = diff_of(a, seeds_a, b, seeds_b, problems, variant, reference, bench)
    c = compare(a, b, seeds_a, seeds_b, CONFIDENCE, diff=iv)
    return {
        "diff": c.diff.estimate,
        "ci_low": c.diff.low,
        "ci_high": c.diff.high,
        "p_improve": c.p_better.estimate,
        "resolved": c.diff.resolved,
        "interval": c.diff.method,
        "p_improve_low": c.p_better.low,
        "p_improve_high": c.p_better.high,
        "p_perm": c.p_perm,
    }


def best_flags(aucs: pd.DataFrame, table: pd.DataFrame, problems: pd.DataFrame | None = None) -> pd.Series:
    """`best` per row of table (variant, benchmark, auc_mean): the highest mean of its benchmark, and every
    row whose difference to it is not resolved after Holm's correction over that benchmark's rows."""
    best = pd.Series(False, index=table.index)
    for bench, grp in table.groupby("benchmark", sort=False):
        top = grp["auc_mean"].idxmax()
        tv = grp.at[top, "variant"]
        ref = aucs[(aucs["variant"] == tv) & (aucs["benchmark"] == bench)]
        others = [i for i in grp.index if i != top]
        pvals = []
        for i in others:
            o = aucs[(aucs["variant"] == grp.at[i, "variant"]) & (aucs["benchmark"] == bench)]
            iv = diff_of(ref["auc"].to_numpy(), ref["seed"].tolist(), o["auc"].to_numpy(), o["seed"].tolist(),
                         problems, tv, grp.at[i, "variant"], bench)
            pvals.append(t_pvalue(iv) if iv.estimate > 0 else 1.0)
        adj = holm(pvals)
        best[top] = True
        for i, p in zip(others, adj):
            best[i] = bool(np.isnan(p) or p >= ALPHA)
    return best


def summary_sentences(comp: pd.DataFrame | None, reference: str | None, label: str) -> list[str]:
    """One sentence per resolved difference ('ngrpo beats grpo on math500 by +2.10 [+0.40, +3.80]'), and a last
    one that counts the unresolved ones and the resolutions chance alone would give."""
    if comp is None or not len(comp):
        return []

    res = comp[comp["resolved"].astype(bool)]
    tested = int(comp["ci_low"].notna().sum())

    def fw(r) -> str:
        if tested < 2:
            return ""
        word = "resolved" if bool(r.resolved_fw) else "not resolved"
        return f" (family-wise over {tested}: [{signed(r.fw_low)}, {signed(r.fw_high)}] {word})"

    out = [
        f"{r.variant} {'above' if r.diff > 0 else 'below'} {reference} on {r.benchmark} by {signed(r.diff)} "
        f"[{signed(r.ci_low)}, {signed(r.ci_high)}]{fw(r)}"
        for r in res.itertuples()
    ]
    n_fw = int(comp["resolved_fw"].astype(bool).sum()) if "resolved_fw" in comp else 0
    tail = (
        f"{len(res)} of {tested} {label} resolved; at {int(ALPHA * 100)}% each, about {ALPHA * tested:.1f} "
        f"would be resolved by chance alone; {n_fw} resolved family-wise (Bonferroni over the {tested})"
    )
    untested = len(comp) - tested
    if untested:
        tail += f"; {untested} without an interval (one seed)"
    return out + [tail]



def across_benchmarks(aucs: pd.DataFrame, variants: Sequence[str], reference: str | None,
                      reps: int = 1000) -> pd.DataFrame | None:
    """rliable's aggregates over benchmarks, per variant: the IQM of every (seed, benchmark) AUC and the
    probability of improvement over `reference` averaged over benchmarks, each with a stratified percentile
    bootstrap interval (seeds resampled within each benchmark). None with fewer than 2 benchmarks."""
    benches = sorted(set(aucs["benchmark"]))
    if len(benches) < 2:
        return None
    by = {(v, b): g["auc"].to_numpy(dtype=float) for (v, b), g in aucs.groupby(["variant", "benchmark"])}
    rows = []
    for v in variants:
        tasks = [by[(v, b)] for b in benches if (v, b) in by]
        if len(tasks) < len(benches):
            continue
        q = stratified_bootstrap(iqm, tasks, reps=reps)
        p_lo = p_est = p_hi = np.nan
        if reference is not None and v != reference and all((reference, b) in by for b in benches):
            ref = [by[(reference, b)] for b in benches]
            p = stratified_bootstrap(average_prob_better, tasks, ref, reps=reps)
            p_est, p_lo, p_hi = p.estimate, p.low, p.high
        rows.append(
            {
                "variant": v,
                "iqm": q.estimate,
                "iqm_low": q.low,
                "iqm_high": q.high,
                "p_improve": p_est,
                "p_improve_low": p_lo,
                "p_improve_high": p_hi,
                "n_benchmarks": len(benches),
                "min_seeds": min(t.size for t in tasks),
            }
        )
    return pd.DataFrame(rows) if rows else None
