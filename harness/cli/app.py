"""`harness` command line: run, validate, sweep, report, eval, list, probe.

Each command's implementation lives next to what it drives and is imported only when that command
runs, so `harness --help` does not load torch, pandas or matplotlib. A UserError becomes a one-line
message with exit code 2; a stop on a signal exits 128 + signal (130 for Ctrl-C) without a traceback.
"""

from __future__ import annotations

import importlib
import sys

from typer.core import TyperCommand, TyperGroup
from typer.exceptions import Exit

from harness.core.errors import EXIT_USER_ERROR, Interrupted, UserError

HELP = (
    "Compare RL algorithms for LLM reasoning (PPO, GRPO, DAPO, PSR-NSR, NGRPO) on the same budget.\n\n"
    "Typical use: `harness run experiments/quickstart.yaml`, then `harness report results/`."
)

# name -> (implementation, one-line help for `harness --help`; tests/unit/test_cli.py checks it is the
# first line of the implementation's docstring)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "harness.cli.commands:run_command",
        "Run every (variant, seed) of an experiment: finished runs are skipped, interrupted ones resumed.",
    ),
    "validate": (
        "harness.cli.commands:validate_command",
        "Check an experiment or sweep file without running it, or print the schema (--schema).",
    ),
    "sweep": (
        "harness.cli.sweep:sweep_command",
        "Search a variant's settings with Optuna; the objective is a report metric averaged over seeds.",
    ),
    "report": (
        "harness.cli.report:report_command",
        "Render Pass@k curves, Pass@k AUC tables (with seed CIs), comparisons and training diagnostics.",
    ),
    "eval": (
        "harness.cli.eval:eval_command",
        "Sample n completions per benchmark problem, grade them with math-verify, " "write samples.parquet.",
    ),
    "list": (
        "harness.cli.commands:list_command",
        "Show the registered pieces (with their knobs) and every preset's settings.",
    ),
    "plan": (
        "harness.cli.plan:plan_command",
        "Seeds needed to resolve an AUC difference of D with 80% power, per benchmark, from a pilot's spread.",
    ),
    "probe": (
        "harness.cli.probe:probe_command",
        "Probe gradient dynamics: 1 and K updates of each algorithm on all-wrong, all-correct "
        "and mixed groups.",
    ),
}


def load_command(name: str) -> TyperCommand:
    """Import a command's implementation and build its click command (typer reads the signature)."""
    import typer

    module, _, func = COMMANDS[name][0].partition(":")
    fn = getattr(importlib.import_module(module), func)
    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    sub.command(name)(fn)
    return typer.main.get_command(sub)


class LazyGroup(TyperGroup):
    """Lists commands from COMMANDS (no import) and loads one only when it is invoked."""

    def __init__(self, **attrs) -> None:
        super().__init__(**attrs)
        self.commands = {n: TyperCommand(n, help=h, short_help=h) for n, (_, h) in COMMANDS.items()}

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name in COMMANDS and not getattr(cmd, "_loaded", False):
            cmd = load_command(name)
            cmd._loaded = True
            self.commands[name] = cmd
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Interrupted as e:  # after a graceful stop (or a second signal): no traceback
            raise Exit(128 + e.signum) from None


app = LazyGroup(name="harness", help=HELP, no_args_is_help=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app.main(args=argv, prog_name="harness", standalone_mode=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
    main()
