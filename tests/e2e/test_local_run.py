"""Real end-to-end runs of the embedded backend at tiny scale: every preset, determinism, kill + resume."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.core import results
from harness.cli.app import main

pytestmark = pytest.mark.e2e
_spec = importlib.util.spec_from_file_location("cli_helpers", Path(__file__).with_name("cli_helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

PRESETS = [{"name": p, "preset": p} for p in ("ppo", "grpo", "dapo", "psr_nsr", "ngrpo")]


def cli(*args: str) -> None:
    """Run the `harness` CLI in-process and require success."""
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code in (0, None)


def strip_times(records):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_every_preset_runs_and_writes_complete_results(env, tiny_experiment):
    exp = tiny_experiment(variants=PRESETS)
    cli("run", str(exp), "--results", str(env / "res"), "--jobs", "2", "--cache-dir", str(env / "cache"))
    runs = results.find_run_dirs(env / "res" / "tiny")
    assert len(runs) == 5
    for rd in runs:
        rec = results.load_run(rd)
        assert rec.state == "done" and rec.error is None
        train = rec.metrics[rec.metrics["kind"] == "train"]
        assert train["step"].tolist() == [1, 2, 3, 4]
        for key in ("train/reward", "train/acc", "groups/all_wrong_frac", "groups/all_correct_frac", "groups/mixed_frac",
                    "groups/kept", "groups/sample_rounds", "time/sample_s", "time/train_s", "train/response_length"):
            assert key in train.columns, (rec.variant, key)
        if train["groups/kept"].min() > 0:
            for key in ("actor/clipfrac_low", "actor/clipfrac_high", "actor/ppo_kl", "actor/entropy", "actor/grad_norm"):
                assert train[key].notna().all(), (rec.variant, key)
        assert sorted(rec.samples["step"].unique().tolist()) == [0, 2, 4]
        assert len(rec.samples) == 3 * 6 * 4
        assert rec.samples["correct"].dtype == bool
        if rec.variant == "ppo":
            assert "critic/value_loss" in train.columns
    # a second `harness run` skips finished runs: nothing is rewritten
    before = {rd: (rd / "samples.parquet").stat().st_mtime_ns for rd in runs}
    cli("run", str(exp), "--results", str(env / "res"), "--jobs", "1", "--cache-dir", str(env / "cache"))
    assert before == {rd: (rd / "samples.parquet").stat().st_mtime_ns for rd in runs}


def test_same_runspec_twice_gives_identical_samples(env, tiny_experiment):
    exp = tiny_experiment(variants=[{"name": "ngrpo", "preset": "ngrpo"}])
    for out in ("a", "b"):
        cli("run", str(exp), "--results", str(env / out), "--jobs", "1", "--cache-dir", str(env / "cache"))
    (ra,), (rb,) = results.find_run_dirs(env / "a"), results.find_run_dirs(env / "b")
    assert ra.name == rb.name
    pd.testing.assert_frame_equal(results.read_samples(ra), results.read_samples(rb))
    assert strip_times(results.read_metrics_records(ra)) == strip_times(results.read_metrics_records(rb))


def test_sigkill_mid_training_then_resume_matches_uninterrupted(env, tiny_experiment):
    changes = dict(variants=[{"name": "grpo", "preset": "grpo"}], train={"steps": 10, "checkpoint_every": 3}, eval={"every": 5})
    exp = tiny_experiment(**changes)
    cmd = [sys.executable, "-m", "harness", "run", str(exp), "--results", str(env / "killed"), "--jobs", "1",
           "--cache-dir", str(env / "cache")]
    # uninterrupted reference (also builds the cached warm start)
    cli("run", str(exp), "--results", str(env / "ref"), "--jobs", "1", "--cache-dir", str(env / "cache"))
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **h.gate_env(5)})  # the run waits at step 5: the kill lands mid-run
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline:
        found = list((env / "killed").rglob("metrics.jsonl"))
        if found:
            metrics = found[0]
            steps = [r.get("step") for r in results.read_metrics_records(metrics.parent) if r.get("kind") == "train"]
            if steps and max(steps) >= 5:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert metrics is not None, "the run never started"
    run_dir = metrics.parent
    assert results.read_status(run_dir)["state"] == "running"  # killed: never marked done
    assert h.train_steps(run_dir) == [1, 2, 3, 4, 5]  # held at the gate until the kill
    assert (run_dir / "checkpoints" / "latest.pt").exists()
    cli("run", str(exp), "--results", str(env / "killed"), "--jobs", "1", "--cache-dir", str(env / "cache"))
    (ref,) = results.find_run_dirs(env / "ref")
    assert results.read_status(run_dir)["state"] == "done"
    pd.testing.assert_frame_equal(results.read_samples(ref), results.read_samples(run_dir))
    assert strip_times(results.read_metrics_records(ref)) == strip_times(results.read_metrics_records(run_dir))


def test_harness_eval_on_a_local_checkpoint(env, tiny_experiment):
    exp = tiny_experiment(variants=[{"name": "grpo", "preset": "grpo"}], train={"steps": 2})
    cli("run", str(exp), "--results", str(env / "res"), "--jobs", "1", "--cache-dir", str(env / "cache"))
    (run_dir,) = results.find_run_dirs(env / "res")
    bench = env / "mc.jsonl"
    bench.write_text("\n".join(json.dumps({"problem": p, "answer": a}) for p, a in [("1+2=", "3"), ("4*9+4=", "0"), ("7-9=", "8")]))
    cli("eval", str(run_dir), "--backend", "local", "-b", f"mc={bench}", "--n", "4", "--max-new-tokens", "16",
        "--out", str(env / "ev"), "--experiment", "mc", "--step", "2", "--grading-processes", "1")
    (ev_dir,) = results.find_run_dirs(env / "ev" / "mc")
    s = results.read_samples(ev_dir)
    assert len(s) == 12 and set(s["benchmark"]) == {"mc"} and set(s["step"]) == {2}
    bad = env / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "What is x?", "answer": "1"}))
    with pytest.raises(SystemExit) as e:
        main(["eval", str(run_dir), "--backend", "local", "-b", f"bad={bad}", "--n", "2", "--out", str(env / "ev2")])
    assert e.value.code == 2 and not (env / "ev2").exists()


def test_sweep_runs_trials_and_refuses_meaningless_eps_sweeps(env, capsys, tiny_experiment):
    pytest.importorskip("optuna")
    exp = tiny_experiment(variants=[{"name": "ngrpo", "preset": "ngrpo"}], train={"steps": 2})
    sweep = env / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"experiment": exp.name, "variant": "ngrpo", "benchmark": "easy", "trials": 2,
                                     "pruner": "none", "params": {"eps_pos": {"low": 0.1, "high": 0.3}}}))
    cli("sweep", str(sweep), "--results", str(env / "res"), "--cache-dir", str(env / "cache"))
    runs = results.find_run_dirs(env / "res" / "tiny_sweep_ngrpo")
    assert len(runs) == 2 and all(results.read_status(r)["state"] == "done" for r in runs)
    eps = sorted(yaml.safe_load((r / "spec.yaml").read_text())["algorithm"]["knobs"]["eps_pos"] for r in runs)
    assert eps[0] != eps[1] and all(0.1 <= e <= 0.3 for e in eps)
    cli("sweep", str(sweep), "--results", str(env / "res"), "--cache-dir", str(env / "cache"))  # resumes: nothing new
    assert len(results.find_run_dirs(env / "res" / "tiny_sweep_ngrpo")) == 2
    one_mb = tiny_experiment(variants=[{"name": "ngrpo", "preset": "ngrpo"}], train={"mini_batches": 1})
    bad = env / "bad_sweep.yaml"
    for exp_file, params, msg in [(one_mb, {"eps_neg": {"low": 0.1, "high": 0.2}}, "no clip bound can bind"),
                                  (exp, {"eps_typo": {"low": 0.1, "high": 0.2}}, "params.eps_typo: unknown parameter")]:
        bad.write_text(yaml.safe_dump({"experiment": exp_file.name, "variant": "ngrpo", "benchmark": "easy", "params": params}))
        with pytest.raises(SystemExit) as e:
            main(["sweep", str(bad), "--results", str(env / "bad")])
        assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (env / "bad").exists()
