"""Render one experiment's report folder: tables, figures, index.html."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report import html as html_mod
from harness.report import plots
from harness.report.budget import aucs_with_spend, write_at_budget
from harness.report.codes import check_one_code, code_caption
from harness.report.compare import across_benchmarks, check_interval
from harness.report.load import ExperimentData, select_step
from harness.report.tables import (START, auc_table, before_rl, comparison_table, grid_label, passk_table,
                                   resolve_reference, start_aucs, write_passk, write_tables)


@dataclass
class ExperimentReport:
    name: str
    out: Path
    files: list[Path] = field(default_factory=list)
    table: pd.DataFrame | None = None
    reference: str | None = None
    comparison: pd.DataFrame | None = None
    vs_start: pd.DataFrame | None = None  # every variant vs the policy before RL
    passk: pd.DataFrame | None = None  # pass@1 and pass@k_max per variant (and before RL)
    benchmarks: list[str] = field(default_factory=list)  # in the experiment file's order
    notes: list[str] = field(default_factory=list)
    interval: str = "seeds"  # which interval the tables show (compare.INTERVALS)
    timings: dict[str, float] = field(default_factory=dict)
    code: str = ""  # the code and library versions behind the numbers (report.codes.code_caption)


def build_experiment(data: ExperimentData, out: Path, reference: str | None = None, step: int | None = None,
                     source: str = "", interval: str = "seeds", mix_code: bool = False) -> ExperimentReport:
    """Write everything for one experiment under `out`. Caller checks data has reported runs.

    interval: "seeds" (t over seeds) or "seeds+problems" (two-level bootstrap; compare.INTERVALS).
    mix_code: pool runs made by different code (otherwise UserError, report.codes.check_one_code)."""
    rep = ExperimentReport(data.name, out, interval=check_interval(interval))
    check_one_code(data.runs, data.name, mix_code)
    rep.code = code_caption(data.runs)
    t0 = time.perf_counter()
    curves, aucs, notes = select_step(data, step)
    rep.notes += notes
    variants, benches = data.variants, data.benchmarks
    step_label = f"step {step}" if step is not None else _final_label(aucs)
    start = start_aucs(data.aucs, aucs)
    rows = ([START] if len(start) else []) + variants
    with_start = pd.concat([start, aucs], ignore_index=True) if len(start) else aucs
    probs = _problems(data, aucs) if interval == "seeds+problems" else None
    table = auc_table(with_start, rows, benches, probs)
    ref = resolve_reference(reference, data.runs, variants)
    comp = comparison_table(with_start, ref, rows, benches, probs) if ref else None
    vs_start = comparison_table(with_start, START, variants, benches, probs) if len(start) else None
    if ref is None:
        rep.notes.append(
            "no reference variant (no 'grpo' variant or grpo preset); comparison skipped — pass --reference"
        )
    rep.table, rep.reference, rep.comparison, rep.vs_start, rep.benchmarks = (
        table,
        ref,
        comp,
        vs_start,
        benches,
    )
    paths = write_tables(out, table, comp, ref, data.name, step_label, vs_start, benches, interval, rep.code)
    start_curves = before_rl(data.curves, aucs, ("benchmark", "k"))
    rep.passk = passk_table(
        pd.concat([start_curves, curves], ignore_index=True) if len(start_curves) else curves, rows, benches
    )
    paths.update(write_passk(out, rep.passk, data.name, step_label, benches, rep.code))
    aucs_by_step = data.aucs
    aucs_by_step.to_csv(out / "auc_by_run_step.csv", index=False, float_format="%.4f")
    rep.timings["tables"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    first = data.curves[data.curves["step"] == data.curves.groupby("run_id")["step"].transform("min")]
    first_eval = (
        first if len(first) and first["step"].max() < curves["step"].min() else None
    )  # a pre-RL evaluation exists
    figures = {"passk": plots.plot_passk(curves, variants, out, data.name, step_label, first_eval, benches),
               "auc_vs_step": plots.plot_auc_vs_step(data.aucs, variants, out, data.name, benches)}
    spent = aucs_with_spend(data)
    for unit in ("rollouts", "tokens"):
        figures[f"auc_vs_{unit}"] = plots.plot_auc_vs_spend(spent, unit, variants, out, data.name, benches)
    budget_paths, budget_notes, at_budget = write_at_budget(out, spent, variants, benches, ref, data.name,
                                                            rep.code)
    paths.update(budget_paths)
    rep.notes += budget_notes
    rep.timings["curve plots"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    figures["diagnostics"] = plots.plot_diagnostics(data.train, variants, out, data.name)
    rep.timings["diagnostics plot"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    not_reported = data.runs[~data.runs["reported"]]
    if len(not_reported):
        rep.notes.append(f"{len(not_reported)} run(s) not reported (not finished or unreadable): see Runs")
    index = html_mod.write_index(
        out,
        experiment=data.name,
        source=source,
        step_label=step_label,
        grid=grid_label(table),
        runs=data.runs,
        table=table,
        comp=comp,
        reference=ref,
        figures=figures,
        specs=data.specs,
        notes=rep.notes,
        vs_start=vs_start,
        benchmarks=benches,
        passk=rep.passk,
        interval=interval,
        across=across_benchmarks(with_start, rows, ref),
        code=rep.code,
        at_budget=at_budget,
    )
    rep.timings["html"] = time.perf_counter() - t0
    rep.files = [*paths.values(), out / "auc_by_run_step.csv", index]
    for f in figures.values():
        if f:
            rep.files += [p for v in (f.values() if "png" not in f else [f]) for p in v.values()]
    return rep


def _problems(data: ExperimentData, aucs: pd.DataFrame) -> pd.DataFrame:
    """Per-problem AUCs at each run's reported step, plus the policy before RL's (one row per seed)."""
    sel = data.problems.merge(aucs[["run_id", "step"]].drop_duplicates(), on=["run_id", "step"], how="inner")
    start = before_rl(data.problems, aucs, ("benchmark", "problem_id"))
    return pd.concat([start, sel], ignore_index=True) if len(start) else sel


def _final_label(aucs: pd.DataFrame) -> str:
    steps = sorted(set(aucs["step"])) if len(aucs) else []
    if len(steps) == 1:
        return f"final step ({steps[0]})"
    return f"final step of each run ({', '.join(map(str, steps))})"
