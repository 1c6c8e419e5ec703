"""`harness report DIR [--out DIR] [--reference VARIANT] [--step STEP] [--interval seeds|seeds+problems]`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.core.errors import UserError

STATE_STYLE = {
    "done": "green",
    "running": "yellow",
    "pending": "yellow",
    "failed": "red",
    "unreadable": "red",
}


def report_command(
    results: Path = typer.Argument(
        ..., help="Results directory: many experiments, one experiment, or one run folder."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output root; each experiment goes to OUT/<experiment>/ (default: reports/).",
    ),
    reference: Optional[str] = typer.Option(
        None,
        "--reference",
        "-r",
        help="Variant to compare against (default: 'grpo', or the variant whose preset is grpo).",
    ),
    step: Optional[int] = typer.Option(
        None,
        "--step",
        "-s",
        help="Evaluated step for curves and AUC tables (default: each run's final step).",
    ),
    interval: str = typer.Option(
        "seeds",
        "--interval",
        help="seeds: t-interval over seeds (paired by seed, else Welch); seeds+problems: two-level bootstrap over seeds, then problems (docs/statistics.md).",
    ),
    mix_code: bool = typer.Option(
        False,
        "--mix-code",
        help="Pool runs made by different code (refused by default; every caption then lists each version).",
    ),
) -> None:
    """Render Pass@k curves, Pass@k AUC tables (with seed CIs), comparisons and training diagnostics.

    Every caption and index.html name the commit(s) and library versions behind the numbers; an
    experiment whose runs come from different code is refused unless --mix-code."""
    run_report(results, out=out, reference=reference, step=step, interval=interval, mix_code=mix_code)


def run_report(results: Path, out: Path | None = None, reference: str | None = None, step: int | None = None,
               console: Console | None = None, interval: str = "seeds", mix_code: bool = False) -> list:
    """Load, render every experiment (and gradient-dynamics probe), print a summary. Raises UserError when
    nothing can be reported."""
    from harness.report.build import build_experiment
    from harness.report.compare import check_interval
    from harness.report.load import load_results
    from harness.report.plots import slug
    from harness.report.probe import find_probe_dirs, render_probes
    from harness.report.sweep import report_sweeps

    check_interval(interval)
    console = console or Console(stderr=False)
    out_root = Path(out) if out is not None else Path("reports")
    t_start = time.perf_counter()
    probe_dirs = find_probe_dirs(results)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("loading runs", total=None)
        try:
            experiments, warnings = load_results(
                results, progress=lambda i, n, _p: progress.update(task, completed=i, total=n))
        except UserError:
            if not probe_dirs:  # no run folder and no probe: the loader's message says why
                raise
            experiments, warnings = [], []
    t_load = time.perf_counter() - t_start
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    for exp in experiments:
        _print_runs(console, exp)
    reportable = [e for e in experiments if e.reported.shape[0] and len(e.aucs)]
    if not reportable and not probe_dirs:
        states = ", ".join(f"{e.name}: {e.runs['state'].value_counts().to_dict()}" for e in experiments)
        raise UserError(f"{results}: nothing to report — no finished run with readable samples ({states})")
    reports, errors = [], []
    for exp in reportable:
        dest = out_root / slug(exp.name)
        try:
            with console.status(f"rendering {exp.name} -> {dest}"):
                rep = build_experiment(exp, dest, reference=reference, step=step, source=str(results),
                                       interval=interval, mix_code=mix_code)
        except UserError as e:  # e.g. --step or --reference does not apply to this experiment
            if len(reportable) == 1:
                raise
            errors.append(f"{exp.name}: {e}")
            console.print(f"[red]skipped experiment[/] {exp.name}: {e}", highlight=False)
            continue
        rep.timings = {"load (all experiments)": t_load, **rep.timings}
        reports.append(rep)
        _print_summary(console, rep)
        if rep.code:
            console.print(f"code: {rep.code}", highlight=False, soft_wrap=True)
        rep.files += report_sweeps(exp, dest, console)  # a sweep's folder: heatmap, importances, best trials
    probes = render_probes(results, out_root, console)
    if not reports and not probes:
        raise UserError(
            "nothing reported: " + ("; ".join(errors) or f"no finished run or probe under {results}")
        )
    from harness.report.html import write_root_index

    root_index = write_root_index(out_root, [*reports, *probes])
    console.print(f"[green]wrote[/] {root_index} (links every report under {out_root})", highlight=False)
    skipped = [e.name for e in experiments if e not in reportable]
    if skipped:
        console.print(f"[yellow]not reported (no finished runs):[/] {', '.join(skipped)}")
    console.print(f"done in {time.perf_counter() - t_start:.1f}s")
    return reports


def _print_runs(console: Console, exp) -> None:
    t = Table(title=f"Runs — {exp.name}", title_justify="left")
    for c in ("run", "variant", "seed", "state", "step", "note"):
        t.add_column(c, overflow="fold")
    for r in exp.runs.itertuples():
        step = f"{'' if r.step is None or r.step != r.step else int(r.step)}/{'' if r.total_steps is None or r.total_steps != r.total_steps else int(r.total_steps)}"
        style = STATE_STYLE.get(r.state, "")
        t.add_row(r.run_id, r.variant, str(r.seed), f"[{style}]{r.state}[/]" if style else r.state, step,
                  ("reported" if r.reported else r.note) or "")
    if len(exp.runs) > 40:  # many runs: counts only, the full table is in index.html
        counts = exp.runs.groupby(["variant", "state"]).size().unstack(fill_value=0)
        t = Table(title=f"Runs — {exp.name}: counts by state", title_justify="left")
        t.add_column("variant")
        for c in counts.columns:
            t.add_column(str(c))
        for v, row in counts.iterrows():
            t.add_row(str(v), *map(str, row.tolist()))
        bad = exp.runs[exp.runs["state"].isin(["failed", "unreadable"])]
        for r in bad.itertuples():
            console.print(f"[red]{r.state}[/] {r.run_id}: {r.note}", highlight=False)
    console.print(t)


def _variant_table(title: str, frame, benches: list, cell) -> Table:
    """variants x benchmarks, one formatted cell per row of `frame` ("–" where missing)."""
    t = Table(title=title, title_justify="left")
    t.add_column("variant")
    for b in benches:
        t.add_column(str(b))
    for v, grp in frame.groupby("variant", sort=False):
        rows = {b: grp[grp["benchmark"] == b] for b in benches}
        t.add_row(str(v), *("–" if r.empty else cell(r.iloc[0]) for r in rows.values()))
    return t


def _auc_cell(r) -> str:
    ci = "(one seed, no CI)" if r.n_seeds < 2 else f"[{r.ci_low:.2f}, {r.ci_high:.2f}]"
    return f"{'*' if r.best else ''}{r.auc_mean:.2f} {ci} n={int(r.n_seeds)}"


def _diff_cell(r) -> str:
    from harness.report.tables import signed

    if r["ci_low"] != r["ci_low"]:  # NaN: one seed on a side
        return f"{signed(r['diff'])} (one seed: no CI, no P)"
    word = "resolved" if r.resolved else "not resolved"
    return f"{signed(r['diff'])} [{signed(r.ci_low)}, {signed(r.ci_high)}] {word} P={r.p_improve:.2f}"


def _print_summary(console: Console, rep) -> None:
    benches = rep.benchmarks or list(dict.fromkeys(rep.table["benchmark"]))
    console.print(
        _variant_table(
            f"Pass@k AUC — {rep.name} (mean [95% CI over {rep.interval}], n seeds; * = best or not resolved below it)",
            rep.table,
            benches,
            _auc_cell,
        )
    )
    if rep.passk is not None and len(rep.passk):
        t = Table(
            title=f"pass@1 / pass@k before and after RL — {rep.name} (mean ± sd over seeds)",
            title_justify="left",
        )
        p = rep.passk.assign(col=[f"{b} @{k}" for b, k in zip(rep.passk["benchmark"], rep.passk["k"])])
        cols = list(dict.fromkeys(c for b in benches for c in p.loc[p["benchmark"] == b, "col"]))
        t.add_column("variant")
        for c in cols:
            t.add_column(c)
        for v, grp in p.groupby("variant", sort=False):
            cell = {
                r.col: f"{r.mean:.3f}" + ("" if r.n_seeds < 2 else f" ± {r.sd:.3f}") for r in grp.itertuples()
            }
            t.add_row(str(v), *(cell.get(c, "–") for c in cols))
        console.print(t)
    if rep.vs_start is not None and len(rep.vs_start):
        console.print(
            _variant_table(
                f"AUC change from the policy before RL (mean [95% CI over {rep.interval}], P(better))",
                rep.vs_start,
                benches,
                _diff_cell,
            )
        )
    if rep.comparison is not None and len(rep.comparison):
        console.print(
            _variant_table(
                f"AUC difference vs {rep.reference} (mean [95% CI over {rep.interval}], P(better))",
                rep.comparison,
                benches,
                _diff_cell,
            )
        )
    from harness.report.compare import summary_sentences

    lines = summary_sentences(rep.comparison, rep.reference, f"comparisons against {rep.reference}")
    for i, line in enumerate(lines):  # the last line counts them
        console.print(line if i == len(lines) - 1 else f"resolved: {line}", highlight=False, soft_wrap=True)
    for n in rep.notes:
        console.print(f"[yellow]note:[/] {n}", highlight=False)
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in rep.timings.items())
    console.print(
        f"[green]wrote[/] {rep.out}/index.html and {len(rep.files) - 1} more files ({timing})",
        highlight=False,
    )
