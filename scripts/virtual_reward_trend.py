"""Trends over a grid of variants: AUC per doubling of each factor, with a t-interval over seeds.

The factors are read from the variant names by --pattern's named groups (default: virtual_reward_value's
r_max and K). For each seed, least squares of the final AUC of the cells on log2 of every factor; the trend is
the mean of the per-seed slopes, with a 95% t-interval over seeds (the cells share seeds, so the seed is the
unit). Family-wise: Bonferroni over the trends printed (factors x benchmarks).

    harness report results/published/virtual_reward_value --reference ngrpo_r1.0_k1 --out reports
    python scripts/virtual_reward_trend.py reports/virtual_reward_value/auc_by_run_step.csv
    harness report results/published/clip_grid_sweep_ngrpo --reference ngrpo__eps_neg0.16_eps_pos0.16 --out reports
    python scripts/virtual_reward_trend.py reports/clip_grid_sweep_ngrpo/auc_by_run_step.csv --benchmarks hard \
        --pattern '__eps_neg(?P<eps_neg>[0-9.]+)_eps_pos(?P<eps_pos>[0-9.]+)$'
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import pandas as pd
from scipy import stats

CELL = r"_r(?P<r_max>[0-9.]+)_k(?P<K>\d+)$"


def slopes(final: pd.DataFrame, pattern: str = CELL) -> pd.DataFrame:
    """[seed, benchmark] -> slope per doubling of each factor of `pattern` (least squares over the seed's cells)."""
    cells = final["variant"].str.extract(pattern).astype(float)
    factors = list(cells.columns)
    final = pd.concat([final, np.log2(cells)], axis=1).dropna(subset=factors)
    out = []
    for (seed, bench), g in final.groupby(["seed", "benchmark"]):
        x = np.column_stack([np.ones(len(g)), *(g[f] for f in factors)])
        b = np.linalg.lstsq(x, g["auc"].to_numpy(float), rcond=None)[0]
        out.append({"seed": seed, "benchmark": bench, **dict(zip(factors, b[1:]))})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="auc_by_run_step.csv of the virtual_reward_value report")
    ap.add_argument("--benchmarks", nargs="+", default=["medium", "hard"])
    ap.add_argument("--pattern", default=CELL, help="regex with one named group per factor (default: %(default)s)")
    args = ap.parse_args()
    df = pd.read_csv(args.csv)
    final = df[df["step"] == df["step"].max()]
    s = slopes(final[final["benchmark"].isin(args.benchmarks)], args.pattern)
    factors = list(re.compile(args.pattern).groupindex)
    family = len(factors) * len(args.benchmarks)
    for bench, g in s.groupby("benchmark"):
        for factor in factors:
            v = g[factor].to_numpy(float)
            se = v.std(ddof=1) / np.sqrt(len(v))
            half, fw = (stats.t.ppf(1 - a / 2, len(v) - 1) * se for a in (0.05, 0.05 / family))
            m = v.mean()
            print(f"{bench:8s} AUC per doubling of {factor:5s} {m:+.2f} [{m - half:+.2f}, {m + half:+.2f}] "
                  f"({len(v)} seeds; family-wise over {family}: [{m - fw:+.2f}, {m + fw:+.2f}]; "
                  f"per-seed slopes {', '.join(f'{x:+.2f}' for x in v)})")


if __name__ == "__main__":
    main()
