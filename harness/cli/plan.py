"""`harness plan EXPERIMENT --effect D` (the logic: harness/report/plan.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.core.errors import UserError


def plan_command(
    experiment: str = typer.Argument(
        ..., help="Experiment name or its YAML file (the pilot: results/<name>/)."
    ),
    effect: float = typer.Option(
        ..., "--effect", help="AUC difference to resolve, in AUC points (0-100 scale)."
    ),
    results: Path = typer.Option(Path("results"), "--results", help="Results root holding the pilot's runs."),
) -> None:
    """Seeds needed to resolve an AUC difference of D with 80% power, per benchmark, from a pilot's spread."""
    if not effect > 0:
        raise UserError(
            f"--effect {effect}: must be > 0 (an AUC difference in points on the 0-100 scale, e.g. 2)"
        )
    from harness.report.plan import format_plan, pilot_aucs, plan_seeds

    name, aucs, benches = pilot_aucs(experiment, results)
    print(format_plan(name, effect, plan_seeds(aucs, effect, benchmarks=benches)))
