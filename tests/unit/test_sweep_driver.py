"""The sweep driver and worker without training: pruning end to end, stop requests, NaN losses, best region, cmaes."""

import threading
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from rich.console import Console

from harness.core import results
from harness.execution.context import TaskContext
from harness.execution.progress import make_view
from harness.sweep.config import load_sweep
from harness.sweep.optuna_glue import Storage, make_sampler, open_study
from harness.sweep.driver import Driver
from harness.sweep.worker import request_stop, run_sweep_task

BASE = {
    "name": "base", "seeds": [0],
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "train": {"steps": 4, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2},
    "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 2}}},
    "variants": [{"name": "ngrpo", "preset": "ngrpo"}],
}


def samples(step: int, correct: bool) -> pd.DataFrame:
    rows = [(step, "easy", f"p{p}", i, correct, 5, False) for p in range(2) for i in range(4)]
    return pd.DataFrame(rows, columns=list(results.SAMPLE_COLUMNS))


class FakePool:
    """WorkerPool's calls; tasks never run (the test feeds the driver their events)."""

    jobs = 1

    def __init__(self):
        self.submitted = []

    def free(self):
        return self.jobs - len(self.submitted)

    def submit(self, tag, fn, *args):
        self.submitted.append((tag, args))


@pytest.fixture()
def driver(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({"experiment": "base.yaml", "variant": "ngrpo", "benchmark": "easy", "sampler": "random",
                                 "trials": 4, "params": {"eps_pos": {"low": 0.1, "high": 0.3}}}))
    cfg, exp = load_sweep(f)
    store = Storage(optuna.storages.InMemoryStorage(), "memory")
    study = open_study(cfg, exp, store, "s")
    dist = optuna.distributions.FloatDistribution(0.1, 0.3)
    for v in (0.15, 0.2, 0.25):  # three finished trials with a good intermediate value: the median pruner may act
        study.add_trial(optuna.trial.create_trial(params={"eps_pos": v}, distributions={"eps_pos": dist}, value=50.0,
                                                  intermediate_values={2: 50.0}))
    return Driver(cfg, exp, tmp_path / "out", store, study, FakePool(), tmp_path / "cache", make_view(Console(quiet=True)))


def test_a_trial_worse_than_the_median_is_pruned_and_marked_in_the_results_folder(driver):
    a = driver.start_trial()
    driver.submit(a, a.pending.pop(0))
    (tag, _), = driver.tasks.items()
    rd = driver.run_dir(a.specs[0])
    rd.mkdir(parents=True)
    results.write_samples(rd, samples(2, correct=False))  # AUC 0 at step 2, the others had 50
    driver.on_progress(a.specs[0].run_id, 2, 4)
    assert a.pruned and "at step 2" in a.pruned
    stop = (rd / "stop.request").read_text()
    assert '"state": "pruned"' in stop and a.token in stop
    driver.on_event(("done", tag, ("pruned", "pruned by the sweep")))  # what the worker returns after obeying the request
    t = driver.study.trials[-1]
    assert t.state == optuna.trial.TrialState.PRUNED and "prune_reason" in t.user_attrs
    assert not (rd / "stop.request").exists()
    assert [x["state"] for x in __import__("json").loads((driver.out / "trials.json").read_text())][-1] == "PRUNED"


def test_a_good_trial_is_not_pruned_and_completes_with_the_seed_mean(driver):
    a = driver.start_trial()
    driver.submit(a, a.pending.pop(0))
    (tag, _), = driver.tasks.items()
    rd = driver.run_dir(a.specs[0])
    rd.mkdir(parents=True)
    results.write_samples(rd, pd.concat([samples(2, True), samples(4, True)]))
    driver.on_progress(a.specs[0].run_id, 2, 4)
    assert a.pruned is None and not (rd / "stop.request").exists()
    driver.on_event(("done", tag, ("done", None)))
    t = driver.study.trials[-1]
    assert t.state == optuna.trial.TrialState.COMPLETE and t.value == pytest.approx(100.0)
    assert t.user_attrs["seed_values"] == [pytest.approx(100.0)]


def test_surplus_trials_are_closed_without_running(driver):
    driver.cfg = driver.cfg.model_copy(update={"trials": 3})  # the three added trials already fill the budget
    assert not driver.may_start_trial()
    assert driver.start_trial() is None  # e.g. two workers asked at once
    t = driver.study.trials[-1]
    assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["fail_kind"] == "surplus"
    assert driver.pool.submitted == []


class FakeSpec(SimpleNamespace):
    """What the run task reads of a RunSpec (run_id, backend, plugins, train.steps, threads and budget, to_dict); nan_at:
    the fake's NaN step."""

    def __init__(self, run_id: str, nan_at: int | None = None):
        train = SimpleNamespace(steps=4, threads=1, budget=None)
        super().__init__(run_id=run_id, backend="fake", plugins=None, train=train, nan_at=nan_at)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "backend": self.backend, "train": {"steps": self.train.steps}}


class FakeBackend:
    """train() reports steps through the progress callback like a real backend."""

    name = "fake"

    def shared_key(self, spec, cache_dir):
        return None

    def has_checkpoint(self, run_dir):
        return False

    def inputs(self, spec, cache_dir):
        return {}

    def train(self, spec, run_dir, cache_dir, progress=None):
        results.write_status(run_dir, "running", step=0, total_steps=4)
        for step in range(1, 5):
            progress(step, 4, {"actor/pg_loss": float("nan") if spec.nan_at == step else 0.1})
        results.write_status(run_dir, "done", step=4, total_steps=4)


class Ctx(TaskContext):
    """A TaskContext whose events are kept in a list; stop_at: the user's Ctrl-C arrives at that step."""

    def __init__(self, stop_at: int | None = None):
        self.events, self.stop_at = [], stop_at
        super().__init__(self.record, threading.Event(), 0)

    def record(self, ev):
        self.events.append(ev)
        if ev[0] == "progress" and ev[2] == self.stop_at:
            self._stop.set()


@pytest.fixture()
def fake_backend(monkeypatch):
    import harness.backends as hb

    monkeypatch.setitem(hb._instances, "fake", FakeBackend())
    monkeypatch.setitem(hb.BACKENDS, "fake", "unused:Fake")


def test_worker_obeys_stop_requests_of_its_own_trial_only(tmp_path, fake_backend):
    spec = FakeSpec("r1")
    rd = tmp_path / "r1"
    rd.mkdir()
    request_stop(rd, "study:7", "pruned", "pruned at step 2")  # left over from an earlier trial: ignored
    ctx = Ctx()
    assert run_sweep_task(ctx, spec, str(rd), str(tmp_path), "study:9") == ("done", None)
    assert [e[2] for e in ctx.events if e[0] == "progress"] == [1, 2, 3, 4]
    results.write_status(rd, "pending")
    request_stop(rd, "study:9", "pruned", "pruned at step 2")
    assert run_sweep_task(Ctx(), spec, str(rd), str(tmp_path), "study:9") == ("pruned", "pruned at step 2")
    assert results.read_status(rd)["state"] == "pruned"


def test_worker_leaves_a_run_pending_on_the_pools_stop_request(tmp_path, fake_backend):
    ctx = Ctx(stop_at=2)
    state, _ = run_sweep_task(ctx, FakeSpec("r4"), str(tmp_path / "r4"), str(tmp_path), "s:1")
    st = results.read_status(tmp_path / "r4")
    assert state == "pending" and st["state"] == "pending" and "harness sweep` again" in st["error"]
    assert [e[2] for e in ctx.events if e[0] == "progress"] == [1, 2]


def test_worker_fails_a_run_with_a_non_finite_loss(tmp_path, fake_backend):
    spec = FakeSpec("r2", nan_at=3)
    state, err = run_sweep_task(Ctx(), spec, str(tmp_path / "r2"), str(tmp_path), "s:1")
    assert state == "failed" and "NonFiniteLoss: non-finite actor/pg_loss at step 3" in err
    assert results.read_status(tmp_path / "r2")["state"] == "failed"


def test_harness_run_fails_a_run_with_a_non_finite_loss_too(tmp_path, fake_backend):
    """Not only inside sweeps (issue 18): `harness run`'s task fails the run, its status naming step and term."""
    from harness.runs.task import run_task

    rid, state, err = run_task(Ctx(), FakeSpec("r5", nan_at=2), str(tmp_path / "r5"), str(tmp_path))
    assert (rid, state) == ("r5", "failed") and "non-finite actor/pg_loss at step 2" in err
    st = results.read_status(tmp_path / "r5")
    assert st["state"] == "failed" and "non-finite actor/pg_loss at step 2" in st["error"]


def test_worker_reuses_a_finished_run(tmp_path, fake_backend):
    rd = tmp_path / "r3"
    rd.mkdir()
    results.write_status(rd, "done")
    ctx = Ctx()
    assert run_sweep_task(ctx, FakeSpec("r3"), str(rd), str(tmp_path), "s:1") == ("done", None)
    assert ctx.events == []  # not trained again


def test_cmaes_sampler_runs_on_two_numeric_parameters(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump({"experiment": "base.yaml", "variant": "ngrpo", "benchmark": "easy", "sampler": "cmaes",
                                 "params": {"eps_pos": {"low": 0.1, "high": 0.3}, "eps_neg": {"low": 0.1, "high": 0.3}}}))
    cfg, _ = load_sweep(f)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler(cfg))
    study.optimize(lambda t: (cfg.params["eps_pos"].suggest(t, "eps_pos") - 0.2) ** 2 + cfg.params["eps_neg"].suggest(t, "eps_neg"),
                   n_trials=8)
    assert len({tuple(t.params.values()) for t in study.trials}) == 8


def test_best_region_holds_trials_not_significantly_worse(tmp_path):
    # paired by seed: trial 1 is -1, +1, -2 against the best (not resolved); trial 2 is -10 every seed (resolved)
    from harness.report.sweep_data import SweepData, mark_best_region

    trials = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "eps_pos": [0.1, 0.2, 0.4],
                           "mean": [11.0, 10.0, 1.0], "low": [10.0, 9.0, 0.0], "high": [12.0, 11.0, 2.0], "n": [3, 3, 3]})
    runs = pd.DataFrame({"number": [0] * 3 + [1] * 3 + [2] * 3, "run_id": list("abcdefghi"), "seed": [0, 1, 2] * 3,
                         "objective": [10.0, 11.0, 12.0, 9.0, 12.0, 10.0, 0.0, 1.0, 2.0]})
    meta = {"objective": {"metric": "auc", "benchmark": "easy", "direction": "maximize"}}
    data = SweepData(Path(tmp_path), meta, trials, runs, ["eps_pos"], {"eps_pos": False})
    mark_best_region(data)
    assert data.best["number"] == 0
    assert data.trials["in_best_region"].tolist() == [True, True, False]
    assert data.trials.loc[2, "diff"] == pytest.approx(-10.0) and data.trials.loc[2, "diff_high"] < 0
    data.meta = {"objective": {**meta["objective"], "direction": "minimize"}}
    mark_best_region(data)
    assert data.best["number"] == 2 and data.trials["in_best_region"].tolist() == [False, False, True]


def test_retry_failed_enqueues_each_failed_trial_once_with_its_parameters(driver):
    dist = optuna.distributions.FloatDistribution(0.1, 0.3)
    driver.study.add_trial(optuna.trial.create_trial(params={"eps_pos": 0.123}, distributions={"eps_pos": dist},
                                                     state=optuna.trial.TrialState.FAIL,
                                                     user_attrs={"fail_kind": "killed", "fail_reason": "run process killed by signal SIGKILL"}))
    failed = driver.study.trials[-1].number
    driver.retry_failed()
    driver.retry_failed()  # already retried: nothing more
    waiting = [t for t in driver.study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and waiting[0].user_attrs["retry_of"] == failed
    a = driver.start_trial()
    assert a.params == {"eps_pos": 0.123} and a.trial.number == waiting[0].number


def test_a_killed_grid_point_is_spent_unless_retried():
    from types import SimpleNamespace

    from harness.sweep.optuna_glue import counts, retried_numbers

    killed = SimpleNamespace(number=4, state=optuna.trial.TrialState.FAIL, user_attrs={"fail_kind": "killed"})
    retry = SimpleNamespace(number=9, state=optuna.trial.TrialState.WAITING, user_attrs={"retry_of": 4})
    assert counts(killed, grid=True) and not counts(killed, grid=True, retried=retried_numbers([killed, retry]))
