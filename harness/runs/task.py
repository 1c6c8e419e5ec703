"""The one task a worker runs for a run, for `harness run` and `harness sweep` alike (a WorkerPool process
or a Ray task; harness.execution), and the task that builds a shared artefact (a warm start).

    run_task(ctx, spec, run_dir, cache_dir, rules=RunRules())   -> (run_id, state, detail)
    prepare_task(ctx, spec, cache_dir, key, label)              -> (state, detail)

A run folder is trained by one process at a time (its lock, harness.core.locks): a finished run is
reused, an interrupted one resumes from its checkpoint, a lock left by a dead process is taken over.
What differs between the commands is a RunRules (the defaults are `harness run`'s; the sweep's are
harness.sweep.worker.SweepRules):

- `wait`: a run held by another live process is waited for (True), or returned as "held" (False);
  waiting, a missing shared artefact is built in the task, under the same lock as prepare_task;
- `stop_request(run_dir)`: a stop asked of this run only (a RunStopped), besides the pool's;
- `progress(ctx, key, run_dir)`: the Progress callback handed to the backend (it may raise to stop
  or fail the run);
- `announce`: note "started (N steps)" / "resumed at step S/N" (a budgeted run: "(budget B rollouts, at most N steps)"); `command`: named in a stopped run's status.

States: done (detail: how long, or "by another process"), held (detail: the holder), stopped (detail:
the checkpointed step, or None when stopped before training), failed (detail: the error), or a
RunStopped's own state (pruned | pending; detail: its reason).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.backends import get_backend
from harness.config.runspec import RunSpec
from harness.core import results
from harness.core.errors import StopRequested
from harness.core.locks import FileLock, describe, owner_info
from harness.execution.context import TaskContext
from harness.execution.progress import fmt_seconds
from harness.runs import stale


class RunStopped(StopRequested):
    """A stop asked of one run (a StopRequested, so backends checkpoint the step first);
    `state` is what status.json records (pruned | pending)."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run cannot recover (its status names the step and the term)."""


def non_finite_losses(rec: dict) -> list[str]:
    """Names of the loss entries of a step record that are NaN or infinite."""
    return sorted(k for k, v in rec.items() if "loss" in k and isinstance(v, numbers.Real)
                  and not isinstance(v, bool) and not math.isfinite(float(v)))


def fail_on_non_finite(step: int, rec: dict | None) -> None:
    """Raise NonFiniteLoss naming the terms and the step if a loss of the step's record is NaN or inf."""
    bad = non_finite_losses(rec or {})
    if bad:
        raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {step}")


@dataclass(frozen=True)
class RunRules:
    """How run_task treats a held run, stop requests and progress; the defaults are `harness run`'s."""

    command: str = "run"    # `harness <command>` again resumes a stopped run (its status says so)
    wait: bool = False      # wait for a run held by another process (and build its shared artefact)
    announce: bool = True   # note "started (N steps)" / "resumed at step S/N"

    def stop_request(self, run_dir: Path) -> RunStopped | None:
        """A stop asked of this run only (none for `harness run`: only the pool's stop request)."""
        return None

    def progress(self, ctx: TaskContext, key: str, run_dir: Path) -> Callable[..., None]:
        """The backend's Progress callback: fails the run on a non-finite loss, then the executor's
        (raises StopRequested on Ctrl-C / SIGTERM)."""
        report = ctx.progress(key)

        def check(step: int, total: int, rec: dict | None = None) -> None:
            fail_on_non_finite(step, rec)
            report(step, total, rec)

        return check


def run_lock(run_dir: Path) -> FileLock:
    return FileLock(Path(run_dir) / ".lock")


def shared_lock(cache_dir: Path, key: str) -> FileLock:
    return FileLock(Path(cache_dir) / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock")


def prepare_task(ctx: TaskContext, spec: RunSpec, cache_dir: str, key: str,
                 label: str) -> tuple[str, str | None]:
    """Build one shared artefact unless another process built it meanwhile; -> (state, detail)."""
    backend = get_backend(spec.backend)
    lock = shared_lock(Path(cache_dir), key)
    got = lock.acquire(owner_info(ctx.parent_pid), should_stop=ctx.stop_requested,
                       on_wait=lambda h: ctx.note(label, f"waiting: being built by {describe(h)}"))
    if not got:
        return "stopped", None
    try:
        if backend.shared_key(spec, Path(cache_dir)) is None:
            return "cached", "built by another process"
        ctx.note(label, "building")
        t0 = time.monotonic()
        backend.prepare(spec, Path(cache_dir), progress=ctx.progress(label))
        return "built", f"in {fmt_seconds(time.monotonic() - t0)}"
    except StopRequested:
        return "stopped", None
    finally:
        lock.release()


def _acquire(ctx: TaskContext, lock: FileLock, rd: Path, rid: str, rules: RunRules) -> bool:
    """The run's lock: tried once, or (rules.wait) waited for until a stop is requested."""
    if not rules.wait:
        return lock.try_acquire(owner_info(ctx.parent_pid))
    return lock.acquire(owner_info(ctx.parent_pid), poll=1.0,
                        on_wait=lambda h: ctx.note(rid, f"running in {describe(h)}; waiting for it"),
                        should_stop=lambda: ctx.stop_requested() or rules.stop_request(rd) is not None)


def _prepare_shared(ctx: TaskContext, spec: RunSpec, cache_dir: Path) -> bool:
    """Build the run's missing shared artefact under the shared lock; False if asked to stop first."""
    key = get_backend(spec.backend).shared_key(spec, cache_dir)
    if key is None:
        return True
    state, _ = prepare_task(ctx, spec, str(cache_dir), key, f"{spec.run_id} shared artefact")
    return state != "stopped"


def _announce(ctx: TaskContext, spec: RunSpec, rd: Path) -> None:
    steps = spec.train.steps
    start = results.read_status(rd).get("step", 0) if get_backend(spec.backend).has_checkpoint(rd) else 0
    b, plan = spec.train.budget, f"{steps} steps"
    if b is not None:
        plan = (f"budget {b.rollouts:,} rollouts" if b.rollouts else f"budget {b.tokens:,} tokens") + f", at most {plan}"
    ctx.note(spec.run_id, f"resumed at step {start}/{steps} ({plan})" if start else f"started ({plan})")


def _stopped(rd: Path, spec: RunSpec, state: str, error: str) -> int:
    """Record a run stopped mid-training (its checkpoint is on disk); -> the step it reached."""
    step = results.read_status(rd).get("step", 0)
    results.write_status(rd, state, step=step, total_steps=spec.train.steps, error=error)
    return step


def run_task(ctx: TaskContext, spec: RunSpec, run_dir: str, cache_dir: str,
             rules: RunRules = RunRules()) -> tuple[str, str, object]:
    """Train (or reuse, or resume) one run under its lock; -> (run_id, state, detail) (module docstring)."""
    rd, rid = Path(run_dir), spec.run_id
    rd.mkdir(parents=True, exist_ok=True)
    lock = run_lock(rd)
    if not _acquire(ctx, lock, rd, rid, rules):
        if not rules.wait:
            return rid, "held", lock.holder() or {}
        stop = rules.stop_request(rd)
        return (rid, stop.state, stop.reason) if stop is not None else (rid, "stopped", None)
    try:
        if results.read_status(rd).get("state") == "done":  # finished by another process since the plan
            return rid, "done", "by another process"
        dead = lock.taken_over_from_dead()
        if dead:
            ctx.note(rid, f"taking over the lock left by {describe(dead)}, which no longer runs")
        if rules.announce:
            _announce(ctx, spec, rd)
        if rules.wait and not _prepare_shared(ctx, spec, Path(cache_dir)):
            return rid, "stopped", None
        results.write_spec(rd, spec.to_dict())
        stale.record_start(rd, spec, Path(cache_dir))
        t0 = time.monotonic()
        get_backend(spec.backend).train(spec, rd, Path(cache_dir), progress=rules.progress(ctx, rid, rd))
        stale.record_step0(rd)
        return rid, "done", f"in {fmt_seconds(time.monotonic() - t0)}"
    except RunStopped as e:
        _stopped(rd, spec, e.state, e.reason)
        return rid, e.state, e.reason
    except (StopRequested, KeyboardInterrupt):
        msg = f"interrupted; run `harness {rules.command}` again to resume from the last checkpoint"
        return rid, "stopped", _stopped(rd, spec, "pending", msg)
    except Exception as e:  # the run fails, the others go on
        err = f"{type(e).__name__}: {e}"
        results.write_status(rd, "failed", error=err, traceback=traceback.format_exc()[-4000:])
        return rid, "failed", err
    finally:
        lock.release()
