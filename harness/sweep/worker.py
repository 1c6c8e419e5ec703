"""What one sweep run does in its worker (a WorkerPool process or a Ray task; harness.execution.pool).

Same skip / resume / lock semantics as `harness run` (harness.runs.scheduler.run_task): a finished run is
reused, an interrupted one resumes from its checkpoint, a run folder is trained by one process at a
time (harness.core.locks). Differences, because a sweep owns its runs through Optuna trials:

- a run whose folder is locked by another process (another worker on the same parameters, or an
  orphan of a killed sweep) is waited for, then reused or resumed, instead of skipped;
- a missing shared artefact (a warm start that a swept parameter changes) is built here, once,
  under the runner's shared lock;
- the progress callback enforces the sweep's rules: a non-finite loss fails the run (the trial is
  recorded as failed, the study goes on), and a stop request for this trial (pruned, or a sibling
  seed failed) ends it with state `pruned` or `pending` (resumable). Ctrl-C / SIGTERM reach it as
  for `harness run` (the pool's stop request): the run checkpoints its step and is left `pending`.

Per-trial stop requests are a small JSON file in the run folder carrying the trial's token (the pool's
own stop request would stop every running task), so a leftover request from an earlier trial never
stops a later one; every worker sees the shared results folder.
"""

from __future__ import annotations

import json
import math
import numbers
import traceback
from pathlib import Path

from harness.core import results
from harness.backends import get_backend
from harness.core.errors import StopRequested
from harness.execution.context import TaskContext
from harness.core.locks import describe, owner_info

STOP_FILE = "stop.request"


class RunStopped(StopRequested):
    """The driver asked this run to stop (a StopRequested, so backends checkpoint the step first);
    `state` is what status.json records (pruned | pending)."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run cannot recover."""


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


def non_finite_losses(rec: dict) -> list[str]:
    """Names of the loss entries of a step record that are NaN or infinite."""
    return sorted(k for k, v in rec.items()
                  if "loss" in k and isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isfinite(float(v)))


def _progress(ctx: TaskContext, key: str, run_dir: Path, token: str):
    report = ctx.progress(key)  # sends (step, total) to the driver; raises StopRequested on Ctrl-C / SIGTERM

    def check(step: int, total: int, rec: dict | None = None) -> None:
        bad = non_finite_losses(rec or {})
        if bad:
            raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {step}")
        stop = _stop_for(run_dir, token)
        if stop is not None:
            raise stop
        report(step, total, rec)

    return check


def _prepare_shared(ctx: TaskContext, spec: dict, cache_dir: Path) -> bool:
    """Build the run's missing shared artefact under the runner's lock; False if asked to stop first."""
    from harness.runs.scheduler import prepare_task

    key = get_backend(spec["backend"]).shared_key(spec, cache_dir)
    if key is None:
        return True
    state, _ = prepare_task(ctx, spec, str(cache_dir), key, f"{spec['run_id']} shared artefact")
    return state != "stopped"


def run_sweep_task(ctx: TaskContext, spec: dict, run_dir: str, cache_dir: str, token: str) -> tuple[str, str | None]:
    """Train (or reuse, or resume) one run of a trial; returns (final state, reason or None)."""
    from harness.runs.scheduler import run_lock

    rd, rid = Path(run_dir), spec["run_id"]
    rd.mkdir(parents=True, exist_ok=True)
    lock = run_lock(rd)
    got = lock.acquire(owner_info(ctx.parent_pid), poll=1.0,
                       on_wait=lambda h: ctx.note(rid, f"running in {describe(h)}; waiting for it"),
                       should_stop=lambda: ctx.stop_requested() or _stop_for(rd, token) is not None)
    if not got:
        stop = _stop_for(rd, token)
        return (stop.state, stop.reason) if stop is not None else ("pending", "interrupted")
    try:
        if results.read_status(rd).get("state") == "done":
            return "done", None
        dead = lock.taken_over_from_dead()
        if dead:
            ctx.note(rid, f"taking over the lock left by {describe(dead)}, which no longer runs")
        try:
            if not _prepare_shared(ctx, spec, Path(cache_dir)):
                return "pending", "interrupted"
            results.write_spec(rd, spec)
            get_backend(spec["backend"]).train(spec, rd, Path(cache_dir), progress=_progress(ctx, rid, rd, token))
            return "done", None
        except RunStopped as e:
            st = results.read_status(rd)
            results.write_status(rd, e.state, step=st.get("step", 0), total_steps=spec["train"]["steps"], error=e.reason)
            return e.state, e.reason
        except (StopRequested, KeyboardInterrupt):
            st = results.read_status(rd)
            results.write_status(rd, "pending", step=st.get("step", 0), total_steps=spec["train"]["steps"],
                                 error="interrupted; run `harness sweep` again to resume from the last checkpoint")
            return "pending", "interrupted"
        except Exception as e:  # the run fails, the study goes on
            err = f"{type(e).__name__}: {e}"
            results.write_status(rd, "failed", error=err, traceback=traceback.format_exc()[-4000:])
            return "failed", err
    finally:
        lock.release()
