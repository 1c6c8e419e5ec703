"""The r_max and K trends of virtual_reward_value: AUC per doubling, with a t-interval over seeds.

For each seed, least squares of the final AUC of the 12 cells on log2 r_max and log2 K; the trend is the mean
of the per-seed slopes, with a 95% t-interval over seeds (the cells share seeds, so the seed is the unit).
Family-wise: Bonferroni over the trends printed (2 factors x the benchmarks).

    harness report results/published/virtual_reward_value --reference ngrpo_r1.0_k1 --out reports
    python scripts/virtual_reward_trend.py reports/virtual_reward_value/auc_by_run_step.csv
"""

from __future__ import annotations

import argparse
import re

import numpy as np
import pandas as pd
from scipy import stats

CELL = re.compile(r"_r([0-9.]+)_k(\d+)$")


def slopes(final: pd.DataFrame) -> pd.DataFrame:
    """[seed, benchmark] -> slope per doubling of r_max and of K (least squares over the seed's cells)."""
    cells = final["variant"].str.extract(CELL).astype(float)
    final = final.assign(lr=np.log2(cells[0]), lk=np.log2(cells[1])).dropna(subset=["lr"])
    out = []
    for (seed, bench), g in final.groupby(["seed", "benchmark"]):
        x = np.column_stack([np.ones(len(g)), g["lr"], g["lk"]])
        b = np.linalg.lstsq(x, g["auc"].to_numpy(float), rcond=None)[0]
        out.append({"seed": seed, "benchmark": bench, "r_max": b[1], "K": b[2]})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="auc_by_run_step.csv of the virtual_reward_value report")
    ap.add_argument("--benchmarks", nargs="+", default=["medium", "hard"])
    args = ap.parse_args()
    df = pd.read_csv(args.csv)
    final = df[df["step"] == df["step"].max()]
    s = slopes(final[final["benchmark"].isin(args.benchmarks)])
    family = 2 * len(args.benchmarks)
    for bench, g in s.groupby("benchmark"):
        for factor in ("r_max", "K"):
            v = g[factor].to_numpy(float)
            se = v.std(ddof=1) / np.sqrt(len(v))
            half, fw = (stats.t.ppf(1 - a / 2, len(v) - 1) * se for a in (0.05, 0.05 / family))
            m = v.mean()
            print(f"{bench:8s} AUC per doubling of {factor:5s} {m:+.2f} [{m - half:+.2f}, {m + half:+.2f}] "
                  f"({len(v)} seeds; family-wise over {family}: [{m - fw:+.2f}, {m + fw:+.2f}]; "
                  f"per-seed slopes {', '.join(f'{x:+.2f}' for x in v)})")


if __name__ == "__main__":
    main()
