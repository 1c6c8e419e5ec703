"""Experiment tracking: every record written to metrics.jsonl also goes to TensorBoard, W&B or MLflow.

An experiment's `loggers:` list picks the trackers; metrics.jsonl is always written first and stays
the source of truth (reports never read a tracker). Each run logs every train and eval record under
the same namespaced keys (MLflow only: '@' -> '_at_', as verl does, since MLflow refuses '@'), its
resolved RunSpec as hyper-parameters, and its identity:

    W&B project / MLflow experiment   experiment name      (verl: trainer.project_name)
    run name                          run id               (verl: trainer.experiment_name)
    W&B group, MLflow tag `variant`   variant              (seeds of one variant together)
    tags                              experiment, variant, seed<N>, preset, backend

Where each tracker writes (no network needed) and the one command that opens it:

    tensorboard  <run>/tensorboard/ (event files)
                 tensorboard --logdir results/<experiment>
    wandb        <run>/wandb/offline-run-*/ (offline mode)
                 wandb sync results/<experiment>/*/wandb
    mlflow       <results>/mlflow.db (SQLite store)
                 mlflow ui --backend-store-uri sqlite:///results/mlflow.db

($WANDB_MODE and $MLFLOW_TRACKING_URI, when set, replace offline mode and the SQLite store.)

Resume: the W&B and MLflow run ids are kept in <run>/tracking.json. When a run (re)starts, each
tracker is asked which step of each key it already holds, from its own store (the event files, the
.wandb transaction logs, MLflow's metric history); what it lacks is replayed from metrics.jsonl and
nothing it holds is logged again. A killed and resumed run so continues the same tracker run with
no step twice; steps logged between the last checkpoint and the kill keep their first values
(identical but for time/ keys, since a resumed CPU run is bit-identical to an uninterrupted one).

Failures: a tracker that raises (disk full, crashed service) is reported once, on stderr and in
tracking.json, and dropped; training goes on and metrics.jsonl is untouched.

verl backend: `verl_logger_settings` (pure) maps the same choice to verl's `trainer.logger` and the
environment variables its adapters read; `prepare_verl_tracking` creates or reuses the run ids first.

Modules: this one forwards records (Tracker, start); `base` holds the shared pure helpers and
tracking.json, `sinks` the three trackers, `wandb_log` the .wandb reader, `verl` the verl settings.
Every public name is re-exported here.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
from pathlib import Path

from harness.core import results
# re-exported: harness.config, harness.backends, the tests and benchmarks import them from here
from harness.tracking.base import (
    LOGGERS, MLFLOW_DB, PACKAGES, STATE_FILE, TB_DIR, WANDB_DIR, RunIdentity, default_mlflow_uri,
    flat_params, identity, missing_message, missing_packages, mlflow_key, new_wandb_id, read_state,
    record_metrics, write_state,
)
from harness.tracking.sinks import SINKS, MlflowSink, TensorBoardSink, WandbSink
from harness.tracking.verl import prepare_verl_tracking, verl_logger_settings
from harness.tracking.wandb_log import read_wandb_records, wandb_history, wandb_run_files

__all__ = [
    "LOGGERS", "MLFLOW_DB", "PACKAGES", "STATE_FILE", "TB_DIR", "WANDB_DIR", "RunIdentity",
    "default_mlflow_uri", "flat_params", "identity", "missing_message", "missing_packages", "mlflow_key",
    "new_wandb_id", "read_state", "record_metrics", "write_state", "SINKS", "MlflowSink", "TensorBoardSink",
    "WandbSink", "prepare_verl_tracking", "verl_logger_settings", "read_wandb_records", "wandb_history",
    "wandb_run_files", "Tracker", "start",
]


class Tracker:
    """Forwards metrics.jsonl records to a run's trackers (sinks). A tracker that raises is reported once
    and dropped."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.sinks, self.errors = Path(run_dir), [], {}

    def log(self, record: dict) -> None:
        """Forward one record (already in metrics.jsonl); keys a tracker holds at this step or later are
        skipped."""
        if not self.sinks:
            return
        step, values = int(record["step"]), record_metrics(record)
        for sink in list(self.sinks):
            new = {k: v for k, v in values.items() if step > sink.held.get(sink.key(k), -1)}
            if new:
                self._guard(sink, sink.log, step, new)

    def close(self, ok: bool = True) -> None:
        for sink in list(self.sinks):
            self._guard(sink, sink.close, ok)
        self.sinks = []
        _OPEN.discard(self)

    def _guard(self, sink, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a tracker never stops training
            self.sinks.remove(sink)
            self.fail(sink.name, e)
            if fn != sink.close:
                with contextlib.suppress(Exception):
                    sink.close(False)

    def fail(self, name: str, exc: BaseException) -> None:
        msg = (f"{name} failed ({type(exc).__name__}: {exc}); the run goes on without it, "
               "metrics.jsonl is unaffected")
        self.errors[name] = msg
        print(f"warning: tracking: {self.run_dir.name}: {msg}", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):  # the disk may be full: the stderr line is the report then
            write_state(self.run_dir, {**read_state(self.run_dir), "errors": self.errors})


# trackers of this process not closed (their run raised): closed at the next start or exit
_OPEN: set[Tracker] = set()
atexit.register(lambda: [t.close(ok=False) for t in list(_OPEN)])


def start(spec: dict, run_dir: Path) -> Tracker:
    """Open the trackers named by spec["loggers"] for run_dir, then replay from metrics.jsonl what they lack.

    `spec` is a RunSpec's plain layout (`RunSpec.to_dict()`, what spec.yaml holds): trackers log it as
    the run's config, so they see exactly what the run folder records.

    Call after metrics.jsonl has been cut back to the checkpoint; with no loggers this does nothing.
    """
    for t in list(_OPEN):
        t.close(ok=False)
    run_dir = Path(run_dir)
    tracker = Tracker(run_dir)
    if not spec["loggers"]:
        return tracker
    state, ident = read_state(run_dir), identity(spec)
    state.pop("errors", None)
    for name in spec["loggers"]:
        try:
            tracker.sinks.append(SINKS[name](spec, run_dir, ident, state))
        except Exception as e:  # noqa: BLE001
            tracker.fail(name, e)
    with contextlib.suppress(OSError):
        write_state(run_dir, {**state, **({"errors": tracker.errors} if tracker.errors else {})})
    _OPEN.add(tracker)
    for record in results.read_metrics_records(run_dir):
        tracker.log(record)
    return tracker
