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
  stopped and recorded with state "pruned".

Everything Optuna knows is mirrored into <out>/trials.json after every change (the report reads it).
"""

from __future__ import annotations

import fcntl
import math
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness import results
from harness.backends import get_backend
from harness.config import Experiment, expand
from harness.errors import UserError
from harness.executors import WorkerDied, open_executor
from harness.metrics import objective_from_samples
from harness.sweep import SweepConfig, trial_exp
from harness.sweep_optuna import Storage, counts, dashboard_command, fail_kind, open_study, retried_numbers
from harness.sweep_worker import clear_stop, request_stop, run_sweep_task

STALE_UNLOCKED_S = 120.0  # a running trial with no lock file this old lost its worker before it locked
MAX_RETRIES = 3  # an interrupted trial is re-enqueued at most this many times
POLL_S = 0.5


def _lock_nb(path: Path) -> int | None:
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


# ------------------------------------------------------------------------------------------ driver
@dataclass
class Active:
    """A trial this worker owns."""

    trial: optuna.Trial
    params: dict
    specs: list[dict]
    lock_fd: int
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
    def __init__(self, cfg: SweepConfig, exp: Experiment, out: Path, store: Storage, study: optuna.Study, ex,
                 cache_dir: Path, console: Console) -> None:
        self.cfg, self.exp, self.out, self.store, self.study, self.ex = cfg, exp, out, store, study, ex
        self.cache_dir, self.console = cache_dir, console
        self.grid = cfg.sampler == "grid"
        self.locks = out / ".trials"
        self.locks.mkdir(parents=True, exist_ok=True)
        self.active: dict[int, Active] = {}
        self.futures: dict[Future, tuple[Active, int]] = {}
        self.by_run: dict[str, tuple[Active, int]] = {}
        self.gave_up = False
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.retry = False
        self.last_reap = 0.0

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
            fd = _lock_nb(path)
            if fd is None:
                continue  # its worker is alive
            try:
                self._retire(t, f"the sweep worker running it ({t.user_attrs.get('worker', '?')}) stopped before it finished")
            finally:
                os.close(fd)

    def _retire(self, t, reason: str) -> None:
        """Mark an interrupted trial failed and, once only (the state transition is atomic), enqueue it again."""
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
        if len(params) == len(self.cfg.params) and retries < MAX_RETRIES:
            self.study.enqueue_trial(params, user_attrs={"retry_of": t.number, "retries": retries + 1})
            self.console.print(f"trial {t.number} was interrupted ({reason}); re-enqueued to resume it")
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
                self.console.print(f"trial {t.number} ({fail_kind(t)}: {t.user_attrs.get('fail_reason', '?')}) enqueued again")

    def start_trial(self) -> Active | None:
        trial = self.study.ask()
        fd = _lock_nb(self.locks / f"{trial.number}.lock")
        if fd is None:
            raise UserError(f"{self.locks}: trial {trial.number}'s lock is held by another process: two studies "
                            f"(different --storage) share this results folder; give each its own --results")
        trial.set_user_attr("worker", self.worker)
        trials = self.trials()
        retried = retried_numbers(trials)
        ahead = [t for t in trials if t.number < trial.number and counts(t, self.grid, retried)]
        if len(ahead) >= self.cfg.target:
            self._tell_failed(trial, "surplus", "not run: the study already had its trials (workers asked at once)", fd)
            return None
        try:
            params = {k: p.suggest(trial, k) for k, p in self.cfg.params.items()}
            specs = expand(trial_exp(self.cfg, self.exp, params))
        except (UserError, ValueError) as e:
            self._tell_failed(trial, "error", f"invalid settings: {e}", fd)
            return None
        trial.set_user_attr("run_ids", [s["run_id"] for s in specs])
        a = Active(trial, params, specs, fd, pending=list(range(len(specs))))
        self.active[trial.number] = a
        for i, s in enumerate(specs):
            self.by_run[s["run_id"]] = (a, i)
        return a

    def submit(self, a: Active, i: int) -> None:
        spec = a.specs[i]
        rd = self.run_dir(spec)
        fut = self.ex.submit(run_sweep_task, spec, str(rd), str(self.cache_dir), self.ex.queue, a.token)
        a.running.add(i)
        self.futures[fut] = (a, i)

    def fill(self) -> None:
        while len(self.futures) < self.ex.jobs:
            a = next((a for a in self.active.values() if a.pending and not a.stopping), None)
            if a is None:
                if not self.may_start_trial():
                    return
                a = self.start_trial()
                if a is None:
                    continue
            self.submit(a, a.pending.pop(0))

    # --------------------------------------------------------------------------- finishing work
    def on_done(self, fut: Future) -> None:
        a, i = self.futures.pop(fut)
        a.running.discard(i)
        seed = a.specs[i]["seed"]
        try:
            state, err = fut.result()
        except WorkerDied as e:
            state, err = "killed", f"run process {e}"
        except Exception as e:  # noqa: BLE001 - a worker that raised outside the run
            state, err = "failed", f"{type(e).__name__}: {e}"
        if state == "done":
            try:
                v = objective_from_samples(results.read_samples(self.run_dir(a.specs[i])), self.cfg.benchmark, self.cfg.metric)
                if not math.isfinite(v):
                    raise ValueError(f"objective is {v}")
                a.values[i] = v
            except (ValueError, results.ResultsError) as e:
                state, err = "failed", f"objective: {e}"
        if state == "killed":  # the process could not say so itself
            results.write_status(self.run_dir(a.specs[i]), "failed", error=err)
        if state in ("failed", "killed") and a.failed is None:
            a.failed = ("killed" if state == "killed" else "error", f"seed {seed}: {err}")
            self.stop_trial(a, "pending", f"stopped: seed {seed} of trial {a.trial.number} failed")
        elif state == "pending" and a.failed is None and not a.pruned:
            a.failed = ("interrupted", f"seed {seed}: {err}")
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
            self._retire(self.study._storage.get_trial(t._trial_id), a.failed[1])
            return
        if a.failed:
            self._tell_failed(t, *a.failed, a.lock_fd)
            self.console.print(f"[red]trial {t.number} failed[/] ({a.failed[0]}): {a.failed[1]}", highlight=False)
        elif a.pruned:
            t.set_user_attr("prune_reason", a.pruned)
            self.study.tell(t, state=TrialState.PRUNED)
            os.close(a.lock_fd)
            self.console.print(f"[yellow]trial {t.number} pruned[/]: {a.pruned}", highlight=False)
        else:
            vals = [a.values[i] for i in range(len(a.specs))]
            t.set_user_attr("seed_values", vals)
            value = sum(vals) / len(vals)
            self.study.tell(t, value)
            os.close(a.lock_fd)
            self.console.print(f"trial {t.number:3d}  {self.cfg.metric}({self.cfg.benchmark}) {value:7.2f}  "
                               + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in a.params.items()),
                               highlight=False)
        self._close(a, lock=False)
        self.write_trials()

    def _close(self, a: Active, lock: bool = True) -> None:
        self.active.pop(a.trial.number, None)
        for s in a.specs:
            self.by_run.pop(s["run_id"], None)
        if lock:
            os.close(a.lock_fd)

    def _tell_failed(self, trial, kind: str, reason: str, fd: int) -> None:
        trial.set_user_attr("fail_kind", kind)
        trial.set_user_attr("fail_reason", reason)
        self.study.tell(trial, state=TrialState.FAIL)
        os.close(fd)
        self.write_trials()

    # --------------------------------------------------------------------------- pruning
    def on_progress(self, run_id: str, step: int, total: int) -> None:
        hit = self.by_run.get(run_id)
        if hit is None or self.cfg.pruner == "none":
            return
        a, i = hit
        every = a.specs[i]["eval"]["every"]
        if i != 0 or a.stopping or step == total or step % every:
            return
        try:
            v = objective_from_samples(results.read_samples(self.run_dir(a.specs[i])), self.cfg.benchmark, self.cfg.metric, step)
        except (ValueError, results.ResultsError):
            return
        a.trial.report(v, step)
        if a.trial.should_prune():
            a.pruned = f"{self.cfg.metric}({self.cfg.benchmark}) {v:.2f} at step {step} (seed {a.specs[i]['seed']})"
            self.stop_trial(a, "pruned", f"pruned by the sweep's {self.cfg.pruner} pruner: {a.pruned}")

    # --------------------------------------------------------------------------- main loop
    def prepare_shared(self, progress: Progress) -> None:
        """Build the artefacts every trial shares (warm starts) once, before any trial starts."""
        from harness.runner import _prepare_worker

        probe = {k: p.choices[0] if p.kind == "categorical" else p.low for k, p in self.cfg.params.items()}
        probe = {k: int(v) if self.cfg.params[k].kind == "int" else v for k, v in probe.items()}
        shared = {}
        for s in expand(trial_exp(self.cfg, self.exp, probe)):
            key = get_backend(s["backend"]).shared_key(s, self.cache_dir)
            if key is not None:
                shared.setdefault(key, s)
        futs = [self.ex.submit(_prepare_worker, s, str(self.cache_dir), self.ex.queue) for s in shared.values()]
        bars: dict[str, int] = {}
        while futs:
            done, _ = wait(futs, timeout=POLL_S)
            self.drain(progress, bars)
            for f in done:
                f.result()
                futs.remove(f)

    def drain(self, progress: Progress, bars: dict[str, int]) -> None:
        import queue as queue_mod

        try:
            while True:
                key, step, total = self.ex.queue.get_nowait()
                if key not in bars:
                    bars[key] = progress.add_task(key, total=total)
                progress.update(bars[key], completed=step, total=total)
                if key in self.by_run:
                    self.on_progress(key, step, total)
        except queue_mod.Empty:
            pass

    def run(self, progress: Progress) -> None:
        done_bar = progress.add_task("trials (complete + pruned)", total=self.cfg.target)
        bars: dict[str, int] = {}
        self.prepare_shared(progress)
        self.reap_stale(force=True)
        if self.retry:
            self.retry_failed()
        while True:
            self.reap_stale()
            self.fill()
            finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self.trials())
            progress.update(done_bar, completed=finished)
            if not self.futures:
                others = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
                          if t.number not in self.active]
                if not others or self.gave_up:
                    break
                time.sleep(2.0)  # other workers hold the last trials: stay to take over if one of them dies
                continue
            done, _ = wait(list(self.futures), timeout=POLL_S, return_when=FIRST_COMPLETED)
            self.drain(progress, bars)
            for fut in done:
                run_id = self.futures[fut][0].specs[self.futures[fut][1]]["run_id"]
                self.on_done(fut)
                if run_id in bars:
                    progress.remove_task(bars.pop(run_id))

    def interrupt(self) -> None:
        """Ctrl-C: every trial this worker owns is closed as interrupted and enqueued again."""
        for a in list(self.active.values()):
            self._close(a)
            self._retire(self.study._storage.get_trial(a.trial._trial_id), "interrupted (Ctrl-C)")


def base_values(cfg: SweepConfig, exp: Experiment) -> dict:
    """Each swept parameter's value without the sweep (the base variant's knob, or the experiment field)."""
    import algorithms

    base = next(v for v in exp.variants if v.name == cfg.variant)
    knobs = algorithms.get_preset(base.preset, **base.overrides).knobs
    out = {}
    for k in cfg.params:
        section, _, field_ = k.partition(".")
        v = getattr(getattr(exp, section), field_) if field_ else knobs.get(k, base.overrides.get(k))
        if v is not None:
            out[k] = v
    return out


def run_sweep(cfg: SweepConfig, exp: Experiment, file: Path, out: Path, store: Storage, *, jobs: int, executor: str,
              address: str | None, cache_dir: Path, console: Console | None = None, retry_failed: bool = False) -> bool:
    """Run (or join, or resume) the study; returns False when it stopped on too many failures."""
    console = console or Console(stderr=True)
    with open_executor(executor, jobs, threads=exp.train.threads, address=address) as ex, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
    ) as progress:
        study = open_study(cfg, exp, store, out.name)  # after the executor: a Ray that cannot start leaves no study
        out.mkdir(parents=True, exist_ok=True)
        results.atomic_write_text(out / "sweep.yaml", file.read_text())
        results.write_json(out / "sweep.json", {
            "study": out.name, "storage": store.url, "sweep_file": str(file), "experiment": exp.name, "variant": cfg.variant,
            "objective": {"benchmark": cfg.benchmark, "metric": cfg.metric, "direction": cfg.direction},
            "params": {k: p.model_dump(exclude_none=True) for k, p in cfg.params.items()}, "sampler": cfg.sampler,
            "seeds": list(cfg.seeds), "trials": cfg.target, "defaults": base_values(cfg, exp),
        })
        driver = Driver(cfg, exp, out, store, study, ex, cache_dir, console)
        driver.retry = retry_failed
        console.print(f"[bold]{out.name}[/]: {cfg.sampler} sampler, {cfg.target} trials x {len(cfg.seeds)} seed(s), "
                      f"{ex.jobs} run(s) at once ({executor}); storage {store.url}")
        try:
            driver.run(progress)
        except KeyboardInterrupt:
            ex.shutdown(wait=True, cancel_futures=True)
            driver.interrupt()
            console.print("[yellow]interrupted: `harness sweep` again resumes the interrupted trials[/]")
            raise
        finally:
            driver.write_trials()
    return summarize(cfg, study, out, store, console, driver.gave_up)


def summarize(cfg: SweepConfig, study: optuna.Study, out: Path, store: Storage, console: Console, gave_up: bool) -> bool:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    by_state = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for t in trials:
        if t.state == TrialState.FAIL and fail_kind(t) != "surplus":
            console.print(f"[red]trial {t.number} failed[/] ({fail_kind(t)}): {t.user_attrs.get('fail_reason', '?')}", highlight=False)
    if done:
        best = study.best_trial
        console.print(f"best: trial {best.number}, {cfg.metric}({cfg.benchmark}) {best.value:.2f}, {best.params}")
    console.print(f"{by_state['complete']} complete, {by_state['pruned']} pruned, {by_state['fail']} failed; "
                  f"`harness report {out}` for the heatmap, importances and best trials; study in a browser: "
                  f"`{dashboard_command(store.url)}` (pip install optuna-dashboard)",
                  highlight=False)
    if gave_up:
        console.print(f"[red]stopped asking for trials: {cfg.max_failed if cfg.max_failed is not None else cfg.target} "
                      f"failed (max_failed)[/]")
    return not gave_up
