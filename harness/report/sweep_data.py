"""A sweep's results folder, loaded for the report: trials (from trials.json, Optuna's view), each run's
objective recomputed from its samples (harness.core.metrics, as the sweep computed it), seed t-intervals, Optuna's
parameter importances, and the best region (trials not resolved below the best one after Holm's correction
over every trial compared with it; harness.core.stats).

    results/<experiment>_sweep_<variant>/
        sweep.json      objective, params, sampler, storage URL (written by `harness sweep`)
        trials.json     every trial: state, params, value, user attrs (run ids, failure reasons)
        <run_id>/       ordinary run folders
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core import results
from harness.core.stats import diff_interval, holm, mean_interval, t_pvalue
from harness.core.metrics import objective_from_samples
from harness.report.tables import CONFIDENCE

SWEEP_FILE, TRIALS_FILE = "sweep.json", "trials.json"


@dataclass
class SweepData:
    folder: Path
    meta: dict  # sweep.json
    trials: pd.DataFrame  # one row per trial: number, state, value, <param columns>, mean, low, high, n, note
    runs: pd.DataFrame  # one row per run of a complete trial: number, run_id, seed, objective
    params: list[str]
    log_scale: dict[str, bool]
    defaults: dict[str, object] = field(default_factory=dict)  # the base variant's value of each swept knob
    importances: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def objective(self) -> str:
        o = self.meta["objective"]
        return f"{o['metric']}({o['benchmark']})"

    @property
    def maximize(self) -> bool:
        return self.meta["objective"]["direction"] == "maximize"

    @property
    def complete(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == "COMPLETE"].dropna(subset=["mean"])

    @property
    def best(self) -> pd.Series | None:
        c = self.complete
        if c.empty:
            return None
        return c.loc[c["mean"].idxmax() if self.maximize else c["mean"].idxmin()]


def is_sweep_folder(path: Path) -> bool:
    return (Path(path) / SWEEP_FILE).is_file() and (Path(path) / TRIALS_FILE).is_file()


def clip_fraction(run_dir: Path) -> float:
    """Mean over a run's train steps of the fraction of tokens the clip bounds cut (actor/clipfrac_low +
    actor/clipfrac_high); NaN when its loss logs no clip fraction. Says whether eps_pos / eps_neg bound at all."""
    fr = [r["actor/clipfrac_low"] + r["actor/clipfrac_high"] for r in results.read_metrics_records(run_dir)
          if r.get("kind") == "train" and "actor/clipfrac_low" in r and "actor/clipfrac_high" in r]
    return float(np.mean(fr)) if fr else float("nan")


def load_sweep_data(folder: Path) -> SweepData:
    folder = Path(folder)
    meta = json.loads((folder / SWEEP_FILE).read_text())
    raw = json.loads((folder / TRIALS_FILE).read_text())
    params = list(meta["params"])
    obj = meta["objective"]
    rows, runs, notes = [], [], []
    for t in raw:
        ua = t.get("user_attrs", {})
        if ua.get("fail_kind") == "surplus":
            continue  # never ran (two workers asked at once)
        row = {
            "number": t["number"],
            "state": t["state"],
            "value": t["value"],
            **{p: t["params"].get(p) for p in params},
            "fail_kind": ua.get("fail_kind") if t["state"] == "FAIL" else None,
            "reason": ua.get("fail_reason") or ua.get("prune_reason"),
            "run_ids": ua.get("run_ids", []),
        }
        vals, clips = [], []
        if t["state"] == "COMPLETE":
            for rid in row["run_ids"]:
                rd = folder / rid
                try:
                    spec = results.load_run(rd, with_samples=False).spec
                    v = objective_from_samples(results.read_samples(rd), obj["benchmark"], obj["metric"])
                except (ValueError, results.ResultsError, OSError) as e:
                    notes.append(f"trial {t['number']}: run {rid} left out ({e})")
                    continue
                vals.append(v)
                clips.append(clip_fraction(rd))
                runs.append({"number": t["number"], "run_id": rid, "seed": spec.get("seed"), "objective": v})
        if vals:
            ci = mean_interval(vals, CONFIDENCE)
            row.update(mean=ci.estimate, low=ci.low, high=ci.high, n=ci.n, clip_frac=float(np.nanmean(clips))
                       if not np.isnan(clips).all() else np.nan)
            if t["value"] is not None and abs(ci.estimate - t["value"]) > 1e-6:
                notes.append(
                    f"trial {t['number']}: recomputed objective {ci.estimate:.4f} differs from the study's {t['value']:.4f}"
                )
        rows.append(row)
    trials = pd.DataFrame(rows)
    for c in ("mean", "low", "high", "n", "clip_frac"):
        if c not in trials:
            trials[c] = np.nan
    log_scale = {p: bool(meta["params"][p].get("log", False)) for p in params}
    data = SweepData(
        folder,
        meta,
        trials,
        pd.DataFrame(runs, columns=["number", "run_id", "seed", "objective"]),
        params,
        log_scale,
        defaults=_defaults(meta, folder, runs),
        notes=notes,
    )
    data.importances = _importances(data)
    mark_best_region(data)
    return data


def _defaults(meta: dict, folder: Path, runs: list[dict]) -> dict:
    """The swept knobs' values without the sweep (sweep.json `defaults`, else the preset's knobs)."""
    if "defaults" in meta:
        return meta["defaults"]
    if not runs:
        return {}
    import algorithms

    spec = results.load_run(folder / runs[0]["run_id"], with_samples=False).spec
    try:
        knobs = algorithms.get_preset(spec["preset"]).knobs
    except (KeyError, ValueError):
        return {}
    return {p: knobs[p] for p in meta["params"] if p in knobs and knobs[p] is not None}


def _importances(data: SweepData) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator: PED-ANOVA in Optuna 5, deterministic) over the complete trials' recomputed means."""
    import optuna

    c = data.complete
    if len(data.params) == 1:
        return {data.params[0]: 1.0}
    if len(c) < 3:
        data.notes.append("parameter importances need at least 3 complete trials")
        return {}
    raw = {t["number"]: t for t in json.loads((data.folder / TRIALS_FILE).read_text())}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=data.meta["objective"]["direction"])
    for r in c.itertuples():
        t = raw[r.number]
        dists = {k: optuna.distributions.json_to_distribution(v) for k, v in t["distributions"].items()}
        study.add_trial(
            optuna.trial.create_trial(params=t["params"], distributions=dists, value=float(r.mean))
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            imp = {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
        data.notes += [f"importances: {w.message}" for w in caught]
        return imp
    except (RuntimeError, ValueError) as e:
        data.notes.append(f"parameter importances not computed ({e})")
        return {}


def mark_best_region(data: SweepData) -> None:
    """Columns `diff`, `diff_low`, `diff_high` (each trial minus the best: paired t when both ran the same
    seeds, else Welch), `p_holm` (Holm-adjusted over the family of every trial compared with the best) and
    `in_best_region`: the best trial, and every trial not resolved worse than it at 5% family-wise."""
    t = data.trials
    for c in ("in_best_region", "diff", "diff_low", "diff_high", "p_holm"):
        t[c] = np.nan if c != "in_best_region" else False
    best = data.best
    if best is None:
        return
    groups = {n: g for n, g in data.runs.groupby("number")}
    ref = groups[best["number"]]
    idx, pvals = [], []
    for i, r in t.iterrows():
        if r["number"] not in groups:
            continue
        g = groups[r["number"]]
        iv = diff_interval(
            g["objective"].to_numpy(float),
            ref["objective"].to_numpy(float),
            g["seed"].tolist(),
            ref["seed"].tolist(),
            CONFIDENCE,
        )
        t.loc[i, ["diff", "diff_low", "diff_high"]] = [iv.estimate, iv.low, iv.high]
        if r["number"] != best["number"]:
            worse = iv.estimate < 0 if data.maximize else iv.estimate > 0
            idx.append(i)
            pvals.append(t_pvalue(iv) if worse else 1.0)
    adj = holm(pvals)
    t.loc[best.name, "in_best_region"] = True
    for i, p in zip(idx, adj):
        t.loc[i, "p_holm"] = p
        t.loc[i, "in_best_region"] = bool(np.isnan(p) or p >= 1 - CONFIDENCE)
