"""A sweep worker's trials: the ones it owns (Active) and its bookkeeping over the Optuna study.

Trial bookkeeping for the driver (harness.sweep.driver, which runs the trials' runs): the budget
(may_start_trial, the surplus check in start_trial), liveness (reap_stale: a running trial whose
<out>/.trials/<number>.lock can be taken lost its worker; it is failed as "interrupted" and its
parameters enqueued again), --retry-failed, closing trials as failed, and the trials.json mirror.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness.config.experiment import Experiment
from harness.config.runspec import RunSpec, expand
from harness.core import results
from harness.core.errors import UserError
from harness.core.locks import FileLock, owner_info
from harness.sweep.config import SweepConfig, trial_exp
from harness.sweep.optuna_glue import counts, fail_kind, retried_numbers

STALE_UNLOCKED_S = 120.0  # a running trial with no lock file this old lost its worker before it locked
MAX_RETRIES = 3  # a trial whose worker died is re-enqueued at most this many times (Ctrl-C: always)


@dataclass
class Active:
    """A trial this worker owns."""

    trial: optuna.Trial
    params: dict
    specs: list[RunSpec]
    lock: FileLock
    pending: list[int]
    running: set[int] = field(default_factory=set)
    values: dict[int, float] = field(default_factory=dict)
    failed: tuple[str, str] | None = None  # (kind, reason)
    pruned: str | None = None
    stopping: bool = False

    @property
    def token(self) -> str:
        return f"{self.trial.study.study_name}:{self.trial.number}"


def _failed_not_retried(t, retried: frozenset) -> bool:
    """A trial that failed on its own (error or killed) and is not enqueued again yet."""
    return t.state == TrialState.FAIL and fail_kind(t) in ("error", "killed") and t.number not in retried


class TrialBook:
    """The trials of one study that this worker owns or may start, and their records."""

    def __init__(self, cfg: SweepConfig, exp: Experiment, out: Path, study: optuna.Study, view) -> None:
        self.cfg, self.exp, self.out, self.study, self.view = cfg, exp, out, study, view
        self.grid = cfg.sampler == "grid"
        self.locks = out / ".trials"
        self.locks.mkdir(parents=True, exist_ok=True)
        self.active: dict[int, Active] = {}
        self.by_run: dict[str, tuple[Active, int]] = {}
        self.gave_up = False
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.last_reap = 0.0

    def trials(self):
        return self.study.get_trials(deepcopy=False)

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out / spec.run_id

    def write_trials(self) -> None:
        """Mirror every trial of the study into <out>/trials.json (the report reads it)."""
        rows = []
        for t in self.trials():
            rows.append({
                "number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "distributions": {k: optuna.distributions.distribution_to_json(d)
                                  for k, d in t.distributions.items()},
                "user_attrs": t.user_attrs,
                "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
                "start": t.datetime_start.isoformat() if t.datetime_start else None,
                "complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            })
        results.write_json(self.out / "trials.json", rows)

    # --------------------------------------------------------------------------- stale trials
    def reap_stale(self, force: bool = False) -> None:
        """Fail running trials of dead workers and enqueue their parameters again (resumed from their
        checkpoints)."""
        if not force and time.monotonic() - self.last_reap < 5.0:
            return
        self.last_reap = time.monotonic()
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in self.active:
                continue
            path = self.locks / f"{t.number}.lock"
            young = t.datetime_start is None or now - t.datetime_start.timestamp() < STALE_UNLOCKED_S
            if not path.exists() and young:
                continue
            lock = FileLock(path)
            if not lock.try_acquire():
                continue  # its worker is alive
            try:
                worker = t.user_attrs.get("worker", "?")
                self._retire(t, f"the sweep worker running it ({worker}) stopped before it finished")
            finally:
                lock.release()

    def _retire(self, t, reason: str, always: bool = False) -> None:
        """Mark an interrupted trial failed and, once only (the state transition is atomic), enqueue it again
        (at most MAX_RETRIES times unless `always`: a Ctrl-C is no reason to give a trial up)."""
        storage = self.study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_kind", "interrupted")
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # another worker got there first
        params = dict(t.params)
        if len(params) < len(self.cfg.params) and "grid_id" in t.system_attrs:  # died before suggesting
            sampler = self.study.sampler
            params = dict(zip(sampler._param_names, sampler._all_grids[t.system_attrs["grid_id"]]))
        retries = int(t.user_attrs.get("retries", 0))
        if len(params) == len(self.cfg.params) and (always or retries < MAX_RETRIES):
            self.study.enqueue_trial(params, user_attrs={"retry_of": t.number, "retries": retries + 1})
            self.view.event(f"trial {t.number} was interrupted ({reason}); re-enqueued to resume it")
        self.write_trials()

    # --------------------------------------------------------------------------- starting work
    def may_start_trial(self) -> bool:
        trials = self.trials()
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        retried = retried_numbers(trials)
        failed = sum(_failed_not_retried(t, retried) for t in trials)
        if failed >= (self.cfg.max_failed if self.cfg.max_failed is not None else self.cfg.target):
            self.gave_up = True
            return False
        return sum(counts(t, self.grid, retried) for t in trials) < self.cfg.target

    def retry_failed(self) -> None:
        """--retry-failed: enqueue the parameters of every failed trial (error or killed) not retried yet;
        their runs resume from their checkpoints. Two workers doing this at once are caught by the surplus
        check."""
        trials = self.trials()
        retried = retried_numbers(trials)
        for t in trials:
            if _failed_not_retried(t, retried) and len(t.params) == len(self.cfg.params):
                retries = int(t.user_attrs.get("retries", 0)) + 1
                attrs = {"retry_of": t.number, "retries": retries}
                self.study.enqueue_trial(dict(t.params), user_attrs=attrs)
                reason = t.user_attrs.get("fail_reason", "?")
                self.view.event(f"trial {t.number} ({fail_kind(t)}: {reason}) enqueued again")

    def start_trial(self) -> Active | None:
        trial = self.study.ask()
        lock = FileLock(self.locks / f"{trial.number}.lock")
        if not lock.try_acquire(owner_info()):
            raise UserError(f"{self.locks}: trial {trial.number}'s lock is held by another process: two "
                            f"studies (different --storage) share this results folder; give each its own "
                            f"--results")
        trial.set_user_attr("worker", self.worker)
        trials = self.trials()
        retried = retried_numbers(trials)
        ahead = [t for t in trials if t.number < trial.number and counts(t, self.grid, retried)]
        if len(ahead) >= self.cfg.target:
            why = "not run: the study already had its trials (workers asked at once)"
            self._tell_failed(trial, "surplus", why, lock)
            return None
        try:
            params = {k: p.suggest(trial, k) for k, p in self.cfg.params.items()}
            specs = expand(trial_exp(self.cfg, self.exp, params))
        except (UserError, ValueError) as e:
            self._tell_failed(trial, "error", f"invalid settings: {e}", lock)
            return None
        trial.set_user_attr("run_ids", [s.run_id for s in specs])
        a = Active(trial, params, specs, lock, pending=list(range(len(specs))))
        self.active[trial.number] = a
        for i, s in enumerate(specs):
            self.by_run[s.run_id] = (a, i)
        return a

    def _close(self, a: Active, lock: bool = True) -> None:
        self.active.pop(a.trial.number, None)
        for s in a.specs:
            self.by_run.pop(s.run_id, None)
        if lock:
            a.lock.release()

    def _tell_failed(self, trial, kind: str, reason: str, lock: FileLock) -> None:
        trial.set_user_attr("fail_kind", kind)
        trial.set_user_attr("fail_reason", reason)
        self.study.tell(trial, state=TrialState.FAIL)
        lock.release()
        self.write_trials()
