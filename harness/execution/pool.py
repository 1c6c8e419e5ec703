"""Run tasks in worker processes that stop cleanly: the runner's local executor.

    pool = WorkerPool(jobs)              # spawned processes (torch and fork do not mix), started lazily
    pool.submit(tag, fn, *args)          # only to an idle worker: nothing is queued ahead in a worker
    for ev in pool.poll(0.25): ...       # ("progress", key, step, total) | ("note", key, text)
                                         # | ("done", tag, value) | ("crash", tag, error, died)
    pool.request_stop()                  # every running task's progress callback raises StopRequested
    pool.kill()                          # SIGKILL now (second Ctrl-C); returns the tags that were running

A task is `fn(ctx, *args)` with a TaskContext (harness.execution.context): `ctx.progress(key)` is the
Progress callback handed to a backend (it raises StopRequested once a stop is requested, so the backend
checkpoints the current step and stops), `ctx.note(key, text)` sends a line to the parent,
`ctx.stop_requested()` polls.
A "crash" is a task that raised (died=False, error = its traceback) or whose process died (died=True).
Another executor only has to provide the same calls and the same context: harness/execution/ray_pool.py
runs the tasks as Ray tasks; harness.execution.executors.make_pool picks one (`--executor process|ray`);
the stop signals are in harness.execution.signals.

Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent decides and
forwards one stop request), treat SIGTERM as a stop request (what a cluster scheduler sends to every
process), and stop on their own when the parent dies (their task pipe closes). Each worker talks
to the parent over its own pipes, so a killed worker cannot wedge the others.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from multiprocessing.connection import wait as conn_wait
from typing import Any, Callable

from harness.execution.context import TaskContext
from harness.execution.signals import STOP_SIGNALS, blocked_stop_signals


# ----------------------------------------------------------------------------------- worker side
def _worker_main(task_conn, event_conn, parent_pid: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent while spawning us
    inbox: queue.Queue = queue.Queue()

    def receive() -> None:  # parent -> worker: tasks, "stop"; EOF = the parent is gone
        while True:
            try:
                msg = task_conn.recv()
            except (EOFError, OSError):
                stop.set()
                inbox.put(None)
                return
            if msg == "stop":
                stop.set()
            else:
                inbox.put(msg)
                if msg is None:
                    return

    threading.Thread(target=receive, daemon=True).start()

    def send(ev: tuple) -> None:
        try:
            event_conn.send(ev)
        except (BrokenPipeError, EOFError, OSError):
            stop.set()  # the parent is gone: finish the current step's checkpoint and stop

    ctx = TaskContext(send, stop, parent_pid)
    while (msg := inbox.get()) is not None:
        tag, fn, args = msg
        try:
            send(("done", tag, fn(ctx, *args)))
        except BaseException:  # noqa: BLE001 - reported to the parent, the worker stays usable
            send(("crash", tag, traceback.format_exc()[-4000:], False))


# ----------------------------------------------------------------------------------- parent side
class _Worker:
    def __init__(self, ctx) -> None:
        task_r, self.task_w = ctx.Pipe(duplex=False)
        self.event_r, event_w = ctx.Pipe(duplex=False)
        # not daemonic: a task may start processes of its own
        self.proc = ctx.Process(target=_worker_main, args=(task_r, event_w, os.getpid()))
        with blocked_stop_signals():  # no KeyboardInterrupt traceback from a worker still importing
            self.proc.start()
        task_r.close()
        event_w.close()
        self.tag: Any = None

    def send(self, msg: Any) -> bool:
        try:
            self.task_w.send(msg)
            return True
        except (BrokenPipeError, OSError):
            return False


class WorkerPool:
    """`jobs` worker processes, each running one task at a time, started when first needed."""

    def __init__(self, jobs: int, mp_context: str = "spawn") -> None:
        self.jobs = max(1, jobs)
        self._ctx = mp.get_context(mp_context)
        self.workers: list[_Worker] = []

    @property
    def busy(self) -> int:
        return sum(w.tag is not None for w in self.workers)

    def free(self) -> int:
        return self.jobs - self.busy

    def submit(self, tag: Any, fn: Callable, *args: Any) -> None:
        """Start fn(ctx, *args) on an idle worker (a new one if none); the caller keeps free() > 0."""
        if self.free() <= 0:
            raise RuntimeError("no idle worker")
        idle = [w for w in self.workers if w.tag is None and w.proc.is_alive()]
        w = idle[0] if idle else None
        if w is None:
            w = _Worker(self._ctx)
            self.workers.append(w)
        w.tag = tag
        if not w.send((tag, fn, args)):
            w.tag = None
            raise RuntimeError(f"worker {w.proc.pid} is gone")

    def poll(self, timeout: float) -> list[tuple]:
        """Events from the workers (waits up to timeout for the first); a dead busy worker -> "crash"."""
        busy = [w for w in self.workers if w.tag is not None]
        if not busy:
            time.sleep(timeout)
            return []
        by_handle = {}
        for w in busy:
            by_handle[w.event_r] = w
            by_handle[w.proc.sentinel] = w
        events: list[tuple] = []
        for handle in conn_wait(list(by_handle), timeout):
            w = by_handle[handle]
            if handle is w.event_r:
                events.extend(self._drain(w))
        for w in busy:  # a worker that died (OOM killer, SIGKILL) while running a task
            if w.tag is not None and not w.proc.is_alive():
                events.extend(self._drain(w))
                if w.tag is not None:
                    died = f"worker process {w.proc.pid} died ({describe_exit(w.proc.exitcode)})"
                    events.append(("crash", w.tag, died, True))
                    w.tag = None
        return events

    def _drain(self, w: _Worker) -> list[tuple]:
        out = []
        try:
            while w.event_r.poll():
                ev = w.event_r.recv()
                if ev[0] in ("done", "crash"):
                    w.tag = None
                out.append(ev)
        except (EOFError, OSError):
            pass
        return out

    def request_stop(self) -> None:
        for w in self.workers:
            w.send("stop")

    def kill(self) -> list:
        """SIGKILL every worker now; returns the tags of the tasks they were running."""
        tags = [w.tag for w in self.workers if w.tag is not None]
        for w in self.workers:
            if w.proc.is_alive():
                w.proc.kill()
        for w in self.workers:
            w.proc.join(5)
            w.tag = None
        self.workers = []
        return tags

    def close(self, timeout: float = 10.0) -> None:
        """Let idle workers exit; kill what is still alive after timeout."""
        try:
            for w in self.workers:
                w.send(None)
            for w in self.workers:
                w.proc.join(timeout)
        finally:
            self.kill()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe_exit(code: int | None) -> str:
    """A dead process's exit status in words: 'exit code 3', 'killed by signal SIGKILL'."""
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
