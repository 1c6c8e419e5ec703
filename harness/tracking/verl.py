"""Tracking for the verl backend: verl's own tracking adapters log, set up to land where a local run of
the same RunSpec does."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from harness.tracking.base import (
    LOGGERS, TB_DIR, identity, new_wandb_id, read_state, sqlite_mlflow_uri, write_state,
)
from harness.tracking.sinks import mlflow_run


def verl_logger_settings(
    loggers: Iterable[str], run_dir: Path, experiment: str, run_id: str, *, variant: str | None = None,
    tags: Iterable[str] = (), wandb_run_id: str | None = None, wandb_mode: str = "offline",
    mlflow_run_id: str | None = None, mlflow_tracking_uri: str | None = None,
) -> tuple[list[str], dict[str, str]]:
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
        env.update(WANDB_DIR=str(run_dir), WANDB_MODE=wandb_mode, WANDB_RESUME="allow",
                   WANDB_JOB_TYPE="train")
        env.update({k: v for k, v in (("WANDB_RUN_ID", wandb_run_id), ("WANDB_RUN_GROUP", variant)) if v})
        if tags:
            env["WANDB_TAGS"] = ",".join(tags)
    if "mlflow" in loggers:
        env["MLFLOW_TRACKING_URI"] = mlflow_tracking_uri or sqlite_mlflow_uri(run_dir)
        if mlflow_run_id:
            env["MLFLOW_RUN_ID"] = mlflow_run_id
    return loggers, env


def prepare_verl_tracking(spec: dict, run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """verl_logger_settings for one RunSpec, after creating or reusing its W&B id and MLflow run
    (kept in <run>/tracking.json, so a resumed verl run continues the same tracker runs)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state, ident = read_state(run_dir), identity(spec)
    if "wandb" in spec["loggers"]:
        state.setdefault("wandb_run_id", new_wandb_id())
    if "mlflow" in spec["loggers"]:
        mlflow_run(spec, run_dir, ident, state)
    write_state(run_dir, state)
    return verl_logger_settings(
        spec["loggers"], run_dir, ident.project, ident.name, variant=ident.group, tags=ident.tags,
        wandb_run_id=state.get("wandb_run_id"), mlflow_run_id=state.get("mlflow_run_id"),
        mlflow_tracking_uri=state.get("mlflow_tracking_uri"),
    )
