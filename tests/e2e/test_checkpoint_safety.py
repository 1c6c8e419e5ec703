"""Checkpoints are loaded with weights_only=True: a crafted checkpoint cannot run code on resume or eval."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch

from harness.core import results
from harness.cli.app import main

pytestmark = pytest.mark.e2e


class _Payload:
    """Unpickling this calls os.system (a harmless `touch` here): what a malicious checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _cli(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code or 0


def test_malicious_checkpoint_is_refused_on_resume_and_eval(tmp_path, tiny_experiment, capsys, monkeypatch):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    exp = tiny_experiment()
    args = ("--results", str(tmp_path / "res"), "--jobs", "1", "--cache-dir", str(tmp_path / "cache"))
    assert _cli("run", str(exp), *args) == 0
    (run_dir,) = results.find_run_dirs(tmp_path / "res")
    ckpt = run_dir / "checkpoints" / "latest.pt"
    good = torch.load(ckpt, weights_only=True)  # the harness's own checkpoints need nothing more
    assert set(good) >= {"step", "policy", "opt"}

    marker = tmp_path / "pwned"
    torch.save({**good, "extra": _Payload(str(marker))}, ckpt)
    results.write_status(run_dir, "pending", step=good["step"])
    capsys.readouterr()
    assert _cli("run", str(exp), *args) == 1
    err = capsys.readouterr().err
    assert not marker.exists()
    status = results.read_status(run_dir)
    assert status["state"] == "failed" and "refused to load" in status["error"] and str(ckpt) in status["error"]
    assert "refused to load" in err

    bench = tmp_path / "mc.jsonl"
    bench.write_text(json.dumps({"problem": "1+2=", "answer": "3"}))
    code = _cli("eval", str(run_dir), "--backend", "local", "-b", f"mc={bench}", "--n", "2", "--out", str(tmp_path / "ev"))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "refused to load" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "ev").exists()
    probe = tmp_path / "probe.yaml"  # `harness probe` from a run's checkpoint: the same rule
    probe.write_text(json.dumps({"name": "p", "experiment": str(exp), "checkpoint": str(run_dir), "candidates": 8,
                                 "groups_per_type": 1, "updates": 1, "eval_n": 2}))
    code = _cli("probe", str(probe), "--results", str(tmp_path / "pr"), "--cache-dir", str(tmp_path / "cache"))
    err = capsys.readouterr().err
    assert code == 2 and "refused to load" in err and str(ckpt) in err and not marker.exists()
    # the same file loaded the unsafe way really runs the payload: the test above could fail
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
