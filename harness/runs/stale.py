"""A run's provenance, recorded when it starts and ends, and what makes a finished run stale (issue 19).

    record_start(run_dir, spec, cache_dir)   status.json's `provenance` := the current code, libraries and
                                             inputs (a resumed run keeps its first record and lists the
                                             code that resumed it under `resumed_by`)
    record_step0(run_dir)                    adds the run's first evaluation (pass@1, pass@k_max, AUC)
    stale_label(run_dir, spec)               None, or the code that made the run's results when that is
                                             not the current code (and the current code did not accept it)
    accept(run_dir, spec) / clear(run_dir)   --accept-stale / --rerun-stale

A run folder holds results once it is done or has a checkpoint; only those can be stale. What counts as
code is harness.core.provenance.code_id: the source that makes results, plus the plugin files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.backends import get_backend
from harness.config.runspec import RunSpec
from harness.core import provenance, results
from harness.core.metrics import curves_from_samples, pass_at_k_auc


def current(spec: RunSpec, cache_dir: Path | None = None) -> dict:
    """The provenance record of a run of `spec` started now by this code."""
    rec = {**provenance.fingerprint(spec.plugins), "threads": spec.train.threads}
    if cache_dir is not None:
        rec.update(get_backend(spec.backend).inputs(spec, Path(cache_dir)))
    return rec


def has_results(run_dir: Path, spec: RunSpec) -> bool:
    """Whether the folder holds results a rerun would replace: the run is done, or it has a checkpoint."""
    rd = Path(run_dir)
    return rd.exists() and (results.read_status(rd).get("state") == "done"
                            or get_backend(spec.backend).has_checkpoint(rd))


def stale_label(run_dir: Path, spec: RunSpec) -> str | None:
    """None when the run holds no results or was made (or accepted) by the current code; else the
    label of the code that made it (`commit 2c66064 (code 1a2b3c4d)`, or 'unknown code')."""
    if not has_results(run_dir, spec):
        return None
    rec = results.read_status(run_dir).get("provenance") or {}
    now = provenance.code_id(spec.plugins)
    if rec.get("code") == now or now in rec.get("accepted_by", []) or now in rec.get("resumed_by", []):
        return None
    return provenance.short(rec)


def record_start(run_dir: Path, spec: RunSpec, cache_dir: Path) -> None:
    """Write the run's provenance before it trains (see the module docstring)."""
    rd = Path(run_dir)
    old = results.read_status(rd).get("provenance")
    now = current(spec, cache_dir)
    if old and has_results(rd, spec):  # a resume: the run's first code stays its record
        if old.get("code") != now["code"] and now["code"] not in old.get("resumed_by", []):
            old = {**old, "resumed_by": [*old.get("resumed_by", []), now["code"]]}
        now = old
    _set_provenance(rd, now)


def _set_provenance(run_dir: Path, rec: dict) -> None:
    """status.json's provenance := rec, everything else in it unchanged."""
    st = results.read_status(run_dir)
    keep = {k: v for k, v in st.items() if k not in ("state", "updated", "provenance")}
    results.write_status(run_dir, st.get("state", "pending"), **keep, provenance=rec)


def step0_summary(samples) -> dict:
    """{benchmark: {pass@1, pass@k_max, auc}} of the first evaluated step of a samples frame."""
    if samples is None or not len(samples):
        return {}
    first = samples[samples["step"] == samples["step"].min()]
    out = {"step": int(first["step"].iat[0])}
    for bench, c in curves_from_samples(first).groupby("benchmark", sort=True):
        c = c.sort_values("k")
        out[str(bench)] = {"pass@1": round(float(c["pass_at_k"].iat[0]), 6),
                           f"pass@{int(c['k'].iat[-1])}": round(float(c["pass_at_k"].iat[-1]), 6),
                           "auc": round(pass_at_k_auc(c["k"].to_numpy(), c["pass_at_k"].to_numpy()).auc, 4)}
    return out


def record_step0(run_dir: Path) -> None:
    """Add the run's first evaluation to its provenance record (once; a resumed run keeps it)."""
    rec = results.read_status(run_dir).get("provenance")
    if rec and "step0" not in rec:
        _set_provenance(run_dir, {**rec, "step0": step0_summary(results.read_samples(run_dir))})


def accept(run_dir: Path, spec: RunSpec) -> None:
    """--accept-stale: the current code keeps this run (the report names the code that made it)."""
    rec = dict(results.read_status(run_dir).get("provenance") or {})
    _set_provenance(run_dir, {**rec, "accepted_by": [*rec.get("accepted_by", []), provenance.code_id(spec.plugins)]})


def clear(run_dir: Path) -> None:
    """--rerun-stale: remove the run's results (metrics, samples, checkpoints, status, logs), keep nothing."""
    rd = Path(run_dir)
    for child in rd.iterdir():
        if child.name == ".lock":
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()
