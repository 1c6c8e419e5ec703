"""Cluster mode's launcher without a GPU: `main_ppo` replaced by a stand-in that behaves like it on
the file system (verl's file logger, validation dumps, checkpoint tracker), so the command, its
environment, the run folder, resume bookkeeping, ingest and failures are tested for real."""

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from harness.core import results  # noqa: E402
from harness.backends.verl import cluster  # noqa: E402
from harness.backends.verl.backend import VerlBackend  # noqa: E402
from harness.config.experiment import load_experiment  # noqa: E402
from harness.config.runspec import expand  # noqa: E402

FAKE_MAIN_PPO = textwrap.dedent('''
    """Stands in for `python -m verl.trainer.main_ppo`: reads the overrides, writes what verl writes."""
    import json, os, sys
    from pathlib import Path
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils.tracking import FileLogger

    ov = dict(a.split("=", 1) for a in sys.argv[1:])
    assert os.environ["NGRPO_HARNESS_PLUGINS"] == "" and os.environ["RAY_DEDUP_LOGS"] == "0"
    steps, every = int(ov["trainer.total_training_steps"]), int(ov["trainer.test_freq"])
    ckpt = Path(ov["trainer.default_local_dir"])
    start = int((ckpt / "latest_checkpointed_iteration.txt").read_text()) if (ckpt / "latest_checkpointed_iteration.txt").exists() else 0
    stop_at = int(os.environ.get("FAKE_DIE_AT", "0"))
    stop_after_ckpt = int(os.environ.get("FAKE_DIE_AFTER_CHECKPOINT", "0"))
    log = FileLogger(ov["trainer.project_name"], ov["trainer.experiment_name"])  # VERL_FILE_LOGGER_PATH
    import pandas as pd
    val = pd.read_parquet(ov["data.val_files"].strip("[]").split(",")[0].strip("'")).to_dict(orient="records")
    n = int(ov["actor_rollout_ref.rollout.val_kwargs.n"])
    for step in range(start, steps + 1):
        if step and step == stop_at:
            print("CUDA error: an illegal memory access was encountered", flush=True)
            sys.exit(3)
        if step % every == 0:
            rows = [(r, s) for r in val for s in range(n)]
            extra = {"reward": [float(s == 0) for _, s in rows], "acc": [s == 0 for _, s in rows], "pred": ["1"] * len(rows),
                     "harness_benchmark": [r["extra_info"]["harness_benchmark"] for r, _ in rows],
                     "harness_problem": [r["extra_info"]["harness_problem"] for r, _ in rows],
                     "uid": [f"u{i // n}_{s}_0" for i, (_, s) in enumerate(rows)]}
            PPOTrainer._write_generations(["q"] * len(rows), ["1;1"] * len(rows), ["1"] * len(rows), extra["reward"], extra,
                                          ov["trainer.validation_data_dir"], step)
        if step and step % int(ov["trainer.save_freq"]) == 0:  # verl saves a step's checkpoint, then logs it
            (ckpt / f"global_step_{step}").mkdir(parents=True, exist_ok=True)
            (ckpt / "latest_checkpointed_iteration.txt").write_text(str(step))
            if step == stop_after_ckpt:
                os._exit(137)
        if step and step != start:  # a resumed launch trains from the step after its checkpoint
            log.log({"actor/ppo_kl": 0.01 * step, "critic/score/mean": 0.1 * step, "response_length/mean": 4.0}, step)
    log.finish()
''')


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    from harness.embedded import common
    from harness.embedded.model import ModelConfig, TinyGPT
    from harness.backends.verl.hf_export import export_hf

    tok = common.tokenizer()
    model = export_hf(TinyGPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_len=64)), tok, tmp_path / "m")
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "experiments" / "verl_cpu.yaml").read_text())
    raw.update(verl={"mode": "cluster", "model": str(model)}, variants=[{"name": "grpo", "preset": "grpo"}])
    raw["train"].update(steps=6, checkpoint_every=2)
    raw["eval"].update(every=3, n=2, benchmarks={"easy": {"min_ops": 1, "max_ops": 2, "problems": 3}})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "fake_main_ppo.py").write_text(FAKE_MAIN_PPO)
    monkeypatch.setattr(cluster, "command", lambda overrides: [sys.executable, str(tmp_path / "fake_main_ppo.py"), *overrides])
    spec = expand(load_experiment(tmp_path / "exp.yaml"))[0]
    return spec, tmp_path / "res" / spec.run_id, tmp_path / "cache"


def test_a_cluster_run_writes_its_command_and_ingests_verls_outputs(setup):
    spec, rd, cache = setup
    seen = []
    VerlBackend().train(spec, rd, cache, progress=lambda step, total, rec: seen.append((step, total)))
    assert results.read_status(rd)["state"] == "done"
    command = (rd / "verl" / "command.sh").read_text()  # exactly what was launched
    assert "fake_main_ppo.py" in command and "VERL_FILE_LOGGER_PATH=" in command and "harness_group_zscore" in command
    assert "algorithm.adv_estimator=harness_group_zscore" in (rd / "verl" / "overrides.txt").read_text()
    assert (rd / "verl" / "data" / "train.parquet").exists() and (rd / "verl" / "data" / "val_easy.parquet").exists()
    s = results.read_samples(rd)
    assert sorted(s.step.unique()) == [0, 3, 6] and len(s) == 3 * 3 * 2
    assert s.length.tolist() == [4] * len(s)  # "1;1" counted with the model's tokenizer, + EOS
    recs = results.read_metrics_records(rd)
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6] and train[-1]["train/reward"] == pytest.approx(0.6)
    assert [r["eval/easy/pass@1"] for r in recs if r["kind"] == "eval"] == [0.5, 0.5, 0.5]
    assert seen and seen[-1][1] == 6


def test_a_failed_launch_reports_the_log_and_a_relaunch_resumes(setup, monkeypatch):
    spec, rd, cache = setup
    monkeypatch.setenv("FAKE_DIE_AT", "5")  # dies after the checkpoint at step 4
    with pytest.raises(RuntimeError, match="main_ppo exited with code 3.*illegal memory access"):
        VerlBackend().train(spec, rd, cache)
    assert VerlBackend().has_checkpoint(rd) and cluster.latest_step(rd) == 4
    monkeypatch.delenv("FAKE_DIE_AT")
    VerlBackend().train(spec, rd, cache)
    launches = sorted(p.name for p in (rd / "verl" / "metrics").glob("attempt-*.jsonl"))
    assert launches == ["attempt-000-from-0.jsonl", "attempt-001-from-4.jsonl"]
    steps = [r["step"] for r in results.read_metrics_records(rd) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # steps 1-4 from the first launch, 5-6 from the second, none twice
    assert results.read_status(rd)["state"] == "done"


def test_a_launch_killed_between_a_checkpoint_and_its_log_line_loses_no_step(setup, monkeypatch):
    """verl saves step 4's checkpoint before it logs step 4: the relaunch goes back to checkpoint 2."""
    spec, rd, cache = setup
    monkeypatch.setenv("FAKE_DIE_AFTER_CHECKPOINT", "4")
    with pytest.raises(RuntimeError, match="exited with code 137"):
        VerlBackend().train(spec, rd, cache)
    assert cluster.latest_step(rd) == 4 and 4 not in {r["step"] for r in results.read_metrics_records(rd)}
    monkeypatch.delenv("FAKE_DIE_AFTER_CHECKPOINT")
    VerlBackend().train(spec, rd, cache)
    launches = sorted(p.name for p in (rd / "verl" / "metrics").glob("attempt-*.jsonl"))
    assert launches == ["attempt-000-from-0.jsonl", "attempt-001-from-2.jsonl"]
    steps = [r["step"] for r in results.read_metrics_records(rd) if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert results.read_status(rd)["state"] == "done"


def test_resume_step_goes_back_past_an_unlogged_checkpoint(tmp_path):
    ckpt, metrics = tmp_path / results.CKPT_DIR, tmp_path / "verl" / "metrics"
    metrics.mkdir(parents=True)
    (ckpt / "global_step_4").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("4")
    (metrics / "attempt-000-from-0.jsonl").write_text("".join(f'{{"step": {s}, "data": {{"a": 1}}}}\n' for s in (1, 2, 3)))
    assert cluster.resume_step(tmp_path) == 0 and not (ckpt / "latest_checkpointed_iteration.txt").exists()
    (ckpt / "global_step_2").mkdir()
    (ckpt / "latest_checkpointed_iteration.txt").write_text("4")
    assert cluster.resume_step(tmp_path) == 2 and cluster.latest_step(tmp_path) == 2
    (ckpt / "latest_checkpointed_iteration.txt").write_text("4")
    (metrics / "attempt-000-from-0.jsonl").write_text("".join(f'{{"step": {s}, "data": {{"a": 1}}}}\n' for s in (1, 2, 3, 4)))
    assert cluster.resume_step(tmp_path) == 4
