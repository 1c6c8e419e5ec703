"""`harness sweep`: the typer command; the sweep itself is harness/sweep/ (config, driver, worker).

Heavy imports (optuna, torch) happen inside the command, so `harness sweep --help` stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from harness.cli import options
from harness.core.errors import UserError


def sweep_command(
    file: Path = typer.Argument(
        ..., help="Sweep YAML (see experiments/eps_sweep.yaml, experiments/clip_grid.yaml)."
    ),
    results_dir: Path = typer.Option(
        Path("results"),
        "--results",
        help="Results root; trials go to <results>/<experiment>_sweep_<variant>/.",
    ),
    trials: int = typer.Option(
        0, "--trials", help="Override the file's number of trials (0 = use the file)."
    ),
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        help="Runs at once in this process (the seeds of a trial run side by side). "
        "0 = CPU cores / train.threads (Ray: cluster CPUs / train.threads).",
    ),
    storage: str = typer.Option(
        None,
        "--storage",
        help="Optuna storage: a journal file path (default "
        "<results>/<experiment>_sweep_<variant>/optuna.journal), sqlite:///FILE.db, or a "
        "PostgreSQL/MySQL SQLAlchemy URL. Workers on several machines share one study through it.",
    ),
    executor: str = options.EXECUTOR,
    address: str = options.ADDRESS,
    cache_dir: Path = options.CACHE_DIR,
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Run the parameters of failed trials once more "
        "(e.g. after an OOM kill); their runs resume from their checkpoints.",
    ),
    summary_every: float = options.SUMMARY_EVERY,
) -> None:
    """Search a variant's settings with Optuna; the objective is a report metric averaged over seeds.

    Several `harness sweep` processes (on one or many machines) given the same --storage and results
    folder work on one study together; a killed sweep restarted with the same command resumes its
    trials from their checkpoints. Failed trials are recorded with their reason and replaced (a failed
    grid point is spent; --retry-failed runs failed parameters once more). Every trial is a normal run
    folder; `harness report` on the sweep's folder adds a heatmap, parameter importances and the best
    trials. Ctrl-C (or SIGTERM): running runs save a checkpoint of their current step and their trials
    are queued again, exit 130 (143); rerunning the same command resumes them (a second Ctrl-C quits
    at once). Exit code 1 when the sweep stopped on too many failed trials.
    """
    from harness.backends import get_backend
    from harness.core.paths import default_cache
    from harness.execution.executors import check_executor
    from harness.sweep.config import load_sweep
    from harness.sweep.driver import run_sweep
    from harness.sweep.optuna_glue import open_storage

    cfg, exp = load_sweep(file)
    get_backend(exp.backend).check(exp)
    if trials < 0:
        raise UserError("--trials: must be >= 0 (0 = the file's number)")
    if trials and cfg.sampler == "grid" and trials > cfg.grid_size:
        raise UserError(f"--trials: {trials} exceeds the grid's {cfg.grid_size} points")
    if jobs < 0:
        raise UserError("--jobs: must be >= 0 (0 = automatic)")
    if summary_every < 0:
        raise UserError("--summary-every: must be >= 0 seconds (0 = no summaries)")
    check_executor(executor, address)
    if trials:
        cfg = cfg.model_copy(update={"trials": trials})
    out = results_dir / f"{exp.name}_sweep_{cfg.variant}"
    store = open_storage(storage, out)  # unreachable or malformed -> UserError, nothing written
    if jobs == 0 and not address:  # a cluster (--address) is sized by Ray: 0 = its CPUs / train.threads
        jobs = max(1, (os.cpu_count() or 1) // exp.train.threads)
    ok = run_sweep(
        cfg,
        exp,
        file,
        out,
        store,
        jobs=jobs,
        executor=executor,
        address=address,
        cache_dir=cache_dir or default_cache(),
        retry_failed=retry_failed,
        summary_every=summary_every,
    )
    if not ok:
        raise typer.Exit(1)
