"""Test-only: hold a task at one training step until a stop is requested (or the process is killed).

Imported at start-up by every Python process whose PYTHONPATH puts this folder first (the `harness`
subprocess, its spawned workers, Ray's workers), so a signal test is deterministic: with
HARNESS_TEST_GATE_STEP=N each run logs step N (metrics.jsonl, checkpoint if one is due), then waits
in its progress callback until the parent asks it to stop (shared artefacts such as a warm start
being built are never held). A tiny run's 24 steps take about a second; without the gate, a test
that waits for step N and then signals can lose the race to the run's end on a loaded machine.

HARNESS_TEST_GATE_SKIP=K with HARNESS_TEST_GATE_MARKERS=DIR lets the first K runs that reach the
step pass (counted across processes with one marker file per run in DIR), e.g. to hold a sweep's
second trial and not its first.
"""

import os
import re
import time

if os.environ.get("HARNESS_TEST_GATE_STEP"):
    from pathlib import Path

    from harness.execution.context import TaskContext

    _STEP = int(os.environ["HARNESS_TEST_GATE_STEP"])
    _progress = TaskContext.progress
    _RUN_ID = re.compile(r"-s\d+-[0-9a-f]{12}$")  # runs only: a warm start being built ("warm start (seed 0)") passes

    def _held() -> bool:
        skip = int(os.environ.get("HARNESS_TEST_GATE_SKIP", "0"))
        if not skip:
            return True
        markers = Path(os.environ["HARNESS_TEST_GATE_MARKERS"])
        markers.mkdir(parents=True, exist_ok=True)
        for i in range(1_000):  # marker i = the (i+1)-th run to reach the gate; O_EXCL makes the count exact
            try:
                os.close(os.open(markers / f"{i:03d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            return i >= skip
        return True

    def _gated_progress(self, key):
        report = _progress(self, key)

        def gated(step, total, metrics=None):
            if step == _STEP and _RUN_ID.search(key) and _held():
                while not self.stop_requested():
                    time.sleep(0.05)
            report(step, total, metrics)

        return gated

    TaskContext.progress = _gated_progress
