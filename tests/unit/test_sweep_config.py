"""Sweep files: parameter types, grids, bad input (one line, exit 2, nothing written), storage URLs, budget rules."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from harness.cli.app import main
from harness.core.errors import UserError
from harness.core.metrics import objective_from_samples, pass_at_k
from harness.sweep.config import Param, SweepConfig, load_sweep, trial_exp

BASE = {
    "name": "base", "seeds": [0],
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
    "train": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2},
    "eval": {"every": 2, "n": 4, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
    "variants": [{"name": "ngrpo", "preset": "ngrpo"}],
}
SWEEP = {"experiment": "base.yaml", "variant": "ngrpo", "benchmark": "easy", "params": {"eps_pos": {"low": 0.1, "high": 0.3}}}


def write(tmp_path: Path, **changes) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump({**SWEEP, **changes}))
    return p


def test_param_kinds_and_grid_values():
    assert Param(low=0.02, high=0.64, log=True, grid=6).grid_values() == [0.02, 0.04, 0.08, 0.16, 0.32, 0.64]
    assert Param(low=0.0, high=1.0, grid=3).grid_values() == [0.0, 0.5, 1.0]
    assert Param(type="int", low=1, high=7, step=2).grid_values() == [1, 3, 5, 7]
    assert Param(choices=["a", "b"]).kind == "categorical" and Param(choices=["a", "b"]).grid_values() == ["a", "b"]
    assert Param(low=0.1, high=0.4).grid_values() is None  # continuous: no grid unless asked
    cfg = SweepConfig.model_validate({**SWEEP, "sampler": "grid", "params": {
        "eps_pos": {"low": 0.02, "high": 0.64, "log": True, "grid": 6}, "eps_neg": {"values": [0.1, 0.2], "low": 0.1, "high": 0.2}}})
    assert cfg.grid_size == 12 and cfg.target == 12
    assert SweepConfig.model_validate(SWEEP).target == 12  # default for non-grid samplers


def test_trial_exp_sets_knobs_and_experiment_fields(tmp_path):
    cfg, exp = load_sweep(write(tmp_path, params={"eps_pos": {"low": 0.1, "high": 0.3}, "train.lr": {"low": 1e-4, "high": 1e-3, "log": True}}))
    texp = trial_exp(cfg, exp, {"eps_pos": 0.2, "train.lr": 5e-4})
    assert texp.name == "base_sweep_ngrpo" and texp.train.lr == 5e-4
    assert texp.variants[0].overrides == {"eps_pos": 0.2}
    again = trial_exp(cfg, exp, {"eps_pos": 0.2, "train.lr": 5e-4})
    from harness.config.runspec import expand

    assert [s.run_id for s in expand(texp)] == [s.run_id for s in expand(again)]  # same params -> same runs (resume)


@pytest.mark.parametrize("params, sampler, msg", [
    ({"eps_typo": {"low": 0.1, "high": 0.2}}, "tpe", "params.eps_typo: unknown parameter"),
    ({"train.nope": {"low": 0.1, "high": 0.2}}, "tpe", "params.train.nope: unknown parameter"),
    ({"verl.max_prompt_length": {"type": "int", "low": 64, "high": 128}}, "tpe", "verl.* settings apply only to `backend: verl`"),
    ({"eps_pos": {"low": 0.2, "high": 0.2}}, "tpe", "empty range"),
    ({"eps_pos": {"low": 0.3, "high": 0.1}}, "tpe", "inverted range"),
    ({"eps_pos": {"choices": []}}, "tpe", "choices: empty"),
    ({"eps_pos": {"low": 0.0, "high": 0.3, "log": True}}, "tpe", "log range with a non-positive bound"),
    ({"eps_pos": {"low": -1.0, "high": 0.3, "log": True}}, "tpe", "log range with a non-positive bound"),
    ({"eps_pos": {"low": 0.1, "high": 0.3}}, "annealing", "sampler"),
    ({"eps_pos": {"low": 0.1, "high": 0.3}}, "grid", "give `grid: N` or `values: [...]`"),
    ({"eps_pos": {"low": 0.1, "high": 0.3}}, "cmaes", "sampler cmaes needs at least two numeric parameters"),
    ({"eps_pos": {"low": 5.0, "high": 9.0}}, "tpe", "params.eps_pos: 5.0 is not a valid setting"),
])
def test_bad_sweep_files_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, params, sampler, msg):
    f = write(tmp_path, params=params, sampler=sampler)
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(f), "--results", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert msg in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("storage, msg", [
    ("sqlite:////nonexistent-dir/sub/x.db", "unreachable"),
    ("postgresql://user@127.0.0.1:1/db", "--storage postgresql://user@127.0.0.1:1/db"),
    ("bogus://", "not a storage URL"),
    ("/nonexistent-dir/x.journal", "does not exist"),
])
def test_unreachable_or_malformed_storage_exits_2_and_writes_nothing(tmp_path, capsys, storage, msg):
    f = write(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(f), "--results", str(tmp_path / "res"), "--storage", storage])
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("args, msg", [
    (["--executor", "dask"], "--executor 'dask'"),
    (["--address", "auto"], "--address: only meaningful with --executor ray"),
    (["--jobs", "-1"], "--jobs"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster reachable there"),
])
def test_bad_executor_options(tmp_path, capsys, args, msg):
    if "ray" in args:
        pytest.importorskip("ray")
    f = write(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(f), "--results", str(tmp_path / "res"), *args])
    assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_objective_from_samples_on_hand_computed_values():
    # two problems, n = 4: p0 has 1 correct, p1 has 0; at step 5 (the last) p0 has 4 correct
    rows = [(0, "easy", "p0", i, i == 0) for i in range(4)] + [(0, "easy", "p1", i, False) for i in range(4)]
    rows += [(5, "easy", "p0", i, True) for i in range(4)] + [(5, "easy", "p1", i, False) for i in range(4)]
    s = pd.DataFrame(rows, columns=["step", "benchmark", "problem_id", "sample_idx", "correct"])
    assert objective_from_samples(s, "easy", "pass@1", step=0) == pytest.approx(0.125)
    assert objective_from_samples(s, "easy", "pass@2", step=0) == pytest.approx((pass_at_k(4, 1, 2) + 0) / 2)
    # AUC over k = 1, 2, 4 at step 0: p@1 = 1/8, p@2 = 1/4, p@4 = 1/2 -> 100 * (1/8 + 2/4 + 1/2) / 4
    assert objective_from_samples(s, "easy", "auc", step=0) == pytest.approx(100 * (0.125 + 0.5 + 0.5) / 4)
    assert objective_from_samples(s, "easy", "pass@1") == pytest.approx(0.5)  # default: last step
    with pytest.raises(ValueError, match="k must be <="):
        objective_from_samples(s, "easy", "pass@8")
    with pytest.raises(ValueError, match="no samples"):
        objective_from_samples(s, "hard", "auc")


def test_budget_counts_running_complete_pruned_and_spent_grid_points():
    from harness.sweep.optuna_glue import counts

    def t(state, kind=None):
        return SimpleNamespace(number=0, state=state, user_attrs={"fail_kind": kind} if kind else {})

    for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        assert counts(t(state), grid=False) and counts(t(state), grid=True)
    assert not counts(t(TrialState.FAIL, "error"), grid=False)  # replaced by a new trial
    assert counts(t(TrialState.FAIL, "error"), grid=True) and counts(t(TrialState.FAIL, "killed"), grid=True)  # spent point
    assert not counts(t(TrialState.FAIL, "interrupted"), grid=True)  # re-enqueued instead
    assert not counts(t(TrialState.FAIL, "surplus"), grid=True)


def test_two_workers_with_one_seed_never_draw_the_same_parameters(tmp_path):
    """Per-trial reseeding: trial n's draw depends on (seed, n) only, so workers do not repeat each other."""
    import optuna

    from harness.sweep.optuna_glue import make_sampler

    cfg = SweepConfig.model_validate({**SWEEP, "sampler": "random"})
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    a = optuna.create_study(study_name="s", storage=url, sampler=make_sampler(cfg))
    b = optuna.load_study(study_name="s", storage=url, sampler=make_sampler(cfg))
    drawn = []
    for study in (a, b, a, b):
        tr = study.ask()
        drawn.append(tr.suggest_float("eps_pos", 0.1, 0.3))
        study.tell(tr, 0.0)
    assert len(set(drawn)) == 4
    c = optuna.create_study(study_name="s2", storage=url, sampler=make_sampler(cfg))
    again = []
    for _ in range(4):
        tr = c.ask()
        again.append(tr.suggest_float("eps_pos", 0.1, 0.3))
        c.tell(tr, 0.0)
    assert again == drawn  # reproducible from the seed, whoever asked


def test_non_finite_losses_are_named():
    from harness.sweep.worker import non_finite_losses

    assert non_finite_losses({"actor/pg_loss": math.nan, "critic/value_loss": 1.0, "actor/entropy": math.inf}) == ["actor/pg_loss"]
    assert non_finite_losses({"actor/pg_loss": float(np.float64(0.5))}) == []


def test_shipped_clip_grid_is_the_issue_grid():
    cfg, exp = load_sweep(Path(__file__).resolve().parents[2] / "experiments" / "clip_grid.yaml")
    assert cfg.sampler == "grid" and cfg.seeds == [0, 1, 2] and cfg.benchmark == "hard" and cfg.metric == "auc"
    assert cfg.grid_space == {"eps_pos": [0.02, 0.04, 0.08, 0.16, 0.32, 0.64], "eps_neg": [0.02, 0.04, 0.08, 0.16, 0.32, 0.64]}
    assert exp.train.mini_batches > 1 and cfg.target == 36
    # issue 20 item 4: the calibrated warm start (main_comparison's recipe), 8 optimizer steps a batch
    assert exp.warm_start.misconception == 0.6 and exp.warm_start.steps == 2000
    assert exp.train.mini_batches * exp.train.epochs == 8


def test_load_sweep_rejects_a_variant_or_benchmark_not_in_the_experiment(tmp_path):
    with pytest.raises(UserError, match="variant: 'grpo' is not in"):
        load_sweep(write(tmp_path, variant="grpo"))
    with pytest.raises(UserError, match="benchmark: 'hard' is not one of"):
        load_sweep(write(tmp_path, benchmark="hard"))
    with pytest.raises(UserError, match=r"metric: pass@8 needs k <= eval.n \(4\)"):
        load_sweep(write(tmp_path, metric="pass@8"))


@pytest.mark.parametrize("error", [
    "(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num",  # seen in CI: 2 workers, 1 fresh db
    '(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint "alembic_version_pkc"',
])
def test_a_worker_racing_another_to_create_a_fresh_database_retries(tmp_path, monkeypatch, error):
    import optuna
    import sqlalchemy

    from harness.sweep import optuna_glue as sweep_optuna

    made = []

    class Racing:
        def __init__(self, url, engine_kwargs):
            made.append(url)
            if len(made) == 1:  # the other worker inserted alembic's version row first
                raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, Exception(error))

    monkeypatch.setattr(optuna.storages, "RDBStorage", Racing)
    monkeypatch.setattr(sweep_optuna.time, "sleep", lambda s: None)
    store = sweep_optuna.open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    assert isinstance(store.obj, Racing) and len(made) == 2
