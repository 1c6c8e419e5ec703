"""Report loading: partial results, bad input named and skipped, UserError when nothing is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.report.fake import make_fake_results
from harness.report.load import load_results


def _fake(root: Path, **kw):
    kw = {"variants": ("grpo", "ngrpo"), "seeds": 2, "steps": 4, "eval_every": 2, "n_problems": 6, "n_samples": 4, **kw}
    return make_fake_results(root, **kw)


def test_missing_empty_and_non_results_dirs(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        load_results(tmp_path / "nope")
    with pytest.raises(UserError, match="no run folders found"):
        load_results(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    with pytest.raises(UserError, match="no run folders found"):
        load_results(tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        load_results(tmp_path / "notes.txt")


def test_partial_results_listed(tmp_path):
    _fake(tmp_path, running=1, failed=1)
    (exp,), warnings = load_results(tmp_path)
    states = dict(zip(exp.runs["run_id"], exp.runs["state"]))
    assert states["ngrpo-s2"] == "running" and states["ngrpo-s3"] == "failed"
    assert exp.runs["reported"].sum() == 4 and set(exp.aucs["run_id"]) == {"grpo-s0", "grpo-s1", "ngrpo-s0", "ngrpo-s1"}
    failed = exp.runs.set_index("run_id").loc["ngrpo-s3"]
    assert "out of memory" in failed["note"]
    assert not warnings


def test_corrupt_parquet_and_jsonl_skipped_and_named(tmp_path):
    dirs = _fake(tmp_path)
    bad_parquet, bad_jsonl = dirs[0], dirs[1]
    (bad_parquet / "samples.parquet").write_bytes(b"PAR1 this is not parquet")
    lines = (bad_jsonl / "metrics.jsonl").read_text().splitlines()
    lines[1] = "{not json"
    (bad_jsonl / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (exp,), warnings = load_results(tmp_path)
    assert exp.runs["reported"].sum() == 2
    assert any(str(bad_parquet / "samples.parquet") in w for w in warnings)
    assert any(str(bad_jsonl / "metrics.jsonl") in w and "line 2" in w for w in warnings)
    assert set(exp.runs[~exp.runs["reported"]]["state"]) == {"unreadable"}
    assert exp.runs.set_index("run_id").loc[bad_parquet.name, "note"].startswith(str(bad_parquet))


def test_corrupt_spec_skipped(tmp_path):
    dirs = _fake(tmp_path)
    (dirs[2] / "spec.yaml").write_text("experiment: [unclosed\n")
    exps, warnings = load_results(tmp_path)
    assert sum(int(e.runs["reported"].sum()) for e in exps) == 3
    assert any("spec.yaml" in w for w in warnings)


def test_single_run_folder(tmp_path):
    dirs = _fake(tmp_path)
    (exp,), _ = load_results(dirs[0])
    assert list(exp.runs["run_id"]) == [dirs[0].name] and exp.runs["reported"].all()
    assert {"train/reward", "actor/entropy", "groups/mixed_frac"} <= set(exp.train.columns)
    assert not any(c.startswith("eval/") for c in exp.train.columns)
