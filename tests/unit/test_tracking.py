"""harness.tracking.trackers: pure helpers on hand-computed values, the forwarding rules (skip what a tracker
holds, drop a failing tracker after one report), the W&B log reader, and verl's settings."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.tracking import trackers as tracking
from harness.cli.app import main
from harness.config.experiment import load_experiment
from harness.config.runspec import expand
from harness.core.errors import UserError

EXP = {"name": "t", "variants": [{"name": "grpo", "preset": "grpo"}]}


def write(tmp_path: Path, **extra) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump({**EXP, **extra}))
    return p


# ----------------------------------------------------------------------------------- schema
def test_loggers_are_validated_and_do_not_change_run_ids(tmp_path):
    plain = expand(load_experiment(write(tmp_path)))
    tracked = expand(load_experiment(write(tmp_path, loggers=["tensorboard", "mlflow"])))
    assert [s.run_id for s in plain] == [s.run_id for s in tracked]
    assert plain[0].loggers == [] and tracked[0].loggers == ["tensorboard", "mlflow"]
    for bad, msg in [(["tensorbord"], "loggers.0: Input should be 'tensorboard', 'wandb' or 'mlflow'"),
                     (["wandb", "wandb"], "loggers: duplicates")]:
        with pytest.raises(UserError, match=msg):
            load_experiment(write(tmp_path, loggers=bad))


def test_missing_tracker_package_is_one_line_error_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(tracking.PACKAGES, "wandb", "wandb_not_installed_here")
    monkeypatch.setitem(tracking.PACKAGES, "mlflow", "mlflow_not_installed_here")
    assert tracking.missing_packages(["tensorboard", "wandb", "mlflow"]) == ["wandb", "mlflow"]
    exp = write(tmp_path, loggers=["tensorboard", "wandb"])
    with pytest.raises(SystemExit) as e:
        main(["run", str(exp), "--results", str(tmp_path / "res")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and not (tmp_path / "res").exists()
    assert err == (f"error: {exp}: loggers: wandb is not installed: pip install 'ngrpo-harness[wandb]' "
                   "(or remove it from loggers)")
    assert tracking.missing_message(["wandb", "mlflow"]) == (
        "wandb, mlflow are not installed: pip install 'ngrpo-harness[wandb,mlflow]' (or remove them from loggers)")


# ----------------------------------------------------------------------------------- pure helpers
def test_flat_params_record_metrics_and_mlflow_keys():
    spec = {"train": {"lr": 1e-4, "steps": 3}, "eval": {"benchmarks": {"easy": {"n": 2}}, "k_max": None},
            "loggers": ["wandb"], "overrides": {}, "seed": 0, "ok": True}
    assert tracking.flat_params(spec) == {
        "eval/benchmarks/easy/n": 2, "eval/k_max": "null", "loggers": '["wandb"]', "ok": True, "overrides": "{}",
        "seed": 0, "train/lr": 1e-4, "train/steps": 3}
    rec = {"kind": "train", "step": 4, "train/reward": 0.5, "groups/kept": 3, "note": "x", "actor/x": None}
    assert tracking.record_metrics(rec) == {"train/reward": 0.5, "groups/kept": 3.0}
    assert tracking.mlflow_key("eval/easy/pass@16") == "eval/easy/pass_at_16"
    assert tracking.mlflow_key("a//b#c d:e") == "a/b_c d:e"


def test_identity_names_groups_and_tags():
    spec = {"experiment": "quickstart", "run_id": "grpo-s1-abc", "variant": "grpo", "seed": 1, "preset": "grpo", "backend": "local"}
    assert tracking.identity(spec) == tracking.RunIdentity("quickstart", "grpo-s1-abc", "grpo", ("quickstart", "grpo", "seed1", "local"))


# ----------------------------------------------------------------------------------- forwarding rules
class FakeSink:
    def __init__(self, name, held=None, fail_at=None):
        self.name, self.held, self.fail_at, self.logged, self.closed = name, held or {}, fail_at, [], None

    key = staticmethod(str)

    def log(self, step, values):
        if self.fail_at is not None and step >= self.fail_at:
            raise OSError(28, "No space left on device")
        self.logged.append((step, dict(values)))

    def close(self, ok):
        self.closed = ok


def records(steps):
    return [{"kind": "train", "step": s, "a": float(s), "b": -float(s)} for s in steps]


def test_tracker_skips_keys_a_tracker_already_holds(tmp_path):
    t = tracking.Tracker(tmp_path)
    sink = FakeSink("fake", held={"a": 3})  # e.g. a killed session logged `a` up to step 3, `b` was lost
    t.sinks.append(sink)
    for r in records(range(1, 6)):
        t.log(r)
    assert sink.logged == [(1, {"b": -1.0}), (2, {"b": -2.0}), (3, {"b": -3.0}), (4, {"a": 4.0, "b": -4.0}), (5, {"a": 5.0, "b": -5.0})]
    t.close()
    assert sink.closed is True and t.sinks == []


def test_failing_tracker_is_reported_once_and_dropped(tmp_path, capsys):
    t = tracking.Tracker(tmp_path / "run-1")
    (tmp_path / "run-1").mkdir()
    bad, good = FakeSink("bad", fail_at=2), FakeSink("good")
    t.sinks += [bad, good]
    for r in records(range(1, 5)):
        t.log(r)
    err = capsys.readouterr().err
    assert err.count("warning: tracking: run-1: bad failed (OSError: [Errno 28] No space left on device)") == 1
    assert [s for s, _ in bad.logged] == [1] and bad.closed is False  # closed (best effort) when dropped
    assert [s for s, _ in good.logged] == [1, 2, 3, 4]
    assert "bad failed" in tracking.read_state(tmp_path / "run-1")["errors"]["bad"]
    t.close()
    assert capsys.readouterr().err == ""


def test_no_loggers_means_no_tracker_work(tmp_path):
    t = tracking.start({"loggers": []}, tmp_path)
    t.log({"kind": "train", "step": 1, "a": 1.0})
    t.close()
    assert list(tmp_path.iterdir()) == []  # not even tracking.json


# ----------------------------------------------------------------------------------- W&B transaction log reader
def test_wandb_reader_reads_wandbs_own_offline_file_across_blocks(tmp_path):
    wandb = pytest.importorskip("wandb")
    run = wandb.init(project="p", id="abc12345", dir=str(tmp_path), mode="offline", config={"x": {"y": 1}},
                     reinit="create_new", settings=wandb.Settings(console="off", silent=True))
    rows = [{"v": float(i), "pad/" + "k" * 40 + str(i % 7): "x" * 3000} for i in range(40)]  # ~120 KB: records span blocks
    for i, row in enumerate(rows):
        run.log(row, step=i)
    run.finish()
    wandb.teardown()  # finish() may return before wandb-core has written the file's tail; teardown waits for it
    (path,) = tracking.wandb_run_files(tmp_path, "abc12345")
    assert path.stat().st_size > 3 * 32768
    hist = tracking.wandb_history(path)
    assert [h["_step"] for h in hist] == list(range(40))
    assert all(h["v"] == r["v"] and all(h[k] == r[k] for k in r) for h, r in zip(hist, rows))
    kinds = [rec.WhichOneof("record_type") for rec in tracking.read_wandb_records(path)]
    assert kinds.count("run") == 1 and kinds[-1] == "exit"
    # W&B's own reader of the file agrees record by record
    exe = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    out = subprocess.run([exe, "leet", "inspect", "--json", str(path)], capture_output=True, text=True, check=True, timeout=300)
    theirs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["type"] for r in theirs] == kinds
    assert [r["history"]["item"] for r in theirs if r["type"] == "history"] == hist


# ----------------------------------------------------------------------------------- verl
def test_verl_logger_settings_hand_computed(tmp_path):
    rd = tmp_path / "results" / "quickstart" / "grpo-s0-abc"
    names, env = tracking.verl_logger_settings(
        ["tensorboard", "wandb", "mlflow"], rd, "quickstart", "grpo-s0-abc", variant="grpo", tags=("quickstart", "grpo", "seed0"),
        wandb_run_id="w1234567", mlflow_run_id="m" * 32)
    assert names == ["tensorboard", "wandb", "mlflow"]
    assert env == {
        "TENSORBOARD_DIR": str(rd / "tensorboard"),
        "WANDB_DIR": str(rd), "WANDB_MODE": "offline", "WANDB_RESUME": "allow", "WANDB_JOB_TYPE": "train",
        "WANDB_RUN_ID": "w1234567", "WANDB_RUN_GROUP": "grpo", "WANDB_TAGS": "quickstart,grpo,seed0",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path.resolve() / 'results' / 'mlflow.db'}", "MLFLOW_RUN_ID": "m" * 32,
    }
    assert tracking.verl_logger_settings([], rd, "q", "r") == ([], {})
    assert tracking.verl_logger_settings(["tensorboard"], rd, "q", "r")[1] == {"TENSORBOARD_DIR": str(rd / "tensorboard")}
    with pytest.raises(ValueError, match="unknown loggers \\['swanlab'\\]"):
        tracking.verl_logger_settings(["swanlab"], rd, "q", "r")


SPEC = {"experiment": "quickstart", "run_id": "grpo-s0-abc", "variant": "grpo", "seed": 0, "preset": "grpo",
        "backend": "verl", "train": {"lr": 1e-6}, "loggers": ["wandb", "mlflow"]}


def with_store(tmp_path, template) -> Path:
    (tmp_path / "results").mkdir()
    shutil.copy(template, tmp_path / "results" / "mlflow.db")
    return tmp_path / "results" / "quickstart" / "grpo-s0-abc"


def test_prepare_verl_tracking_creates_then_reuses_the_runs(tmp_path, monkeypatch, mlflow_template):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rd = with_store(tmp_path, mlflow_template)
    names, env = tracking.prepare_verl_tracking(SPEC, rd)
    again = tracking.prepare_verl_tracking(SPEC, rd)  # a resumed verl run
    assert again == (names, env) and names == ["wandb", "mlflow"]
    state = json.loads((rd / "tracking.json").read_text())
    assert env["WANDB_RUN_ID"] == state["wandb_run_id"] and env["MLFLOW_RUN_ID"] == state["mlflow_run_id"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert run.info.run_id == env["MLFLOW_RUN_ID"] and run.info.run_name == "grpo-s0-abc"
    assert run.data.tags["variant"] == "grpo" and run.data.params["train/lr"] == "1e-06"


def test_verl_adapters_land_in_the_prepared_runs(tmp_path, monkeypatch, mlflow_template):
    """The calls verl 0.9.1's Tracking makes (verl/utils/tracking.py), with only our environment set:
    wandb.init(project, name, config), mlflow.start_run(run_id=$MLFLOW_RUN_ID), SummaryWriter($TENSORBOARD_DIR).
    verl's own Tracking class is used when verl is installed."""
    pytest.importorskip("wandb"), pytest.importorskip("mlflow"), pytest.importorskip("tensorboard")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rd = with_store(tmp_path, mlflow_template)
    spec = {**SPEC, "loggers": ["tensorboard", "wandb", "mlflow"]}
    names, env = tracking.prepare_verl_tracking(spec, rd)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import wandb

    wandb.teardown()  # wandb reads WANDB_* once per process (as in a fresh verl worker): forget earlier tests' settings
    try:
        from verl.utils.tracking import Tracking
    except ImportError:
        Tracking = None
    if Tracking is not None:
        t = Tracking(project_name="quickstart", experiment_name="grpo-s0-abc", default_backend=names, config={"trainer": {}})
        t.log({"actor/pg_loss": 0.25}, step=1)
        t.finish()
        wandb.teardown()
    else:
        import mlflow
        from torch.utils.tensorboard import SummaryWriter

        run = wandb.init(project="quickstart", name="grpo-s0-abc", entity=os.environ.get("WANDB_ENTITY"), config={"trainer": {}})
        run.log({"actor/pg_loss": 0.25}, step=1)
        run.finish()
        wandb.teardown()  # finish() may return before the file's tail is written
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
        mlflow.log_metrics({"actor/pg_loss": 0.25}, step=1)
        mlflow.end_run()
        w = SummaryWriter(os.environ["TENSORBOARD_DIR"])
        w.add_scalar("actor/pg_loss", 0.25, 1)
        w.close()
    state = tracking.read_state(rd)
    (wfile,) = tracking.wandb_run_files(rd, state["wandb_run_id"])
    run_rec = next(r.run for r in tracking.read_wandb_records(wfile) if r.WhichOneof("record_type") == "run")
    assert (run_rec.project, run_rec.display_name, run_rec.run_group) == ("quickstart", "grpo-s0-abc", "grpo")
    assert list(run_rec.tags) == ["quickstart", "grpo", "seed0", "verl"]
    assert tracking.wandb_history(wfile)[0]["actor/pg_loss"] == 0.25
    from mlflow.tracking import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert [m.value for m in client.get_metric_history(state["mlflow_run_id"], "actor/pg_loss")] == [0.25]
    assert len(client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(env["TENSORBOARD_DIR"])
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("actor/pg_loss")] == [(1, 0.25)]
