"""Options shared by several commands (one definition, the same help everywhere)."""

from __future__ import annotations

import typer

CACHE_DIR = typer.Option(
    None, "--cache-dir", help="Warm-start cache (default $NGRPO_HARNESS_CACHE or ~/.cache/ngrpo-harness).")
SUMMARY_EVERY = typer.Option(
    30.0, "--summary-every", help="When output is not a terminal: seconds between progress summary lines (0 = none).")
EXECUTOR = typer.Option(
    "process", "--executor",
    help="process (local processes) or ray (Ray tasks: a new local instance, or a cluster with --address).")
ADDRESS = typer.Option(
    None, "--address", help="Ray cluster address for --executor ray (auto, HOST:PORT or ray://HOST:10001); every "
    "node must see the results and cache folders at the same paths.")
