"""Load a results directory into per-experiment DataFrames for the report.

Reading goes through harness.core.results (find_run_dirs, load_run); Pass@k curves and AUCs through
harness.core.metrics (curves_from_samples, aucs_from_curves). Only finished runs ("done") are reported;
pending, running, failed and unreadable runs are listed with the reason they are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.core.errors import UserError
from harness.core.metrics import aucs_from_curves, curves_from_samples, problem_aucs
from harness.report.codes import code_columns
from harness.report.tables import ordered_benchmarks
from harness.core.results import SAMPLE_COLUMNS, find_run_dirs, load_run

RUN_KEYS = ["run_id", "variant", "seed"]
CANONICAL_ORDER = ("ppo", "grpo", "dapo", "psr_nsr", "ngrpo")


def _rank(variant: str, preset: str) -> int:
    for name in (variant.lower(), preset):
        if name in CANONICAL_ORDER:
            return CANONICAL_ORDER.index(name)
    return len(CANONICAL_ORDER)
RUN_COLUMNS = ["run_id", "variant", "seed", "preset", "backend", "state", "step", "total_steps",
               "reported", "note", "path", "code", "made_by", "versions", "kept_stale"]


@dataclass
class ExperimentData:
    """Everything the report needs for one experiment (finished runs only in curves/aucs/train)."""

    name: str
    runs: pd.DataFrame  # one row per run folder found: RUN_COLUMNS
    specs: dict[str, dict] = field(default_factory=dict)  # run_id -> spec, reported runs
    curves: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # RUN_KEYS + step, benchmark, k, pass_at_k, ...
    aucs: pd.DataFrame = field(default_factory=pd.DataFrame)  # RUN_KEYS + step, benchmark, auc, k_max
    train: pd.DataFrame = field(default_factory=pd.DataFrame)  # RUN_KEYS + step + metrics.jsonl keys
    problems: pd.DataFrame = field(
        default_factory=pd.DataFrame
    )  # RUN_KEYS + step, benchmark, problem_id, auc

    @property
    def reported(self) -> pd.DataFrame:
        return self.runs[self.runs["reported"]]

    @property
    def variants(self) -> list[str]:
        """Variants of the reported runs: the paper's order (ppo, grpo, dapo, psr_nsr, ngrpo by preset), then by name."""
        rep = self.reported
        preset = dict(zip(rep["variant"], rep["preset"].str.lower()))
        return sorted(preset, key=lambda v: (_rank(v, preset[v]), v))

    @property
    def benchmarks(self) -> list[str]:
        """Benchmarks in the order the experiment file lists them (spec eval.benchmarks), then any others by name."""
        present = set(self.aucs["benchmark"]) if len(self.aucs) else set()
        order: list[str] = []
        for spec in self.specs.values():
            listed = (spec.get("eval") or {}).get("benchmarks") if isinstance(spec, dict) else None
            if isinstance(listed, (dict, list)):
                order += [str(b) for b in listed if str(b) not in order]
        return ordered_benchmarks(present, order)


def _run_row(rec, note: str, reported: bool) -> dict:
    st = rec.status or {}
    return {
        "run_id": str(rec.spec.get("run_id", rec.path.name)),
        "variant": rec.variant, "seed": rec.seed,
        "preset": str(rec.spec.get("preset", "")), "backend": str(rec.spec.get("backend", "")),
        "state": "unreadable" if rec.error else rec.state,
        "step": st.get("step"), "total_steps": st.get("total_steps"),
        "reported": reported, "note": note, "path": str(rec.path), **code_columns(st.get("provenance")),
    }


def _train_frame(metrics: pd.DataFrame) -> pd.DataFrame:
    if metrics.empty or "step" not in metrics.columns:
        return pd.DataFrame()
    if "kind" in metrics.columns:
        metrics = metrics[metrics["kind"] == "train"]
    else:  # no kind: a line is a training line unless it only carries eval/ keys
        metrics = metrics[metrics.filter(regex=r"^(train|actor|groups)/").notna().any(axis=1)]
    keep = ["step"] + [c for c in metrics.columns if "/" in c and not c.startswith("eval/")]
    return metrics[keep].apply(pd.to_numeric, errors="coerce")


def _load_one(run_dir: Path) -> tuple[dict, dict | None, pd.DataFrame | None, pd.DataFrame | None, list[str],
                                       pd.DataFrame | None]:
    """-> (run row, spec, curves, train, warnings, per-problem AUCs) for one run folder."""
    rec = load_run(run_dir)
    if rec.error:
        return _run_row(rec, rec.error, False), None, None, None, [f"skipped {run_dir}: {rec.error}"], None
    if rec.state != "done":
        err = rec.status.get("error")
        note = (
            f"error: {err}"
            if err
            else f"not finished (step {rec.status.get('step', '?')}/{rec.status.get('total_steps', '?')})"
        )
        return _run_row(rec, note, False), None, None, None, [], None
    samples = rec.samples
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing or samples.empty:
        why = f"samples.parquet missing columns {missing}" if missing else "no evaluation samples"
        return _run_row(rec, why, False), None, None, None, [f"skipped {run_dir}: {why}"], None
    try:
        curves = curves_from_samples(samples, by=("step", "benchmark"))
        problems = problem_aucs(samples)
    except ValueError as e:
        return (_run_row(rec, f"bad samples: {e}", False), None, None, None,
                [f"skipped {run_dir}: bad samples ({e})"], None)
    return _run_row(rec, "", True), rec.spec, curves, _train_frame(rec.metrics), [], problems


def load_results(
    root: str | Path, progress: Callable[[int, int, Path], None] | None = None
) -> tuple[list[ExperimentData], list[str]]:
    """Load every run under root, grouped by experiment. Returns (experiments, warnings).

    Raises UserError when root is missing or holds no run folder at all.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such directory (pass a results directory, e.g. results/)")
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (pass a results directory, e.g. results/)")
    run_dirs = find_run_dirs(root)
    if not run_dirs:
        raise UserError(
            f"{root}: no run folders found (a run folder holds spec.yaml; is this a results directory?)"
        )
    by_exp: dict[str, dict[str, list]] = {}
    warnings: list[str] = []
    for i, run_dir in enumerate(run_dirs):
        row, spec, curves, train, warns, problems = _load_one(run_dir)
        warnings += warns
        exp = _experiment_name(run_dir, spec)
        acc = by_exp.setdefault(exp, {"runs": [], "specs": {}, "curves": [], "train": [], "problems": []})
        acc["runs"].append(row)
        if row["reported"]:
            keys = {"run_id": row["run_id"], "variant": row["variant"], "seed": row["seed"]}
            acc["specs"][row["run_id"]] = spec
            acc["curves"].append(curves.assign(**keys))
            acc["problems"].append(problems.assign(**keys))
            if train is not None and len(train):
                acc["train"].append(train.assign(**keys))
        if progress:
            progress(i + 1, len(run_dirs), run_dir)
    experiments = [_assemble(name, acc, warnings) for name, acc in sorted(by_exp.items())]
    return experiments, warnings


def _experiment_name(run_dir: Path, spec: dict | None) -> str:
    if spec and spec.get("experiment"):
        return str(spec["experiment"])
    # unreadable or unfinished run: its spec may still name the experiment
    try:
        import yaml

        s = yaml.safe_load((run_dir / "spec.yaml").read_text())
        if isinstance(s, dict) and s.get("experiment"):
            return str(s["experiment"])
    except Exception:  # noqa: BLE001 - corrupt spec: fall back to the folder name
        pass
    return run_dir.parent.name


def _assemble(name: str, acc: dict, warnings: list[str]) -> ExperimentData:
    runs = pd.DataFrame(acc["runs"], columns=RUN_COLUMNS)
    dup = runs[runs["reported"]].duplicated("run_id", keep="first")
    if dup.any():  # two folders with the same run_id: keep the first, say so
        for p in runs[runs["reported"]][dup]["path"]:
            warnings.append(f"skipped {p}: duplicate run_id in experiment {name}")
        runs.loc[runs[runs["reported"]][dup].index, ["reported", "note"]] = [False, "duplicate run_id"]
    _drop_stale(runs, acc["specs"], warnings, name)
    runs = runs.assign(_r=[_rank(v, str(p).lower()) for v, p in zip(runs["variant"], runs["preset"])])
    runs = runs.sort_values(["_r", "variant", "seed", "run_id"]).drop(columns="_r").reset_index(drop=True)
    keep = set(runs[runs["reported"]]["run_id"])
    curves_list = [c for c in acc["curves"] if c["run_id"].iat[0] in keep] if acc["curves"] else []
    curves = pd.concat(curves_list, ignore_index=True) if curves_list else pd.DataFrame(
        columns=[*RUN_KEYS, "step", "benchmark", "k", "pass_at_k", "n_problems", "n_samples"])
    aucs = aucs_from_curves(curves, by=(*RUN_KEYS, "step", "benchmark")) if len(curves) else pd.DataFrame(
        columns=[*RUN_KEYS, "step", "benchmark", "auc", "k_max"])
    train_list = [t for t in acc["train"] if t["run_id"].iat[0] in keep]
    train = (
        pd.concat(train_list, ignore_index=True) if train_list else pd.DataFrame(columns=[*RUN_KEYS, "step"])
    )
    probs = [p for p in acc["problems"] if len(p) and p["run_id"].iat[0] in keep]
    problems = pd.concat(probs, ignore_index=True) if probs else pd.DataFrame(
        columns=[*RUN_KEYS, "step", "benchmark", "problem_id", "auc"])
    return ExperimentData(
        name, runs, {k: v for k, v in acc["specs"].items() if k in keep}, curves, aucs, train, problems
    )


def _fingerprint(spec: dict) -> str:
    """The settings of a run minus what differs between seeds of one variant."""
    import json

    rest = {
        k: v for k, v in spec.items() if k not in ("seed", "run_id", "loggers")
    }  # trackers change no result
    if isinstance(rest.get("warm_start"), dict):
        rest["warm_start"] = {k: v for k, v in rest["warm_start"].items() if k != "seed"}
    return json.dumps(rest, sort_keys=True, default=str)


def _drop_stale(runs: pd.DataFrame, specs: dict[str, dict], warnings: list[str], name: str) -> None:
    """An edited experiment file makes new run ids in the same folder: within a variant, report only
    the runs with the newest settings (by spec.yaml time), so old and new runs are never pooled."""
    rep = runs[runs["reported"]]
    for variant, grp in rep.groupby("variant"):
        prints = {rid: _fingerprint(specs[rid]) for rid in grp["run_id"]}
        if len(set(prints.values())) < 2:
            continue
        newest = max(grp.itertuples(), key=lambda r: (Path(r.path) / "spec.yaml").stat().st_mtime)
        stale = grp[[prints[r] != prints[newest.run_id] for r in grp["run_id"]]]
        runs.loc[stale.index, ["reported", "note"]] = [
            False,
            "stale: older settings of this variant (experiment file edited)",
        ]
        warnings.append(
            f"{name}/{variant}: {len(stale)} run(s) with older settings left out (experiment file edited)"
        )


def select_step(data: ExperimentData, step: int | None) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(curves, aucs) at one evaluated step per run: each run's last step by default, or `step`.

    Runs that did not evaluate `step` are left out (returned as notes); if none did, UserError lists
    the steps that exist.
    """
    notes: list[str] = []
    if data.aucs.empty:
        return data.curves, data.aucs, notes
    if step is None:
        last = data.aucs.groupby("run_id")["step"].transform("max")
        aucs = data.aucs[data.aucs["step"] == last]
    else:
        aucs = data.aucs[data.aucs["step"] == step]
        if aucs.empty:
            steps = sorted(data.aucs["step"].unique().tolist())
            raise UserError(f"--step {step}: no run of experiment {data.name!r} was evaluated at that step "
                            f"(evaluated steps: {steps})")
        missing = sorted(set(data.aucs["run_id"]) - set(aucs["run_id"]))
        if missing:
            notes.append(
                f"{len(missing)} run(s) not evaluated at step {step}, left out: {', '.join(missing)}"
            )
    pairs = aucs[["run_id", "step"]].drop_duplicates()
    curves = data.curves.merge(pairs, on=["run_id", "step"], how="inner")
    return curves, aucs.reset_index(drop=True), notes
