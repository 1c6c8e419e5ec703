"""Real sweeps at tiny scale: two workers on one storage, injected failures, kill + restart, the sweep report."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.core import results
from harness.cli.app import main

pytestmark = pytest.mark.e2e
_spec = importlib.util.spec_from_file_location("cli_helpers", Path(__file__).with_name("cli_helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

TINY = {
    "name": "tiny", "seeds": [0],
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "warm_start": {"steps": 20, "batch_size": 16, "min_ops": 2, "max_ops": 3},
    "train": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2, "max_new_tokens": 12, "lr": 1.0e-3},
    "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
    "variants": [{"name": "ngrpo", "preset": "ngrpo"}],
}

# An advantage piece whose knob injects a failure: raise, NaN advantages (-> NaN loss), or SIGKILL of the run process.
FAULTY = '''
import os, signal
import torch
from algorithms import Preset, register_advantage, register_preset
from algorithms.advantages import group_index, segment_sum

@register_advantage("faulty_adv", group_relative=True)
def faulty_adv(rewards, group_ids, acc=None, *, fault: str = "none"):
    """Group-centred rewards; fault = raise | nan | kill injects a failure."""
    if fault == "raise":
        raise RuntimeError("injected failure")
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    idx, counts = group_index(group_ids)
    adv = rewards - (segment_sum(rewards, idx, counts.numel()) / counts)[idx]
    return adv * float("nan") if fault == "nan" else adv

register_preset(Preset("faulty_test", "failure injection", "test",
    {"advantage": "faulty_adv", "policy_loss": "ppo_clip", "group_filter": "keep_all", "reward_shaper": "none"}, {}))
'''


def write(tmp_path: Path, sweep: dict, **exp_changes) -> Path:
    exp = {**TINY, **exp_changes}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(exp))
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump({"experiment": "tiny.yaml", "variant": exp["variants"][0]["name"], "benchmark": "easy",
                                 "pruner": "none", **sweep}))
    return p


def trials(folder: Path) -> list[dict]:
    return json.loads((folder / "trials.json").read_text())


def cli(*args: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code in (0, None)


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture()
def clean_registries():
    """The failure plugin registers into this process's registries too: remove its names afterwards."""
    import algorithms

    before = set(sys.modules)
    yield
    algorithms.PRESETS.pop("faulty_test", None)
    algorithms.ADVANTAGES._fns.pop("faulty_adv", None)
    algorithms.ADVANTAGES._meta.pop("faulty_adv", None)
    for name in set(sys.modules) - before:
        if name.startswith("ngrpo_plugin_"):
            del sys.modules[name]


def test_two_workers_on_one_storage_finish_six_distinct_trials(env):
    f = write(env, {"sampler": "random", "trials": 6, "params": {"eps_pos": {"low": 0.1, "high": 0.3}}})
    args = ["sweep", str(f), "--results", str(env / "res"), "--storage", f"sqlite:///{env / 'study.db'}",
            "--cache-dir", str(env / "cache"), "--jobs", "1"]
    procs = [subprocess.Popen(harness_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    out = env / "res" / "tiny_sweep_ngrpo"
    ts = trials(out)
    seen = [(t["number"], t["state"], t["params"], t["user_attrs"]) for t in ts]
    complete = [t for t in ts if t["state"] == "COMPLETE"]
    assert len(complete) == 6, (seen, errs)
    assert len({t["params"]["eps_pos"] for t in complete}) == 6, seen  # distinct
    assert all(t["user_attrs"].get("fail_kind") == "surplus" for t in ts if t["state"] != "COMPLETE"), seen  # never ran
    runs = results.find_run_dirs(out)
    assert len(runs) == 6 and all(results.read_status(r)["state"] == "done" for r in runs)
    for r in runs:  # nothing trained twice: each step logged exactly once
        steps = [m["step"] for m in results.read_metrics_records(r) if m["kind"] == "train"]
        assert steps == [1, 2]


def test_injected_failures_are_recorded_and_the_study_goes_on(env, capsys, clean_registries):
    (env / "faulty.py").write_text(FAULTY)
    f = write(env, {"sampler": "grid", "params": {"fault": {"choices": ["raise", "nan", "kill", "none"]}}},
              plugins=["faulty.py"], variants=[{"name": "faulty", "preset": "faulty_test"}])
    cli("sweep", str(f), "--results", str(env / "res"), "--cache-dir", str(env / "cache"), "--jobs", "2")
    out = env / "res" / "tiny_sweep_faulty"
    by_fault = {t["params"]["fault"]: t for t in trials(out)}
    assert set(by_fault) == {"raise", "nan", "kill", "none"} and len(trials(out)) == 4  # every point tried once
    assert by_fault["none"]["state"] == "COMPLETE"
    assert by_fault["raise"]["state"] == "FAIL" and "RuntimeError: injected failure" in by_fault["raise"]["user_attrs"]["fail_reason"]
    assert by_fault["nan"]["state"] == "FAIL" and "non-finite actor/pg_loss at step 1" in by_fault["nan"]["user_attrs"]["fail_reason"]
    assert by_fault["kill"]["state"] == "FAIL" and by_fault["kill"]["user_attrs"]["fail_kind"] == "killed"
    assert "killed by signal SIGKILL" in by_fault["kill"]["user_attrs"]["fail_reason"]
    for fault in ("raise", "nan", "kill"):  # the run folders say so too
        (rid,) = by_fault[fault]["user_attrs"]["run_ids"]
        st = results.read_status(out / rid)
        assert st["state"] == "failed" and st["error"], (fault, st)
    assert "1 complete, 0 pruned, 3 failed" in capsys.readouterr().err


def test_killed_sweep_restarted_ends_with_the_requested_trials(env):
    f = write(env, {"sampler": "random", "trials": 3, "params": {"eps_pos": {"low": 0.1, "high": 0.3}}},
              train={**TINY["train"], "steps": 8, "checkpoint_every": 2})
    args = ["sweep", str(f), "--results", str(env / "res"), "--cache-dir", str(env / "cache"), "--jobs", "1"]
    out = env / "res" / "tiny_sweep_ngrpo"
    proc = subprocess.Popen(harness_cmd(*args), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **h.gate_env(3, skip=1, markers=env / "gate")})  # trial 1 waits at step 3
    deadline, victim = time.time() + 300, None
    while time.time() < deadline and victim is None:  # kill while the second trial's run is mid-training
        for rd in results.find_run_dirs(out) if out.exists() else []:
            done = len([m for m in results.read_metrics_records(rd) if m.get("kind") == "train"])
            if 3 <= done < 8 and len(results.find_run_dirs(out)) >= 2:
                victim = rd
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert victim is not None, "the sweep never reached a second trial"
    assert results.read_status(victim)["state"] == "running"
    assert h.train_steps(victim) == [1, 2, 3]  # held at the gate until the kill
    time.sleep(1.5)  # the orphaned run process notices its parent died and exits
    cli(*args)
    ts = trials(out)
    complete = [t for t in ts if t["state"] == "COMPLETE"]
    interrupted = [t for t in ts if t["state"] == "FAIL" and t["user_attrs"].get("fail_kind") == "interrupted"]
    assert len(complete) == 3 and len(interrupted) == 1, [(t["number"], t["state"], t["user_attrs"]) for t in ts]
    retry = [t for t in complete if t["user_attrs"].get("retry_of") == interrupted[0]["number"]]
    assert len(retry) == 1 and retry[0]["params"] == interrupted[0]["params"]
    runs = results.find_run_dirs(out)
    assert len(runs) == 3 and victim in runs  # the retry resumed the killed run's folder
    steps = [m["step"] for m in results.read_metrics_records(victim) if m["kind"] == "train"]
    assert steps == list(range(1, 9))


def test_sweep_report_heatmap_importances_best_trials(env):
    f = write(env, {"sampler": "grid", "seeds": [0, 1], "params": {
        "eps_pos": {"low": 0.1, "high": 0.4, "log": True, "grid": 2}, "eps_neg": {"values": [0.1, 0.2], "low": 0.1, "high": 0.2}}})
    cli("sweep", str(f), "--results", str(env / "res"), "--cache-dir", str(env / "cache"), "--jobs", "2")
    cli("report", str(env / "res" / "tiny_sweep_ngrpo"), "--out", str(env / "rep"))
    rep = env / "rep" / "tiny_sweep_ngrpo"
    for name in ("sweep_heatmap.png", "sweep_params.png", "sweep_importance.png", "sweep_trials.csv", "sweep_best.md", "sweep.html"):
        assert (rep / name).is_file(), name
    best = (rep / "sweep_best.md").read_text()
    assert "optuna-dashboard --storage-class JournalFileStorage" in best and "best: trial" in best
    import pandas as pd

    table = pd.read_csv(rep / "sweep_trials.csv")
    assert len(table) == 4 and (table["n"] == 2).all()
    ts = {t["number"]: t for t in trials(env / "res" / "tiny_sweep_ngrpo")}
    for r in table.itertuples():  # the report's recomputed objective is the study's value
        assert r.mean == pytest.approx(ts[r.number]["value"], abs=1e-3)


def test_a_sweep_on_the_verl_backend_reports_and_scores_its_evaluations(env):
    """`backend: verl` (in-process): a trial is the backend's train(); pruning reads each evaluation as the
    run syncs it, the objective is the run's final evaluation."""
    pytest.importorskip("verl", reason="the verl backend needs the verl extra (make test installs it)")
    base = {"name": "verl_tiny", "backend": "verl", "verl": {"mode": "inproc"}, "seeds": [0],
            "task": {"name": "modchain", "min_ops": 1, "max_ops": 2, "grader": "strict"},
            "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
            "warm_start": {"steps": 20, "batch_size": 16, "min_ops": 1, "max_ops": 2},
            "train": {"steps": 4, "prompts_per_step": 8, "group_size": 4, "mini_batches": 2, "max_new_tokens": 8, "checkpoint_every": 4},
            "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 1, "max_ops": 2, "problems": 8}}},
            "variants": [{"name": "ngrpo", "preset": "ngrpo"}]}
    f = write(env, {"sampler": "grid", "pruner": "median", "params": {"eps_neg": {"values": [0.2], "low": 0.1, "high": 0.3}}}, **base)
    cli("sweep", str(f), "--results", str(env / "res"), "--cache-dir", str(env / "cache"))
    out = env / "res" / "verl_tiny_sweep_ngrpo"
    (t,) = trials(out)
    (rid,) = t["user_attrs"]["run_ids"]
    auc = {r["step"]: r["eval/easy/auc"] for r in results.read_metrics_records(out / rid) if r.get("kind") == "eval"}
    assert t["state"] == "COMPLETE" and results.read_status(out / rid)["state"] == "done"
    assert (out / rid / "verl" / "overrides.txt").is_file()  # trained by verl's engine
    assert t["intermediate"] == {"2": pytest.approx(auc[2])} and t["value"] == pytest.approx(auc[4])
