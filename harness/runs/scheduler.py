"""Execute an experiment: skip finished runs, resume interrupted ones, run the rest in parallel processes.

The tasks are harness.runs.task's (run_task, prepare_task); the event loop is harness.runs.loop's,
shared with `harness sweep`; this module is `harness run`'s policy over it (RunScheduler).

Shared artefacts (warm starts) are built first, each once, under a lock in the cache (a second
`harness run` waits for it instead of training it again); every run goes through its backend
(harness.backends), never a trainer directly. A run folder is locked (harness.core.locks) while a
worker trains it: a run held by another live process is reported ("running in process PID") and
waited for, or skipped with wait=False; a lock left by a dead process is taken over.

Stopping (harness.execution.signals): the first Ctrl-C or SIGTERM starts nothing new and asks every running
worker to checkpoint its current step and stop, then raises Interrupted (exit 130 / 143); a second
one kills the workers at once. Either way every run is left resumable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from harness.backends import get_backend
from harness.config.experiment import Experiment
from harness.config.runspec import RunSpec, expand
from harness.core import provenance, results
from harness.core.errors import Interrupted, UserError
from harness.core.locks import describe
from harness.execution.executors import make_pool
from harness.execution.progress import make_view
from harness.execution.signals import StopSignals
from harness.runs.loop import END, POLL, Prepares, prepared_note, record_crash, record_killed, route, serve
from harness.runs import stale
from harness.runs.task import run_lock, run_task

PROBE_EVERY = 1.0  # seconds between checks of runs held by another process


STALE_POLICIES = ("ask", "rerun", "accept")


@dataclass
class Plan:
    todo: list[RunSpec]
    done: list[RunSpec]
    resumed: list[str]
    stale: dict[str, str] = field(default_factory=dict)  # run_id -> the code that made its results


def plan_runs(exp: Experiment, results_dir: Path) -> Plan:
    specs = expand(exp)
    todo, done, resumed, old = [], [], [], {}
    for s in specs:
        rd = results_dir / exp.name / s.run_id
        state = results.read_status(rd).get("state") if rd.exists() else "pending"
        label = stale.stale_label(rd, s)
        if label is not None:
            old[s.run_id] = label
        if state == "done":
            done.append(s)
        else:
            todo.append(s)
            if get_backend(s.backend).has_checkpoint(rd):
                resumed.append(s.run_id)
    return Plan(todo, done, resumed, old)


def stale_message(exp: Experiment, plan: Plan) -> str:
    """One line: how many runs of exp are stale, from which code, and the two ways on."""
    labels = sorted(set(plan.stale.values()))
    now = provenance.short({**provenance.git_state(), "code": provenance.code_id(exp.plugins),
                            "version": provenance.package_version()})
    return (f"{exp.name}: {len(plan.stale)} run(s) are stale (from {'; '.join(labels)}; the current code is "
            f"{now}): retrain them with --rerun-stale, or keep them with --accept-stale")


def settle_stale(exp: Experiment, plan: Plan, exp_dir: Path, policy: str, console: Console) -> Plan:
    """Apply --rerun-stale / --accept-stale to the plan's stale runs; with neither, UserError (exit 2)."""
    if policy not in STALE_POLICIES:
        raise ValueError(f"stale policy must be one of {STALE_POLICIES}, got {policy!r}")
    if not plan.stale:
        return plan
    if policy == "ask":
        raise UserError(stale_message(exp, plan) + " (nothing was run)")
    console.print(stale_message(exp, plan).split(": retrain")[0]
                  + (": retraining them (--rerun-stale)" if policy == "rerun" else ": kept (--accept-stale)"))
    specs = {s.run_id: s for s in [*plan.todo, *plan.done]}
    for rid in plan.stale:
        rd = exp_dir / rid
        if policy == "accept":
            stale.accept(rd, specs[rid])
            continue
        holder = run_lock(rd).holder()
        if holder is not None:
            raise UserError(f"{rd}: stale, but {describe(holder)} is training it; stop it first, then "
                            f"rerun with --rerun-stale")
        stale.clear(rd)
    if policy == "rerun":
        again = [s for s in plan.done if s.run_id in plan.stale]
        plan = Plan([*plan.todo, *again], [s for s in plan.done if s.run_id not in plan.stale],
                    [r for r in plan.resumed if r not in plan.stale], {})
    return plan



# ----------------------------------------------------------------------------------- the policy
@dataclass
class RunScheduler:
    """`harness run`'s policy over the shared event loop (harness.runs.loop): what waits, runs, ended."""

    exp_dir: Path
    cache_dir: Path
    wait: bool
    pool: object                                         # a WorkerPool or RayPool
    view: object
    queue: list[RunSpec]                                 # runs not started yet, in order
    needs: dict[str, str]                                # run_id -> shared key still missing
    prepares: Prepares                                   # shared artefacts not built yet
    states: dict[str, str]
    held: dict[str, tuple[RunSpec, float]] = field(default_factory=dict)  # run_id -> (spec, last probe)
    stopped: dict[str, int] = field(default_factory=dict)  # run_id -> checkpointed step
    remaining: dict[str, int] = field(default_factory=dict)  # run_id -> steps it had left at the start
    counted: dict[str, int] = field(default_factory=dict)    # run_id -> its steps done by this process

    def run_dir(self, spec: RunSpec) -> Path:
        return self.exp_dir / spec.run_id

    # ------------------------------------------------------------------------------- loop hooks
    def stopping_note(self, busy: int) -> str:
        return (f"stopping: {busy} running task(s) checkpoint and stop, nothing new starts "
                f"(a second Ctrl-C or SIGTERM quits at once; every run stays resumable)")

    def reminder_note(self, busy: int) -> str:
        return (f"stopping: {busy} task(s) still finishing their current step "
                f"(Ctrl-C again quits at once; they resume from their last checkpoint)")

    def idle(self, stopping: bool) -> str:
        return END if stopping or not (self.queue or self.prepares.todo or self.held) else POLL

    def dispatch(self) -> None:
        self.prepares.submit(self.pool, self.cache_dir)
        for spec in list(self.queue):
            if self.pool.free() <= 0:
                return
            if spec.run_id in self.needs:  # its warm start is not built yet
                continue
            self.queue.remove(spec)
            holder = run_lock(self.run_dir(spec)).holder()
            if holder is not None:
                self._held(spec, holder)
                continue
            self.pool.submit(("run", spec), run_task, spec, str(self.run_dir(spec)), str(self.cache_dir))

    def after_poll(self) -> None:
        """Runs held by another process: resumed here once it let go, or counted done by it."""
        for rid, (spec, last) in list(self.held.items()):
            if time.monotonic() - last < PROBE_EVERY:
                continue
            rd = self.run_dir(spec)
            if run_lock(rd).holder() is not None:
                self.held[rid] = (spec, time.monotonic())
                continue
            del self.held[rid]
            if results.read_status(rd).get("state") == "done":
                self.view.event(f"{rid}: done (by the other process)")
                self._finish(rid, "done")
            else:  # the other process stopped or died: we resume the run
                self.queue.insert(0, spec)

    def on_kill(self, tags: list) -> str:
        """Runs whose worker was killed: status pending (their last periodic checkpoint is intact)."""
        for tag in tags:
            if tag[0] == "run":
                record_killed(self.run_dir(tag[1]), tag[1], "run")
        return ("stopped at once: every run resumes from its last checkpoint when the same command is run "
                "again")

    # ------------------------------------------------------------------------------- events
    def on_event(self, ev: tuple) -> None:
        route(ev, self.view, self)

    def on_progress(self, key: str, step: int, total: int) -> None:
        if key in self.remaining:  # a run (not a warm start): counts toward the ETA
            start = total - self.remaining[key]
            new = max(0, step - start) - self.counted.get(key, 0)
            self.counted[key] = max(0, step - start)
            self.view.overall.add_steps(max(0, new))
        self.view.update(key, step, total)

    def on_prepared(self, key: str, label: str, outcome: tuple) -> None:
        state, detail = outcome
        self.prepares.ended(key)
        waiting = [r for r, k in self.needs.items() if k == key]
        if state in ("built", "cached"):
            self.view.event(prepared_note(label, state, detail))
            for r in waiting:
                del self.needs[r]
        elif state == "failed":
            self.view.event(f"{label}: failed — {detail or ''}")
            for r in waiting:
                del self.needs[r]
                spec = next(s for s in self.queue if s.run_id == r)
                self.queue.remove(spec)
                self.states[r] = "failed"
                self.view.event(f"{r}: failed — its {label} failed")
        # "stopped": its runs stay queued and are reported as not started

    def on_run_end(self, tag: tuple, kind: str, ev: tuple) -> None:
        spec = tag[1]
        if kind == "crash":  # the worker died or the task raised past run_task: record it in the run folder
            self._run_ended(spec, "failed", record_crash(self.run_dir(spec), ev[2]))
        else:
            self._run_ended(spec, ev[2][1], ev[2][2])

    def _run_ended(self, spec: RunSpec, state: str, detail) -> None:
        rid = spec.run_id
        if state == "held":
            self._held(spec, detail)
            return
        if state == "stopped":  # listed in the final "stopped:" line
            self.stopped[rid] = int(detail)
            return
        said = f" — {detail}" if state == "failed" else f" {detail}" if detail else ""
        self.view.event(f"{rid}: {state}{said}")
        self._finish(rid, state)

    def _held(self, spec: RunSpec, holder: dict) -> None:
        rid = spec.run_id
        if self.wait:
            self.view.event(f"{rid}: running in {describe(holder)}; waiting for it "
                            f"(--no-wait skips such runs)")
            self.held[rid] = (spec, time.monotonic())
        else:
            self.view.event(f"{rid}: running in {describe(holder)}; skipped (--no-wait)")
            self.states[rid] = "held"

    def _finish(self, rid: str, state: str) -> None:
        self.states[rid] = state
        self.view.overall.runs_done += state == "done"
        # steps this process will not do leave the ETA: a failed run's, another process's, and those of a run
        # that spent its budget before train.steps (nothing of a run that reached train.steps)
        self.view.overall.total_steps -= self.remaining[rid] - self.counted.get(rid, 0)
        self.view.tasks.pop(rid, None)  # no longer "running" in the summary, wherever its step count stopped


# ----------------------------------------------------------------------------------- harness run
def _remaining_steps(spec: RunSpec, run_dir: Path) -> int:
    st = results.read_status(run_dir) if run_dir.exists() else {}
    start = st.get("step", 0) if get_backend(spec.backend).has_checkpoint(run_dir) else 0
    return spec.train.steps - start


def _print_plan(console: Console, exp: Experiment, plan: Plan, jobs: int, executor: str) -> None:
    console.print(
        f"[bold]{exp.name}[/]: {len(plan.todo) + len(plan.done)} runs — {len(plan.done)} done (skipped), "
        f"{len(plan.resumed)} to resume, {len(plan.todo) - len(plan.resumed)} new; "
        + (f"{jobs} parallel job(s)" if jobs
           else "as many parallel jobs as the Ray cluster has CPUs / train.threads")
        + (" as Ray tasks" if executor == "ray" else "")
    )


def run_experiment(exp: Experiment, results_dir: Path, jobs: int, cache_dir: Path,
                   console: Console | None = None, source: str | None = None, wait: bool = True,
                   summary_every: float = 30.0, executor: str = "process",
                   address: str | None = None, stale_policy: str = "ask") -> dict[str, str]:
    """Run every unfinished RunSpec of exp; returns run_id -> final state (done | failed | held).

    executor: "process" (WorkerPool) or "ray" (RayPool: a new local instance, or the cluster at
    `address`); the tasks are the same, so are skip / resume / locks and the results.
    stale_policy: what to do with runs whose results other code made (harness.runs.stale): "ask" (a
    UserError naming them, nothing run), "rerun" (--rerun-stale) or "accept" (--accept-stale).
    Raises Interrupted after a stop request (every run checkpointed and resumable)."""
    console = console or Console(stderr=True)
    get_backend(exp.backend).check(exp)  # before anything is written
    exp_dir = Path(results_dir) / exp.name
    plan = settle_stale(exp, plan_runs(exp, Path(results_dir)), exp_dir, stale_policy, console)
    _print_plan(console, exp, plan, jobs, executor)
    states = {s.run_id: "done" for s in plan.done}
    if not plan.todo:
        return states
    pool = make_pool(executor, jobs, exp.train.threads, address)  # a Ray that cannot start: nothing written
    exp_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        results.atomic_write_text(exp_dir / "experiment.yaml", source)
    prepares, needs = Prepares(), {}
    for s in plan.todo:
        key = prepares.add(s, cache_dir)
        if key is not None:
            needs[s.run_id] = key
    remaining = {s.run_id: _remaining_steps(s, exp_dir / s.run_id) for s in plan.todo}
    with StopSignals() as sig, make_view(console, summary_every) as view:
        ses = RunScheduler(exp_dir, Path(cache_dir), wait, pool, view, list(plan.todo), needs, prepares,
                           states, remaining=remaining)
        view.overall.runs_total = len(plan.todo) + len(plan.done)
        view.overall.runs_done = len(plan.done)
        view.overall.total_steps = sum(ses.remaining.values())
        try:
            serve(pool, sig, view, ses)
        finally:
            pool.kill()  # nothing left after close(); after an unexpected error, no orphan workers
        if sig.stop.is_set():
            ck = ", ".join(f"{r} at step {s}" for r, s in sorted(ses.stopped.items()))
            view.event(f"stopped: {len(ses.stopped)} run(s) checkpointed{f' ({ck})' if ck else ''}, "
                       f"{len(ses.queue) + len(ses.held)} not started; rerun the same command to resume")
            raise Interrupted(sig.signum)
    return ses.states
