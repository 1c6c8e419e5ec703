"""The sweep driver: an Optuna study (any storage) whose trials run as ordinary runs on an executor.

Ask / tell over Optuna's storage, so any number of `harness sweep` processes, on any machines, work
on one study when they share the storage URL and the results folder:

- budget: a trial counts when it is complete, pruned, running or waiting (for the grid sampler a
  failed point counts too: it is spent, never retried). After `ask()` a worker checks that fewer
  counting trials have smaller numbers than the budget; otherwise the trial is surplus (two workers
  asked at once) and is closed as failed without running. Trial numbers come from the storage, so
  this never over- or under-fills the study.
- liveness: a worker holds an flock on <out>/.trials/<number>.lock while it owns a trial. A running
  trial whose lock can be taken belongs to a dead worker: the first worker to see it marks it failed
  (kind "interrupted"; the storage's RUNNING -> FAIL transition succeeds once) and enqueues the same
  parameters again, so the retry resumes the same run folders from their checkpoints.
- failures: a run that raises, produces a non-finite loss or whose process is killed fails its
  trial (kind "error" / "killed", reason recorded in the storage and in trials.json); the study
  goes on and, except on a grid, asks for a replacement, up to `max_failed` failures.
- pruning: the first seed's objective at each evaluation is reported; a pruned trial's runs are
  stopped (a stop request for that trial only, harness.sweep.worker) and recorded with state "pruned".
- stopping: runs execute on a WorkerPool or RayPool (harness.execution.pool, tags ("run", trial, seed
  index)). The first Ctrl-C / SIGTERM asks every running run to checkpoint its step and stop; the
  trials this worker owned are closed as interrupted and enqueued again (their runs resume), exit
  130 / 143; a second signal kills the runs at once (they resume from their last checkpoint).

Everything Optuna knows is mirrored into <out>/trials.json after every change (the report reads it).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from harness.core import results
from harness.backends import get_backend
from harness.config.experiment import Experiment, expand
from harness.core.errors import Interrupted, UserError
from harness.execution.executors import make_pool
from harness.execution.signals import StopSignals
from harness.core.locks import FileLock, owner_info
from harness.core.metrics import objective_from_samples
from harness.execution.progress import make_view
from harness.runs.scheduler import prepare_task
from harness.sweep.config import SweepConfig, base_values, trial_exp
from harness.sweep.optuna_glue import Storage, counts, dashboard_command, fail_kind, open_study, retried_numbers
from harness.sweep.worker import clear_stop, request_stop, run_sweep_task

STALE_UNLOCKED_S = 120.0  # a running trial with no lock file this old lost its worker before it locked
MAX_RETRIES = 3  # a trial whose worker died is re-enqueued at most this many times (Ctrl-C: always)
POLL_S = 0.25


# ------------------------------------------------------------------------------------------ driver
@dataclass
class Active:
    """A trial this worker owns."""

    trial: optuna.Trial
    params: dict
    specs: list[dict]
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


class Driver:
    def __init__(self, cfg: SweepConfig, exp: Experiment, out: Path, store: Storage, study: optuna.Study, pool,
                 cache_dir: Path, view) -> None:
        self.cfg, self.exp, self.out, self.store, self.study, self.pool = cfg, exp, out, store, study, pool
        self.cache_dir, self.view = cache_dir, view
        self.grid = cfg.sampler == "grid"
        self.locks = out / ".trials"
        self.locks.mkdir(parents=True, exist_ok=True)
        self.active: dict[int, Active] = {}
        self.tasks: dict[tuple, tuple[Active, int]] = {}  # pool tag ("run", trial number, seed index) -> owner
        self.by_run: dict[str, tuple[Active, int]] = {}
        self.prepares: dict[str, tuple[dict, str]] = {}  # shared artefacts to build before any trial starts
        self.preparing: set[str] = set()
        self.gave_up = False
        self.aborted: str | None = None
        self.stopped: list[str] = []  # "trial N checkpointed at step S (run_id)" after a stop request
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.retry = False
        self.last_reap = 0.0
        self.counted: dict[str, tuple[int, int]] = {}  # run_id -> (first step seen - 1, last step seen)

    # --------------------------------------------------------------------------- bookkeeping
    def trials(self):
        return self.study.get_trials(deepcopy=False)

    def run_dir(self, spec: dict) -> Path:
        return self.out / spec["run_id"]

    def write_trials(self) -> None:
        rows = []
        for t in self.trials():
            rows.append({
                "number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in t.distributions.items()},
                "user_attrs": t.user_attrs, "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
                "start": t.datetime_start.isoformat() if t.datetime_start else None,
                "complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            })
        results.write_json(self.out / "trials.json", rows)

    # --------------------------------------------------------------------------- stale trials
    def reap_stale(self, force: bool = False) -> None:
        """Fail running trials of dead workers and enqueue their parameters again (resumed from checkpoints)."""
        if not force and time.monotonic() - self.last_reap < 5.0:
            return
        self.last_reap = time.monotonic()
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number in self.active:
                continue
            path = self.locks / f"{t.number}.lock"
            if not path.exists() and (t.datetime_start is None or now - t.datetime_start.timestamp() < STALE_UNLOCKED_S):
                continue
            lock = FileLock(path)
            if not lock.try_acquire():
                continue  # its worker is alive
            try:
                self._retire(t, f"the sweep worker running it ({t.user_attrs.get('worker', '?')}) stopped before it finished")
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
        if len(params) < len(self.cfg.params) and "grid_id" in t.system_attrs:  # died before suggesting: its grid point
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
        failed = sum(t.state == TrialState.FAIL and fail_kind(t) in ("error", "killed") and t.number not in retried for t in trials)
        if failed >= (self.cfg.max_failed if self.cfg.max_failed is not None else self.cfg.target):
            self.gave_up = True
            return False
        return sum(counts(t, self.grid, retried) for t in trials) < self.cfg.target

    def retry_failed(self) -> None:
        """--retry-failed: enqueue the parameters of every failed trial (error or killed) not retried yet;
        their runs resume from their checkpoints. Two workers doing this at once are caught by the surplus check."""
        trials = self.trials()
        retried = retried_numbers(trials)
        for t in trials:
            if t.state == TrialState.FAIL and fail_kind(t) in ("error", "killed") and t.number not in retried \
                    and len(t.params) == len(self.cfg.params):
                self.study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number, "retries": int(t.user_attrs.get("retries", 0)) + 1})
                self.view.event(f"trial {t.number} ({fail_kind(t)}: {t.user_attrs.get('fail_reason', '?')}) enqueued again")

    def start_trial(self) -> Active | None:
        trial = self.study.ask()
        lock = FileLock(self.locks / f"{trial.number}.lock")
        if not lock.try_acquire(owner_info()):
            raise UserError(f"{self.locks}: trial {trial.number}'s lock is held by another process: two studies "
                            f"(different --storage) share this results folder; give each its own --results")
        trial.set_user_attr("worker", self.worker)
        trials = self.trials()
        retried = retried_numbers(trials)
        ahead = [t for t in trials if t.number < trial.number and counts(t, self.grid, retried)]
        if len(ahead) >= self.cfg.target:
            self._tell_failed(trial, "surplus", "not run: the study already had its trials (workers asked at once)", lock)
            return None
        try:
            params = {k: p.suggest(trial, k) for k, p in self.cfg.params.items()}
            specs = expand(trial_exp(self.cfg, self.exp, params))
        except (UserError, ValueError) as e:
            self._tell_failed(trial, "error", f"invalid settings: {e}", lock)
            return None
        trial.set_user_attr("run_ids", [s["run_id"] for s in specs])
        a = Active(trial, params, specs, lock, pending=list(range(len(specs))))
        self.active[trial.number] = a
        for i, s in enumerate(specs):
            self.by_run[s["run_id"]] = (a, i)
        return a

    def submit(self, a: Active, i: int) -> None:
        spec = a.specs[i]
        tag = ("run", a.trial.number, i)
        self.pool.submit(tag, run_sweep_task, spec, str(self.run_dir(spec)), str(self.cache_dir), a.token)
        a.running.add(i)
        self.tasks[tag] = (a, i)

    def fill(self) -> None:
        while self.pool.free() > 0 and self.prepares:
            key, (spec, label) = self.prepares.popitem()
            self.preparing.add(key)
            self.pool.submit(("prepare", key, label), prepare_task, spec, str(self.cache_dir), key, label)
        if self.preparing or self.aborted:
            return
        while self.pool.free() > 0:
            a = next((a for a in self.active.values() if a.pending and not a.stopping), None)
            if a is None:
                if not self.may_start_trial():
                    return
                a = self.start_trial()
                if a is None:
                    continue
            self.submit(a, a.pending.pop(0))

    # --------------------------------------------------------------------------- pool events
    def on_event(self, ev: tuple) -> None:
        kind = ev[0]
        if kind == "progress":
            self.on_progress(*ev[1:])
        elif kind == "note":
            self.view.event(f"{ev[1]}: {ev[2]}")
        elif ev[1][0] == "prepare":
            self.on_prepared(ev[1][1], ev[1][2], ev[2] if kind == "done" else ("failed", ev[2].strip().splitlines()[-1]))
        elif kind == "done":
            self.on_done(ev[1], *ev[2])
        else:  # crash: the task raised outside the run (a bug) or its process died (killed, OOM)
            a, i = self.tasks[ev[1]]
            err, rd = ev[2].strip().splitlines()[-1], self.run_dir(a.specs[i])
            if rd.exists() and results.read_status(rd).get("state") != "done":  # the process could not say so itself
                results.write_status(rd, "failed", error=err, traceback=ev[2][-4000:])
            self.on_done(ev[1], "killed" if len(ev) > 3 and ev[3] else "failed", err)

    def on_prepared(self, key: str, label: str, outcome: tuple) -> None:
        state, detail = outcome
        self.preparing.discard(key)
        if state in ("built", "cached"):
            self.view.event(f"{label}: {'built ' if state == 'built' else ''}{detail}")
        elif state == "failed":
            self.aborted = f"{label} failed: {detail}"
            self.view.event(self.aborted)

    def on_done(self, tag: tuple, state: str, err: str | None) -> None:
        a, i = self.tasks.pop(tag)
        a.running.discard(i)
        spec = a.specs[i]
        seed, rd = spec["seed"], self.run_dir(spec)
        if state == "done":
            self.view.overall.runs_done += 1
            try:
                v = objective_from_samples(results.read_samples(rd), self.cfg.benchmark, self.cfg.metric)
                if not math.isfinite(v):
                    raise ValueError(f"objective is {v}")
                a.values[i] = v
            except (ValueError, results.ResultsError) as e:
                state, err = "failed", f"objective: {e}"
        self._count_end(spec)
        if state in ("failed", "killed") and a.failed is None:
            a.failed = ("killed" if state == "killed" else "error", f"seed {seed}: {err}")
            self.stop_trial(a, "pending", f"stopped: seed {seed} of trial {a.trial.number} failed")
        elif state == "pending" and a.failed is None and not a.pruned:  # Ctrl-C / SIGTERM: resumable
            a.failed = ("interrupted", f"seed {seed} stopped by a stop signal")
            self.stopped.append(f"trial {a.trial.number} checkpointed at step {results.read_status(rd).get('step', 0)} "
                                f"({spec['run_id']})")
        self.maybe_finish(a)

    def stop_trial(self, a: Active, state: str, reason: str) -> None:
        a.stopping = True
        a.pending.clear()
        for i in a.running:
            request_stop(self.run_dir(a.specs[i]), a.token, state, reason)

    def maybe_finish(self, a: Active) -> None:
        if a.running or (a.pending and not a.stopping):
            return
        t = a.trial
        for s in a.specs:
            clear_stop(self.run_dir(s))
        if a.failed and a.failed[0] == "interrupted":
            self._close(a)
            self._retire(self.study._storage.get_trial(t._trial_id), a.failed[1], always=True)
            return
        if a.failed:
            self._tell_failed(t, *a.failed, a.lock)
            self.view.event(f"trial {t.number} failed ({a.failed[0]}): {a.failed[1]}")
        elif a.pruned:
            t.set_user_attr("prune_reason", a.pruned)
            self.study.tell(t, state=TrialState.PRUNED)
            a.lock.release()
            self.view.event(f"trial {t.number} pruned: {a.pruned}")
        else:
            vals = [a.values[i] for i in range(len(a.specs))]
            t.set_user_attr("seed_values", vals)
            value = sum(vals) / len(vals)
            self.study.tell(t, value)
            a.lock.release()
            self.view.event(f"trial {t.number:3d}  {self.cfg.metric}({self.cfg.benchmark}) {value:7.2f}  "
                            + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in a.params.items()))
        self._close(a, lock=False)
        self.write_trials()

    def _close(self, a: Active, lock: bool = True) -> None:
        self.active.pop(a.trial.number, None)
        for s in a.specs:
            self.by_run.pop(s["run_id"], None)
        if lock:
            a.lock.release()

    def _tell_failed(self, trial, kind: str, reason: str, lock: FileLock) -> None:
        trial.set_user_attr("fail_kind", kind)
        trial.set_user_attr("fail_reason", reason)
        self.study.tell(trial, state=TrialState.FAIL)
        lock.release()
        self.write_trials()

    # --------------------------------------------------------------------------- progress and pruning
    def on_progress(self, run_id: str, step: int, total: int) -> None:
        self.view.update(run_id, step, total)
        hit = self.by_run.get(run_id)
        if hit is None:
            return
        first, last = self.counted.get(run_id, (step - 1, step - 1))
        self.counted[run_id] = (first, max(last, step))
        self.view.overall.add_steps(max(0, step - last))
        a, i = hit
        if self.cfg.pruner == "none" or i != 0 or a.stopping or step == total or step % a.specs[i]["eval"]["every"]:
            return
        try:
            v = objective_from_samples(results.read_samples(self.run_dir(a.specs[i])), self.cfg.benchmark, self.cfg.metric, step)
        except (ValueError, results.ResultsError):
            return
        a.trial.report(v, step)
        if a.trial.should_prune():
            a.pruned = f"{self.cfg.metric}({self.cfg.benchmark}) {v:.2f} at step {step} (seed {a.specs[i]['seed']})"
            self.stop_trial(a, "pruned", f"pruned by the sweep's {self.cfg.pruner} pruner: {a.pruned}")

    def _count_end(self, spec: dict) -> None:
        """A run ended (done, reused, resumed, stopped early): steps this process did not do leave the ETA."""
        first, last = self.counted.get(spec["run_id"], (0, 0))
        self.view.overall.total_steps -= spec["train"]["steps"] - (last - first)

    # --------------------------------------------------------------------------- main loop
    def queue_shared(self) -> None:
        """The artefacts every trial shares (warm starts), built once before any trial starts (a trial whose
        parameters change them builds its own in its task, under the same lock)."""
        probe = {k: p.choices[0] if p.kind == "categorical" else p.low for k, p in self.cfg.params.items()}
        probe = {k: int(v) if self.cfg.params[k].kind == "int" else v for k, v in probe.items()}
        for s in expand(trial_exp(self.cfg, self.exp, probe)):
            key = get_backend(s["backend"]).shared_key(s, self.cache_dir)
            if key is not None:
                label = f"warm start (seed {s['warm_start']['seed']})" if "warm_start" in s else f"prepare {key}"
                self.prepares.setdefault(key, (s, label))

    def run(self, sig: StopSignals) -> None:
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self.trials())
        o, per_trial = self.view.overall, len(self.cfg.seeds)
        o.runs_total, o.runs_done = self.cfg.target * per_trial, finished * per_trial
        o.total_steps = max(0, self.cfg.target - finished) * per_trial * self.exp.train.steps
        self.queue_shared()
        self.reap_stale(force=True)
        if self.retry:
            self.retry_failed()
        stopping = False
        while True:
            if sig.stop.is_set() and not stopping:
                stopping = True
                self.pool.request_stop()
                self.view.event(f"stopping: {self.pool.busy} running task(s) checkpoint and stop, no new trial starts "
                                f"(a second Ctrl-C or SIGTERM quits at once; every trial stays resumable)")
            if not stopping:
                self.reap_stale()
                self.fill()
            if self.pool.busy == 0:
                if stopping or self.aborted:
                    return
                others = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
                          if t.number not in self.active]
                if not others or self.gave_up:
                    return
                time.sleep(2.0)  # other workers hold the last trials: stay to take over if one of them dies
                continue
            for ev in self.pool.poll(POLL_S):
                self.on_event(ev)
            self.view.tick()

    def interrupt(self, killed: list) -> None:
        """After a stop: runs killed mid-step are left pending; every trial still owned is closed as
        interrupted and enqueued again (its runs resume from their checkpoints)."""
        for tag in killed:
            if tag[0] == "run" and tag in self.tasks:
                a, i = self.tasks.pop(tag)
                rd = self.run_dir(a.specs[i])
                st = results.read_status(rd)
                results.write_status(rd, "pending", step=st.get("step", 0), total_steps=a.specs[i]["train"]["steps"],
                                     error="killed (second stop signal); run `harness sweep` again to resume from the last checkpoint")
                self.stopped.append(f"trial {a.trial.number} at its last checkpoint ({a.specs[i]['run_id']})")
        for a in list(self.active.values()):
            self._close(a)
            self._retire(self.study._storage.get_trial(a.trial._trial_id), "stop signal", always=True)


def run_sweep(cfg: SweepConfig, exp: Experiment, file: Path, out: Path, store: Storage, *, jobs: int, executor: str,
              address: str | None, cache_dir: Path, console: Console | None = None, retry_failed: bool = False,
              summary_every: float = 30.0) -> bool:
    """Run (or join, or resume) the study; returns False when it stopped on too many failures.

    Raises Interrupted after a stop signal (the trials this worker owned are enqueued again)."""
    console = console or Console(stderr=True)
    pool = make_pool(executor, jobs, exp.train.threads, address)
    try:
        study = open_study(cfg, exp, store, out.name)  # after the pool: a Ray that cannot start leaves no study
        out.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(out / "sweep.yaml", file.read_text())
        results.write_json(out / "sweep.json", {
            "study": out.name, "storage": store.url, "sweep_file": str(file), "experiment": exp.name, "variant": cfg.variant,
            "objective": {"benchmark": cfg.benchmark, "metric": cfg.metric, "direction": cfg.direction},
            "params": {k: p.model_dump(exclude_none=True) for k, p in cfg.params.items()}, "sampler": cfg.sampler,
            "seeds": list(cfg.seeds), "trials": cfg.target, "defaults": base_values(cfg, exp),
        })
        console.print(f"[bold]{out.name}[/]: {cfg.sampler} sampler, {cfg.target} trials x {len(cfg.seeds)} seed(s), "
                      f"{pool.jobs} run(s) at once ({executor}); storage {store.url}", highlight=False)
        with StopSignals() as sig, make_view(console, summary_every) as view:
            driver = Driver(cfg, exp, out, store, study, pool, cache_dir, view)
            driver.retry = retry_failed
            try:
                driver.run(sig)
                pool.close()
            except KeyboardInterrupt as e:  # second signal: kill the runs now; their checkpoints on disk stay valid
                driver.interrupt(pool.kill())
                view.event("stopped at once: " + "; ".join(driver.stopped or ["no run was running"])
                           + "; rerun the same command to resume")
                raise Interrupted(getattr(e, "signum", None) or sig.signum or signal.SIGINT) from None
            finally:
                driver.write_trials()
            if sig.stop.is_set():
                driver.interrupt([])
                driver.write_trials()
                view.event("stopped: " + (", ".join(driver.stopped) if driver.stopped else "no trial was running")
                           + "; rerun the same command to resume")
                raise Interrupted(sig.signum)
    finally:
        pool.kill()  # nothing left after close(); after an unexpected error, no orphan workers or Ray instance
    return summarize(cfg, study, out, store, console, driver.gave_up, driver.aborted)


def summarize(cfg: SweepConfig, study: optuna.Study, out: Path, store: Storage, console: Console, gave_up: bool,
              aborted: str | None = None) -> bool:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    fails = {k: [t for t in trials if t.state == TrialState.FAIL and fail_kind(t) == k] for k in ("error", "killed", "interrupted", "surplus")}
    for t in fails["error"] + fails["killed"]:
        console.print(f"[red]trial {t.number} failed[/] ({fail_kind(t)}): {t.user_attrs.get('fail_reason', '?')}", highlight=False)
    if done:
        best = study.best_trial
        console.print(f"best: trial {best.number}, {cfg.metric}({cfg.benchmark}) {best.value:.2f}, {best.params}")
    others = "".join(f", {len(fails[k])} {k} ({what})" for k, what in (("interrupted", "enqueued again"), ("surplus", "never run"))
                     if fails[k])
    console.print(f"{len(done)} complete, {sum(t.state == TrialState.PRUNED for t in trials)} pruned, "
                  f"{len(fails['error']) + len(fails['killed'])} failed{others}; "
                  f"`harness report {out}` for the heatmap, importances and best trials; study in a browser: "
                  f"`{dashboard_command(store.url)}` (pip install optuna-dashboard)",
                  highlight=False)
    if gave_up:
        console.print(f"[red]stopped asking for trials: {cfg.max_failed if cfg.max_failed is not None else cfg.target} "
                      f"failed (max_failed)[/]")
    if aborted:
        console.print(f"[red]stopped: {aborted}[/]", highlight=False)
    return not (gave_up or aborted)
