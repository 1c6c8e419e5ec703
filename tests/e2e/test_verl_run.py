"""`harness run` on `backend: verl` (in-process mode): the results layout, learning from a warm start,
the report, and a killed run resumed from verl's checkpoint ending where an uninterrupted run does."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from harness.core import results  # noqa: E402

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# the shipped CPU experiment (modchain with 1-2 operations from a short warm start: GRPO and NGRPO
# both raise training accuracy), with TensorBoard on to check verl's trainer.logger wiring
LEARN = {**yaml.safe_load((ROOT / "experiments" / "verl_cpu.yaml").read_text()), "name": "verl_learn",
         "loggers": ["tensorboard"]}
RESUME = {  # PPO: actor, reference and critic checkpoints all have to round-trip
    **{k: v for k, v in LEARN.items() if k != "loggers"}, "name": "verl_resume", "variants": [{"name": "ppo", "preset": "ppo"}],
    "train": {"steps": 8, "prompts_per_step": 8, "group_size": 4, "mini_batches": 2, "lr": 3.0e-4, "max_new_tokens": 8,
              "checkpoint_every": 2},
    "eval": {"every": 4, "n": 4, "benchmarks": {"easy": {"min_ops": 1, "max_ops": 2, "problems": 8}}},
}


def write(tmp_path: Path, raw: dict) -> Path:
    p = tmp_path / f"{raw['name']}.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.fixture()
def cli(harness_cli):
    return harness_cli  # the `harness` CLI in-process, exit code 0 required (conftest)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def learned(tmp_path_factory, harness_cli) -> Path:
    """The shipped CPU experiment, run once for this module (GRPO and NGRPO, 30 steps each)."""
    root = tmp_path_factory.mktemp("learn")
    harness_cli("run", write(root, LEARN), "--results", root / "res", "--jobs", "2", "--cache-dir", root / "cache")
    return root


def test_grpo_and_ngrpo_train_through_verl_and_report(learned, cli):
    env = learned
    runs = results.find_run_dirs(env / "res" / "verl_learn")
    assert len(runs) == 2
    for rd in runs:
        rec = results.load_run(rd)
        assert rec.state == "done" and rec.error is None, rec.status
        for f in ("spec.yaml", "verl/overrides.txt", "verl/val/0.jsonl", "verl/val/30.jsonl",
                  "checkpoints/latest_checkpointed_iteration.txt", "checkpoints/global_step_30/actor"):
            assert (rd / f).exists(), f
        train = rec.metrics[rec.metrics["kind"] == "train"]
        assert train["step"].tolist() == list(range(1, 31))
        for key in ("train/acc", "groups/all_wrong_frac", "actor/pg_loss", "actor/entropy", "actor/ppo_kl"):
            assert train[key].notna().all(), key
        assert sorted(rec.samples["step"].unique().tolist()) == [0, 15, 30]
        assert len(rec.samples) == 3 * 32 * 8 and rec.samples["correct"].dtype == bool
        acc = train["train/acc"].to_numpy()
        assert acc[-5:].mean() > acc[:5].mean(), (rec.variant, acc)  # RL from the warm start raises training reward
        evals = rec.metrics[rec.metrics["kind"] == "eval"]
        assert evals["eval/easy/auc"].notna().all()
        assert list((rd / "tensorboard").glob("events.out.tfevents.*")), "verl's TensorBoard logger wrote nothing"
    ng = results.load_run(next(r for r in runs if "ngrpo" in r.name))
    assert (ng.metrics["groups/kept"].dropna() <= 32).all()  # all-correct groups were filtered out and refilled
    cli("report", str(env / "res" / "verl_learn"), "--out", str(env / "rep"))
    table = (env / "rep" / "verl_learn" / "auc_table.md").read_text()
    assert "grpo" in table and "ngrpo" in table and (env / "rep" / "verl_learn" / "index.html").exists()


def final_state(rd: Path):
    recs = [{k: v for k, v in r.items() if not k.startswith(("time/", "timing_s/"))} for r in results.read_metrics_records(rd)]
    return results.read_samples(rd), recs


def test_a_killed_verl_run_resumes_from_its_checkpoint_and_ends_identical(env, cli):
    exp = write(env, RESUME)
    cache = ("--cache-dir", str(env / "cache"))
    cli("run", str(exp), "--results", str(env / "whole"), "--jobs", "1", *cache)
    cmd = [sys.executable, "-m", "harness.cli.app", "run", str(exp), "--results", str(env / "cut"), "--jobs", "1", *cache]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ})
    status = lambda: next((json.loads(p.read_text()) for p in (env / "cut").rglob("status.json")), {})  # noqa: E731
    deadline = time.time() + 600
    while time.time() < deadline and not (2 <= status().get("step", 0) < 8 and status().get("state") == "running"):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = status()["step"]
    assert 2 <= killed_at < 8 and status()["state"] == "running"
    cli("run", str(exp), "--results", str(env / "cut"), "--jobs", "1", *cache)
    (whole,) = results.find_run_dirs(env / "whole")
    (cut,) = results.find_run_dirs(env / "cut")
    assert len(list((cut / "verl" / "metrics").glob("attempt-*.jsonl"))) == 2  # it really resumed
    s1, m1 = final_state(whole)
    s2, m2 = final_state(cut)
    pd.testing.assert_frame_equal(s1, s2)
    assert m1 == m2


def test_a_verl_checkpoint_merges_to_hf_and_evaluates(learned, cli):
    """The paper protocol's last leg: verl's model merger on a finished run's actor, then `harness eval`."""
    env = learned
    rd = next(r for r in results.find_run_dirs(env / "res" / "verl_learn") if r.name.startswith("grpo"))
    out = subprocess.run([sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir",
                          str(rd / "checkpoints" / "global_step_30" / "actor"), "--target_dir", str(env / "hf")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    bench = env / "mc.jsonl"
    bench.write_text("".join(json.dumps({"problem": p, "answer": a}) + "\n" for p, a in (("3+4=", "7"), ("2*3=", "6"))))
    cli("eval", str(env / "hf"), "-b", f"mc={bench}", "--n", "2", "--max-new-tokens", "8", "--backend", "hf",
        "--out", str(env / "ev"), "--experiment", "merged", "--device", "cpu")
    (ev,) = results.find_run_dirs(env / "ev" / "merged")
    assert len(results.read_samples(ev)) == 4


def test_verl_inproc_stops_on_a_rollout_budget(env, cli):
    """verl's in-process mode takes train.budget like the local backend (issue 20): it stops on the step
    that spends it, logs budget/*, and records the spend in status.json."""
    raw = {**RESUME, "name": "verl_budget", "variants": [{"name": "grpo", "preset": "grpo"}],
           "train": {**{k: v for k, v in RESUME["train"].items() if k != "steps"}, "budget": {"rollouts": 80}},
           "eval": {**{k: v for k, v in RESUME["eval"].items() if k != "every"}, "budget_points": 1}}
    cli("run", write(env, raw), "--results", env / "res", "--cache-dir", env / "cache")
    (rd,) = results.find_run_dirs(env / "res")
    train = results.read_metrics(rd).query("kind == 'train'").sort_values("step")
    assert train["budget/rollouts"].tolist() == [32, 64, 96]  # 8 prompts x 4: one round a step (GRPO)
    status = json.loads((rd / "status.json").read_text())
    assert status["step"] == 3 and status["budget"]["overshoot"] == 16
    assert sorted(results.read_samples(rd)["step"].unique().tolist()) == [0, 3]
