"""Two `harness run` on one results folder cooperate; locks of live processes are respected, those of dead
ones taken over; progress is plain lines when output is not a terminal; result files are readable by others."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core import results
from harness.config.experiment import load_experiment
from harness.config.runspec import expand
from harness.core.locks import FileLock, owner_info

pytestmark = pytest.mark.e2e
_spec = importlib.util.spec_from_file_location("cli_helpers", Path(__file__).with_name("cli_helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

FOUR = [{"name": n, "preset": n} for n in ("grpo", "ngrpo", "dapo", "psr_nsr")]


def _run_dirs(exp_file: Path, res: Path) -> dict[str, Path]:
    exp = load_experiment(exp_file)
    return {s.variant: res / exp.name / s.run_id for s in expand(exp)}


def test_two_invocations_share_the_work_warm_start_built_once_both_exit_0(tmp_path, tiny_experiment):
    exp = tiny_experiment(variants=FOUR, train={"steps": 8})
    args = ("run", exp, "--results", tmp_path / "res", "--jobs", "1", "--cache-dir", tmp_path / "cache", "--summary-every", "1")
    old = os.umask(0o002)  # a group-shared results folder
    try:
        a, b = h.Harness(*args, cwd=tmp_path), h.Harness(*args, cwd=tmp_path)
    finally:
        os.umask(old)
    assert a.finish() == 0, a.output
    assert b.finish() == 0, b.output
    both = a.lines + b.lines
    for out in (a.output, b.output):
        assert "4/4 runs done" in out
    assert sum("warm start (seed 0): building" in line for line in both) == 1
    for v, rd in _run_dirs(exp, tmp_path / "res").items():
        assert sum(f"{rd.name}: started" in line for line in both) == 1, (v, a.output, b.output)
        assert results.read_status(rd)["state"] == "done"
        assert h.train_steps(rd) == list(range(1, 9))
        for f in ("spec.yaml", "status.json", "samples.parquet", "metrics.jsonl", "checkpoints/latest.pt"):
            assert stat.S_IMODE((rd / f).stat().st_mode) == 0o664, f  # the umask decides, not mkstemp's 0600
    # not a terminal: timestamped lines and periodic summaries, no progress bars
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in both if ": started" in line or "progress:" in line)
    assert any(re.search(r"progress: \d/4 runs done, run steps \d+/\d+.*; ETA ", line) for line in both)
    assert "━" not in a.output + b.output


def test_run_held_by_a_live_process_is_waited_for_or_skipped(tmp_path, tiny_experiment):
    exp = tiny_experiment(variants=FOUR[:2])
    dirs = _run_dirs(exp, tmp_path / "res")
    args = ("run", exp, "--results", tmp_path / "res", "--jobs", "1", "--cache-dir", tmp_path / "cache")
    held = dirs["grpo"]
    held.mkdir(parents=True)
    lock = FileLock(held / ".lock")
    assert lock.try_acquire(owner_info())  # this test process plays the other `harness run`
    try:
        skip = h.Harness(*args, "--no-wait", cwd=tmp_path)
        assert skip.finish() == 1, skip.output
        assert f"{held.name}: running in process {os.getpid()}; skipped (--no-wait)" in skip.output
        assert "1/2 runs done" in skip.output and "still running in another process (--no-wait)" in skip.output
        assert results.read_status(dirs["ngrpo"])["state"] == "done"
        assert not (held / "metrics.jsonl").exists()

        waiter = h.Harness(*args, cwd=tmp_path)
        waiter.wait_for_line(f"{held.name}: running in process {os.getpid()}; waiting for it")
    finally:
        lock.release()  # the other process ends without finishing the run: the waiter trains it
    assert waiter.finish() == 0, waiter.output
    assert "2/2 runs done" in waiter.output and f"{held.name}: started" in waiter.output


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path, tiny_experiment):
    exp = tiny_experiment()
    (rd,) = _run_dirs(exp, tmp_path / "res").values()
    rd.mkdir(parents=True)
    results.write_status(rd, "running", step=0)  # what a SIGKILLed run leaves
    code = ("import os, signal, sys; from harness.core.locks import FileLock, owner_info\n"
            f"l = FileLock({str(rd / '.lock')!r}); assert l.try_acquire(owner_info()); print(os.getpid(), flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)")
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert dead.returncode == -signal.SIGKILL
    pid = int(dead.stdout.strip())
    proc = h.Harness("run", exp, "--results", tmp_path / "res", "--jobs", "1", "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    assert proc.finish() == 0, proc.output
    assert f"{rd.name}: taking over the lock left by process {pid}, which no longer runs" in proc.output
    assert results.read_status(rd)["state"] == "done"
