"""The event loop that `harness run` (harness.runs.scheduler) and `harness sweep` (harness.sweep.driver)
share, over a worker pool's events (harness.execution), and the pieces both schedulers use.

    serve(pool, sig, view, policy, start=None)   # start(); loop until the policy is done; close the pool;
                                                 # a second stop signal kills the pool's tasks

A Policy decides what to start and what an event means:

    policy.dispatch()                # submit work while pool.free() > 0 (not called once stopping)
    policy.on_event(ev)              # usually route(ev, view, policy): on_progress / on_prepared / on_run_end
    policy.idle(stopping)            # nothing running: END the loop, SKIP to the next turn, or POLL
    policy.after_poll()              # after each turn's events (e.g. probe runs held by other processes)
    policy.stopping_note(busy)       # the line printed at the first stop signal
    policy.reminder_note(busy)       # every STOP_REMINDER_EVERY s while tasks finish their step (None: none)
    policy.on_kill(tags)             # the pool's tasks were killed (second signal); -> the line to print

Pool events: ("progress", key, step, total) | ("note", key, text) | ("done", tag, value)
| ("crash", tag, error, died); tags are ("prepare", key, label) for a shared artefact (Prepares) and
the policy's own tags for runs.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from harness.backends import get_backend
from harness.config.runspec import RunSpec
from harness.core import results
from harness.core.errors import Interrupted
from harness.execution.signals import StopSignals
from harness.runs.task import prepare_task

POLL_S = 0.25
STOP_REMINDER_EVERY = 15.0  # seconds between "still finishing" lines while a stop waits for step boundaries
END, SKIP, POLL = "end", "skip", "poll"


class Policy(Protocol):
    def dispatch(self) -> None: ...
    def on_event(self, ev: tuple) -> None: ...
    def idle(self, stopping: bool) -> str: ...
    def after_poll(self) -> None: ...
    def stopping_note(self, busy: int) -> str: ...
    def reminder_note(self, busy: int) -> str | None: ...
    def on_kill(self, tags: list) -> str: ...


def event_loop(pool, sig: StopSignals, view, policy: Policy) -> None:
    """Dispatch, poll the pool, hand its events to the policy, until policy.idle() says END.
    The first stop signal asks every running task to checkpoint and stop, and nothing new starts."""
    stopping, reminded = False, 0.0
    while True:
        if sig.stop.is_set() and not stopping:
            stopping, reminded = True, time.monotonic()
            pool.request_stop()
            view.event(policy.stopping_note(pool.busy))
        elif stopping and pool.busy and time.monotonic() - reminded > STOP_REMINDER_EVERY:
            reminded = time.monotonic()
            note = policy.reminder_note(pool.busy)
            if note:
                view.event(note)
        if not stopping:
            policy.dispatch()
        if pool.busy == 0:
            then = policy.idle(stopping)
            if then == END:
                return
            if then == SKIP:
                continue
        for ev in pool.poll(POLL_S):
            policy.on_event(ev)
        policy.after_poll()
        view.tick()


def serve(pool, sig: StopSignals, view, policy: Policy, start: Callable[[], None] | None = None) -> None:
    """start(), event_loop, then close the pool (its idle workers exit). A second stop signal
    (KeyboardInterrupt) kills the pool's tasks now, lets the policy record them and raises Interrupted
    (exit 128 + signal)."""
    try:
        if start is not None:
            start()
        event_loop(pool, sig, view, policy)
        pool.close()
    except KeyboardInterrupt as e:  # second signal: kill the workers now; checkpoints on disk stay valid
        view.event(policy.on_kill(pool.kill()))
        raise Interrupted(getattr(e, "signum", None) or sig.signum or signal.SIGINT) from None


def route(ev: tuple, view, policy) -> None:
    """A pool event to the policy: on_progress(key, step, total), on_prepared(key, label, (state, detail)),
    on_run_end(tag, kind, ev) for a run's "done" / "crash"; a note is printed."""
    kind = ev[0]
    if kind == "progress":
        policy.on_progress(*ev[1:])
    elif kind == "note":
        view.event(f"{ev[1]}: {ev[2]}")
    elif ev[1][0] == "prepare":
        _, key, label = ev[1]
        policy.on_prepared(key, label, ev[2] if kind == "done" else ("failed", last_line(ev[2])))
    else:
        policy.on_run_end(ev[1], kind, ev)


def last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]


def prepared_note(label: str, state: str, detail: str | None) -> str:
    """The line for a shared artefact that is ready: built (detail: how long) or cached (by whom)."""
    return f"{label}: {detail}" if state == "cached" else f"{label}: built {detail}"


def record_crash(run_dir: Path, error: str) -> str:
    """A run's task raised past run_task or its process died: its folder says failed (unless done);
    -> the error's last line."""
    detail = last_line(error)
    if run_dir.exists() and results.read_status(run_dir).get("state") != "done":
        results.write_status(run_dir, "failed", error=detail, traceback=error[-4000:])
    return detail


def record_killed(run_dir: Path, spec: RunSpec, command: str) -> None:
    """A run whose task was killed (second stop signal): pending; its last periodic checkpoint is intact."""
    st = results.read_status(run_dir)
    results.write_status(run_dir, "pending", step=st.get("step", 0), total_steps=spec.train.steps,
                         error=f"killed (second stop signal); run `harness {command}` again to resume from "
                               f"the last checkpoint")


@dataclass
class Prepares:
    """Shared artefacts (warm starts) to build, each once, before the runs that need them."""

    todo: dict[str, tuple[RunSpec, str]] = field(default_factory=dict)  # key -> (a spec that needs it, label)
    building: set[str] = field(default_factory=set)

    def add(self, spec: RunSpec, cache_dir: Path) -> str | None:
        """Queue the spec's shared artefact if it is missing; -> its key (None: nothing to build)."""
        key = get_backend(spec.backend).shared_key(spec, cache_dir)
        if key is not None:
            label = f"warm start (seed {spec.warm_start.seed})"
            self.todo.setdefault(key, (spec, label))
        return key

    def submit(self, pool, cache_dir: Path) -> None:
        """Start building, in the order queued, while the pool has idle workers."""
        while pool.free() > 0 and self.todo:
            key, (spec, label) = next(iter(self.todo.items()))
            del self.todo[key]
            self.building.add(key)
            pool.submit(("prepare", key, label), prepare_task, spec, str(cache_dir), key, label)

    def ended(self, key: str) -> None:
        self.building.discard(key)
