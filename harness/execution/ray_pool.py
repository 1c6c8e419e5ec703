"""Ray tasks behind the WorkerPool interface (harness.execution.pool): `--executor ray [--address ADDR]`
(harness.execution.executors chooses).

Each task is a Ray task (num_cpus = the run's torch threads, never retried by Ray) on a local Ray
instance started for this command and stopped after it, or on the cluster at `address` ("auto",
"HOST:PORT", "ray://HOST:10001"). The tasks are the functions the process pool runs
(harness.runs.task.run_task / prepare_task, harness.sweep.worker.run_sweep_task), with the same
TaskContext, so skip / resume / lock semantics and the results are the same bits. On a cluster every
node needs the harness installed and the results folder and warm-start cache at the same paths (a
shared filesystem); run locks then name the driver's pid and the node's host.

A local instance listens on loopback only (``init_local``): every server Ray starts (GCS, raylet and
object manager, the workers' gRPC servers, the dashboard agent, the runtime-env agent, the metrics
ports) binds 127.0.0.1, never the machine's interface address or 0.0.0.0.

Events and the stop request go through one small actor (`_Hub`, no CPU): a task's progress call
posts its event and gets the stop flag back, so request_stop() reaches every running task at its
next step, as in the process pool. kill() cancels running tasks with force (their worker processes
die; each run resumes from its last checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from harness.core.errors import UserError
from harness.execution.context import TaskContext

NOT_INSTALLED = (
    "--executor ray: ray is not installed (pip install 'ray==2.60.0', or the project's `ray` or `verl` extra)"
)


LOOPBACK = "127.0.0.1"
_SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _single_node_mode() -> Iterator[None]:
    """Ray's single-node mode (its default on Windows and macOS) for the duration of ray.init.

    Ray 2.60 turns a loopback node address into the interface address (``ray._private.services.
    resolve_ip_for_localhost``, "Make sure localhost isn't resolved to the loopback ip"): with
    ``_node_ip_address="127.0.0.1"`` alone its servers still listen on 0.0.0.0 / :: and the interface
    address. It keeps loopback when ``get_node_ip_address`` answers it, i.e. when
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, an environment variable Ray reads into
    ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` when it is imported. So both are set here (the
    constant because ray may be imported already), and restored after; the processes the call starts
    inherit the variable.
    """
    from ray._private import ray_constants

    old_env, old_flag = os.environ.get(_SINGLE_NODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_NODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(_SINGLE_NODE_ENV, None)
        else:
            os.environ[_SINGLE_NODE_ENV] = old_env


def init_local(**kwargs: Any) -> None:
    """``ray.init`` of a new local instance (never someone else's ``ray start`` cluster) on loopback only:
    node address 127.0.0.1, no dashboard (``dashboard_host`` loopback if one is asked for)."""
    import ray

    kwargs = {"include_dashboard": False, "dashboard_host": LOOPBACK, **kwargs}
    with _single_node_mode():
        ray.init(address="local", _node_ip_address=LOOPBACK, **kwargs)


def check_ray(address: str | None) -> None:
    """Ray importable; a HOST:PORT address accepting connections (Ray itself retries for minutes)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(NOT_INSTALLED) from None
    if address:
        _check_reachable(address)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    import socket

    hostport = address.removeprefix("ray://")
    if address in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise UserError(
            f"--address {address}: no Ray cluster reachable there ({e}); start one with `ray start --head` "
            f"or omit --address for a local instance"
        ) from None


class _Hub:
    """Ray actor: events from the tasks to the driver, the stop flag from the driver to the tasks."""

    def __init__(self) -> None:
        self._events: list[tuple] = []
        self._stop = False

    def put(self, ev: tuple) -> bool:
        self._events.append(ev)
        return self._stop

    def drain(self) -> list[tuple]:
        out, self._events = self._events, []
        return out

    def request_stop(self) -> None:
        self._stop = True

    def stopped(self) -> bool:
        return self._stop


class _RayContext(TaskContext):
    """TaskContext whose events go to the hub (synchronously: they reach the driver before the result)."""

    def __init__(self, hub, parent_pid: int) -> None:
        self._hub = hub
        super().__init__(self._post, threading.Event(), parent_pid)

    def _ask(self, ref) -> None:
        import ray

        try:
            if ray.get(ref, timeout=60):
                self._stop.set()
        except Exception:  # noqa: BLE001 - progress never fails a run (the driver may be gone)
            pass

    def _post(self, ev: tuple) -> None:
        self._ask(self._hub.put.remote(ev))

    def stop_requested(self) -> bool:
        if not self._stop.is_set():
            self._ask(self._hub.stopped.remote())
        return self._stop.is_set()


def _run(hub, parent_pid: int, fn: Callable, args: tuple) -> tuple[str, Any]:
    """Every Ray task's body: fn(ctx, *args); an exception comes back as ("crash", traceback)."""
    try:
        return "done", fn(_RayContext(hub, parent_pid), *args)
    except BaseException:  # noqa: BLE001 - reported to the driver like the process pool's worker does
        return "crash", traceback.format_exc()[-4000:]


class RayPool:
    """WorkerPool's calls (submit / poll / busy / free / request_stop / kill / close) on Ray tasks."""

    def __init__(self, jobs: int, threads: int = 1, address: str | None = None) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports to the network
        check_ray(None)
        import ray

        self._ray, self._started, self._closed = ray, False, False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:  # "local": always a new instance, on loopback only
                    init_local(num_cpus=max(1, jobs) * threads, object_store_memory=100 * 1024**2, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(
                    f"--address {address}: cannot connect to Ray ({str(e).strip().splitlines()[0]})"
                ) from None
            self._started = True
        self.jobs = jobs or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        self._hub = ray.remote(num_cpus=0)(_Hub).remote()
        self._task = ray.remote(num_cpus=threads, max_retries=0)(_run)
        self._running: dict[Any, Any] = {}  # ObjectRef -> tag
        self._pid = os.getpid()

    @property
    def busy(self) -> int:
        return len(self._running)

    def free(self) -> int:
        return self.jobs - self.busy

    def submit(self, tag: Any, fn: Callable, *args: Any) -> None:
        if self.free() <= 0:
            raise RuntimeError("no idle worker")
        self._running[self._task.remote(self._hub, self._pid, fn, args)] = tag

    def poll(self, timeout: float) -> list[tuple]:
        if not self._running:
            time.sleep(timeout)
            return []
        refs = list(self._running)
        ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        events = self._ray.get(
            self._hub.drain.remote()
        )  # before the results: a task's progress precedes its end
        for ref in ready:
            tag = self._running.pop(ref)
            try:
                kind, value = self._ray.get(ref)
            except (
                Exception
            ) as e:  # noqa: BLE001 - the task's worker died (killed, OOM) or the node went away
                first = (str(e).strip().splitlines() or [""])[0][:300]
                events.append(("crash", tag, f"Ray worker died ({type(e).__name__}: {first})", True))
                continue
            events.append(("done", tag, value) if kind == "done" else ("crash", tag, value, False))
        return events

    def request_stop(self) -> None:
        self._ray.get(self._hub.request_stop.remote())

    def kill(self) -> list:
        """Cancel every running task now (force: its worker process dies); stop a local instance."""
        tags = list(self._running.values())
        if not self._closed:
            for ref in self._running:
                self._ray.cancel(ref, force=True)
        self._running.clear()
        self.close()
        return tags

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._ray.kill(self._hub)
        except Exception:  # noqa: BLE001 - already gone with the instance
            pass
        if self._started:
            self._ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()
