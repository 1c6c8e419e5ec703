"""Execute an experiment: skip finished runs, resume interrupted ones, run the rest in parallel processes.

Phase 1 builds the missing shared artefacts (warm starts: one per seed, shared by every variant),
phase 2 the RL runs; both go through the run's backend (harness.backends), never a trainer directly.
Workers are spawned processes (torch and fork do not mix); they report progress through a queue,
shown as rich progress bars with ETA. A run folder is locked while a worker owns it, so two
`harness run` commands on the same results never train the same run twice.
"""

from __future__ import annotations

import fcntl
import os
import queue as queue_mod
import traceback
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness import results
from harness.backends import get_backend
from harness.config import Experiment, expand
from harness.executors import WorkerDied, open_executor

DEFAULT_CACHE = Path(os.environ.get("NGRPO_HARNESS_CACHE", Path.home() / ".cache" / "ngrpo-harness"))


@dataclass
class Plan:
    todo: list[dict]
    done: list[dict]
    resumed: list[str]


def plan_runs(exp: Experiment, results_dir: Path) -> Plan:
    specs = expand(exp)
    todo, done, resumed = [], [], []
    for s in specs:
        rd = results_dir / exp.name / s["run_id"]
        state = results.read_status(rd).get("state") if rd.exists() else "pending"
        if state == "done":
            done.append(s)
        else:
            todo.append(s)
            if get_backend(s["backend"]).has_checkpoint(rd):
                resumed.append(s["run_id"])
    return Plan(todo, done, resumed)


class _Lock:
    """Exclusive, non-blocking lock on run_dir/.lock (released when the process dies)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"

    def __enter__(self) -> bool:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _reporter(q, key: str):
    """Progress callback that never fails the run (the parent, and its queue, may be gone)."""

    def report(step: int, total: int, _info: dict) -> None:
        try:
            q.put((key, step, total))
        except (BrokenPipeError, EOFError, ConnectionError, OSError):
            pass

    return report


def _prepare_worker(spec: dict, cache_dir: str, q) -> str:
    """Build the artefact shared by several runs (the warm start) once."""
    key = f"warm:{spec['warm_start']['seed']}" if "warm_start" in spec else f"prepare:{spec['run_id']}"
    get_backend(spec["backend"]).prepare(spec, Path(cache_dir), progress=_reporter(q, key))
    return key


def _run_worker(spec: dict, run_dir: str, cache_dir: str, q) -> tuple[str, str, str | None]:
    """Train one run; returns (run_id, final state, error)."""
    rd = Path(run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    with _Lock(rd) as owned:
        if not owned:
            return spec["run_id"], "busy", "locked by another harness process"
        results.write_spec(rd, spec)
        try:
            get_backend(spec["backend"]).train(spec, rd, Path(cache_dir), progress=_reporter(q, spec["run_id"]))
            return spec["run_id"], "done", None
        except KeyboardInterrupt:
            st = results.read_status(rd)
            results.write_status(rd, "pending", step=st.get("step", 0), total_steps=spec["train"]["steps"],
                                 error="interrupted; run `harness run` again to resume from the last checkpoint")
            return spec["run_id"], "pending", "interrupted"
        except Exception as e:  # the run fails, the others go on
            err = f"{type(e).__name__}: {e}"
            results.write_status(rd, "failed", error=err, traceback=traceback.format_exc()[-4000:])
            return spec["run_id"], "failed", err


def run_experiment(exp: Experiment, results_dir: Path, jobs: int, cache_dir: Path = DEFAULT_CACHE,
                   console: Console | None = None, source: str | None = None,
                   executor: str = "process", address: str | None = None) -> dict[str, str]:
    """Run every unfinished RunSpec of exp; returns run_id -> final state.

    executor: "process" (local processes) or "ray" (Ray tasks; `address` = a cluster, default a new
    local instance); see harness.executors. The workers are the same, so are skip/resume/lock."""
    console = console or Console(stderr=True)
    get_backend(exp.backend).check(exp)  # before anything is written
    exp_dir = Path(results_dir) / exp.name
    plan = plan_runs(exp, Path(results_dir))
    console.print(
        f"[bold]{exp.name}[/]: {len(plan.todo) + len(plan.done)} runs — {len(plan.done)} done (skipped), "
        f"{len(plan.resumed)} to resume, {len(plan.todo) - len(plan.resumed)} new; {jobs} parallel job(s)"
    )
    states = {s["run_id"]: "done" for s in plan.done}
    if not plan.todo:
        return states
    exp_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:
        results.atomic_write_text(exp_dir / "experiment.yaml", source)
    shared = {}
    for s in plan.todo:
        key = get_backend(s["backend"]).shared_key(s, cache_dir)
        if key is not None:
            shared.setdefault(key, s)
    with open_executor(executor, jobs, threads=exp.train.threads, address=address) as pool, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
    ) as progress:
        q = pool.queue
        bars: dict[str, int] = {}

        def pump(futs) -> set:
            pending = set(futs)
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                try:
                    while True:
                        key, step, total = q.get_nowait()
                        if key not in bars:
                            bars[key] = progress.add_task(key, total=total)
                        progress.update(bars[key], completed=step, total=total)
                except queue_mod.Empty:
                    pass
                yield from finished

        try:
            for fut in pump([pool.submit(_prepare_worker, s, str(cache_dir), q) for s in shared.values()]):
                fut.result()
            futs = {pool.submit(_run_worker, s, str(exp_dir / s["run_id"]), str(cache_dir), q): s["run_id"] for s in plan.todo}
            for fut in pump(futs):
                try:
                    run_id, state, err = fut.result()
                except WorkerDied as e:  # its process was killed (OOM, SIGKILL): this run fails, the others go on
                    run_id, state, err = futs[fut], "failed", f"run process {e}"
                    results.write_status(exp_dir / run_id, "failed", error=err)
                states[run_id] = state
                if err:
                    console.print(f"[red]{run_id}: {state}[/] — {err}")
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            console.print("[yellow]interrupted: finished runs are kept; `harness run` again resumes the rest[/]")
            raise
    return states

