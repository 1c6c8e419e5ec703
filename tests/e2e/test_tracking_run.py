"""Real tiny runs with `loggers: [tensorboard, wandb, mlflow]`, read back with each tracker's own reader:
TensorBoard's EventAccumulator, the W&B offline transaction logs (`wandb leet inspect`), MLflow's
client on the SQLite store. Same values as metrics.jsonl, the RunSpec as hyper-parameters, one tracker
run per run across a SIGKILL and resume with no step twice, and a failing tracker never stops training."""

import contextlib
import errno
import json
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.core import results

from harness.tracking import trackers as tracking
from harness.cli.app import main

pytestmark = pytest.mark.e2e
_spec = importlib.util.spec_from_file_location("cli_helpers", Path(__file__).with_name("cli_helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)
for mod in ("tensorboard", "wandb", "mlflow"):
    pytest.importorskip(mod)

from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

ALL = ["tensorboard", "wandb", "mlflow"]


@pytest.fixture()
def env(tmp_path, monkeypatch, mlflow_template):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    for var in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    for out in ("res", "ref", "killed"):
        (tmp_path / out).mkdir()
        shutil.copy(mlflow_template, tmp_path / out / "mlflow.db")
    return tmp_path


@pytest.fixture()
def write_exp(env, make_tiny_experiment):
    """write_exp(**changes): the shared tiny experiment with a PPO and an NGRPO variant and every logger."""
    base = {"variants": [{"name": "ppo", "preset": "ppo"}, {"name": "ngrpo", "preset": "ngrpo"}], "loggers": ALL}
    return lambda **changes: make_tiny_experiment(env, **{**base, **changes})


def cli(*args: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code in (0, None)


# ----------------------------------------------------------------------------------- readers
def tb_points(run_dir: Path) -> tuple[list[tuple[str, int, float]], dict]:
    """Every scalar event (tag, step, value), duplicates kept, and the HParams of the run."""
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    acc.Reload()
    points = [(tag, e.step, e.value) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    raw = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hp = plugin_data_pb2.HParamsPluginData.FromString(raw).session_start_info.hparams
    return points, {k: getattr(v, v.WhichOneof("kind")) for k, v in hp.items()}


def wandb_inspect(path: Path) -> list[dict]:
    """The records of a .wandb transaction log as W&B's own reader prints them (`wandb leet inspect --json`)."""
    exe = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    out = subprocess.run([exe, "leet", "inspect", "--json", str(path)], capture_output=True, text=True, check=True, timeout=300)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def wandb_points(run_dir: Path) -> tuple[list[tuple[str, int, float]], list[dict]]:
    """Every history value (key, step, value) over all sessions' offline files, and each session's run record."""
    wid = tracking.read_state(run_dir)["wandb_run_id"]
    points, runs = [], []
    for f in tracking.wandb_run_files(run_dir, wid):
        for rec in wandb_inspect(f):
            if rec["type"] == "run":
                runs.append(rec["run"])
            elif rec["type"] == "history":
                item = rec["history"]["item"]
                points += [(k, item["_step"], v) for k, v in item.items() if not k.startswith("_")]
    return points, runs


def mlflow_points(run_dir: Path) -> tuple[list[tuple[str, int, float]], object]:
    st = tracking.read_state(run_dir)
    client = MlflowClient(st["mlflow_tracking_uri"])
    run = client.get_run(st["mlflow_run_id"])
    points = [(k, m.step, m.value) for k in run.data.metrics for m in client.get_metric_history(run.info.run_id, k)]
    return points, run


def expected_points(run_dir: Path, key=str) -> dict[tuple[str, int], float]:
    return {(key(k), r["step"]): v for r in results.read_metrics_records(run_dir) for k, v in tracking.record_metrics(r).items()}


def assert_same_as_metrics_jsonl(points, expected, tol_f32=False, skip_time=False):
    keys = [(k, s) for k, s, _ in points]
    assert len(keys) == len(set(keys)), "a step logged twice"
    got = {(k, s): v for k, s, v in points}
    assert set(got) == set(expected)
    for ks, v in expected.items():
        if skip_time and ks[0].startswith("time/"):
            continue
        assert got[ks] == (np.float32(v) if tol_f32 else v), ks


def check_run(run_dir: Path, skip_time=False) -> None:
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    flat = tracking.flat_params(spec)
    # TensorBoard: float32 scalars (the event format), the RunSpec in the HParams plugin
    tb, hparams = tb_points(run_dir)
    assert_same_as_metrics_jsonl(tb, expected_points(run_dir), tol_f32=True, skip_time=skip_time)
    assert hparams == {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v) for k, v in flat.items()}
    # W&B: the offline files hold every value, the RunSpec as config, name / group / tags
    wb, runs = wandb_points(run_dir)
    assert_same_as_metrics_jsonl(wb, expected_points(run_dir), skip_time=skip_time)
    for r in runs:
        config = {k: v for k, v in r["config"]["update"].items() if k != "_wandb"}
        assert config == json.loads(json.dumps(spec))
        assert (r["project"], r["display_name"], r["run_group"]) == (spec["experiment"], spec["run_id"], spec["variant"])
        assert r["tags"] == list(tracking.identity(spec).tags)
    # MLflow: every value (keys with '@' as '_at_'), the RunSpec as params, tags to group by
    ml, run = mlflow_points(run_dir)
    assert_same_as_metrics_jsonl(ml, expected_points(run_dir, tracking.mlflow_key), skip_time=skip_time)
    assert run.data.params == {k: str(v) for k, v in flat.items()}
    assert run.info.run_name == spec["run_id"] and run.info.status == "FINISHED"
    assert {k: run.data.tags[k] for k in ("experiment", "variant", "seed")} == {
        "experiment": spec["experiment"], "variant": spec["variant"], "seed": str(spec["seed"])}


# ----------------------------------------------------------------------------------- tests
def test_every_tracker_holds_what_metrics_jsonl_holds(env, write_exp):
    exp = write_exp()
    cli("run", str(exp), "--results", str(env / "res"), "--jobs", "2", "--cache-dir", str(env / "cache"))
    runs = results.find_run_dirs(env / "res" / "tiny")
    assert len(runs) == 2
    for rd in runs:
        assert results.read_status(rd)["state"] == "done"
        assert any(k.startswith("eval/easy/pass@") for k in results.read_metrics_records(rd)[0])
        assert "errors" not in tracking.read_state(rd)
        check_run(rd)
    client = MlflowClient(f"sqlite:///{env / 'res' / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert sorted(r.data.tags["variant"] for r in found) == ["ngrpo", "ppo"]


def test_killed_and_resumed_run_continues_the_same_tracker_runs(env, write_exp):
    exp = write_exp(variants=[{"name": "grpo", "preset": "grpo"}], train={"steps": 10, "checkpoint_every": 5},
                    eval={"every": 5})
    cmd = [sys.executable, "-m", "harness", "run", str(exp), "--results", str(env / "killed"), "--jobs", "1",
           "--cache-dir", str(env / "cache")]
    cli("run", str(exp), "--results", str(env / "ref"), "--jobs", "1", "--cache-dir", str(env / "cache"))  # builds the warm start
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **h.gate_env(6)})  # the run waits at step 6: the kill lands mid-run
    deadline, run_dir, killed_at = time.time() + 180, None, None
    while time.time() < deadline and killed_at is None:
        for m in (env / "killed").rglob("metrics.jsonl"):
            run_dir = m.parent
            steps = [r["step"] for r in results.read_metrics_records(run_dir) if r.get("kind") == "train"]
            # step 6 in metrics.jsonl: the trackers have step 5 (forwarded before step 6 starts) and the last
            # checkpoint is step 5 until step 10: what follows it is logged again after the resume
            if steps and max(steps) >= 6:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = max(steps)
        time.sleep(0.02)
    proc.wait()
    assert killed_at == 6 == max(h.train_steps(run_dir)), "the run was not held at step 6 until the kill"
    status = results.read_status(run_dir)
    assert status["state"] == "running"
    first = tracking.read_state(run_dir)
    logged_before = {s for _, s, _ in tb_points(run_dir)[0]}
    assert max(logged_before) > status["step"]  # the trackers hold steps past the checkpoint the run resumes from
    cli("run", str(exp), "--results", str(env / "killed"), "--jobs", "1", "--cache-dir", str(env / "cache"))
    assert results.read_status(run_dir)["state"] == "done"
    state = tracking.read_state(run_dir)
    assert {k: state[k] for k in first} == first  # same W&B id, same MLflow run
    wid = state["wandb_run_id"]
    assert len(tracking.wandb_run_files(run_dir, wid)) == 2  # two sessions of one W&B run
    assert {r["run_id"] for r in wandb_points(run_dir)[1]} == {wid}
    client = MlflowClient(state["mlflow_tracking_uri"])
    assert len(client.search_runs([client.get_experiment_by_name("tiny").experiment_id], f"tags.run_id = '{run_dir.name}'")) == 1
    # every key at every step exactly once; values as metrics.jsonl (time/ keys of re-done steps keep their first values)
    check_run(run_dir, skip_time=True)
    (ref,) = results.find_run_dirs(env / "ref")
    assert_same_as_metrics_jsonl(tb_points(run_dir)[0], expected_points(ref), tol_f32=True, skip_time=True)


def test_failing_trackers_never_stop_training(env, write_exp, monkeypatch, capsys):
    """Disk full in TensorBoard's writer, a crashed wandb-core service, a broken MLflow store: each is
    reported once, the run finishes, and metrics.jsonl equals a run without trackers."""
    import torch
    from mlflow.exceptions import MlflowException
    from torch.utils.tensorboard import SummaryWriter

    from harness.backends import get_backend
    from harness.config.experiment import load_experiment
    from harness.config.runspec import expand

    threads = torch.get_num_threads()
    (spec,) = expand(load_experiment(write_exp(variants=[{"name": "grpo", "preset": "grpo"}])))
    backend = get_backend("local")
    backend.prepare(spec, env / "cache")
    plain = env / "ref" / "plain"
    backend.train(spec.model_copy(update={"loggers": []}), plain, env / "cache")

    add_scalar, log_batch, wandb_log = SummaryWriter.add_scalar, MlflowClient.log_batch, tracking.WandbSink.log

    def full_disk(self, tag, value, step=None, *a, **k):
        if step >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return add_scalar(self, tag, value, step, *a, **k)

    def broken_store(self, run_id, metrics=(), *a, **k):
        if metrics and metrics[0].step >= 3:
            raise MlflowException("(sqlite3.OperationalError) database or disk is full")
        return log_batch(self, run_id, metrics, *a, **k)

    def crash_service(self, step, values):
        if step == 2:  # SIGKILL the wandb-core process this run talks to
            for stat in Path("/proc").glob("[0-9]*/stat"):
                with contextlib.suppress(OSError):  # "pid (comm) state ppid ..."; comm may hold spaces
                    text = stat.read_text()
                    comm, ppid = text[text.index("(") + 1:text.rindex(")")], int(text[text.rindex(")") + 2:].split()[1])
                    if ppid == os.getpid() and comm == "wandb-core":
                        os.kill(int(stat.parent.name), signal.SIGKILL)
            time.sleep(0.5)
        return wandb_log(self, step, values)

    monkeypatch.setattr(SummaryWriter, "add_scalar", full_disk)
    monkeypatch.setattr(MlflowClient, "log_batch", broken_store)
    monkeypatch.setattr(tracking.WandbSink, "log", crash_service)
    run_dir = env / "res" / "tiny" / spec.run_id
    try:
        backend.train(spec, run_dir, env / "cache")
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert results.read_status(run_dir)["state"] == "done"
    strip = lambda recs: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in recs]  # noqa: E731
    assert strip(results.read_metrics_records(run_dir)) == strip(results.read_metrics_records(plain))
    errors = tracking.read_state(run_dir)["errors"]
    for name, cause in [("tensorboard", "No space left on device"), ("wandb", "ConnectionResetError"), ("mlflow", "disk is full")]:
        assert err.count(f"tracking: {spec.run_id}: {name} failed") == 1, err
        assert cause in errors[name]
    assert {s for _, s, _ in tb_points(run_dir)[0]} == {0, 1}
    assert {s for _, s, _ in mlflow_points(run_dir)[0]} == {0, 1, 2}
