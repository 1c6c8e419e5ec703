"""The grading worker pool: math-verify in subprocesses, with a hard per-task timeout.

Workers are ``python -c`` subprocesses (not multiprocessing, so a pool also works inside daemonic
processes and from any thread) running ``harness.grading.worker.worker_main``. The protocol is one
JSON line per task and per reply on the worker's stdin/stdout, after a first "ready" line. The
parent enforces the hard timeout by killing a worker that has not answered in time and starting a
fresh one; a warm spare is kept after the first kill, so a replacement need not start from cold.
A worker is sent the pickled parse of a gold (``gold_blob``) the first time it grades against it.

The pool is not thread-safe: ``harness.grading.grader.MathGrader`` serialises calls with a lock.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import deque
from typing import Callable

_WORKER_CODE = "from harness.grading.worker import worker_main; worker_main()"


class Worker:
    """One grading subprocess, with a line buffer, the task it is working on and the golds it holds."""

    def __init__(self, memory_limit_mb: int | None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        preexec = None
        if memory_limit_mb:
            limit = memory_limit_mb * 1024 * 1024

            def preexec() -> None:  # runs in the child before exec
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, preexec_fn=preexec, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.task: int | None = None
        self.deadline = float("inf")
        self.golds: set[str] = set()  # golds whose parse this worker has been sent

    def read_lines(self) -> list[str] | None:
        """Lines now available (non-blocking after select); None on EOF (the worker died)."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [ln.decode() for ln in lines]

    def send(self, idx: int, payload: dict, timeout: float) -> None:
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())
        self.proc.stdin.flush()
        self.task, self.deadline = idx, time.monotonic() + timeout

    def kill(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class WorkerPool:
    """``processes`` grading subprocesses, started on demand (``ensure``); ``run`` runs tasks on them."""

    def __init__(self, processes: int, memory_limit_mb: int | None) -> None:
        self.processes, self.memory_limit_mb = processes, memory_limit_mb
        self.workers: list[Worker] = []
        self.spare: Worker | None = None  # started after the first kill, so a replacement is warm
        self.restarts = 0
        self._start_failures = 0

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        for w in self.workers + ([self.spare] if self.spare else []):
            w.kill()
        self.workers, self.spare = [], None

    def ensure(self) -> None:
        """Drop dead workers and start new ones up to ``processes``."""
        self.workers = [w for w in self.workers if w.proc.poll() is None]
        while len(self.workers) < self.processes:
            self.workers.append(Worker(self.memory_limit_mb))

    def replace(self, w: Worker) -> None:
        """Kill w and put the warm spare (or a new worker) in its place; start a new spare."""
        w.kill()
        spare = self.spare if self.spare is not None and self.spare.proc.poll() is None else None
        self.workers[self.workers.index(w)] = spare or Worker(self.memory_limit_mb)
        self.spare = Worker(self.memory_limit_mb)
        self.restarts += 1

    @staticmethod
    def payload(w: Worker, task: dict, gold_blob: Callable[[str], str | None]) -> dict:
        """The task as sent to worker w: a grade task carries the gold's parse the first time w sees
        that gold."""
        if task["op"] == "grade" and task["gold"] not in w.golds:
            w.golds.add(task["gold"])
            return {**task, "gold_blob": gold_blob(task["gold"])}
        return task

    def run(self, tasks: dict[int, dict], timeout: float,
            gold_blob: Callable[[str], str | None]) -> dict[int, dict]:
        """Run tasks {i: task} -> {i: reply}; a reply is the worker's dict, or {"status": "timeout" or
        "error: worker died", "correct": False}. gold_blob(gold): the pickled parse sent with a gold."""
        pending: deque[int] = deque(tasks)
        replies: dict[int, dict] = {}
        busy = 0
        while pending or busy:
            for w in self.workers:  # dispatch to idle, ready workers
                if w.ready and w.task is None and pending:
                    i = pending.popleft()
                    try:
                        w.send(i, {**self.payload(w, tasks[i], gold_blob), "timeout": timeout}, timeout)
                        busy += 1
                    except OSError:  # died between tasks: retry on a fresh worker
                        pending.appendleft(i)
                        self.replace(w)
            now = time.monotonic()
            wait = min([w.deadline for w in self.workers if w.task is not None], default=now + 1.0) - now
            readable, _, _ = select.select([w.fd for w in self.workers], [], [], max(0.0, wait))
            for w in list(self.workers):
                if w.fd in readable:
                    lines = w.read_lines()
                    if lines is None:  # crashed (e.g. memory limit): its task is incorrect
                        busy -= self._died(w, replies)
                        continue
                    for line in lines:
                        if line == "ready":
                            w.ready = True
                        elif w.task is not None:
                            replies[w.task] = json.loads(line)
                            w.task, w.deadline, busy = None, float("inf"), busy - 1
                elif w.task is not None and time.monotonic() >= w.deadline:
                    replies[w.task] = {"status": "timeout", "correct": False}
                    busy -= 1
                    self.replace(w)
        return replies

    def _died(self, w: Worker, replies: dict[int, dict]) -> int:
        """A worker's stdout closed: its task (if any) is incorrect, and it is replaced.

        Returns the number of tasks it ended (0 or 1)."""
        self._start_failures = 0 if w.ready else self._start_failures + 1
        if self._start_failures >= 3:
            raise RuntimeError(f"grading workers exit at start-up (3 in a row); run {sys.executable} -c "
                               f"{_WORKER_CODE!r} to see why")
        ended = 0
        if w.task is not None:
            replies[w.task] = {"status": "error: worker died", "correct": False}
            ended = 1
        self.replace(w)
        return ended
