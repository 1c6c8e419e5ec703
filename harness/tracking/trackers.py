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

    tensorboard  <run>/tensorboard/ (event files)          tensorboard --logdir results/<experiment>
    wandb        <run>/wandb/offline-run-*/ (offline mode)  wandb sync results/<experiment>/*/wandb
    mlflow       <results>/mlflow.db (SQLite store)         mlflow ui --backend-store-uri sqlite:///results/mlflow.db

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
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import secrets
import string
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from harness.core import results

LOGGERS = ("tensorboard", "wandb", "mlflow")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # logger -> module it needs (= pip extra)
STATE_FILE, TB_DIR, WANDB_DIR, MLFLOW_DB = "tracking.json", "tensorboard", "wandb", "mlflow.db"


# ----------------------------------------------------------------------------------- pure helpers
def missing_packages(loggers: Iterable[str]) -> list[str]:
    """The loggers whose package is not importable (checked when the experiment file is validated)."""
    return [name for name in loggers if importlib.util.find_spec(PACKAGES[name]) is None]


def missing_message(loggers: Iterable[str]) -> str | None:
    """One-line fix for missing tracker packages, or None when all are installed."""
    missing = missing_packages(loggers)
    if not missing:
        return None
    return (f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
            f"pip install 'ngrpo-harness[{','.join(missing)}]' (or remove {'it' if len(missing) == 1 else 'them'} from loggers)")


@dataclass(frozen=True)
class RunIdentity:
    project: str  # experiment name: W&B project, MLflow experiment
    name: str  # run id: run name everywhere
    group: str  # variant: W&B group, groups the seeds of one variant
    tags: tuple[str, ...]


def identity(spec: dict) -> RunIdentity:
    tags = (spec["experiment"], spec["variant"], f"seed{spec['seed']}", spec["preset"], spec["backend"])
    return RunIdentity(spec["experiment"], spec["run_id"], spec["variant"], tuple(dict.fromkeys(tags)))


def flat_params(spec: dict, sep: str = "/") -> dict[str, bool | int | float | str]:
    """A nested RunSpec as flat hyper-parameters: {"train/lr": 1e-4, ...}; lists, None and {} as JSON text."""
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k in sorted(v):
                walk(f"{prefix}{sep}{k}" if prefix else str(k), v[k])
        else:
            out[prefix] = v if isinstance(v, (bool, int, float, str)) else json.dumps(v, default=str)

    walk("", spec)
    return out


def record_metrics(record: dict) -> dict[str, float]:
    """The loggable values of one metrics.jsonl record: every number except `step` (`kind` is text)."""
    return {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}


_MLFLOW_BAD = re.compile(r"[^/\w.\- :]")


def mlflow_key(key: str) -> str:
    """MLflow's allowed metric name: '@' -> '_at_', repeated '/' -> '/', other invalid chars -> '_' (verl's rule)."""
    return _MLFLOW_BAD.sub("_", re.sub(r"/+", "/", key.replace("@", "_at_")))


def default_mlflow_uri(run_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite store at the results root (results/<experiment>/<run_id> -> results/mlflow.db)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(run_dir).resolve().parent.parent / MLFLOW_DB)}"


def new_wandb_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def verl_logger_settings(loggers: Iterable[str], run_dir: Path, experiment: str, run_id: str, *,
                         variant: str | None = None, tags: Iterable[str] = (), wandb_run_id: str | None = None,
                         wandb_mode: str = "offline", mlflow_run_id: str | None = None,
                         mlflow_tracking_uri: str | None = None) -> tuple[list[str], dict[str, str]]:
    """verl's `trainer.logger` names and the environment its tracking adapters read. Pure (no I/O).

    Set `trainer.project_name=<experiment>` and `trainer.experiment_name=<run_id>` as well: verl
    0.9.1 (verl/utils/tracking.py) calls wandb.init(project, name, config) and leaves id, resume,
    group, tags, dir and mode to WANDB_* variables; MLflow reads MLFLOW_TRACKING_URI (verl's default
    is sqlite:////tmp/mlruns.db) and attaches to MLFLOW_RUN_ID when set, else starts a run named
    experiment_name in experiment project_name; TensorBoard writes to TENSORBOARD_DIR. With the
    values below, a verl run lands where a local run of the same RunSpec does.
    """
    loggers = list(loggers)
    unknown = [n for n in loggers if n not in LOGGERS]
    if unknown:
        raise ValueError(f"unknown loggers {unknown}; valid: {', '.join(LOGGERS)}")
    run_dir = Path(run_dir)
    env: dict[str, str] = {}
    if "tensorboard" in loggers:
        env["TENSORBOARD_DIR"] = str(run_dir / TB_DIR)
    if "wandb" in loggers:
        env.update(WANDB_DIR=str(run_dir), WANDB_MODE=wandb_mode, WANDB_RESUME="allow", WANDB_JOB_TYPE="train")
        env.update({k: v for k, v in (("WANDB_RUN_ID", wandb_run_id), ("WANDB_RUN_GROUP", variant)) if v})
        if tags:
            env["WANDB_TAGS"] = ",".join(tags)
    if "mlflow" in loggers:
        env["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri or f"sqlite:///{run_dir.resolve().parent.parent / MLFLOW_DB}"
        if mlflow_run_id:
            env["MLFLOW_RUN_ID"] = mlflow_run_id
    return loggers, env


# ----------------------------------------------------------------------------------- run folder state
def read_state(run_dir: Path) -> dict:
    p = Path(run_dir) / STATE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def write_state(run_dir: Path, state: dict) -> None:
    results.write_json(Path(run_dir) / STATE_FILE, state)


# ----------------------------------------------------------------------------------- W&B transaction log
_WB_BLOCK, _WB_HEADER = 32768, 7  # leveldb log format: 32 KiB blocks, 7-byte record header (crc32, length, type)


def read_wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf Records of a .wandb transaction log (offline or online run), in order.

    Format (wandb/sdk/internal/datastore.py before wandb-core): the header b':W&B' + magic + version,
    then leveldb log records FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4 that never straddle a 32 KiB block.
    A torn tail (the writer was killed) ends the iteration.
    """
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, parts = _WB_HEADER, []
    while pos + _WB_HEADER <= len(data):
        room = _WB_BLOCK - pos % _WB_BLOCK
        if room < _WB_HEADER:  # zero trailer of a block
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _WB_HEADER])
        chunk = data[pos + _WB_HEADER:pos + _WB_HEADER + length]
        if kind == 0 or len(chunk) < length:
            break
        pos += _WB_HEADER + length
        parts = [chunk] if kind in (1, 2) else parts + [chunk]
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(b"".join(parts))
            yield rec


def wandb_history(path: Path) -> list[dict]:
    """History rows of a .wandb file: {"_step": n, key: value, ...} (values decoded from JSON)."""
    rows = []
    for rec in read_wandb_records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return rows


def wandb_run_files(run_dir: Path, run_id: str) -> list[Path]:
    """The .wandb files of every session of one W&B run under run_dir, oldest first."""
    return sorted((Path(run_dir) / WANDB_DIR).glob(f"*run-*-{run_id}/run-{run_id}.wandb"))


# ----------------------------------------------------------------------------------- trackers
def _max_steps(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    held: dict[str, int] = {}
    for key, step in pairs:
        held[key] = max(step, held.get(key, step))
    return held


class _TensorBoard:
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
            self.held = _max_steps((tag, e.step) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag))
        self.writer = SummaryWriter(str(path))
        aucs = {f"eval/{b}/auc": 0.0 for b in sorted(spec["eval"]["benchmarks"])}  # metric columns of the HParams tab
        for summary in hparams(flat_params(spec), aucs):
            self.writer.file_writer.add_summary(summary)

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()  # visible live, and a kill loses nothing already logged

    def close(self, ok: bool) -> None:
        self.writer.close()


class _Wandb:
    """An offline W&B run under <run>/wandb/; one run id for every session of a resumed run."""

    name = "wandb"
    key = staticmethod(str)

    def __init__(self, spec: dict, run_dir: Path, ident: RunIdentity, state: dict) -> None:
        import wandb

        wid = state.setdefault("wandb_run_id", new_wandb_id())
        files = wandb_run_files(run_dir, wid)
        self.held = _max_steps((k, int(row["_step"])) for f in files for row in wandb_history(f) for k in row)
        while any((run_dir / WANDB_DIR).glob(f"*-{time.strftime('%Y%m%d_%H%M%S')}-{wid}")):
            time.sleep(0.05)  # a session folder is named by the second it starts: never reuse a previous one
        self.run = wandb.init(
            project=ident.project, name=ident.name, group=ident.group, tags=list(ident.tags), job_type="train",
            config=spec, id=wid, resume="allow", dir=str(run_dir), mode=os.environ.get("WANDB_MODE", "offline"),
            reinit="create_new", settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self, ok: bool) -> None:
        import wandb

        try:
            self.run.finish(exit_code=0 if ok else 1)
        finally:  # finish() can return before wandb-core wrote the log's tail: teardown waits for it (and resets a crashed service)
            with contextlib.suppress(Exception):
                wandb.teardown()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _mlflow_run(spec: dict, run_dir: Path, ident: RunIdentity, state: dict):
    """(client, run id): the run kept in tracking.json if the store still has it, else a new one with the
    harness's tags and the RunSpec as params. Creating a SQLite store is serialised across processes."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = default_mlflow_uri(run_dir)
    db = Path(uri.removeprefix("sqlite:///"))
    lock = db.with_name(f".{db.name}.lock") if uri.startswith("sqlite:///") else run_dir / ".mlflow.lock"
    with _file_lock(lock):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(ident.project)
        # "model training" view in MLflow 3's UI (not GenAI traces); artifacts, if any, beside a SQLite store
        where = {"artifact_location": (db.parent / "mlartifacts").resolve().as_uri()} if uri.startswith("sqlite:///") else {}
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


class _Mlflow:
    """A run in MLflow experiment <experiment> (default store: SQLite at the results root)."""

    name = "mlflow"
    key = staticmethod(mlflow_key)

    def __init__(self, spec: dict, run_dir: Path, ident: RunIdentity, state: dict) -> None:
        self.client, self.run_id = _mlflow_run(spec, run_dir, ident, state)
        keys = self.client.get_run(self.run_id).data.metrics
        self.held = _max_steps((k, m.step) for k in keys for m in self.client.get_metric_history(self.run_id, k))

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(mlflow_key(k), v, ts, step) for k, v in values.items()])

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


SINKS = {"tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _Mlflow}


class Tracker:
    """Forwards metrics.jsonl records to a run's trackers. A tracker that raises is reported once and dropped."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.sinks, self.errors = Path(run_dir), [], {}

    def log(self, record: dict) -> None:
        """Forward one record (already in metrics.jsonl); keys a tracker holds at this step or later are skipped."""
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
        msg = f"{name} failed ({type(exc).__name__}: {exc}); the run goes on without it, metrics.jsonl is unaffected"
        self.errors[name] = msg
        print(f"warning: tracking: {self.run_dir.name}: {msg}", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):  # the disk may be full: the stderr line is the report then
            write_state(self.run_dir, {**read_state(self.run_dir), "errors": self.errors})


_OPEN: set[Tracker] = set()  # trackers of this process not closed (their run raised): closed at the next start or exit
atexit.register(lambda: [t.close(ok=False) for t in list(_OPEN)])


def start(spec: dict, run_dir: Path) -> Tracker:
    """Open the trackers named by spec["loggers"] for run_dir, then replay from metrics.jsonl what they lack.

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


def prepare_verl_tracking(spec: dict, run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """verl_logger_settings for one RunSpec, after creating or reusing its W&B id and MLflow run
    (kept in <run>/tracking.json, so a resumed verl run continues the same tracker runs)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state, ident = read_state(run_dir), identity(spec)
    if "wandb" in spec["loggers"]:
        state.setdefault("wandb_run_id", new_wandb_id())
    if "mlflow" in spec["loggers"]:
        _mlflow_run(spec, run_dir, ident, state)
    write_state(run_dir, state)
    return verl_logger_settings(
        spec["loggers"], run_dir, ident.project, ident.name, variant=ident.group, tags=ident.tags,
        wandb_run_id=state.get("wandb_run_id"), mlflow_run_id=state.get("mlflow_run_id"),
        mlflow_tracking_uri=state.get("mlflow_tracking_uri"),
    )
