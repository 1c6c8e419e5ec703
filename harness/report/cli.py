"""`harness report` (placeholder until the reports issue lands)."""
import typer

from harness.errors import UserError


def report_command(results: str = typer.Argument(..., help="Results directory.")) -> None:
    """Render Pass@k curves, AUC tables and training diagnostics (not built yet)."""
    raise UserError("harness report is not implemented yet")
