"""Stop signals: the first SIGINT/SIGTERM asks for a graceful stop, the second quits at once.

    with StopSignals() as sig:           # sig.stop: threading.Event set by the first signal
        ...                              # the second raises Interrupted (exit 128 + signal)
    with blocked_stop_signals(): ...     # held back while spawning a child (it inherits the mask)
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from harness.core.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def blocked_stop_signals() -> Iterator[None]:
    """SIGINT/SIGTERM held back in this thread (a spawned child inherits the mask across exec)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class StopSignals:
    """While active: the first SIGINT/SIGTERM sets `stop` (finish gracefully), the second raises
    Interrupted at once (exit 128 + signal). Handlers are restored on exit. Main thread only."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, _frame) -> None:
        if self.stop.is_set():
            raise Interrupted(signum, "second stop signal")
        self.signum = signum
        self.stop.set()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
