"""The trackers a run's records go to: TensorBoard, W&B (offline) and MLflow, one class each.

A sink is built with (spec, run_dir, identity, state), where state is tracking.json's content (a
sink may add its run id to it); it has ``name``, ``key`` (how it renames a metric key), ``held``
({key: last step it already holds}), ``log(step, values)`` and ``close(ok)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Iterator

from harness.tracking.base import (
    TB_DIR, WANDB_DIR, RunIdentity, default_mlflow_uri, flat_params, max_steps, mlflow_key, new_wandb_id,
)
from harness.tracking.wandb_log import wandb_history, wandb_run_files


class TensorBoardSink:
    """Event files in <run>/tensorboard/ (torch's SummaryWriter, as verl); the RunSpec in the HParams tab."""

    name = "tensorboard"
    key = staticmethod(str)

    def __init__(self, spec: dict, run_dir: Path, ident: RunIdentity, state: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        path = run_dir / TB_DIR
        self.held = {}
        if path.exists():
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
            acc.Reload()
            self.held = max_steps((tag, e.step) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag))
        self.writer = SummaryWriter(str(path))
        # metric columns of the HParams tab
        aucs = {f"eval/{b}/auc": 0.0 for b in sorted(spec["eval"]["benchmarks"])}
        for summary in hparams(flat_params(spec), aucs):
            self.writer.file_writer.add_summary(summary)

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()  # visible live, and a kill loses nothing already logged

    def close(self, ok: bool) -> None:
        self.writer.close()


class WandbSink:
    """An offline W&B run under <run>/wandb/; one run id for every session of a resumed run."""

    name = "wandb"
    key = staticmethod(str)

    def __init__(self, spec: dict, run_dir: Path, ident: RunIdentity, state: dict) -> None:
        import wandb

        wid = state.setdefault("wandb_run_id", new_wandb_id())
        files = wandb_run_files(run_dir, wid)
        self.held = max_steps((k, int(row["_step"])) for f in files for row in wandb_history(f) for k in row)
        while any((run_dir / WANDB_DIR).glob(f"*-{time.strftime('%Y%m%d_%H%M%S')}-{wid}")):
            time.sleep(0.05)  # a session folder is named by the second it starts: never reuse a previous one
        self.run = wandb.init(
            project=ident.project, name=ident.name, group=ident.group, tags=list(ident.tags),
            job_type="train", config=spec, id=wid, resume="allow", dir=str(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new",
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self, ok: bool) -> None:
        import wandb

        try:
            self.run.finish(exit_code=0 if ok else 1)
        finally:  # finish() can return before wandb-core wrote the log's tail: teardown waits for it
            with contextlib.suppress(Exception):  # (and resets a crashed service)
                wandb.teardown()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def mlflow_run(spec: dict, run_dir: Path, ident: RunIdentity, state: dict):
    """(client, run id): the run kept in tracking.json if the store still has it, else a new one with the
    harness's tags and the RunSpec as params. Creating a SQLite store is serialised across processes."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = default_mlflow_uri(run_dir)
    db = Path(uri.removeprefix("sqlite:///"))
    sqlite = uri.startswith("sqlite:///")
    lock = db.with_name(f".{db.name}.lock") if sqlite else run_dir / ".mlflow.lock"
    with _file_lock(lock):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(ident.project)
        # "model training" view in MLflow 3's UI (not GenAI traces); artifacts, if any, beside a SQLite store
        where = {"artifact_location": (db.parent / "mlartifacts").resolve().as_uri()} if sqlite else {}
        exp_id = exp.experiment_id if exp else client.create_experiment(
            ident.project, tags={"mlflow.experimentKind": "custom_model_development"}, **where)
        rid = state.get("mlflow_run_id") if state.get("mlflow_tracking_uri") == uri else None
        if rid:
            try:
                client.update_run(rid, status="RUNNING")
            except MlflowException:
                rid = None  # store deleted or replaced: start a new run
        if not rid:
            tags = {"experiment": ident.project, "variant": ident.group, "seed": str(spec["seed"]),
                    "preset": spec["preset"], "backend": spec["backend"], "run_id": ident.name}
            rid = client.create_run(exp_id, run_name=ident.name, tags=tags).info.run_id
            params = [Param(k, str(v)) for k, v in flat_params(spec).items()]
            for i in range(0, len(params), 100):  # MLflow's batch limit
                client.log_batch(rid, params=params[i:i + 100])
    state.update(mlflow_run_id=rid, mlflow_tracking_uri=uri)
    return client, rid


class MlflowSink:
    """A run in MLflow experiment <experiment> (default store: SQLite at the results root)."""

    name = "mlflow"
    key = staticmethod(mlflow_key)

    def __init__(self, spec: dict, run_dir: Path, ident: RunIdentity, state: dict) -> None:
        self.client, self.run_id = mlflow_run(spec, run_dir, ident, state)
        keys = self.client.get_run(self.run_id).data.metrics
        history = self.client.get_metric_history
        self.held = max_steps((k, m.step) for k in keys for m in history(self.run_id, k))

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        metrics = [Metric(mlflow_key(k), v, ts, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


SINKS = {"tensorboard": TensorBoardSink, "wandb": WandbSink, "mlflow": MlflowSink}
