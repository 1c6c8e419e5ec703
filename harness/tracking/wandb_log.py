"""Reading W&B's .wandb transaction logs (which steps an offline or online run already holds)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

from harness.tracking.base import WANDB_DIR

# leveldb log format: 32 KiB blocks, 7-byte record header (crc32, length, type)
_WB_BLOCK, _WB_HEADER = 32768, 7


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
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                         for i in rec.history.item})
    return rows


def wandb_run_files(run_dir: Path, run_id: str) -> list[Path]:
    """The .wandb files of every session of one W&B run under run_dir, oldest first."""
    return sorted((Path(run_dir) / WANDB_DIR).glob(f"*run-*-{run_id}/run-{run_id}.wandb"))
