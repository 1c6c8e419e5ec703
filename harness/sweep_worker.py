"""What one sweep run does inside its worker process (local process or Ray task).

Same skip / resume / lock semantics as `harness run` (harness.runner): a finished run is reused, an
interrupted one resumes from its checkpoint, a run folder is trained by one process at a time. Two
differences, because a sweep owns its runs through Optuna trials:

- a run whose folder is locked by another process (another worker on the same parameters, or an
  orphan of a killed sweep) is waited for, then reused, instead of skipped;
- the progress callback enforces the sweep's rules: a non-finite loss fails the run (the trial is
  recorded as failed, the study goes on), and a stop request from the driver (pruned trial, or a
  sibling seed failed) ends it with state `pruned` or `pending` (resumable).

Stop requests are a small JSON file in the run folder carrying the trial's token, so a leftover
request from an earlier trial never stops a later one; every worker sees the shared results folder.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path

from harness import results
from harness.backends import get_backend

STOP_FILE = "stop.request"


class RunStopped(Exception):
    """The driver asked this run to stop; `state` is what status.json records (pruned | pending)."""

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
    return sorted(k for k, v in rec.items() if "loss" in k and isinstance(v, float) and not math.isfinite(v))


def _progress(q, key: str, run_dir: Path, token: str):
    def report(step: int, total: int, rec: dict) -> None:
        bad = non_finite_losses(rec or {})
        if bad:
            raise NonFiniteLoss(f"non-finite {', '.join(bad)} at step {step}")
        stop = _stop_for(run_dir, token)
        if stop is not None:
            raise stop
        try:
            q.put((key, step, total))
        except Exception:  # noqa: BLE001 - progress must never fail a run (the driver may be gone)
            pass

    return report


def run_sweep_task(spec: dict, run_dir: str, cache_dir: str, q, token: str) -> tuple[str, str | None]:
    """Train (or reuse, or resume) one run of a trial; returns (final state, reason or None)."""
    from harness.runner import _Lock

    rd = Path(run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    while True:
        lock = _Lock(rd)
        if lock.__enter__():
            break
        lock.__exit__(None, None, None)
        stop = _stop_for(rd, token)
        if stop is not None:
            return stop.state, stop.reason
        time.sleep(1.0)  # another process trains this very run: wait for it, then reuse its result
    try:
        if results.read_status(rd).get("state") == "done":
            return "done", None
        results.write_spec(rd, spec)
        try:
            get_backend(spec["backend"]).train(spec, rd, Path(cache_dir), progress=_progress(q, spec["run_id"], rd, token))
            return "done", None
        except RunStopped as e:
            st = results.read_status(rd)
            results.write_status(rd, e.state, step=st.get("step", 0), total_steps=spec["train"]["steps"], error=e.reason)
            return e.state, e.reason
        except KeyboardInterrupt:
            st = results.read_status(rd)
            results.write_status(rd, "pending", step=st.get("step", 0), total_steps=spec["train"]["steps"],
                                 error="interrupted; run `harness sweep` again to resume from the last checkpoint")
            return "pending", "interrupted"
        except Exception as e:  # the run fails, the study goes on
            err = f"{type(e).__name__}: {e}"
            results.write_status(rd, "failed", error=err, traceback=traceback.format_exc()[-4000:])
            return "failed", err
    finally:
        lock.__exit__(None, None, None)
