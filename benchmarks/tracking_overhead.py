"""Overhead of each experiment tracker (`loggers:`) per RL step on the quickstart setting.

    python benchmarks/tracking_overhead.py [--experiment experiments/quickstart.yaml] [--variant grpo]
                                           [--steps 30] [--configs none,tensorboard,wandb,mlflow,all]

One real run of the experiment's RunSpec (quickstart: B=64 x G=8, 30 RL steps, evaluations at steps
0/10/20/30 on 3 x 48 problems x 32 samples) per configuration, one after the other in this process,
each into a fresh results folder. The tracking code is timed directly: wall and CPU time of this
process in `tracking.start`, every `Tracker.log` call and `Tracker.close`, plus the CPU time of W&B's
wandb-core helper process (read from /proc before the run closes). Per RL step = log time / steps (one
train record per step, one eval record every eval.every steps); amortised = (start + close) / the
experiment's own step count + log per step, so --steps can be smaller than the experiment's. The
whole-step wall time is shown too, but on a shared 2-core machine its noise is far larger than the
trackers' cost. One-offs are timed apart: the first import of each tracker package (once per
worker process) and the creation of the MLflow SQLite store (once per results folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.core import results

from harness.tracking import trackers as tracking
from harness.backends import get_backend
from harness.config.experiment import load_experiment
from harness.config.runspec import expand
from harness.core.paths import default_cache

CONFIGS = {"none": [], "tensorboard": ["tensorboard"], "wandb": ["wandb"], "mlflow": ["mlflow"],
           "all": ["tensorboard", "wandb", "mlflow"]}
TICK = os.sysconf("SC_CLK_TCK")


def child_cpu(name: str) -> float:
    """CPU seconds (user + system) of this process's children called `name` (e.g. wandb-core)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if comm == name and int(rest[1]) == os.getpid():
            total += (int(rest[11]) + int(rest[12])) / TICK
    return total


class Timer:
    """Wraps tracking.start / Tracker.log / Tracker.close and accumulates their wall and CPU time."""

    def __init__(self) -> None:
        self.t = {k: [0.0, 0.0] for k in ("start", "log", "close")}
        self.calls, self.wandb_cpu = 0, 0.0
        orig_start, orig_log, orig_close = tracking.start, tracking.Tracker.log, tracking.Tracker.close

        def timed(kind, fn):
            def wrapper(*a, **k):
                w, c = time.perf_counter(), time.process_time()
                try:
                    return fn(*a, **k)
                finally:
                    self.t[kind][0] += time.perf_counter() - w
                    self.t[kind][1] += time.process_time() - c
            return wrapper

        def log(tr, record):
            if tr.sinks:
                self.calls += 1
            return timed("log", orig_log)(tr, record)

        def close(tr, ok=True):
            self.wandb_cpu = child_cpu("wandb-core")
            return timed("close", orig_close)(tr, ok)

        self.restore = lambda: (setattr(tracking, "start", orig_start), setattr(tracking.Tracker, "log", orig_log),
                                setattr(tracking.Tracker, "close", orig_close))
        tracking.start, tracking.Tracker.log, tracking.Tracker.close = timed("start", orig_start), log, close


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", type=Path, default=Path("experiments/quickstart.yaml"))
    ap.add_argument("--variant", default="grpo")
    ap.add_argument("--steps", type=int, default=0, help="RL steps per run (0 = the experiment's)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    for var in ("MLFLOW_TRACKING_URI", "WANDB_MODE"):
        os.environ.pop(var, None)
    exp = load_experiment(args.experiment)
    spec = next(s for s in expand(exp) if s.variant == args.variant)
    if args.steps:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"steps": args.steps})})
    steps, exp_steps = spec.train.steps, exp.train.steps
    backend = get_backend(spec.backend)
    backend.prepare(spec, default_cache())
    root = Path(tempfile.mkdtemp(prefix="tracking-bench-"))
    print(f"# tracker overhead per RL step ({args.experiment}, variant {args.variant}, {steps} RL steps, "
          f"B={spec.train.prompts_per_step} x G={spec.train.group_size}, eval every {spec.eval.every})")
    print(f"torch {torch.__version__}, threads {spec.train.threads}, os.cpu_count()={os.cpu_count()}, "
          f"load avg at start: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    versions, imports = [], []
    for mod, stmt in (("tensorboard", "from torch.utils.tensorboard import SummaryWriter"), ("wandb", "import wandb"),
                      ("mlflow", "from mlflow.tracking import MlflowClient")):
        t0 = time.perf_counter()
        exec(stmt, {})  # first imports, paid once per process: timed here, not in the runs below
        imports.append(f"{mod} {time.perf_counter() - t0:.1f}s")
        versions.append(f"{mod} {__import__(mod).__version__}")
    print(", ".join(versions))
    print(f"one-off per process, first import: {', '.join(imports)}")
    t0 = time.perf_counter()
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    print(f"one-off per results folder: creating the MLflow SQLite store took {time.perf_counter() - t0:.1f}s\n")
    print(f"{'config':12s} {'log ms/step':>11s} {'log CPU ms/step':>15s} {'start s':>8s} {'close s':>8s} "
          f"{f'amortised/{exp_steps} steps ms':>22s} {'wandb-core CPU s':>16s} {'median step s':>13s} {'run wall s':>10s}  records")
    for name in args.configs.split(","):
        run_dir = root / exp.name / f"{name}-{spec.run_id}"
        timer = Timer()
        step_times: list[float] = []
        t_run = time.perf_counter()
        try:
            backend.train(spec.model_copy(update={"loggers": CONFIGS[name]}), run_dir, default_cache(),
                          progress=lambda s, n, rec: step_times.append(rec["time/sample_s"] + rec["time/train_s"]))
        finally:
            timer.restore()
        wall = time.perf_counter() - t_run
        errors = tracking.read_state(run_dir).get("errors") if (run_dir / tracking.STATE_FILE).exists() else None
        if errors:
            print(f"{name}: tracker errors {errors}", file=sys.stderr)
        (ls, lc), (ss, _), (cs, _) = timer.t["log"], timer.t["start"], timer.t["close"]
        n_rec = len(results.read_metrics_records(run_dir))
        print(f"{name:12s} {1000 * ls / steps:11.2f} {1000 * lc / steps:15.2f} {ss:8.2f} {cs:8.2f} "
              f"{1000 * ((ss + cs) / exp_steps + ls / steps):22.1f} {timer.wandb_cpu:16.2f} {statistics.median(step_times):13.2f} "
              f"{wall:10.1f}  {n_rec} ({timer.calls} forwarded)")
    print(f"\nload avg at end: {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
