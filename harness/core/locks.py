"""Cross-process locks on files: a run folder is trained by one process, a shared artefact built once.

`flock(2)` on a lock file: the kernel releases the lock when its holder dies (even by SIGKILL), so a
lock left by a dead process is simply taken over by the next one. The file also holds the holder's
pid, host and start time, only to name it ("running in process 1234 on host x"). Lock files are
never deleted (deleting one would let two processes hold two different files of the same name).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable


def owner_info(pid: int | None = None) -> dict:
    """Who holds a lock: the harness command's pid (a worker passes its parent's), host, time."""
    return {
        "pid": pid or os.getpid(),
        "worker_pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.time(),
    }


def describe(info: dict | None) -> str:
    """'process 1234 on host x' (or 'another process' when the lock file names nobody yet)."""
    if not info or "pid" not in info:
        return "another process"
    host = info.get("host")
    return f"process {info['pid']}" + (f" on {host}" if host and host != socket.gethostname() else "")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FileLock:
    """Exclusive lock on `path` (created if missing). Not re-entrant; one instance per holder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None
        self.previous: dict | None = None  # what the file named before we took it (a dead holder's info)

    def _read(self, fd: int) -> dict | None:
        try:
            raw = os.pread(fd, 4096, 0)
            return json.loads(raw) if raw.strip() else None
        except (OSError, ValueError):
            return None

    def try_acquire(self, owner: dict | None = None) -> bool:
        """Take the lock if free (then write `owner` into the file); False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.previous = self._read(fd)
        data = json.dumps(owner or owner_info()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self.fd = fd
        return True

    def taken_over_from_dead(self) -> dict | None:
        """The previous holder's info when it names a process (on this host) that no longer runs."""
        p = self.previous
        if (
            p
            and "pid" in p
            and p.get("host") == socket.gethostname()
            and not _pid_alive(int(p.get("worker_pid", p["pid"])))
        ):
            return p
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def holder(self) -> dict | None:
        """None if the lock is free now, else the holder's info ({} when it has not written it yet).

        Probes with a shared lock taken and dropped at once (a concurrent try_acquire may fail in that
        instant and is retried by its caller)."""
        if not self.path.exists():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read(fd) or {}
            return None
        finally:
            os.close(fd)

    def acquire(self, owner: dict | None = None, on_wait: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] = lambda: False, poll: float = 0.5) -> bool:
        """Block until the lock is ours (True) or should_stop() (False); on_wait(holder) is called once."""
        waited = False
        while not self.try_acquire(owner):
            if should_stop():
                return False
            if not waited and on_wait is not None:
                on_wait(self.holder() or {})
            waited = True
            time.sleep(poll)
        return True

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
