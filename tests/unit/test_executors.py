"""The process executor: one process per task, so a killed task fails alone; errors come back as raised."""

import math
import os

import pytest

from harness.errors import UserError
from harness.executors import WorkerDied, check_executor, describe_exit, open_executor


def test_a_killed_task_fails_alone_and_errors_propagate():
    with open_executor("process", 2) as ex:
        killed = ex.submit(os.abort)  # the child kills itself with SIGABRT
        ok = ex.submit(math.factorial, 5)
        bad = ex.submit(math.sqrt, -1.0)
        with pytest.raises(WorkerDied, match="killed by signal SIGABRT"):
            killed.result(timeout=120)
        assert ok.result(timeout=120) == 120
        with pytest.raises(ValueError, match="math domain error"):
            bad.result(timeout=120)
        assert ex.submit(math.factorial, 3).result(timeout=120) == 6  # still usable after a death


def test_exit_descriptions_and_option_checks():
    assert describe_exit(-9) == "killed by signal SIGKILL"
    assert describe_exit(3) == "exited with code 3 without a result"
    with pytest.raises(UserError, match="choose one of process, ray"):
        check_executor("threads", None)
    with pytest.raises(UserError, match="only meaningful with --executor ray"):
        check_executor("process", "auto")
