"""Ctrl-C and SIGTERM sent to a real `harness run` / `harness sweep` subprocess at tiny scale.

First signal: one "stopping" line, nothing new starts, every running run saves its current step and
stops, exit 130 (143 for SIGTERM); a second signal quits at once. Either way the rerun resumes and
ends bit-identical to an uninterrupted run, and an interrupted sweep trial is resumed, not lost or
duplicated.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from harness.core import results
from harness.cli.app import main
from harness.config.experiment import load_experiment
from harness.config.runspec import expand

pytestmark = pytest.mark.e2e
_spec = importlib.util.spec_from_file_location("cli_helpers", Path(__file__).with_name("cli_helpers.py"))
h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(h)

LONG = dict(  # long enough that a signal lands mid-run; checkpoints only at the end, so a saved step is the stop's
    train={"steps": 24, "prompts_per_step": 8, "checkpoint_every": 100},
    eval={"every": 12},
    variants=[{"name": n, "preset": n} for n in ("grpo", "ngrpo", "dapo")],
)


def _cli(*args: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    assert e.value.code in (0, None)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_tiny_experiment):
    """The experiment, a shared warm-start cache, and the same experiment run without interruption."""
    root = tmp_path_factory.mktemp("interrupts")
    exp = make_tiny_experiment(root, **LONG)
    cache = root / "cache"
    with pytest.raises(SystemExit) as e:
        main(["run", str(exp), "--results", str(root / "ref"), "--jobs", "2", "--cache-dir", str(cache)])
    assert e.value.code in (0, None)
    return root, exp, cache, _run_dirs(exp, root / "ref")


def _run_dirs(exp_file: Path, res: Path) -> dict[str, Path]:
    exp = load_experiment(exp_file)
    return {s.variant: res / exp.name / s.run_id for s in expand(exp)}


def _start(kind: str, *args, root: Path, gate_step: int) -> "h.Harness":
    """The harness subprocess, each run held at gate_step until the stop request (no race with its end)."""
    return h.Harness(kind, *args, cwd=root, env={"COLUMNS": "200"}, gate_step=gate_step)


def _assert_same_as_reference(run_dir: Path, ref_dir: Path) -> None:
    assert results.read_status(run_dir)["state"] == "done"
    pd.testing.assert_frame_equal(results.read_samples(ref_dir), results.read_samples(run_dir))
    assert h.strip_times(results.read_metrics_records(ref_dir)) == h.strip_times(results.read_metrics_records(run_dir))


@pytest.mark.parametrize("sig, to_group, code", [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
                         ids=["ctrl-c-to-the-job", "sigterm-to-the-parent"])
def test_first_signal_checkpoints_running_runs_starts_nothing_and_rerun_resumes(setup, tmp_path, sig, to_group, code):
    root, exp, cache, ref = setup
    res = tmp_path / "res"
    dirs = _run_dirs(exp, res)
    proc = _start("run", exp, "--results", res, "--jobs", "2", "--cache-dir", cache, root=root, gate_step=3)
    h.wait_for_steps([dirs["grpo"], dirs["ngrpo"]], 3, proc)
    (proc.signal_group if to_group else proc.signal_parent)(sig)
    assert proc.finish() == code, proc.output
    out = proc.output
    assert "Traceback" not in out
    assert sum(line.count("stopping:") for line in proc.lines) == 1
    assert "stopped: 2 run(s) checkpointed" in out and "1 not started; rerun the same command to resume" in out
    assert not (dirs["dapo"] / "metrics.jsonl").exists()  # queued when the signal came: never started
    for v in ("grpo", "ngrpo"):
        status = results.read_status(dirs[v])
        ckpt = torch.load(dirs[v] / "checkpoints" / "latest.pt", weights_only=True)
        steps = h.train_steps(dirs[v])
        assert status["state"] == "pending" and "interrupted" in status["error"]
        assert ckpt["step"] == status["step"] == max(steps) == 3  # the step it was on is kept, nothing lost
    _cli("run", str(exp), "--results", str(res), "--jobs", "2", "--cache-dir", str(cache))
    for v, d in dirs.items():
        _assert_same_as_reference(d, ref[v])


def test_second_ctrl_c_quits_at_once_and_every_run_stays_resumable(setup, tmp_path):
    root, exp, cache, ref = setup
    res = tmp_path / "res"
    dirs = _run_dirs(exp, res)
    proc = _start("run", exp, "--results", res, "--jobs", "2", "--cache-dir", cache, root=root, gate_step=2)
    h.wait_for_steps([dirs["grpo"], dirs["ngrpo"]], 2, proc)
    workers = h.worker_pids(proc)
    assert len(workers) == 2
    try:
        for pid in workers:  # both workers deep in a long step: the graceful stop cannot finish
            os.kill(pid, signal.SIGSTOP)
        proc.signal_group(signal.SIGINT)
        proc.wait_for_line("stopping:")
        proc.signal_group(signal.SIGINT)
        assert proc.finish() == 130, proc.output
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert "Traceback" not in proc.output and "stopped at once" in proc.output
    for pid in workers:  # the second Ctrl-C killed them
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    for v in ("grpo", "ngrpo"):
        status = results.read_status(dirs[v])
        assert status["state"] == "pending" and "killed (second stop signal)" in status["error"]
    _cli("run", str(exp), "--results", str(res), "--jobs", "2", "--cache-dir", str(cache))
    for v, d in dirs.items():
        _assert_same_as_reference(d, ref[v])


def test_interrupted_sweep_trial_is_resumed_not_lost_or_duplicated(setup, tmp_path):
    optuna = pytest.importorskip("optuna")
    root, exp, cache, _ = setup
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"experiment": str(exp), "variant": "ngrpo", "benchmark": "easy", "trials": 2,
                                     "pruner": "none", "params": {"eps_pos": {"low": 0.1, "high": 0.3}}}))
    res = tmp_path / "res"
    out_dir = res / f"{load_experiment(exp).name}_sweep_ngrpo"
    proc = _start("sweep", sweep, "--results", res, "--cache-dir", cache, root=root, gate_step=3)
    deadline_dirs: list[Path] = []
    while not deadline_dirs:
        assert proc.proc.poll() is None, proc.output
        deadline_dirs = [d for d in out_dir.glob("*/") if (d / "metrics.jsonl").exists()]
    (first,) = deadline_dirs
    h.wait_for_steps([first], 3, proc)
    proc.signal_group(signal.SIGINT)
    assert proc.finish() == 130, proc.output
    assert "Traceback" not in proc.output
    status = results.read_status(first)
    assert status["state"] == "pending"
    assert f"stopped: trial 0 checkpointed at step {status['step']} ({first.name})" in proc.output
    before = results.read_metrics_records(first)
    assert torch.load(first / "checkpoints" / "latest.pt", weights_only=True)["step"] == status["step"] == max(h.train_steps(first))

    _cli("sweep", str(sweep), "--results", str(res), "--cache-dir", str(cache))
    runs = results.find_run_dirs(out_dir)
    assert len(runs) == 2 and first in runs and all(results.read_status(r)["state"] == "done" for r in runs)
    after = results.read_metrics_records(first)
    assert h.train_steps(first) == list(range(1, 25))
    assert after[: len(before)] == before  # resumed from its checkpoint (timings kept), not started over
    study = optuna.load_study(study_name=out_dir.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out_dir / "optuna.journal"))))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    resumed = [t for t in complete if t.user_attrs.get("retry_of") == 0]  # the interrupted trial 0, enqueued again
    assert len(resumed) == 1 and resumed[0].params == study.trials[0].params
    assert study.trials[0].state == optuna.trial.TrialState.FAIL and study.trials[0].user_attrs["fail_kind"] == "interrupted"
