"""Files in a results folder get the mode of ordinary new files (the umask decides), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from harness.core import results


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        results.write_spec(tmp_path, {"run_id": "x"})
        results.write_status(tmp_path, "running", step=1)
        results.write_samples(tmp_path, pd.DataFrame({"step": [0], "benchmark": ["b"], "problem_id": ["p"], "sample_idx": [0],
                                                      "correct": [True], "length": [3], "truncated": [False]}))
        results.append_metrics(tmp_path, {"kind": "train", "step": 1})
        results.truncate_metrics(tmp_path, lambda r: True)
    finally:
        os.umask(old)
    for name in ("spec.yaml", "status.json", "samples.parquet", "metrics.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
