"""Which code made the reported runs (their status.json `provenance`, harness.core.provenance).

    code_columns(record)        the run-table columns: code, made_by, versions, kept_stale
    check_one_code(data, mix)   UserError when an experiment's reported runs come from different code
                                (unless `--mix-code`)
    code_caption(runs)          the sentence every table caption and index.html carry

A run's `code` is the code id that made it; one resumed by other code (`harness run --accept-stale`)
has both ids joined by '+', so it never pools silently with runs of either version.
"""

from __future__ import annotations

import pandas as pd

from harness.core import provenance
from harness.core.errors import UserError


def code_columns(record: dict | None) -> dict:
    rec = record or {}
    code = rec.get("code") or "unknown"
    if rec.get("resumed_by"):
        code = "+".join([code, *rec["resumed_by"]])
    return {"code": code, "made_by": provenance.short(rec) + (" resumed by other code" if rec.get("resumed_by")
                                                              else ""),
            "versions": provenance.versions_label(rec), "kept_stale": bool(rec.get("accepted_by"))}


def _groups(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (code, made_by, versions) among the reported runs, with its run count."""
    rep = runs[runs["reported"]]
    return (rep.groupby(["code", "made_by", "versions"], sort=False).size().rename("runs").reset_index()
            .sort_values("runs", ascending=False, kind="stable"))


def check_one_code(runs: pd.DataFrame, experiment: str, mix_code: bool) -> None:
    """Refuse to pool runs of different code (UserError naming each version and its run count)."""
    groups = _groups(runs)
    if len(groups) <= 1 or mix_code:
        return
    listed = "; ".join(f"{g.made_by}: {g.runs} run(s)" for g in groups.itertuples())
    raise UserError(f"{experiment}: its runs come from {len(groups)} versions of the code ({listed}); rerun the "
                    f"stale ones with `harness run --rerun-stale`, or pass --mix-code to pool them")


def code_caption(runs: pd.DataFrame) -> str:
    """'Made by commit 2c66064 (code 1a2b3c4d); torch 2.13.0, ...' (every version, when mixed)."""
    groups = _groups(runs)
    if not len(groups):
        return ""
    if len(groups) == 1:
        g = groups.iloc[0]
        text = f"Made by {g.made_by}; {g.versions}."
    else:
        text = ("MIXED CODE (--mix-code): " + "; ".join(f"{g.runs} run(s) by {g.made_by} ({g.versions})"
                                                       for g in groups.itertuples()) + ".")
    kept = int(runs[runs["reported"]]["kept_stale"].sum())
    if kept:
        text += f" {kept} run(s) were made by older code and kept with --accept-stale."
    return text
