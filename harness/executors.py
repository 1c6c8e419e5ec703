"""Where runs execute: local processes or Ray tasks, behind one small interface.

`harness run` and `harness sweep` hand work to an executor and wait on concurrent.futures.Future
objects; what the work does (skip finished runs, resume from a checkpoint, lock the run folder) is
decided by the worker functions themselves, so both executors give the same semantics and the same
bits (every run pins its torch threads).

    process   each task in its own spawned process, at most `jobs` at once. A task whose process is
              killed (OOM killer, SIGKILL) fails alone with WorkerDied; the others go on. A child
              exits when its parent dies, so a killed `harness` leaves no orphan training behind.
    ray       each task is a Ray task (num_cpus = the run's torch threads, no automatic retries) on a
              fresh local Ray instance, or on the cluster at `address` (e.g. "auto" or
              "ray://head:10001"). Every node must have the harness installed and see the results
              folder and the warm-start cache at the same paths (a shared filesystem).

Both expose `queue` (workers put progress tuples in it; the caller drains it with get_nowait) and
`submit(fn, *args) -> Future`; `shutdown(wait, cancel_futures)` mirrors ProcessPoolExecutor's.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator

from harness.errors import UserError

EXECUTORS = ("process", "ray")


class WorkerDied(RuntimeError):
    """The process running a task died without returning (killed by a signal, OOM, crash)."""


# ----------------------------------------------------------------------------------------- process
def _exit_when_orphaned(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)  # the harness process that started us is gone: stop training its run

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _child_main(conn, fn: Callable, args: tuple, parent_pid: int) -> None:
    _exit_when_orphaned(parent_pid)
    try:
        out = ("ok", fn(*args))
    except BaseException as e:  # noqa: BLE001 - everything, KeyboardInterrupt included, goes to the parent
        out = ("err", e)
    try:
        conn.send(out)
    except Exception as e:  # an unpicklable result or exception: send its text
        conn.send(("err", RuntimeError(f"{type(out[1]).__name__}: {out[1]} (unpicklable: {e})")))
    conn.close()


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code} without a result"


class ProcessExecutor:
    """One spawned process per task (torch and fork do not mix), at most `jobs` at once."""

    def __init__(self, jobs: int) -> None:
        self._ctx = mp.get_context("spawn")
        self._threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="harness-task")
        self.queue = self._ctx.Queue()
        self._live: set = set()
        self._lock = threading.Lock()
        self._closed = False
        self.jobs = jobs

    def submit(self, fn: Callable, *args) -> Future:
        return self._threads.submit(self._run, fn, args)

    def _run(self, fn: Callable, args: tuple):
        recv, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child_main, args=(send, fn, args, os.getpid()), name=f"harness-{fn.__name__}")
        proc.start()
        send.close()
        with self._lock:
            self._live.add(proc)
        try:
            try:
                status, payload = recv.recv()
            except EOFError:  # the child died before sending anything
                proc.join()
                raise WorkerDied(describe_exit(proc.exitcode)) from None
            proc.join()
        finally:
            recv.close()
            with self._lock:
                self._live.discard(proc)
        if status == "ok":
            return payload
        raise payload

    def kill_all(self) -> None:
        """Terminate every running task (SIGTERM); a worker then leaves its run resumable."""
        with self._lock:
            for p in list(self._live):
                if p.is_alive():
                    p.terminate()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait and not self._closed:
            self._closed = True
            self.queue.close()


# ----------------------------------------------------------------------------------------- ray
class RayExecutor:
    """Tasks as Ray tasks; starts (and later stops) a local instance unless `address` is given."""

    def __init__(self, jobs: int, threads: int, address: str | None) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports to the network
        try:
            import ray
            from ray.util.queue import Queue
        except ImportError:
            raise UserError("--executor ray: ray is not installed (pip install 'ray==2.60.0', or the verl extra)") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:  # "local" forces a new instance (never someone else's `ray start` cluster)
                    ray.init(address="local", num_cpus=max(1, jobs) * threads, object_store_memory=100 * 1024**2, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise UserError(f"--address {address}: cannot connect to Ray ({str(e).splitlines()[0]})") from None
            self._started = True
        self._threads = threads
        self.jobs = jobs or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        self.queue = Queue(actor_options={"num_cpus": 0})
        self._refs: list = []
        self._remote: dict[Callable, object] = {}

    def submit(self, fn: Callable, *args) -> Future:
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(num_cpus=self._threads, max_retries=0)(fn)
        ref = self._remote[fn].remote(*args)
        self._refs.append(ref)
        fut = ref.future()
        out: Future = Future()

        def relay(f: Future) -> None:  # Ray's crash errors -> WorkerDied, task errors -> their cause
            try:
                out.set_result(f.result())
            except BaseException as e:  # noqa: BLE001
                out.set_exception(_ray_error(self._ray, e))

        fut.add_done_callback(relay)
        return out

    def kill_all(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        if not self._ray.is_initialized():
            return  # already shut down
        if cancel_futures:
            for ref in self._refs:
                self._ray.cancel(ref)  # the task gets KeyboardInterrupt: its run is left resumable
        if wait and cancel_futures:
            self._ray.wait(self._refs, num_returns=len(self._refs), timeout=60)
        try:
            self._ray.kill(self.queue.actor)
        except Exception:  # noqa: BLE001 - already gone with the instance
            pass
        if self._started:
            self._ray.shutdown()


def _ray_error(ray, e: BaseException) -> BaseException:
    if isinstance(e, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return WorkerDied(f"Ray worker died ({type(e).__name__})")
    if isinstance(e, ray.exceptions.TaskCancelledError):
        return WorkerDied("Ray task cancelled")
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = e.as_instanceof_cause()
        return cause if isinstance(cause, BaseException) else e
    return e


# ----------------------------------------------------------------------------------------- choose
def check_executor(executor: str, address: str | None) -> None:
    """Bad --executor / --address combinations, before anything is written."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if address and executor != "ray":
        raise UserError("--address: only meaningful with --executor ray")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray: ray is not installed (pip install 'ray==2.60.0', or the verl extra)") from None
        if address:
            _check_reachable(address)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address must accept a TCP connection (Ray itself retries for minutes)."""
    import socket

    hostport = address.removeprefix("ray://")
    if address in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise UserError(f"--address {address}: no Ray cluster reachable there ({e}); start one with `ray start --head` "
                        f"or omit --address for a local instance") from None


@contextmanager
def open_executor(executor: str, jobs: int, threads: int = 1, address: str | None = None) -> Iterator:
    """A ProcessExecutor or RayExecutor, shut down on exit (a local Ray instance is stopped)."""
    check_executor(executor, address)
    ex = ProcessExecutor(jobs) if executor == "process" else RayExecutor(jobs, threads, address)
    try:
        yield ex
    except KeyboardInterrupt:  # the tasks were interrupted too: let them leave their runs resumable
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    except BaseException:
        ex.kill_all()
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    else:
        ex.shutdown(wait=True)
