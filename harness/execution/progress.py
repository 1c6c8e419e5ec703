"""How a long command shows progress: bars on a terminal, plain lines everywhere else.

On a terminal (rich's detection: a TTY, or FORCE_TERMINAL) each task gets a progress bar and an
"all runs" bar gives the ETA. When output goes to a file, a pipe, `nohup`, CI or `| tee`, bars
would print nothing until the end, so each event becomes one timestamped line and a summary line
(runs done, steps, ETA) is printed every `summary_every` seconds.
"""

from __future__ import annotations

import time
from datetime import datetime

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


class Overall:
    """Run steps of this invocation: how many are left and the rate measured since the first one
    (warm starts and start-up before it do not count) -> ETA."""

    def __init__(self) -> None:
        self.done_steps = 0
        self.total_steps = 0
        self.runs_done = 0
        self.runs_total = 0
        self._first: tuple[float, int] | None = None  # (time, done_steps) at the first step

    def add_steps(self, n: int) -> None:
        self.done_steps += n
        if self._first is None and n > 0:
            self._first = (time.monotonic(), self.done_steps)

    def eta(self) -> float | None:
        if self._first is None or self.done_steps <= self._first[1]:
            return None
        t, steps = self._first
        return (self.total_steps - self.done_steps) * (time.monotonic() - t) / (self.done_steps - steps)


class ProgressView:
    """Bookkeeping shared by both views; `event` prints one line, `update` moves a task's counter."""

    def __init__(self, console: Console, summary_every: float) -> None:
        self.console, self.summary_every = console, summary_every
        self.tasks: dict[str, tuple[int, int]] = {}
        self.overall = Overall()

    def __enter__(self) -> "ProgressView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def event(self, text: str) -> None:
        raise NotImplementedError

    def update(self, key: str, step: int, total: int) -> None:
        self.tasks[key] = (step, total)

    def tick(self) -> None:
        """Called often by the runner's loop; prints a periodic summary where the view has one."""

    def close(self) -> None:
        pass

    def summary(self) -> str:
        o = self.overall
        running = [f"{k} {s}/{t}" for k, (s, t) in self.tasks.items() if s < t]
        return (
            f"{o.runs_done}/{o.runs_total} runs done, run steps {o.done_steps}/{o.total_steps}"
            + (f"; running: {', '.join(running)}" if running else "")
            + f"; ETA {fmt_seconds(self.overall.eta())}"
        )


class LineView(ProgressView):
    """One timestamped line per event and a summary line every summary_every seconds."""

    def __init__(self, console: Console, summary_every: float) -> None:
        super().__init__(console, summary_every)
        self._last = time.monotonic()

    def _print(self, text: str) -> None:
        self.console.print(f"{datetime.now():%H:%M:%S} {text}", markup=False, highlight=False, soft_wrap=True)

    def event(self, text: str) -> None:
        self._print(text)

    def tick(self) -> None:
        if self.summary_every > 0 and time.monotonic() - self._last >= self.summary_every:
            self._last = time.monotonic()
            self._print(f"progress: {self.summary()}")


class BarView(ProgressView):
    """rich progress bars: one per task, plus "all runs" with the ETA; events print above them."""

    def __init__(self, console: Console, summary_every: float) -> None:
        super().__init__(console, summary_every)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.progress.start()
        self.bars: dict[str, int] = {}
        self._all: int | None = None

    def event(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def update(self, key: str, step: int, total: int) -> None:
        super().update(key, step, total)
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(key, total=total)
        self.progress.update(self.bars[key], completed=step, total=total)

    def tick(self) -> None:
        o = self.overall
        if o.total_steps and self._all is None:
            self._all = self.progress.add_task("all runs (steps)", total=o.total_steps)
        if self._all is not None:
            self.progress.update(self._all, completed=o.done_steps, total=o.total_steps)

    def close(self) -> None:
        self.progress.stop()


def make_view(console: Console, summary_every: float = 30.0) -> ProgressView:
    """Bars on a terminal, lines otherwise."""
    return (BarView if console.is_terminal else LineView)(console, summary_every)
