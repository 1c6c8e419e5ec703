"""`harness eval` (placeholder until the math-benchmarks issue lands)."""
import typer

from harness.errors import UserError


def eval_command(model: str = typer.Argument(..., help="Model to evaluate.")) -> None:
    """Sample n completions per benchmark problem and write samples.parquet (not built yet)."""
    raise UserError("harness eval is not implemented yet")
