"""Choosing the executor of `--executor process|ray`: a WorkerPool (harness.execution.pool) or a
RayPool (harness.execution.ray_pool). Both take the same calls and give tasks the same TaskContext."""

from __future__ import annotations

from harness.core.errors import UserError
from harness.execution.pool import WorkerPool
from harness.execution.ray_pool import RayPool, check_ray

EXECUTORS = ("process", "ray")


def check_executor(executor: str, address: str | None) -> None:
    """Bad --executor / --address values -> UserError, before anything is written."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise UserError("--address: only meaningful with --executor ray")
    if executor == "ray":
        check_ray(address)


def make_pool(executor: str, jobs: int, threads: int = 1, address: str | None = None) -> WorkerPool | RayPool:
    """A WorkerPool (local processes) or a RayPool (Ray tasks; jobs 0 = the cluster's CPUs / threads)."""
    if executor == "ray":
        return RayPool(jobs, threads, address)
    return WorkerPool(jobs)
