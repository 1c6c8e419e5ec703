"""Tasks for tests/unit/test_executor.py, importable by name in spawned workers (the test puts this
folder on sys.path, which spawned children inherit)."""

from __future__ import annotations

import os
import signal
import time

from harness.core.errors import StopRequested


def count(ctx, n: int, delay: float = 0.05) -> str:
    report = ctx.progress("count")
    try:
        for i in range(n):
            time.sleep(delay)
            report(i + 1, n)
    except StopRequested:
        return f"stopped at {i + 1}"
    return "finished"


def ignore_sigint(ctx) -> str:
    os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C does to every process of the job
    time.sleep(0.2)
    return "still here"


def fail(ctx) -> None:
    raise ValueError("bad task")


def die(ctx) -> None:
    os._exit(3)


def abort(ctx) -> None:
    os.abort()  # SIGABRT: the worker process dies by a signal
