"""Progress views: plain timestamped lines and periodic summaries off a terminal, bars on one."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from harness.execution.progress import BarView, LineView, fmt_seconds, make_view


def test_line_view_when_output_is_not_a_terminal():
    buf = io.StringIO()
    view = make_view(Console(file=buf, width=60), summary_every=0.01)
    assert isinstance(view, LineView)
    view.overall.runs_total, view.overall.total_steps = 2, 40
    view.event("grpo-s0-0123456789ab: started (20 steps) " + "x" * 80)  # long lines are not wrapped
    view.update("grpo-s0-0123456789ab", 5, 20)
    view.overall.add_steps(1)
    view.overall._first = (time.monotonic() - 10, 1)  # the first step 10 s ago, 4 more since
    view.overall.add_steps(4)  # 4 steps in 10 s -> 35 steps left take 87.5 s
    time.sleep(0.02)
    view.tick()
    view.close()
    lines = buf.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d grpo-s0-0123456789ab: started \(20 steps\) x{80}", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d progress: 0/2 runs done, run steps 5/40; running: grpo-s0-0123456789ab 5/20; "
                        r"ETA 1m2\ds", lines[1]), lines[1]
    assert "\x1b" not in buf.getvalue()


def test_bar_view_on_a_terminal():
    buf = io.StringIO()
    view = make_view(Console(file=buf, force_terminal=True, width=100), summary_every=0.01)
    assert isinstance(view, BarView)
    view.overall.total_steps = 10
    view.event("ngrpo-s0: started")
    view.update("ngrpo-s0", 3, 10)
    view.tick()
    view.close()
    out = buf.getvalue()
    assert "ngrpo-s0: started" in out and "all runs (steps)" in out and "3/10" in out


def test_fmt_seconds():
    assert [fmt_seconds(s) for s in (None, 5, 65, 3725)] == ["unknown", "5s", "1m05s", "1h02m"]
