"""Shared fixtures. Parquet fixtures are written at test time from the literal rows below, so the
repository tracks no binary data files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

MATH_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "math"

VERL_ROWS = [  # verl layout: chat-message prompt, reward_model.ground_truth.{question,target}
    {"data_source": "TianHongZXY/AIME2025", "prompt": [{"content": q, "role": "user"}], "ability": "math",
     "reward_model": {"ground_truth": {"question": q, "target": a}, "style": "rule"}, "extra_info": {"index": i, "split": "test"}}
    for i, (q, a) in enumerate([("What is $2+3$?", "5"), ("What is $10/4$?", r"\frac{5}{2}"), (r"Name $\sqrt{4}$.", "2")])
]
FLAT_ROWS = [
    {"problem": r"What is $3 \times 3$?", "answer": "9", "unique_id": "a"},
    {"problem": "What is $7-2$?", "answer": "5", "unique_id": "b"},
]


@pytest.fixture(scope="session")
def math_fixtures(tmp_path_factory) -> Path:
    """A folder with the hand-written JSONL fixtures plus aime2025_verl_mini.parquet and flat_mini.parquet."""
    out = tmp_path_factory.mktemp("math_fixtures")
    for f in MATH_FIXTURES.iterdir():
        shutil.copy(f, out / f.name)
    pd.DataFrame(VERL_ROWS).to_parquet(out / "aime2025_verl_mini.parquet")
    pd.DataFrame(FLAT_ROWS).to_parquet(out / "flat_mini.parquet")
    return out


TINY_EXPERIMENT = {  # a real experiment at the smallest scale that exercises everything (seconds per run)
    "name": "tiny",
    "seeds": [0],
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "warm_start": {"steps": 30, "batch_size": 32, "min_ops": 2, "max_ops": 4},
    "train": {"steps": 4, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2, "max_new_tokens": 16,
              "checkpoint_every": 2, "lr": 1.0e-3},
    "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 6}}},
    "variants": [{"name": "grpo", "preset": "grpo"}],
}


def _make_tiny(directory: Path, **changes) -> Path:
    import copy

    import yaml

    raw = copy.deepcopy(TINY_EXPERIMENT)
    for key, val in changes.items():
        raw[key] = {**raw[key], **val} if isinstance(val, dict) and isinstance(raw.get(key), dict) else val
    path = Path(directory) / f"{raw['name']}-{len(list(Path(directory).glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def make_tiny_experiment():
    """make_tiny_experiment(dir, name=..., train={...}, variants=[...]) -> path of an experiment YAML in dir
    (dict values update the matching section of TINY_EXPERIMENT, anything else replaces the key)."""
    return _make_tiny


@pytest.fixture()
def tiny_experiment(tmp_path):
    """tiny_experiment(**changes): make_tiny_experiment in tmp_path."""
    return lambda **changes: _make_tiny(tmp_path, **changes)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, built once: MLflow's table migrations take ~10 s on a busy 2-core
    machine. Copy it to <results>/mlflow.db before a run logs to MLflow there."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db



@pytest.fixture(scope="session")
def harness_cli():
    """harness_cli(*args): run the `harness` CLI in-process and require exit code 0."""
    from harness.cli.app import main

    def run(*args) -> None:
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
        assert e.value.code in (0, None), f"harness {' '.join(map(str, args))} exited {e.value.code}"

    return run
