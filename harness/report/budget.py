"""The report against compute (issue 20): AUC vs rollouts and tokens, and the comparison at a common budget.

    spend(data)                  run_id, step -> cumulative rollouts and tokens at each evaluated step
    aucs_with_spend(data)        the AUC rows with the spend at their step
    at_common_budget(rows, unit) each run's evaluation at the largest spend every run reached

A step's spend is metrics.jsonl's budget/rollouts and budget/tokens (every sampling round included,
harness.backends.budget). Runs made before those were logged have neither; their rollouts follow from
groups/sample_rounds x B x G (each round draws B prompts x G responses), their tokens are unknown.

The common budget is the smallest final spend over the experiment's runs: the largest spend every run
reached. Each run contributes its evaluation with the largest spend at most that budget plus the run's
largest single-step spend (a budgeted run stops on the step that spends its budget, so its last
evaluation overshoots by less than one step); the table records each run's actual spend.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNITS = {"rollouts": "budget/rollouts", "tokens": "budget/tokens"}
STEP_KEYS = {"rollouts": "budget/step_rollouts", "tokens": "budget/step_tokens"}


def _run_spend(train: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """step, rollouts, tokens, step_rollouts, step_tokens for one run's train records (step 0: nothing spent)."""
    t = train.sort_values("step")
    out = pd.DataFrame({"step": t["step"].astype(int).to_numpy()})
    if "budget/rollouts" in t.columns and t["budget/rollouts"].notna().all():
        for unit, key in UNITS.items():
            out[unit] = t[key].to_numpy(dtype=float)
            out[f"step_{unit}"] = t[STEP_KEYS[unit]].to_numpy(dtype=float)
    else:  # older runs: rollouts from the sampling rounds, tokens unknown
        tr = spec.get("train") or {}
        per_round = float(tr.get("prompts_per_step", np.nan)) * float(tr.get("group_size", np.nan))
        rounds = t["groups/sample_rounds"].to_numpy(dtype=float) if "groups/sample_rounds" in t else np.nan
        out["step_rollouts"] = rounds * per_round
        out["rollouts"] = np.cumsum(out["step_rollouts"].to_numpy())
        out["tokens"] = out["step_tokens"] = np.nan
    zero = pd.DataFrame({"step": [0], "rollouts": [0.0], "tokens": [0.0 if out["tokens"].notna().all() else np.nan],
                         "step_rollouts": [0.0], "step_tokens": [0.0]})
    return pd.concat([zero, out], ignore_index=True)


def spend(data) -> pd.DataFrame:
    """run_id, step, rollouts, tokens, max_step_rollouts, max_step_tokens for every reported run's steps."""
    frames = []
    if data.train.empty:
        return pd.DataFrame(columns=["run_id", "step", "rollouts", "tokens", "max_step_rollouts", "max_step_tokens"])
    for rid, grp in data.train.groupby("run_id"):
        s = _run_spend(grp, data.specs.get(rid, {}))
        s["max_step_rollouts"] = s["step_rollouts"].max()
        s["max_step_tokens"] = s["step_tokens"].max()
        frames.append(s.drop(columns=["step_rollouts", "step_tokens"]).assign(run_id=rid))
    return pd.concat(frames, ignore_index=True)


def aucs_with_spend(data) -> pd.DataFrame:
    """data.aucs with the rollouts and tokens spent by each row's step (NaN where unknown)."""
    return data.aucs.merge(spend(data), on=["run_id", "step"], how="left")


def at_common_budget(rows: pd.DataFrame, unit: str) -> tuple[pd.DataFrame, float] | None:
    """(each run's evaluation at the common budget, the budget) for `unit`; None when a run lacks the unit."""
    if rows.empty or rows[unit].isna().any():
        return None
    final = rows.groupby("run_id")[unit].max()
    budget = float(final.min())
    slack = rows[f"max_step_{unit}"]
    ok = rows[rows[unit] <= budget + slack]
    pick = ok.loc[ok.groupby(["run_id", "benchmark"])[unit].idxmax()]
    return pick.reset_index(drop=True), budget


FAR_BELOW = 0.9  # a run whose evaluation at the budget spent less than this fraction of it is flagged


def write_at_budget(out, rows: pd.DataFrame, variants, benchmarks, reference: str | None, experiment: str,
                    code: str = "") -> tuple[dict, list[str], dict]:
    """comparison_at_budget.{md,csv} (and auc_at_budget.csv) at the common rollout budget, with the
    report's intervals (t over seeds; differences paired by seed, else Welch); -> (paths, notes,
    {budget, caption, table, comparison} for index.html, empty when skipped)."""
    from harness.report.tables import (auc_table, auc_wide, comparison_table, comparison_wide, grid_label,
                                       to_markdown)

    got = at_common_budget(rows, "rollouts")
    if got is None:
        return {}, ["comparison at a common budget skipped: a run's rollouts are unknown"], {}
    pick, budget = got
    notes = []
    frac = pick.groupby("run_id")["rollouts"].max() / budget
    spend = (f"each run's evaluation with the largest spend <= the budget plus one step's spend; runs spent "
             f"{frac.min():.0%}-{frac.max():.0%} of it")
    if frac.min() < FAR_BELOW:
        notes.append(f"comparison at budget: some runs were last evaluated at {frac.min():.0%} of the common budget "
                     f"(evaluations are sparse in spend): run the experiment with train.budget for evaluations at "
                     f"equal spend")
    table = auc_table(pick, variants, benchmarks)
    paths = {"budget_auc_csv": out / "auc_at_budget.csv", "budget_md": out / "comparison_at_budget.md"}
    table.assign(budget_rollouts=budget).to_csv(paths["budget_auc_csv"], index=False, float_format="%.4f")
    text = (f"### At a common budget — {experiment}\n\nPass@k AUC at {budget:,.0f} rollouts (the largest spend every "
            f"run reached; {spend}): mean [95% t-interval over seeds]. {grid_label(table)}. {code}".rstrip()
            + "\n\n" + to_markdown(auc_wide(table, benchmarks=benchmarks)))
    comp = None
    if reference is not None and reference in set(pick["variant"]):
        comp = comparison_table(pick, reference, variants, benchmarks)
        paths["budget_csv"] = out / "comparison_at_budget.csv"
        comp.assign(budget_rollouts=budget).to_csv(paths["budget_csv"], index=False, float_format="%.4f")
        text += (f"\n\nDifference vs {reference} at {budget:,.0f} rollouts: mean [95% interval, paired by seed, "
                 f"else Welch]; resolved = the interval excludes 0.\n\n" + to_markdown(comparison_wide(comp, benchmarks)))
    paths["budget_md"].write_text(text + "\n")
    caption = f"{budget:,.0f} rollouts, the largest spend every run reached; {spend}"
    return paths, notes, {"budget": budget, "caption": caption, "table": table, "comparison": comp}
