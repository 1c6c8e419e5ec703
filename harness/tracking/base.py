"""What every tracker shares: the logger names, a run's identity and hyper-parameters, key rules and
the run folder's tracking.json (pure helpers but for read_state/write_state).

Every `spec` in this package is a RunSpec's plain layout (`RunSpec.to_dict()`, as in spec.yaml):
trackers record what the run folder records.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.core import results

LOGGERS = ("tensorboard", "wandb", "mlflow")
# logger -> module it needs (= pip extra)
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
STATE_FILE, TB_DIR, WANDB_DIR, MLFLOW_DB = "tracking.json", "tensorboard", "wandb", "mlflow.db"


def missing_packages(loggers: Iterable[str]) -> list[str]:
    """The loggers whose package is not importable (checked when the experiment file is validated)."""
    return [name for name in loggers if importlib.util.find_spec(PACKAGES[name]) is None]


def missing_message(loggers: Iterable[str]) -> str | None:
    """One-line fix for missing tracker packages, or None when all are installed."""
    missing = missing_packages(loggers)
    if not missing:
        return None
    one = len(missing) == 1
    return (f"{', '.join(missing)} {'is' if one else 'are'} not installed: "
            f"pip install 'ngrpo-harness[{','.join(missing)}]' "
            f"(or remove {'it' if one else 'them'} from loggers)")


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


def max_steps(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """{key: the largest step logged for it} from (key, step) pairs."""
    held: dict[str, int] = {}
    for key, step in pairs:
        held[key] = max(step, held.get(key, step))
    return held


_MLFLOW_BAD = re.compile(r"[^/\w.\- :]")


def mlflow_key(key: str) -> str:
    """MLflow's allowed metric name: '@' -> '_at_', repeated '/' -> '/', other invalid chars -> '_'
    (verl's rule)."""
    return _MLFLOW_BAD.sub("_", re.sub(r"/+", "/", key.replace("@", "_at_")))


def sqlite_mlflow_uri(run_dir: Path) -> str:
    """The SQLite store at the results root (results/<experiment>/<run_id> -> results/mlflow.db)."""
    return f"sqlite:///{(Path(run_dir).resolve().parent.parent / MLFLOW_DB)}"


def default_mlflow_uri(run_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else the SQLite store at the results root (sqlite_mlflow_uri)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or sqlite_mlflow_uri(run_dir)


def new_wandb_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def read_state(run_dir: Path) -> dict:
    """<run>/tracking.json ({} if absent): the W&B and MLflow run ids, and the trackers' errors."""
    p = Path(run_dir) / STATE_FILE
    return json.loads(p.read_text()) if p.exists() else {}


def write_state(run_dir: Path, state: dict) -> None:
    results.write_json(Path(run_dir) / STATE_FILE, state)
