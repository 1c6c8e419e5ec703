"""What one sweep run does in its worker (a WorkerPool process or a Ray task; harness.execution).

The task is `harness run`'s (harness.runs.task.run_task) with the sweep's rules (SweepRules), so a run
has the same skip / resume / lock semantics: a finished run is reused, an interrupted one resumes from
its checkpoint, a run folder is trained by one process at a time (harness.core.locks). Differences,
because a sweep owns its runs through Optuna trials:

- a run whose folder is locked by another process (another worker on the same parameters, or an
  orphan of a killed sweep) is waited for, then reused or resumed, instead of skipped;
- a missing shared artefact (a warm start that a swept parameter changes) is built here, once,
  under the runner's shared lock (harness.runs.task.prepare_task);
- the progress callback enforces the sweep's rules: a non-finite loss fails the run, as every run
  (harness.runs.task; the trial is recorded as failed, the study goes on), and a stop request for
  this trial (pruned, or a sibling seed failed) ends it with state `pruned` or `pending` (resumable). Ctrl-C / SIGTERM reach it as
  for `harness run` (the pool's stop request): the run checkpoints its step and is left `pending`.

Per-trial stop requests are a small JSON file in the run folder carrying the trial's token (the pool's
own stop request would stop every running task), so a leftover request from an earlier trial never
stops a later one; every worker sees the shared results folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.config.runspec import RunSpec
from harness.core import results
from harness.execution.context import TaskContext
from harness.runs.task import (  # noqa: F401  (NonFiniteLoss, non_finite_losses: re-exported)
    NonFiniteLoss, RunRules, RunStopped, fail_on_non_finite, non_finite_losses, run_task,
)

STOP_FILE = "stop.request"


def request_stop(run_dir: Path, token: str, state: str, reason: str) -> None:
    results.write_json(Path(run_dir) / STOP_FILE, {"token": token, "state": state, "reason": reason})


def clear_stop(run_dir: Path) -> None:
    (Path(run_dir) / STOP_FILE).unlink(missing_ok=True)


def _stop_for(run_dir: Path, token: str) -> RunStopped | None:
    p = Path(run_dir) / STOP_FILE
    if not p.exists():
        return None
    try:
        req = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return RunStopped(req["state"], req["reason"]) if req.get("token") == token else None


@dataclass(frozen=True)
class SweepRules(RunRules):
    """run_task's rules for a trial's run: wait for a held run, obey this trial's stop requests, fail on
    a non-finite loss."""

    token: str = ""
    command: str = "sweep"
    wait: bool = True
    announce: bool = False

    def stop_request(self, run_dir: Path) -> RunStopped | None:
        return _stop_for(run_dir, self.token)

    def progress(self, ctx: TaskContext, key: str, run_dir: Path) -> Callable[..., None]:
        report = ctx.progress(key)  # (step, total) to the driver; raises StopRequested on Ctrl-C / SIGTERM

        def check(step: int, total: int, rec: dict | None = None) -> None:
            fail_on_non_finite(step, rec)
            stop = _stop_for(run_dir, self.token)
            if stop is not None:
                raise stop
            report(step, total, rec)

        return check


def run_sweep_task(ctx: TaskContext, spec: RunSpec, run_dir: str, cache_dir: str,
                   token: str) -> tuple[str, str | None]:
    """Train (or reuse, or resume) one run of a trial; returns (final state, reason or None).

    harness.runs.task.run_task with SweepRules: done -> ("done", None), stopped by the pool (Ctrl-C /
    SIGTERM) -> ("pending", "interrupted"), failed -> ("failed", error), a stop request -> (its state,
    reason)."""
    _, state, detail = run_task(ctx, spec, run_dir, cache_dir, SweepRules(token=token))
    if state == "done":
        return "done", None
    if state == "stopped":
        return "pending", "interrupted"
    return state, detail
