"""`harness sweep` (placeholder)."""
import typer

from harness.errors import UserError


def sweep_command(file: str = typer.Argument(..., help="Sweep YAML.")) -> None:
    """Optuna epsilon sweep (not built yet)."""
    raise UserError("harness sweep is not implemented yet")
