"""`harness` command line: run, validate, sweep, report, eval, list, probe.

Each command's implementation lives next to what it drives; this module only wires them into one
typer app and turns a UserError into a one-line message with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from harness.errors import EXIT_USER_ERROR, UserError

app = typer.Typer(
    name="harness",
    help=(
        "Compare RL algorithms for LLM reasoning (PPO, GRPO, DAPO, PSR-NSR, NGRPO) on the same budget.\n\n"
        "Typical use: `harness run experiments/quickstart.yaml`, then `harness report results/`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from harness.commands import list_command, run_command, validate_command
    from harness.evaluate import eval_command
    from harness.probe import probe_command
    from harness.report.cli import report_command
    from harness.sweep import sweep_command

    app.command("run")(run_command)
    app.command("validate")(validate_command)
    app.command("sweep")(sweep_command)
    app.command("report")(report_command)
    app.command("eval")(eval_command)
    app.command("list")(list_command)
    app.command("probe")(probe_command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
