"""Execute an experiment: skip finished runs, resume interrupted ones, run the rest in parallel processes.

Shared artefacts (warm starts) are built first, each once, under a lock in the cache (a second
`harness run` waits for it instead of training it again); every run goes through its backend
(harness.backends), never a trainer directly. A run folder is locked (harness.core.locks) while a
worker trains it: a run held by another live process is reported ("running in process PID") and
waited for, or skipped with wait=False; a lock left by a dead process is taken over.

Stopping (harness.execution.pool): the first Ctrl-C or SIGTERM starts nothing new and asks every running
worker to checkpoint its current step and stop, then raises Interrupted (exit 130 / 143); a second
one kills the workers at once. Either way every run is left resumable.
"""

from __future__ import annotations

import hashlib
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from harness.core import results
from harness.backends import get_backend
from harness.config.experiment import Experiment, expand
from harness.core.errors import Interrupted, StopRequested
from harness.execution.context import TaskContext
from harness.execution.executors import make_pool
from harness.execution.pool import WorkerPool
from harness.execution.signals import StopSignals
from harness.core.locks import FileLock, describe, owner_info
from harness.execution.progress import fmt_seconds, make_view

PROBE_EVERY = 1.0  # seconds between checks of runs held by another process


@dataclass
class Plan:
    todo: list[dict]
    done: list[dict]
    resumed: list[str]


def plan_runs(exp: Experiment, results_dir: Path) -> Plan:
    specs = expand(exp)
    todo, done, resumed = [], [], []
    for s in specs:
        rd = results_dir / exp.name / s["run_id"]
        state = results.read_status(rd).get("state") if rd.exists() else "pending"
        if state == "done":
            done.append(s)
        else:
            todo.append(s)
            if get_backend(s["backend"]).has_checkpoint(rd):
                resumed.append(s["run_id"])
    return Plan(todo, done, resumed)


def run_lock(run_dir: Path) -> FileLock:
    return FileLock(Path(run_dir) / ".lock")


def shared_lock(cache_dir: Path, key: str) -> FileLock:
    return FileLock(Path(cache_dir) / "locks" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock")


# ----------------------------------------------------------------------------------- worker tasks
def prepare_task(ctx: TaskContext, spec: dict, cache_dir: str, key: str, label: str) -> tuple[str, str | None]:
    """Build one shared artefact unless another process built it meanwhile; -> (state, detail)."""
    backend = get_backend(spec["backend"])
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


def run_task(ctx: TaskContext, spec: dict, run_dir: str, cache_dir: str) -> tuple[str, str, object]:
    """Train one run under its lock; -> (run_id, state, detail): done | stopped | failed | held."""
    rd, rid = Path(run_dir), spec["run_id"]
    rd.mkdir(parents=True, exist_ok=True)
    lock = run_lock(rd)
    if not lock.try_acquire(owner_info(ctx.parent_pid)):
        return rid, "held", lock.holder() or {}
    try:
        if results.read_status(rd).get("state") == "done":  # finished by another process since the plan
            return rid, "done", "by another process"
        dead = lock.taken_over_from_dead()
        if dead:
            ctx.note(rid, f"taking over the lock left by {describe(dead)}, which no longer runs")
        backend, steps = get_backend(spec["backend"]), spec["train"]["steps"]
        start = results.read_status(rd).get("step", 0) if backend.has_checkpoint(rd) else 0
        ctx.note(rid, f"resumed at step {start}/{steps}" if start else f"started ({steps} steps)")
        results.write_spec(rd, spec)
        t0 = time.monotonic()
        backend.train(spec, rd, Path(cache_dir), progress=ctx.progress(rid))
        return rid, "done", f"in {fmt_seconds(time.monotonic() - t0)}"
    except (StopRequested, KeyboardInterrupt):
        step = results.read_status(rd).get("step", 0)
        results.write_status(rd, "pending", step=step, total_steps=spec["train"]["steps"],
                             error="interrupted; run `harness run` again to resume from the last checkpoint")
        return rid, "stopped", step
    except Exception as e:  # the run fails, the others go on
        err = f"{type(e).__name__}: {e}"
        results.write_status(rd, "failed", error=err, traceback=traceback.format_exc()[-4000:])
        return rid, "failed", err
    finally:
        lock.release()


# ----------------------------------------------------------------------------------- the loop
@dataclass
class _Session:
    """Scheduling state of one `harness run`: what waits, what runs, what ended."""

    exp_dir: Path
    cache_dir: Path
    wait: bool
    queue: list[dict]                                    # runs not started yet, in order
    needs: dict[str, str]                                # run_id -> shared key still missing
    prepares: dict[str, tuple[dict, str]]                # shared key -> (spec, label), not started yet
    states: dict[str, str]
    held: dict[str, tuple[dict, float]] = field(default_factory=dict)  # run_id -> (spec, last probe)
    stopped: dict[str, int] = field(default_factory=dict)  # run_id -> checkpointed step
    remaining: dict[str, int] = field(default_factory=dict)  # run_id -> steps it had left at the start
    counted: dict[str, int] = field(default_factory=dict)    # run_id -> its steps done by this process

    def run_dir(self, spec: dict) -> Path:
        return self.exp_dir / spec["run_id"]


def _remaining_steps(spec: dict, run_dir: Path) -> int:
    st = results.read_status(run_dir) if run_dir.exists() else {}
    start = st.get("step", 0) if get_backend(spec["backend"]).has_checkpoint(run_dir) else 0
    return spec["train"]["steps"] - start


def run_experiment(exp: Experiment, results_dir: Path, jobs: int, cache_dir: Path,
                   console: Console | None = None, source: str | None = None, wait: bool = True,
                   summary_every: float = 30.0, executor: str = "process", address: str | None = None) -> dict[str, str]:
    """Run every unfinished RunSpec of exp; returns run_id -> final state (done | failed | held).

    executor: "process" (WorkerPool) or "ray" (RayPool: a new local instance, or the cluster at
    `address`); the tasks are the same, so are skip / resume / locks and the results.
    Raises Interrupted after a stop request (every run checkpointed and resumable)."""
    console = console or Console(stderr=True)
    get_backend(exp.backend).check(exp)  # before anything is written
    exp_dir = Path(results_dir) / exp.name
    plan = plan_runs(exp, Path(results_dir))
    console.print(
        f"[bold]{exp.name}[/]: {len(plan.todo) + len(plan.done)} runs — {len(plan.done)} done (skipped), "
        f"{len(plan.resumed)} to resume, {len(plan.todo) - len(plan.resumed)} new; "
        + (f"{jobs} parallel job(s)" if jobs else "as many parallel jobs as the Ray cluster has CPUs / train.threads")
        + (" as Ray tasks" if executor == "ray" else "")
    )
    states = {s["run_id"]: "done" for s in plan.done}
    if not plan.todo:
        return states
    pool = make_pool(executor, jobs, exp.train.threads, address)  # a Ray that cannot start: nothing written yet
    exp_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        results.atomic_write_text(exp_dir / "experiment.yaml", source)
    prepares: dict[str, tuple[dict, str]] = {}
    needs: dict[str, str] = {}
    for s in plan.todo:
        key = get_backend(s["backend"]).shared_key(s, cache_dir)
        if key is not None:
            label = f"warm start (seed {s['warm_start']['seed']})" if "warm_start" in s else f"prepare {key}"
            prepares.setdefault(key, (s, label))
            needs[s["run_id"]] = key
    ses = _Session(exp_dir, Path(cache_dir), wait, list(plan.todo), needs, prepares, states)
    ses.remaining = {s["run_id"]: _remaining_steps(s, ses.run_dir(s)) for s in plan.todo}
    with StopSignals() as sig, make_view(console, summary_every) as view:
        view.overall.runs_total = len(plan.todo) + len(plan.done)
        view.overall.runs_done = len(plan.done)
        view.overall.total_steps = sum(ses.remaining.values())
        try:
            _loop(ses, pool, sig, view)
            pool.close()
        except KeyboardInterrupt as e:  # second signal: kill the workers now; checkpoints on disk stay valid
            _killed(ses, pool.kill())
            view.event("stopped at once: every run resumes from its last checkpoint when the same command is run again")
            raise Interrupted(getattr(e, "signum", None) or sig.signum or signal.SIGINT) from None
        finally:
            pool.kill()  # nothing left after close(); after an unexpected error, no orphan workers
        if sig.stop.is_set():
            ck = ", ".join(f"{r} at step {s}" for r, s in sorted(ses.stopped.items()))
            view.event(f"stopped: {len(ses.stopped)} run(s) checkpointed{f' ({ck})' if ck else ''}, "
                       f"{len(ses.queue) + len(ses.held)} not started; rerun the same command to resume")
            raise Interrupted(sig.signum)
    return ses.states


def _killed(ses: _Session, tags: list) -> None:
    """Runs whose worker was killed: status pending (their last periodic checkpoint is intact)."""
    for tag in tags:
        if tag[0] == "run":
            spec, rd = tag[1], ses.run_dir(tag[1])
            st = results.read_status(rd)
            results.write_status(rd, "pending", step=st.get("step", 0), total_steps=spec["train"]["steps"],
                                 error="killed (second stop signal); run `harness run` again to resume from the last checkpoint")


STOP_REMINDER_EVERY = 15.0  # seconds between "still finishing" lines while a stop waits for step boundaries


def _loop(ses: _Session, pool: WorkerPool, sig: StopSignals, view) -> None:
    stopping, reminded = False, 0.0
    while True:
        if sig.stop.is_set() and not stopping:
            stopping, reminded = True, time.monotonic()
            pool.request_stop()
            view.event(f"stopping: {pool.busy} running task(s) checkpoint and stop, nothing new starts "
                       f"(a second Ctrl-C or SIGTERM quits at once; every run stays resumable)")
        elif stopping and pool.busy and time.monotonic() - reminded > STOP_REMINDER_EVERY:
            reminded = time.monotonic()
            view.event(f"stopping: {pool.busy} task(s) still finishing their current step "
                       f"(Ctrl-C again quits at once; they resume from their last checkpoint)")
        if not stopping:
            _dispatch(ses, pool, view)
        waiting = ses.queue or ses.prepares or ses.held
        if pool.busy == 0 and (stopping or not waiting):
            return
        for ev in pool.poll(0.25):
            _handle(ses, ev, view)
        _probe_held(ses, view)
        view.tick()


def _dispatch(ses: _Session, pool: WorkerPool, view) -> None:
    while pool.free() > 0 and ses.prepares:
        key, (spec, label) = next(iter(ses.prepares.items()))
        del ses.prepares[key]
        pool.submit(("prepare", key, label), prepare_task, spec, str(ses.cache_dir), key, label)
    for spec in list(ses.queue):
        if pool.free() <= 0:
            return
        rid = spec["run_id"]
        if rid in ses.needs:  # its warm start is not built yet
            continue
        ses.queue.remove(spec)
        holder = run_lock(ses.run_dir(spec)).holder()
        if holder is not None:
            _held(ses, spec, holder, view)
            continue
        pool.submit(("run", spec), run_task, spec, str(ses.run_dir(spec)), str(ses.cache_dir))


def _held(ses: _Session, spec: dict, holder: dict, view) -> None:
    rid = spec["run_id"]
    if ses.wait:
        view.event(f"{rid}: running in {describe(holder)}; waiting for it (--no-wait skips such runs)")
        ses.held[rid] = (spec, time.monotonic())
    else:
        view.event(f"{rid}: running in {describe(holder)}; skipped (--no-wait)")
        ses.states[rid] = "held"


def _probe_held(ses: _Session, view) -> None:
    for rid, (spec, last) in list(ses.held.items()):
        if time.monotonic() - last < PROBE_EVERY:
            continue
        rd = ses.run_dir(spec)
        if run_lock(rd).holder() is not None:
            ses.held[rid] = (spec, time.monotonic())
            continue
        del ses.held[rid]
        if results.read_status(rd).get("state") == "done":
            view.event(f"{rid}: done (by the other process)")
            _finish(ses, rid, "done", view, by_us=False)
        else:  # the other process stopped or died: we resume the run
            ses.queue.insert(0, spec)


def _finish(ses: _Session, rid: str, state: str, view, by_us: bool = True) -> None:
    ses.states[rid] = state
    view.overall.runs_done += state == "done"
    if state != "done" or not by_us:  # steps this process will not do leave the ETA
        view.overall.total_steps -= ses.remaining[rid] - ses.counted.get(rid, 0)


def _handle(ses: _Session, ev: tuple, view) -> None:
    kind = ev[0]
    if kind == "progress":
        _, key, step, total = ev
        if key in ses.remaining:  # a run (not a warm start): counts toward the ETA
            start = total - ses.remaining[key]
            new = max(0, step - start) - ses.counted.get(key, 0)
            ses.counted[key] = max(0, step - start)
            view.overall.add_steps(max(0, new))
        view.update(key, step, total)
    elif kind == "note":
        view.event(f"{ev[1]}: {ev[2]}")
    elif kind in ("done", "crash"):
        tag = ev[1]
        if tag[0] == "prepare":
            _prepare_ended(ses, tag[1], tag[2], ev[2] if kind == "done" else ("failed", ev[2]), view)
        else:
            spec = tag[1]
            if kind == "crash":  # the worker died or the task raised past run_task: record it in the run folder
                detail = ev[2].strip().splitlines()[-1]
                rd = ses.run_dir(spec)
                if rd.exists() and results.read_status(rd).get("state") != "done":
                    results.write_status(rd, "failed", error=detail, traceback=ev[2][-4000:])
                _run_ended(ses, spec, "failed", detail, view)
            else:
                _run_ended(ses, spec, ev[2][1], ev[2][2], view)


def _prepare_ended(ses: _Session, key: str, label: str, outcome: tuple, view) -> None:
    state, detail = outcome
    waiting = [r for r, k in ses.needs.items() if k == key]
    if state in ("built", "cached"):
        view.event(f"{label}: {detail}" if state == "cached" else f"{label}: built {detail}")
        for r in waiting:
            del ses.needs[r]
    elif state == "failed":
        view.event(f"{label}: failed — {detail.strip().splitlines()[-1] if detail else ''}")
        for r in waiting:
            del ses.needs[r]
            spec = next(s for s in ses.queue if s["run_id"] == r)
            ses.queue.remove(spec)
            ses.states[r] = "failed"
            view.event(f"{r}: failed — its {label} failed")
    # "stopped": its runs stay queued and are reported as not started


def _run_ended(ses: _Session, spec: dict, state: str, detail, view) -> None:
    rid = spec["run_id"]
    if state == "held":
        _held(ses, spec, detail, view)
        return
    if state == "stopped":  # listed in the final "stopped:" line
        ses.stopped[rid] = int(detail)
        return
    view.event(f"{rid}: {state}" + (f" — {detail}" if state == "failed" else f" {detail}" if detail else ""))
    _finish(ses, rid, state, view, by_us=detail != "by another process")
