"""`harness run`, `harness validate` and `harness list`.

Heavy imports (torch through `algorithms` and `harness.config.experiment`) happen inside the commands, so
`harness run --help` stays fast.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from harness.cli import options
from harness.core.errors import UserError

err_console = Console(stderr=True)


def _load_with_warnings(file: Path):
    from harness.config.experiment import load_experiment, warn_if_clip_cannot_bind

    exp = load_experiment(file)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        msg = warn_if_clip_cannot_bind(exp)
    if msg:
        err_console.print(f"[yellow]warning:[/] {msg}")
    return exp


def run_command(
    file: Path = typer.Argument(..., help="Experiment YAML (see experiments/quickstart.yaml)."),
    results_dir: Path = typer.Option(
        Path("results"), "--results", help="Results root; runs go to <results>/<experiment>/<run_id>/."
    ),
    jobs: int = typer.Option(
        0, "--jobs", "-j", help="Parallel runs (processes). 0 = CPU cores / train.threads."
    ),
    cache_dir: Path = options.CACHE_DIR,
    no_wait: bool = typer.Option(
        False,
        "--no-wait",
        help="Skip runs that another live `harness run` is training (default: wait for them).",
    ),
    summary_every: float = options.SUMMARY_EVERY,
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Validate, then print what each run would execute (for verl: the exact `main_ppo` command and Hydra overrides) and start nothing.",
    ),
    executor: str = options.EXECUTOR,
    address: str = options.ADDRESS,
    rerun_stale: bool = typer.Option(
        False,
        "--rerun-stale",
        help="Retrain from scratch the runs whose results other code made (their folders are emptied first).",
    ),
    accept_stale: bool = typer.Option(
        False,
        "--accept-stale",
        help="Keep the runs whose results other code made, as done (interrupted ones resume with this code); "
        "the report names the code behind them.",
    ),
) -> None:
    """Run every (variant, seed) of an experiment: finished runs are skipped, interrupted ones resumed.

    A run is stale when other code made its results (status.json records each run's code, commit and
    library versions; see docs/experiments.md): with stale runs, nothing runs (exit 2) until
    --rerun-stale or --accept-stale says what to do with them.

    The file is validated completely before anything is written (for `backend: verl`, every run's
    overrides are composed and checked against the installed verl config). Ctrl-C (or SIGTERM) stops
    cleanly: nothing new starts, running runs save a checkpoint of their current step and stop,
    exit code 130 (143 for SIGTERM); a second Ctrl-C quits at once. Rerunning the same command
    resumes and ends with identical results. Two commands on the same results cooperate: a run
    held by the other is waited for (or skipped with --no-wait), the warm start is built once.
    Exit code 0 when every run is done, whoever ran it; 1 otherwise. On a terminal progress is
    shown as bars; otherwise (nohup, CI, a pipe) as one line per event plus periodic summaries.
    With --executor ray the runs are Ray tasks, with the same skip / resume / lock semantics.
    """
    from harness.core.paths import default_cache
    from harness.runs.scheduler import run_experiment

    if rerun_stale and accept_stale:
        raise UserError("--rerun-stale and --accept-stale: give at most one (retrain the stale runs, or keep them)")
    exp = _load_with_warnings(file)
    if dry_run:
        from harness.backends import dry_run as print_dry_run

        print_dry_run(exp, results_dir, cache_dir or default_cache())
        return
    if jobs < 0:
        raise UserError("--jobs: must be >= 0 (0 = automatic)")
    if summary_every < 0:
        raise UserError("--summary-every: must be >= 0 seconds (0 = no summaries)")
    from harness.execution.executors import check_executor

    check_executor(executor, address)
    if not (jobs == 0 and address):  # on a Ray cluster, 0 = its CPUs / train.threads
        jobs = jobs or max(1, (os.cpu_count() or 1) // exp.train.threads)
    states = run_experiment(
        exp,
        results_dir,
        jobs,
        cache_dir or default_cache(),
        err_console,
        source=file.read_text(),
        wait=not no_wait,
        summary_every=summary_every,
        executor=executor,
        address=address,
        stale_policy="rerun" if rerun_stale else "accept" if accept_stale else "ask",
    )
    failed = [r for r, s in states.items() if s != "done"]
    err_console.print(f"{len(states) - len(failed)}/{len(states)} runs done under {results_dir / exp.name}")
    if failed:
        held = [r for r in failed if states[r] == "held"]
        if held:
            err_console.print(f"[yellow]still running in another process (--no-wait): {', '.join(held)}[/]")
        if len(held) < len(failed):
            err_console.print(
                f"[red]not done: {', '.join(r for r in failed if r not in held)}[/] (see status.json in each run folder)"
            )
        raise typer.Exit(1)


def validate_command(
    file: Path = typer.Argument(None, help="Experiment or sweep YAML to check."),
    schema: bool = typer.Option(
        False,
        "--schema",
        help="Print every field of experiment and sweep files (type, constraints, default, description) and exit.",
    ),
) -> None:
    """Check an experiment or sweep file without running it, or print the schema (--schema).

    An experiment file: schema, presets, knobs and sizes are checked and the runs it makes listed;
    for `backend: verl` also every run's overrides against the installed verl (as `harness run` does).
    A sweep file (it has `experiment:` and `params:`): the sweep and its base experiment are checked.
    """
    if schema:
        from harness.config.experiment import Experiment
        from harness.config.fields import format_schema
        from harness.sweep.config import SweepConfig

        print(
            format_schema("Experiment file (harness run / validate); unknown fields are refused", Experiment)
        )
        print()
        print(
            format_schema(
                "Sweep file (harness sweep); `experiment` is a path relative to the sweep file", SweepConfig
            )
        )
        return
    if file is None:
        raise UserError("validate: give an experiment or sweep file, or --schema to print the schema")
    from harness.config.experiment import is_sweep_file, read_yaml
    from harness.config.runspec import expand

    if file.is_file() and is_sweep_file(read_yaml(file)):
        _validate_sweep(file)
        return
    exp = _load_with_warnings(file)
    from harness.backends import get_backend

    get_backend(exp.backend).check(
        exp, for_run=False
    )  # verl: every run's overrides against the installed verl
    table = Table(title=f"{exp.name}: {len(exp.variants)} variants x {len(exp.seeds)} seeds")
    for col in ("variant", "seed", "run_id", "advantage", "policy loss", "filter", "shaper"):
        table.add_column(col)
    for s in expand(exp):
        a = s.algorithm
        table.add_row(
            s.variant, str(s.seed), s.run_id, a.advantage, a.policy_loss, a.group_filter, a.reward_shaper
        )
    Console().print(table)
    Console().print(f"[green]ok[/]: {file}")


def _validate_sweep(file: Path) -> None:
    from harness.sweep.config import load_sweep

    cfg, exp = load_sweep(file)
    params = ", ".join(
        (
            f"{k} in {{{', '.join(map(str, p.choices))}}}"
            if p.kind == "categorical"
            else f"{k} in [{p.low:g}, {p.high:g}]{' (log)' if p.log else ''}{' (int)' if p.kind == 'int' else ''}"
        )
        for k, p in cfg.params.items()
    )
    Console().print(
        f"sweep over variant {cfg.variant!r} of {exp.name} ({cfg.experiment}): {params}; objective: "
        f"{cfg.direction} final {cfg.metric} on {cfg.benchmark!r}; {cfg.sampler} sampler, {cfg.target} trials x "
        f"{len(cfg.seeds)} seed(s); results in {exp.name}_sweep_{cfg.variant}/",
        highlight=False,
    )
    Console().print(f"[green]ok[/]: {file} (sweep file; run it with `harness sweep {file}`)")


def _first_line(fn) -> str:
    return (inspect.getdoc(fn) or "").split("\n")[0]


def list_command() -> None:
    """Show the registered pieces (with their knobs) and every preset's settings."""
    import algorithms

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
