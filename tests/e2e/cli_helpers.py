"""Helpers for the tests that drive `harness` as a real subprocess (signals, concurrency, pipes).

Loaded by path from the test modules (tests/ is not a package)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.core import results


GATE_DIR = Path(__file__).with_name("gate")


def gate_env(step: int, skip: int = 0, markers: Path | None = None) -> dict[str, str]:
    """Environment that holds the runs of a `harness` subprocess at `step` until a stop is requested
    (tests/e2e/gate/sitecustomize.py): a signal sent once a run logged `step` always lands mid-run.
    skip: the first `skip` runs to reach the step pass (markers: a fresh folder that counts them)."""
    path = os.pathsep.join(p for p in (str(GATE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "HARNESS_TEST_GATE_STEP": str(step)}
    if skip:
        env.update(HARNESS_TEST_GATE_SKIP=str(skip), HARNESS_TEST_GATE_MARKERS=str(markers))
    return env


class Harness:
    """`python -m harness ARGS` in its own session (like a shell job), output collected line by line.
    gate_step: hold every run at that step until a stop is requested (see gate_env)."""

    def __init__(self, *args: str, cwd: Path, env: dict | None = None, gate_step: int | None = None) -> None:
        env = {**os.environ, **(env or {}), **(gate_env(gate_step) if gate_step is not None else {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd, start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.time() > deadline:
                self._reader.join(5)
                if any(text in line for line in self.lines):
                    return
                raise AssertionError(f"never printed {text!r}:\n{self.output}")
            time.sleep(0.02)

    def signal_group(self, sig: int) -> None:
        """What a terminal's Ctrl-C does: the signal goes to every process of the job."""
        os.killpg(self.proc.pid, sig)

    def signal_parent(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def finish(self, timeout: float = 300.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
            raise AssertionError(f"harness did not exit within {timeout}s:\n{self.output}") from None
        self._reader.join(10)
        return rc


def worker_pids(proc: Harness) -> list[int]:
    """The harness process's worker processes (spawned children; not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split()
    out = []
    for pid in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except FileNotFoundError:
            pass
    return out


def train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in results.read_metrics_records(run_dir) if r.get("kind") == "train"]


def wait_for_steps(run_dirs: list[Path], at_least: int, proc: Harness, timeout: float = 180.0) -> None:
    """Until every run folder has logged `at_least` training steps."""
    deadline = time.time() + timeout
    while True:
        if all(d.exists() and len(train_steps(d)) >= at_least for d in run_dirs):
            return
        if proc.proc.poll() is not None or time.time() > deadline:
            raise AssertionError(f"runs did not reach step {at_least}:\n{proc.output}")
        time.sleep(0.02)


def strip_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]
