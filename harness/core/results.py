"""The results layout: one folder per run, written atomically, loaded into DataFrames.

    results/<experiment>/<run_id>/
        spec.yaml        the resolved RunSpec (keys experiment, variant, seed, run_id, backend, ...)
        metrics.jsonl    one JSON object per line (training steps and evaluations; namespaced keys)
        samples.parquet  one row per evaluated sample (SAMPLE_COLUMNS)
        checkpoints/     latest resumable state (backend-specific)
        status.json      {"state": pending|running|done|failed|pruned, "error": str|None,
                          "provenance": {code, commit, versions, warm start, ...} (harness.core.provenance), ...}

Every writer here is crash-safe: files are written to a temporary name, fsynced and renamed, so a
killed run leaves either the old or the new file, never half of one. metrics.jsonl is append-only;
a torn last line (kill during append) is ignored on load and truncated on resume.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

STATES = ("pending", "running", "done", "failed", "pruned")  # pruned: stopped early by a sweep's pruner
SAMPLE_COLUMNS = ("step", "benchmark", "problem_id", "sample_idx", "correct", "length", "truncated")
SAMPLES_SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("benchmark", pa.string()),
        ("problem_id", pa.string()),
        ("sample_idx", pa.int32()),
        ("correct", pa.bool_()),
        ("length", pa.int32()),
        ("truncated", pa.bool_()),
    ]
)
SPEC_FILE, METRICS_FILE, SAMPLES_FILE, STATUS_FILE, CKPT_DIR = (
    "spec.yaml", "metrics.jsonl", "samples.parquet", "status.json", "checkpoints",
)


class ResultsError(Exception):
    """A run folder that cannot be read (corrupt or missing file); the message names the file."""


# ----------------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, rename. The file gets the mode of an ordinary
    new file (0666 minus the umask, e.g. 0644), not mkstemp's 0600: colleagues can read results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_spec(run_dir: Path, spec: dict) -> None:
    atomic_write_text(Path(run_dir) / SPEC_FILE, yaml.safe_dump(spec, sort_keys=False))


CARRIED = ("provenance",)  # kept by every status write that does not set them (harness.core.provenance)


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """status.json := {state, updated, **extra}, keeping the run's `provenance` record unless extra sets it."""
    if state not in STATES:
        raise ValueError(f"status must be one of {STATES}, got {state!r}")
    try:
        old = read_status(run_dir)
    except ResultsError:  # a corrupt status file is replaced; its provenance is lost with it
        old = {}
    carried = {k: old[k] for k in CARRIED if k in old and k not in extra}
    write_json(Path(run_dir) / STATUS_FILE, {**carried, "state": state, "updated": time.time(), **extra})


def read_status(run_dir: Path) -> dict:
    p = Path(run_dir) / STATUS_FILE
    if not p.exists():
        return {"state": "pending"}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{p}: not valid JSON ({e})") from e


# ----------------------------------------------------------------------------------- metrics.jsonl
def append_metrics(run_dir: Path, record: dict) -> None:
    """Append one JSON line and fsync it (a step's metrics survive a crash right after)."""
    p = Path(run_dir) / METRICS_FILE
    with open(p, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics_records(run_dir: Path) -> list[dict]:
    """All complete lines of metrics.jsonl; a torn final line (killed mid-append) is skipped.

    A malformed line anywhere else is corruption and raises ResultsError naming the file and line.
    """
    p = Path(run_dir) / METRICS_FILE
    if not p.exists():
        return []
    lines = p.read_text().split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:  # no trailing newline: torn last write
                break
            raise ResultsError(f"{p}: line {i + 1} is not valid JSON ({e})") from e
    return out


def truncate_metrics(run_dir: Path, keep: "callable") -> None:
    """Rewrite metrics.jsonl keeping only records for which keep(record) is true (used on resume)."""
    p = Path(run_dir) / METRICS_FILE
    if not p.exists():
        return
    kept = [r for r in read_metrics_records(run_dir) if keep(r)]
    atomic_write_text(p, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


def read_metrics(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(read_metrics_records(run_dir))


# ----------------------------------------------------------------------------------- samples
def samples_frame(rows: dict[str, Iterable] | pd.DataFrame) -> pd.DataFrame:
    """Coerce columns to the samples schema (raises ValueError naming missing columns)."""
    df = pd.DataFrame(rows)
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"samples: missing columns {missing} (need {list(SAMPLE_COLUMNS)})")
    return pa.Table.from_pandas(
        df[list(SAMPLE_COLUMNS)], schema=SAMPLES_SCHEMA, preserve_index=False
    ).to_pandas()


def write_samples(run_dir: Path, df: pd.DataFrame) -> None:
    """Atomically (re)write samples.parquet with exactly the samples schema."""
    table = pa.Table.from_pandas(samples_frame(df), schema=SAMPLES_SCHEMA, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(Path(run_dir) / SAMPLES_FILE, sink.getvalue().to_pybytes())


def append_samples(run_dir: Path, df: pd.DataFrame) -> None:
    """Add rows (e.g. one evaluation) to samples.parquet, replacing rows of the same (step, benchmark)."""
    new = samples_frame(df)
    old = read_samples(run_dir)
    if len(old):
        keys = set(map(tuple, new[["step", "benchmark"]].drop_duplicates().to_numpy().tolist()))
        old = old[[(s, b) not in keys for s, b in zip(old["step"], old["benchmark"])]]
        new = pd.concat([old, new], ignore_index=True)
    write_samples(run_dir, new)


def read_samples(run_dir: Path) -> pd.DataFrame:
    p = Path(run_dir) / SAMPLES_FILE
    if not p.exists():
        return samples_frame({c: [] for c in SAMPLE_COLUMNS})
    try:
        return pq.read_table(p).to_pandas()
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise ResultsError(f"{p}: unreadable parquet ({type(e).__name__}: {e})") from e


# ----------------------------------------------------------------------------------- discovery
@dataclass
class RunRecord:
    """One run folder, loaded. `error` is set (and frames are empty) when a file was unreadable."""

    path: Path
    spec: dict
    status: dict
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)
    error: str | None = None

    @property
    def experiment(self) -> str:
        return str(self.spec.get("experiment", self.path.parent.name))

    @property
    def variant(self) -> str:
        return str(self.spec.get("variant", self.path.name))

    @property
    def seed(self) -> int:
        return int(self.spec.get("seed", 0))

    @property
    def state(self) -> str:
        return str(self.status.get("state", "pending"))


def find_run_dirs(root: Path) -> list[Path]:
    """Every folder under root (root included) that holds a spec.yaml, sorted."""
    root = Path(root)
    if (root / SPEC_FILE).exists():
        return [root]
    return sorted(p.parent for p in root.rglob(SPEC_FILE) if CKPT_DIR not in p.parts)


def load_run(run_dir: Path, with_samples: bool = True) -> RunRecord:
    run_dir = Path(run_dir)
    try:
        spec = yaml.safe_load((run_dir / SPEC_FILE).read_text()) or {}
        if not isinstance(spec, dict):
            raise ResultsError(f"{run_dir / SPEC_FILE}: not a mapping")
    except (yaml.YAMLError, OSError) as e:
        return RunRecord(run_dir, {}, {"state": "failed"}, error=f"{run_dir / SPEC_FILE}: {e}")
    try:
        status = read_status(run_dir)
        metrics = read_metrics(run_dir)
        samples = read_samples(run_dir) if with_samples else pd.DataFrame()
    except ResultsError as e:
        return RunRecord(run_dir, spec, {"state": "failed"}, error=str(e))
    return RunRecord(run_dir, spec, status, metrics, samples)
