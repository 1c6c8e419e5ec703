"""What a task sees of the executor that runs it (harness.execution.pool or harness.execution.ray_pool).

A task is `fn(ctx, *args)`: `ctx.progress(key)` is the Progress callback handed to a backend (it
raises StopRequested once a stop is requested, so the backend checkpoints the current step and
stops), `ctx.note(key, text)` sends a line to the parent, `ctx.stop_requested()` polls. Events are
tuples: ("progress", key, step, total) | ("note", key, text).
"""

from __future__ import annotations

import threading
from typing import Callable

from harness.core.errors import StopRequested


class TaskContext:
    """What a task sees of its executor: progress callbacks that carry the stop request, and notes."""

    def __init__(self, send: Callable[[tuple], None], stop: threading.Event, parent_pid: int) -> None:
        self._send, self._stop, self.parent_pid = send, stop, parent_pid

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def note(self, key: str, text: str) -> None:
        self._send(("note", key, text))

    def progress(self, key: str) -> Callable[[int, int, dict], None]:
        """A backend's Progress callback: reports (step, total); raises StopRequested when asked to stop."""

        def report(step: int, total: int, _metrics: dict | None = None) -> None:
            self._send(("progress", key, step, total))
            if self._stop.is_set():
                raise StopRequested()

        return report
