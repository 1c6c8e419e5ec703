"""`harness probe FILE` (the work: harness/probe/probe.py, computed in backends/local/probe.py)."""

from __future__ import annotations

from pathlib import Path

import typer


def probe_command(
    file: Path = typer.Argument(..., help="Probe YAML (see experiments/gradient_probe.yaml)."),
    results_dir: Path = typer.Option(
        Path("results"), "--results", help="Results root; output goes to <results>/<name>/."),
    cache_dir: Path = typer.Option(
        None, "--cache-dir",
        help="Warm-start cache (default $NGRPO_HARNESS_CACHE or ~/.cache/ngrpo-harness)."),
) -> None:
    """Probe gradient dynamics: 1 and K updates of each algorithm on all-wrong, all-correct and mixed groups.

    From one policy state: gradient norms, cosines between the algorithms' updates, the change in log-prob of
    the sampled wrong answers and of the correct answer, entropy, and pass@k after K updates.
    `harness report` plots it."""
    from harness.probe.probe import run_probe_file

    run_probe_file(file, results_dir, cache_dir)
