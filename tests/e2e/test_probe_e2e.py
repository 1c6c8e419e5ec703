"""`harness probe FILE` end to end at tiny scale, then `harness report` on its folder."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.core import results
from harness.cli.app import main

pytestmark = pytest.mark.e2e

EXP = {
    "name": "tinyprobe", "seeds": [0], "task": {"min_ops": 1, "max_ops": 3, "grader": "strict"},
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "warm_start": {"steps": 400, "batch_size": 32, "lr": 3.0e-3, "min_ops": 1, "max_ops": 2},
    "train": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2, "max_new_tokens": 12, "lr": 1.0e-3},
    "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 1, "max_ops": 2, "problems": 4}}},
    "variants": [{"name": "grpo", "preset": "grpo"}],
}
PROBE = {"name": "tiny_probe", "experiment": "exp.yaml", "candidates": 64, "groups_per_type": 3, "updates": 2, "eval_n": 4}


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code or 0


def test_probe_command_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(EXP))
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(PROBE))
    res = tmp_path / "res"
    assert cli("probe", str(tmp_path / "probe.yaml"), "--results", str(res), "--cache-dir", str(tmp_path / "cache")) == 0
    out = res / "tiny_probe"
    assert results.read_status(out)["state"] == "done"
    lines = pd.read_json(out / "probe.jsonl", lines=True)
    upd = lines[lines["kind"] == "update"]
    assert len(upd) == 3 * 3 * (2 + 1)  # group types x algorithms x (start + K updates)
    aw = upd[(upd["group_type"] == "all_wrong") & (upd["update"] == 1)].set_index("algorithm")
    assert aw.loc["grpo", "grad_norm"] == 0.0 and aw.loc["ngrpo", "grad_norm"] > 0
    samples = pd.read_parquet(out / "probe_samples.parquet")
    assert set(samples["algorithm"]) == {"start", "grpo", "ngrpo", "w_reinforce"} and len(samples) == 3 * 4 * 3 * 4
    rep = tmp_path / "rep"
    assert cli("report", str(res), "--out", str(rep)) == 0
    for f in ("index.html", "probe_dynamics.png", "probe_passk.png", "probe_summary.csv", "probe_cosines.csv"):
        assert (rep / "tiny_probe" / f).stat().st_size > 0, f
    assert "href='tiny_probe/index.html'" in (rep / "index.html").read_text()
    summary = pd.read_csv(rep / "tiny_probe" / "probe_summary.csv")
    assert {"pass@1_before", "pass@4_K", "d_logp_wrong_1", "d_entropy_K"} <= set(summary.columns)


def test_probe_bad_input_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(EXP))
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**PROBE, "updates": 0}))
    assert cli("probe", str(tmp_path / "p.yaml"), "--results", str(tmp_path / "res")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "updates" in err
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**PROBE, "algorithms": [{"name": "ppo", "preset": "ppo"}]}))
    assert cli("probe", str(tmp_path / "p.yaml"), "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "c")) == 2
    assert "token-level advantage" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()  # refused before anything is written
