"""Training backends behind one interface: `harness run` and `harness sweep` never import a trainer.

A backend turns one RunSpec into a run folder (harness.core.results layout). Built in:

    local   the embedded CPU backend (TinyGPT on modchain; harness/backends/local/)
    verl    verl 0.9.1: `main_ppo` on GPU clusters, or verl's own engine in one CPU process
            (harness/backends/verl/)

The runner calls, in order: `check(exp)` once before anything is written (bad input or a
missing dependency -> UserError), `shared_key(spec, cache)` to find artefacts that several runs
share (a warm start) and are missing, `prepare(spec, cache)` once per such key, then
`train(spec, run_dir, cache)` per run (resuming from `run_dir` when it holds a checkpoint).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    from harness.config.runspec import RunSpec

Progress = Callable[[int, int, dict], None]  # (step, total, metrics of the step)

BACKENDS: dict[str, str] = {
    "local": "harness.backends.local.backend:LocalBackend",
    "verl": "harness.backends.verl.backend:VerlBackend",
}


class Backend(Protocol):
    name: str

    def check(self, exp, for_run: bool = True) -> None:
        """Everything that can be checked before a run starts (raises UserError, writes nothing);
        for_run=False (`harness validate`, `--dry-run`) leaves out what only starting needs (GPUs)."""

    def shared_key(self, spec: RunSpec, cache_dir: Path) -> str | None:
        """Id of a missing artefact shared by several runs (built once by `prepare`), or None."""

    def prepare(self, spec: RunSpec, cache_dir: Path, progress: Progress | None = None) -> None:
        """Build the shared artefact of `spec` (e.g. the warm start) into cache_dir."""

    def train(self, spec: RunSpec, run_dir: Path, cache_dir: Path, progress: Progress | None = None) -> None:
        """Run or resume one RunSpec into run_dir; status.json ends 'done' or the call raises.

        Call progress after every step: once the user asked to stop (Ctrl-C, SIGTERM) it raises
        harness.core.errors.StopRequested; save a checkpoint of that step, then let it propagate."""

    def inputs(self, spec: RunSpec, cache_dir: Path) -> dict:
        """What the run starts from, for its provenance record (harness.core.provenance): e.g.
        {"warm_start": {key, sha256}} or {"model": path}."""

    def has_checkpoint(self, run_dir: Path) -> bool:
        """Whether run_dir holds a resumable checkpoint."""


_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend registered as `name` (imported lazily: verl is an optional extra)."""
    if name not in BACKENDS:
        raise KeyError(f"unknown backend {name!r}; valid backends: {', '.join(sorted(BACKENDS))}")
    if name not in _instances:
        module, _, cls = BACKENDS[name].partition(":")
        _instances[name] = getattr(importlib.import_module(module), cls)()
    return _instances[name]


def dry_run(exp, results_dir: Path, cache_dir: Path) -> None:
    """Print what `harness run` would execute for every run of `exp`, writing and starting nothing."""
    from harness.config.runspec import expand

    if exp.backend == "verl":
        from harness.backends.verl.backend import VerlBackend
        from harness.backends.verl.cluster import environment, shell_line

        for run in VerlBackend().check(exp, for_run=False, results_dir=results_dir, cache_dir=cache_dir):
            spec = run["spec"]
            print(f"# {spec.run_id} -> {run['run_dir']}")
            if spec.verl.mode == "cluster":
                print(shell_line(run["overrides"], environment(spec, None)))
            else:
                print("# in-process: verl's engine on this CPU with these overrides")
                print("\n".join(run["overrides"]))
            print()
        return
    for spec in expand(exp):
        print(
            f"# {spec.run_id} -> {Path(results_dir) / exp.name / spec.run_id} (local backend, in a worker process)"
        )
