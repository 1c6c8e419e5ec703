"""`harness run`, `validate` and `list` (placeholders filled by the foundation/backend issues)."""
import typer

from harness.errors import UserError


def run_command(file: str = typer.Argument(...)) -> None:
    """Run an experiment file."""
    raise UserError("not implemented yet")


def validate_command(file: str = typer.Argument(...)) -> None:
    """Validate an experiment file."""
    raise UserError("not implemented yet")


def list_command() -> None:
    """List registered pieces."""
    raise UserError("not implemented yet")
