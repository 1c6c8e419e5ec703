"""Pass@k and Pass@k AUC: the only place these are computed (intervals and tests: harness.core.stats).

Definitions (ALGORITHMS.md, "Evaluation"):
- unbiased pass@k (Chen et al. 2021, arXiv 2107.03374) in the stable product form
  ``1 if n - c < k else 1 - prod_{i=n-c+1..n} (1 - k/i)``, averaged over problems;
- the k grid 1, 2, 4, ..., 2^m <= n (only k <= n is ever reported);
- Pass@k AUC = trapezoid area under pass@k against log2 k, normalised to 0..100:
  ``100 * (p_0 + 2*(p_1 + ... + p_{m-1}) + p_m) / (2m)`` (and ``100 * p_0`` when m = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

ArrayLike = int | float | Sequence[int] | np.ndarray


def pass_at_k(n: ArrayLike, c: ArrayLike, k: ArrayLike) -> np.ndarray | float:
    """Unbiased pass@k for each (n, c, k), broadcast like numpy; scalars in give a float out.

    n: samples per problem, c: correct ones among them (0 <= c <= n), k: 1 <= k <= n.
    Vectorised: the product runs over i = n-c+1..n as a masked product over a [.., max c] grid,
    computed in log space (log1p) so it stays stable for n = 256 and beyond.
    """
    n_arr, c_arr, k_arr = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
    scalar = n_arr.ndim == 0
    n_arr, c_arr, k_arr = (np.atleast_1d(a).astype(np.int64) for a in (n_arr, c_arr, k_arr))
    if n_arr.size == 0:
        raise ValueError("pass_at_k: empty input (n, c and k must hold at least one value)")
    if np.any(c_arr < 0) or np.any(c_arr > n_arr):
        raise ValueError("pass_at_k: c must satisfy 0 <= c <= n")
    if np.any(k_arr < 1) or np.any(k_arr > n_arr):
        raise ValueError("pass_at_k: k must satisfy 1 <= k <= n (only k <= n can be estimated)")
    width = int(c_arr.max()) if c_arr.max() > 0 else 1
    j = np.arange(width)  # i = n - c + 1 + j for j < c
    i = (n_arr - c_arr + 1)[..., None] + j
    valid = j < c_arr[..., None]
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf only where n - c < k, overwritten below
        terms = np.where(valid, np.log1p(-np.minimum(k_arr[..., None] / np.where(valid, i, 1), 1.0)), 0.0)
        out = 1.0 - np.exp(terms.sum(axis=-1))
    out = np.where(n_arr - c_arr < k_arr, 1.0, out)
    return float(out[0]) if scalar else out


def k_grid(n: int, k_max: int | None = None) -> np.ndarray:
    """Powers of two 1, 2, 4, ... <= min(n, k_max)."""
    if n < 1:
        raise ValueError(f"k_grid: n must be >= 1, got {n}")
    top = n if k_max is None else min(n, k_max)
    return 2 ** np.arange(int(np.floor(np.log2(top))) + 1)


def pass_at_k_curve(
    n: ArrayLike, c: ArrayLike, ks: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean pass@k over problems for each k (default grid: powers of two <= min n).

    n, c: per-problem arrays [P]. Returns (ks [K], values [K]).
    """
    n_arr = np.atleast_1d(np.asarray(n, dtype=np.int64))
    c_arr = np.atleast_1d(np.asarray(c, dtype=np.int64))
    if n_arr.shape != c_arr.shape:
        raise ValueError(
            f"pass_at_k_curve: n and c must have the same shape, got {n_arr.shape} and {c_arr.shape}"
        )
    if n_arr.size == 0:
        raise ValueError("pass_at_k_curve: no problems")
    ks_arr = k_grid(int(n_arr.min())) if ks is None else np.asarray(ks, dtype=np.int64)
    values = pass_at_k(n_arr[None, :], c_arr[None, :], ks_arr[:, None]).mean(axis=1)
    return ks_arr, values


@dataclass(frozen=True)
class AucResult:
    """A Pass@k AUC (0..100) with the k grid it was computed over."""

    auc: float
    ks: tuple[int, ...]

    @property
    def grid_label(self) -> str:
        return f"k in [{self.ks[0]}, {self.ks[-1]}], log2-uniform"

    def __float__(self) -> float:
        return self.auc


def pass_at_k_auc(ks: Sequence[int], values: Sequence[float]) -> AucResult:
    """Pass@k AUC over a log2-uniform grid k = 1, 2, 4, ..., 2^m (ALGORITHMS.md formula)."""
    ks_arr = np.asarray(ks, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    if ks_arr.shape != vals.shape or ks_arr.ndim != 1:
        raise ValueError(
            f"pass_at_k_auc: ks and values must be 1-D of equal length, got {ks_arr.shape} and {vals.shape}"
        )
    if ks_arr.size == 0:
        raise ValueError("pass_at_k_auc: empty curve")
    expected = 2 ** np.arange(ks_arr.size)
    if not np.array_equal(ks_arr, expected):
        raise ValueError(f"pass_at_k_auc: ks must be 1, 2, 4, ..., 2^m; got {ks_arr.tolist()}")
    m = ks_arr.size - 1
    auc = 100.0 * vals[0] if m == 0 else 100.0 * (vals[0] + 2.0 * vals[1:-1].sum() + vals[-1]) / (2 * m)
    return AucResult(float(auc), tuple(int(k) for k in ks_arr))


def curves_from_samples(samples: pd.DataFrame, by: Sequence[str] = ("benchmark",)) -> pd.DataFrame:
    """Pass@k curves from raw per-sample rows (columns problem_id, correct, plus `by`).

    Returns one row per (by..., k) with columns [*by, k, pass_at_k, n_problems, n_samples].
    n is counted per problem; the grid stops at the smallest n in each curve.
    """
    by = list(by)
    missing = {"problem_id", "correct", *by} - set(samples.columns)
    if missing:
        raise ValueError(f"curves_from_samples: missing columns {sorted(missing)}")
    per_problem = (
        samples.groupby([*by, "problem_id"], sort=True, observed=True)["correct"]
        .agg(n="size", c="sum")
        .reset_index()
    )
    rows = []
    for key, grp in per_problem.groupby(by, sort=True, observed=True) if by else [((), per_problem)]:
        key = key if isinstance(key, tuple) else (key,)
        ks, vals = pass_at_k_curve(grp["n"].to_numpy(), grp["c"].to_numpy())
        for k, v in zip(ks, vals):
            rows.append((*key, int(k), float(v), len(grp), int(grp["n"].min())))
    return pd.DataFrame(rows, columns=[*by, "k", "pass_at_k", "n_problems", "n_samples"])


def aucs_from_curves(curves: pd.DataFrame, by: Sequence[str] = ("benchmark",)) -> pd.DataFrame:
    """One Pass@k AUC per curve: columns [*by, auc, k_max]."""
    rows = []
    for key, grp in curves.groupby(list(by), sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        grp = grp.sort_values("k")
        res = pass_at_k_auc(grp["k"].to_numpy(), grp["pass_at_k"].to_numpy())
        rows.append((*key, res.auc, res.ks[-1]))
    return pd.DataFrame(rows, columns=[*by, "auc", "k_max"])


def problem_aucs(samples: pd.DataFrame, by: Sequence[str] = ("step", "benchmark")) -> pd.DataFrame:
    """Per-problem Pass@k AUC contributions: columns [*by, problem_id, auc].

    auc = 100 * sum_k w_k pass@k(n_p, c_p, k) over the curve's k grid (1, 2, ..., 2^m <= its smallest n;
    trapezoid weights on log2 k), so its mean over the problems is the benchmark's Pass@k AUC. The
    two-level interval (harness.core.stats) resamples these.
    """
    per = (
        samples.groupby([*by, "problem_id"], sort=True, observed=True)["correct"]
        .agg(n="size", c="sum")
        .reset_index()
    )
    out = []
    for _, grp in per.groupby(list(by), sort=True, observed=True):
        ks = k_grid(int(grp["n"].min()))
        m = ks.size - 1
        w = np.ones(1) if m == 0 else np.r_[0.5, np.ones(m - 1), 0.5] / m
        vals = pass_at_k(grp["n"].to_numpy()[None, :], grp["c"].to_numpy()[None, :], ks[:, None])
        out.append(grp[[*by, "problem_id"]].assign(auc=100.0 * (w @ vals)))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=[*by, "problem_id", "auc"])


def eval_summary(samples: pd.DataFrame, k_max: int | None = None) -> dict[str, float]:
    """Flat `eval/<benchmark>/pass@<k>` and `eval/<benchmark>/auc` values for metrics.jsonl.

    Convenience copies for logs and dashboards; reports recompute everything from samples.
    """
    curves = curves_from_samples(samples)
    if k_max is not None:
        curves = curves[curves["k"] <= k_max]
    out: dict[str, float] = {}
    for bench, c in curves.groupby("benchmark", sort=True):
        for k, v in zip(c["k"], c["pass_at_k"]):
            out[f"eval/{bench}/pass@{int(k)}"] = float(v)
        out[f"eval/{bench}/auc"] = pass_at_k_auc(c["k"].to_numpy(), c["pass_at_k"].to_numpy()).auc
    return out


def objective_from_samples(
    samples: pd.DataFrame, benchmark: str, metric: str, step: int | None = None
) -> float:
    """One number from raw samples, as the report computes it: `auc` (Pass@k AUC over k = 1, 2, ..., <= n)
    or `pass@K` (unbiased, any K <= n) on `benchmark` at `step` (default: the last evaluated step).

    samples: rows with step, benchmark, problem_id, correct. Raises ValueError when nothing matches.
    """
    rows = samples[samples["benchmark"] == benchmark]
    if rows.empty:
        raise ValueError(f"no samples of benchmark {benchmark!r}")
    step = int(rows["step"].max()) if step is None else step
    rows = rows[rows["step"] == step]
    if rows.empty:
        raise ValueError(f"benchmark {benchmark!r} was not evaluated at step {step}")
    per_problem = rows.groupby("problem_id", observed=True)["correct"].agg(n="size", c="sum")
    n, c = per_problem["n"].to_numpy(), per_problem["c"].to_numpy()
    if metric == "auc":
        ks, vals = pass_at_k_curve(n, c)
        return pass_at_k_auc(ks, vals).auc
    if metric.startswith("pass@") and metric[5:].isdigit():
        k = int(metric[5:])
        if k > n.min():
            raise ValueError(f"{metric}: k must be <= the samples per problem ({int(n.min())})")
        return float(np.mean(pass_at_k(n, c, k)))
    raise ValueError(f"unknown metric {metric!r}: use auc or pass@K")
