"""The runner's worker pool and stop signals: progress, stop requests, crashes, dead workers, SIGINT."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from harness.core.errors import Interrupted, UserError
from harness.execution.executors import check_executor
from harness.execution.pool import WorkerPool, describe_exit
from harness.execution.signals import StopSignals


@pytest.fixture()
def tasks(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import executor_tasks

    return executor_tasks


def drain(pool: WorkerPool, timeout: float = 60.0, on_progress=None) -> list[tuple]:
    events, deadline = [], time.time() + timeout
    while pool.busy and time.time() < deadline:
        for ev in pool.poll(0.1):
            events.append(ev)
            if ev[0] == "progress" and on_progress:
                on_progress(ev)
    assert not pool.busy, events
    return events


def test_progress_result_and_stop_request(tasks):
    with WorkerPool(1) as pool:
        pool.submit("a", tasks.count, 3)
        assert pool.free() == 0
        events = drain(pool)
        assert [e[2] for e in events if e[0] == "progress"] == [1, 2, 3]
        assert events[-1] == ("done", "a", "finished")
        pool.submit("b", tasks.count, 10_000)  # the same worker, reused
        events = drain(pool, on_progress=lambda ev: ev[2] == 3 and pool.request_stop())
        assert events[-1][:2] == ("done", "b") and events[-1][2].startswith("stopped at ")
        assert int(events[-1][2].split()[-1]) < 100


def test_crash_dead_worker_and_sigint_ignored(tasks):
    with WorkerPool(2) as pool:
        pool.submit("fail", tasks.fail)
        pool.submit("die", tasks.die)
        events = {e[1]: e for e in drain(pool)}
        assert events["fail"][0] == "crash" and "ValueError: bad task" in events["fail"][2] and events["fail"][3] is False
        assert events["die"][0] == "crash" and "died (exit code 3)" in events["die"][2] and events["die"][3] is True
        pool.submit("abort", tasks.abort)
        (ev,) = [e for e in drain(pool) if e[0] == "crash"]
        assert "died (killed by signal SIGABRT)" in ev[2] and ev[3] is True
        pool.submit("int", tasks.ignore_sigint)
        assert drain(pool)[-1] == ("done", "int", "still here")
        pool.submit("long", tasks.count, 10_000)
        drain_until = time.time() + 30
        while not any(e[0] == "progress" for e in pool.poll(0.1)) and time.time() < drain_until:
            pass
        assert pool.kill() == ["long"] and pool.busy == 0


def test_first_signal_sets_stop_second_raises():
    # the handlers in place before (SIG_IGN for SIGINT when pytest runs as a background job of a script)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as sig:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert sig.stop.is_set() and sig.signum == signal.SIGTERM
        with pytest.raises(Interrupted) as e:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert e.value.signum == signal.SIGINT
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored


def test_exit_descriptions_and_executor_choice():
    assert describe_exit(-9) == "killed by signal SIGKILL" and describe_exit(3) == "exit code 3"
    with pytest.raises(UserError, match="choose one of process, ray"):
        check_executor("threads", None)
    with pytest.raises(UserError, match="only meaningful with --executor ray"):
        check_executor("process", "auto")
    with pytest.raises(UserError, match="no Ray cluster reachable there"):
        pytest.importorskip("ray")
        check_executor("ray", "127.0.0.1:1")  # nothing listens on port 1
