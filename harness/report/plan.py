"""`harness plan EXPERIMENT --effect D`: how many seeds resolve an AUC difference of D, from a pilot's spread.

Per benchmark, at each run's final evaluated step, the pilot's spread is
- paired (variants that ran the same seeds share warm start, prompts and evaluation stream): the pooled
  sd of the per-seed differences over every pair of variants with >= 2 common seeds;
- otherwise unpaired: the pooled sd within variants (each with >= 2 seeds).
Then the smallest n per variant whose two-sided t-test at 5% has 80% power (harness.core.stats.t_power,
noncentral t; docs/statistics.md), both at the pilot's sd and at its 80% upper confidence bound.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import UserError

PLAN_COLUMNS = ["benchmark", "design", "sd", "sd_df", "pilot_seeds", "power_now", "seeds", "seeds_sd_upper"]


def _pooled(variances: list[tuple[float, int]]) -> tuple[float, int]:
    """(pooled sd, its degrees of freedom) from (variance, df) pairs."""
    df = sum(d for _, d in variances)
    return math.sqrt(sum(v * d for v, d in variances) / df), df


def benchmark_spread(aucs: pd.DataFrame) -> tuple[str, float, int, int]:
    """One benchmark's AUCs [variant, seed, auc] -> (design, sd, df of the sd, seeds per variant in the pilot)."""
    by = {v: g.set_index("seed")["auc"] for v, g in aucs.groupby("variant")}
    pairs = []
    for a, b in itertools.combinations(sorted(by), 2):
        common = sorted(set(by[a].index) & set(by[b].index))
        if len(common) >= 2:
            d = by[a].loc[common].to_numpy(float) - by[b].loc[common].to_numpy(float)
            pairs.append((float(np.var(d, ddof=1)), len(common) - 1))
    pilot = max(len(s) for s in by.values())
    if pairs:
        return ("paired", *_pooled(pairs), pilot)
    within = [(float(np.var(s.to_numpy(float), ddof=1)), len(s) - 1) for s in by.values() if len(s) >= 2]
    if not within:
        raise UserError("the pilot has one seed per variant: its spread over seeds is unknown "
                        "(run at least 2 seeds of a variant, e.g. seeds: [0, 1, 2])")
    return ("unpaired", *_pooled(within), pilot)


def plan_seeds(aucs: pd.DataFrame, effect: float, power: float = 0.8, alpha: float = 0.05,
               benchmarks: list[str] | None = None) -> pd.DataFrame:
    """PLAN_COLUMNS per benchmark from the pilot's AUCs (one row per run: variant, seed, benchmark, auc)."""
    from scipy import stats

    from harness.core.stats import seeds_for_power, t_power

    if not effect > 0:
        raise UserError(
            f"--effect {effect}: must be > 0 (an AUC difference in points on the 0-100 scale, e.g. 2)"
        )
    rows = []
    for bench in benchmarks or sorted(set(aucs["benchmark"])):
        design, sd, df, pilot = benchmark_spread(aucs[aucs["benchmark"] == bench])
        paired = design == "paired"
        upper = sd * math.sqrt(df / stats.chi2.ppf(0.2, df))  # P(sigma <= upper) = 80%
        rows.append({"benchmark": bench, "design": design, "sd": sd, "sd_df": df, "pilot_seeds": pilot,
                     "power_now": t_power(pilot, effect, sd, paired, alpha) if pilot >= 2 else float("nan"),
                     "seeds": seeds_for_power(effect, sd, paired, power, alpha),
                     "seeds_sd_upper": seeds_for_power(effect, upper, paired, power, alpha)})
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _experiment_name(experiment: str) -> str:
    path = Path(experiment)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"{experiment}: no such experiment file")
        from harness.config.experiment import read_yaml

        raw = read_yaml(path)
        if not isinstance(raw, dict) or not raw.get("name"):
            raise UserError(f"{experiment}: the experiment file has no 'name'")
        return str(raw["name"])
    return experiment


def pilot_aucs(experiment: str, results: Path) -> tuple[str, pd.DataFrame, list[str]]:
    """(name, final-step AUCs of the pilot's finished runs, benchmarks in file order) from the results folder."""
    from harness.report.load import load_results, select_step

    name = _experiment_name(experiment)
    root = Path(results)
    folder = root / name if (root / name).is_dir() else root
    experiments, _ = load_results(folder)
    match = [e for e in experiments if e.name == name]
    if not match or match[0].aucs.empty:
        found = ", ".join(e.name for e in experiments if len(e.aucs)) or "none"
        raise UserError(
            f"{name}: no finished run of this experiment under {root} (experiments with results: {found})"
        )
    _, aucs, _ = select_step(match[0], None)
    return name, aucs, match[0].benchmarks


def format_plan(name: str, effect: float, table: pd.DataFrame, power: float = 0.8) -> str:
    """The printed plan: one line per benchmark, then how to read it."""
    lines = [f"{name}: seeds per variant to resolve an AUC difference of {effect:g} with {power:.0%} power "
             "(two-sided t-test at 5%, the report's interval)"]
    w = max(len("benchmark"), *(len(b) for b in table["benchmark"]))
    lines.append(
        f"  {'benchmark':<{w}}  design    sd (df)      pilot  power now  seeds  seeds (sd at 80% upper bound)"
    )
    for r in table.itertuples():
        lines.append(f"  {r.benchmark:<{w}}  {r.design:<8}  {r.sd:5.2f} ({r.sd_df:>2})  {r.pilot_seeds:>5}  "
                     f"{r.power_now:>9.0%}  {r.seeds:>5}  {r.seeds_sd_upper:>5}")
    lines.append(
        "  sd: of the per-seed differences between variants (paired) or within a variant (unpaired), "
        "pooled over the pilot; the last column guards against a pilot that drew a small sd."
    )
    return "\n".join(lines)
