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
- stopping: runs execute on a WorkerPool or RayPool (harness.execution, tags ("run", trial, seed
  index)) under the event loop `harness run` uses too (harness.runs.loop; Driver is its policy). The
  first Ctrl-C / SIGTERM asks every running run to checkpoint its step and stop; the trials this
  worker owned are closed as interrupted and enqueued again (their runs resume), exit 130 / 143; a
  second signal kills the runs at once (they resume from their last checkpoint).

Everything Optuna knows is mirrored into <out>/trials.json after every change (the report reads it).
The budget and liveness bookkeeping is harness.sweep.trials (TrialBook, which Driver extends); the
closing lines are harness.sweep.summary.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from harness.config.experiment import Experiment
from harness.config.runspec import RunSpec, expand
from harness.core import results
from harness.core.errors import Interrupted
from harness.core.metrics import objective_from_samples
from harness.execution.executors import make_pool
from harness.execution.progress import make_view
from harness.execution.signals import StopSignals
from harness.runs.loop import END, SKIP, Prepares, prepared_note, record_crash, record_killed, route, serve
from harness.sweep.config import SweepConfig, base_values, trial_exp
from harness.sweep.optuna_glue import Storage, open_study
from harness.sweep.summary import summarize
from harness.sweep.trials import Active, TrialBook
from harness.sweep.worker import clear_stop, request_stop, run_sweep_task


class Driver(TrialBook):
    """A sweep worker: the trials it owns (TrialBook) run as tasks on a pool, under the event loop of
    harness.runs.loop (this class is its policy: dispatch, events, idle, stop and kill)."""

    def __init__(self, cfg: SweepConfig, exp: Experiment, out: Path, store: Storage, study: optuna.Study,
                 pool, cache_dir: Path, view) -> None:
        super().__init__(cfg, exp, out, study, view)
        self.store, self.pool, self.cache_dir = store, pool, cache_dir
        self.tasks: dict[tuple, tuple[Active, int]] = {}  # pool tag ("run", trial number, seed index) -> run
        self.prepares = Prepares()  # shared artefacts to build before any trial starts
        self.aborted: str | None = None
        self.stopped: list[str] = []  # "trial N checkpointed at step S (run_id)" after a stop request
        self.retry = False
        self.counted: dict[str, tuple[int, int]] = {}  # run_id -> (first step seen - 1, last step seen)

    def submit(self, a: Active, i: int) -> None:
        spec = a.specs[i]
        tag = ("run", a.trial.number, i)
        self.pool.submit(tag, run_sweep_task, spec, str(self.run_dir(spec)), str(self.cache_dir), a.token)
        a.running.add(i)
        self.tasks[tag] = (a, i)

    def dispatch(self) -> None:
        """Fail the trials of dead workers; build the shared artefacts; then start runs (new trials too)."""
        self.reap_stale()
        self.prepares.submit(self.pool, self.cache_dir)
        if self.prepares.building or self.aborted:
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
        route(ev, self.view, self)

    def on_run_end(self, tag: tuple, kind: str, ev: tuple) -> None:
        if kind == "done":
            self.on_done(tag, *ev[2])
            return
        # crash: the task raised outside the run (a bug) or its process died (killed, OOM)
        a, i = self.tasks[tag]
        err = record_crash(self.run_dir(a.specs[i]), ev[2])  # the process could not say so itself
        self.on_done(tag, "killed" if len(ev) > 3 and ev[3] else "failed", err)

    def on_prepared(self, key: str, label: str, outcome: tuple) -> None:
        state, detail = outcome
        self.prepares.ended(key)
        if state in ("built", "cached"):
            self.view.event(prepared_note(label, state, detail))
        elif state == "failed":
            self.aborted = f"{label} failed: {detail}"
            self.view.event(self.aborted)

    def on_done(self, tag: tuple, state: str, err: str | None) -> None:
        a, i = self.tasks.pop(tag)
        a.running.discard(i)
        spec = a.specs[i]
        seed, rd = spec.seed, self.run_dir(spec)
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
            step = results.read_status(rd).get("step", 0)
            self.stopped.append(f"trial {a.trial.number} checkpointed at step {step} ({spec.run_id})")
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
                            + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in a.params.items()))
        self._close(a, lock=False)
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
        if self.cfg.pruner == "none" or i != 0 or a.stopping or step == total \
                or step % a.specs[i].eval.every:
            return
        try:
            samples = results.read_samples(self.run_dir(a.specs[i]))
            v = objective_from_samples(samples, self.cfg.benchmark, self.cfg.metric, step)
        except (ValueError, results.ResultsError):
            return
        a.trial.report(v, step)
        if a.trial.should_prune():
            a.pruned = (f"{self.cfg.metric}({self.cfg.benchmark}) {v:.2f} at step {step} "
                        f"(seed {a.specs[i].seed})")
            self.stop_trial(a, "pruned", f"pruned by the sweep's {self.cfg.pruner} pruner: {a.pruned}")

    def _count_end(self, spec: RunSpec) -> None:
        """A run ended (done, reused, resumed, stopped early): steps this process did not do leave the ETA."""
        first, last = self.counted.get(spec.run_id, (0, 0))
        self.view.overall.total_steps -= spec.train.steps - (last - first)

    # --------------------------------------------------------------------------- the loop's hooks
    def queue_shared(self) -> None:
        """The artefacts every trial shares (warm starts), built once before any trial starts (a trial whose
        parameters change them builds its own in its task, under the same lock)."""
        probe = {k: p.choices[0] if p.kind == "categorical" else p.low for k, p in self.cfg.params.items()}
        probe = {k: int(v) if self.cfg.params[k].kind == "int" else v for k, v in probe.items()}
        for s in expand(trial_exp(self.cfg, self.exp, probe)):
            self.prepares.add(s, self.cache_dir)
        self.prepares.todo = dict(reversed(self.prepares.todo.items()))  # built last queued first, as always

    def start(self) -> None:
        """Before the loop: progress totals, shared artefacts, dead workers' trials, --retry-failed."""
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self.trials())
        o, per_trial = self.view.overall, len(self.cfg.seeds)
        o.runs_total, o.runs_done = self.cfg.target * per_trial, finished * per_trial
        o.total_steps = max(0, self.cfg.target - finished) * per_trial * self.exp.train.steps
        self.queue_shared()
        self.reap_stale(force=True)
        if self.retry:
            self.retry_failed()

    def stopping_note(self, busy: int) -> str:
        return (f"stopping: {busy} running task(s) checkpoint and stop, no new trial starts "
                f"(a second Ctrl-C or SIGTERM quits at once; every trial stays resumable)")

    def reminder_note(self, busy: int) -> None:
        return None

    def idle(self, stopping: bool) -> str:
        """Nothing running: done, unless other workers hold the last trials (stay: one of them may die)."""
        if stopping or self.aborted:
            return END
        live = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        others = [t for t in live if t.number not in self.active]
        if not others or self.gave_up:
            return END
        time.sleep(2.0)
        return SKIP

    def after_poll(self) -> None:
        pass

    def on_kill(self, tags: list) -> str:
        self.interrupt(tags)
        return ("stopped at once: " + "; ".join(self.stopped or ["no run was running"])
                + "; rerun the same command to resume")

    def interrupt(self, killed: list) -> None:
        """After a stop: runs killed mid-step are left pending; every trial still owned is closed as
        interrupted and enqueued again (its runs resume from their checkpoints)."""
        for tag in killed:
            if tag[0] == "run" and tag in self.tasks:
                a, i = self.tasks.pop(tag)
                record_killed(self.run_dir(a.specs[i]), a.specs[i], "sweep")
                self.stopped.append(f"trial {a.trial.number} at its last checkpoint ({a.specs[i].run_id})")
        for a in list(self.active.values()):
            self._close(a)
            self._retire(self.study._storage.get_trial(a.trial._trial_id), "stop signal", always=True)


def _write_meta(cfg: SweepConfig, exp: Experiment, file: Path, out: Path, store: Storage) -> None:
    """<out>/sweep.yaml (the file as given) and sweep.json (what the report needs to know of the study)."""
    out.mkdir(parents=True, exist_ok=True)
    results.atomic_write_text(out / "sweep.yaml", file.read_text())
    results.write_json(out / "sweep.json", {
        "study": out.name, "storage": store.url, "sweep_file": str(file), "experiment": exp.name,
        "variant": cfg.variant,
        "objective": {"benchmark": cfg.benchmark, "metric": cfg.metric, "direction": cfg.direction},
        "params": {k: p.model_dump(exclude_none=True) for k, p in cfg.params.items()}, "sampler": cfg.sampler,
        "seeds": list(cfg.seeds), "trials": cfg.target, "defaults": base_values(cfg, exp),
    })


def run_sweep(cfg: SweepConfig, exp: Experiment, file: Path, out: Path, store: Storage, *, jobs: int,
              executor: str, address: str | None, cache_dir: Path, console: Console | None = None,
              retry_failed: bool = False, summary_every: float = 30.0) -> bool:
    """Run (or join, or resume) the study; returns False when it stopped on too many failures.

    Raises Interrupted after a stop signal (the trials this worker owned are enqueued again)."""
    console = console or Console(stderr=True)
    pool = make_pool(executor, jobs, exp.train.threads, address)
    try:
        study = open_study(cfg, exp, store, out.name)  # after the pool: a Ray that cannot start: no study
        _write_meta(cfg, exp, file, out, store)
        console.print(f"[bold]{out.name}[/]: {cfg.sampler} sampler, {cfg.target} trials x {len(cfg.seeds)} "
                      f"seed(s), {pool.jobs} run(s) at once ({executor}); storage {store.url}",
                      highlight=False)
        with StopSignals() as sig, make_view(console, summary_every) as view:
            driver = Driver(cfg, exp, out, store, study, pool, cache_dir, view)
            driver.retry = retry_failed
            try:
                serve(pool, sig, view, driver, start=driver.start)
            finally:
                driver.write_trials()
            if sig.stop.is_set():
                driver.interrupt([])
                driver.write_trials()
                what = ", ".join(driver.stopped) if driver.stopped else "no trial was running"
                view.event(f"stopped: {what}; rerun the same command to resume")
                raise Interrupted(sig.signum)
    finally:
        pool.kill()  # nothing left after close(); after an unexpected error, no orphan workers or Ray
    return summarize(cfg, study, out, store, console, driver.gave_up, driver.aborted)
