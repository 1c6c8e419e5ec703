"""`harness run`, `harness validate` and `harness list`."""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

import algorithms
from harness.config import expand, load_experiment, warn_if_clip_cannot_bind
from harness.errors import UserError

err_console = Console(stderr=True)


def _load_with_warnings(file: Path):
    exp = load_experiment(file)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        msg = warn_if_clip_cannot_bind(exp)
    if msg:
        err_console.print(f"[yellow]warning:[/] {msg}")
    return exp


def run_command(
    file: Path = typer.Argument(..., help="Experiment YAML (see experiments/quickstart.yaml)."),
    results_dir: Path = typer.Option(Path("results"), "--results", help="Results root; runs go to <results>/<experiment>/<run_id>/."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Parallel runs (processes). 0 = CPU cores / train.threads."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Warm-start cache (default $NGRPO_HARNESS_CACHE or ~/.cache/ngrpo-harness)."),
    executor: str = typer.Option("process", "--executor", help="process (local processes) or ray (Ray tasks: a local instance, or a cluster with --address)."),
    address: str = typer.Option(None, "--address", help="Ray cluster address for --executor ray (e.g. auto, ray://HEAD:10001); shared results and cache folders needed."),
) -> None:
    """Run every (variant, seed) of an experiment: finished runs are skipped, interrupted ones resumed.

    The file is validated completely before anything is written. Ctrl-C stops cleanly: rerunning
    the same command resumes from the last checkpoint and ends with identical results.
    """
    from harness.executors import check_executor
    from harness.runner import DEFAULT_CACHE, run_experiment

    exp = _load_with_warnings(file)
    if jobs < 0:
        raise UserError("--jobs: must be >= 0 (0 = automatic)")
    check_executor(executor, address)
    jobs = jobs or max(1, (os.cpu_count() or 1) // exp.train.threads)
    try:
        states = run_experiment(exp, results_dir, jobs, cache_dir or DEFAULT_CACHE, err_console, source=file.read_text(),
                                executor=executor, address=address)
    except KeyboardInterrupt:
        sys.exit(130)
    failed = [r for r, s in states.items() if s != "done"]
    err_console.print(f"{len(states) - len(failed)}/{len(states)} runs done under {results_dir / exp.name}")
    if failed:
        err_console.print(f"[red]not done: {', '.join(failed)}[/] (see status.json in each run folder)")
        raise typer.Exit(1)


def validate_command(file: Path = typer.Argument(..., help="Experiment YAML to check.")) -> None:
    """Check an experiment file without running it: schema, presets, knobs, sizes; list the runs it makes."""
    exp = _load_with_warnings(file)
    table = Table(title=f"{exp.name}: {len(exp.variants)} variants x {len(exp.seeds)} seeds")
    for col in ("variant", "seed", "run_id", "advantage", "policy loss", "filter", "shaper"):
        table.add_column(col)
    for s in expand(exp):
        a = s["algorithm"]
        table.add_row(s["variant"], str(s["seed"]), s["run_id"], a["advantage"], a["policy_loss"], a["group_filter"], a["reward_shaper"])
    Console().print(table)
    Console().print(f"[green]ok[/]: {file}")


def _first_line(fn) -> str:
    return (inspect.getdoc(fn) or "").split("\n")[0]


def list_command() -> None:
    """Show the registered pieces (with their knobs) and every preset's settings."""
    console = Console()
    pieces = Table(title="Registered pieces")
    for col in ("role", "name", "knobs (defaults)", "description"):
        pieces.add_column(col, overflow="fold")
    for role, reg in algorithms.ROLES.items():
        for name in reg.names():
            knobs = ", ".join(f"{k}={v!r}" for k, v in reg.knobs(name).items())
            pieces.add_row(role, name, knobs or "-", _first_line(reg.get(name)))
    console.print(pieces)
    presets = Table(title="Presets (override any knob by name in an experiment's `overrides`)")
    for col in ("preset", "pieces", "knobs", "source"):
        presets.add_column(col, overflow="fold")
    for name in algorithms.list_presets():
        p = algorithms.get_preset(name)
        presets.add_row(
            name, "\n".join(f"{r}: {n}" for r, n in p.pieces.items()),
            ", ".join(f"{k}={v!r}" for k, v in p.knobs.items()), p.paper,
        )
    console.print(presets)
    obj = Table(title="Objective knobs (every preset)")
    obj.add_column("knob")
    obj.add_column("default")
    obj.add_column("meaning", overflow="fold")
    for k, (v, help_) in algorithms.OBJECTIVE_KNOBS.items():
        obj.add_row(k, repr(v), help_)
    console.print(obj)
