"""Budgets (issue 20): the schedule that evaluates and stops a run by spend, and its config errors."""

import pytest

from harness.backends.budget import OVERSHOOT, ROLLOUTS, STEP_ROLLOUTS, STEP_TOKENS, TOKENS, Schedule, spent_through, thresholds
from harness.config.experiment import load_experiment
from harness.config.runspec import RunSpec, expand
from harness.core.errors import UserError


def _file(tmp_path, make_tiny_experiment, train=None, eval=None):
    """The tiny experiment with train / eval keys set (None: removed)."""
    import yaml

    path = make_tiny_experiment(tmp_path)
    raw = yaml.safe_load(path.read_text())
    for section, changes in (("train", train or {}), ("eval", eval or {})):
        for k, v in changes.items():
            if v is None:
                raw[section].pop(k, None)
            else:
                raw[section][k] = v
    path.write_text(yaml.safe_dump(raw))
    return path


def _spec(tmp_path, make_tiny_experiment, **changes) -> RunSpec:
    return expand(load_experiment(_file(tmp_path, make_tiny_experiment, **changes)))[0]


def test_thresholds_are_equal_fractions_rounded_up():
    assert thresholds(100, 3) == [34, 67, 100]
    assert thresholds(160, 4) == [40, 80, 120, 160]


def test_steps_mode_is_every_n_and_the_last_step(tmp_path, make_tiny_experiment):
    spec = _spec(tmp_path, make_tiny_experiment)  # steps 4, every 2
    s = Schedule.of(spec)
    got = [s.after(step, {STEP_ROLLOUTS: 16, STEP_TOKENS: 100}) for step in range(1, 5)]
    assert got == [(False, False), (True, False), (False, False), (True, True)]
    assert (s.rollouts, s.tokens) == (64, 400)


def test_budget_stops_on_the_step_that_spends_it_and_records_the_overshoot(tmp_path, make_tiny_experiment):
    spec = _spec(tmp_path, make_tiny_experiment, train={"steps": None, "budget": {"rollouts": 100}},
                 eval={"every": None, "budget_points": 2})
    assert spec.train.steps == 7  # ceil(100 / (4 x 4)): the most steps the budget allows
    s = Schedule.of(spec)
    recs = [{STEP_ROLLOUTS: r, STEP_TOKENS: 10} for r in (16, 48, 16, 32)]  # 16, 64, 80, 112
    out = [s.after(i + 1, rec) for i, rec in enumerate(recs)]
    assert out == [(False, False), (True, False), (False, False), (True, True)]  # 50 crossed at step 2; 100 at 4
    assert recs[-1][ROLLOUTS] == 112 and recs[-1][OVERSHOOT] == 12 and recs[-1][TOKENS] == 40
    assert s.status()["budget"] == {"unit": "rollouts", "amount": 100, "spent": 112, "overshoot": 12,
                                    "rollouts": 112, "tokens": 40}


def test_a_resumed_schedule_continues_the_sums_and_the_points(tmp_path, make_tiny_experiment):
    spec = _spec(tmp_path, make_tiny_experiment, train={"steps": None, "budget": {"tokens": 90}},
                 eval={"every": None, "budget_points": 3})
    records = [{"kind": "train", "step": 1, ROLLOUTS: 16, TOKENS: 40}, {"kind": "eval", "step": 1},
               {"kind": "train", "step": 2, ROLLOUTS: 32, TOKENS: 70}]
    assert spent_through(records, 1) == (16, 40) and spent_through(records, 0) == (0, 0)
    s = Schedule.of(spec, start=1, records=records)
    assert (s.rollouts, s.tokens, s.points) == (16, 40, [60, 90])  # 30 was passed before the checkpoint
    assert s.after(2, {STEP_ROLLOUTS: 16, STEP_TOKENS: 30}) == (True, False)
    assert s.after(3, {STEP_ROLLOUTS: 16, STEP_TOKENS: 20}) == (True, True)


@pytest.mark.parametrize("train, eval_, message", [
    ({"steps": None, "budget": 3000}, {"every": None}, "give the unit: {rollouts: N} or {tokens: N}"),
    ({"steps": None, "budget": {"rollouts": -5}}, {"every": None}, "greater than 0"),
    ({"steps": None, "budget": {"rollouts": 10, "tokens": 10}}, {"every": None}, "exactly one of rollouts or tokens"),
    ({"steps": None, "budget": {}}, {"every": None}, "exactly one of rollouts or tokens"),
    ({"steps": 10, "budget": {"rollouts": 100}}, {"every": None}, "train.steps and train.budget: give one"),
    ({"steps": None, "budget": {"rollouts": 100}}, {"every": 2}, "eval.every counts steps"),
    ({}, {"budget_points": 2}, "eval.budget_points: needs train.budget"),
])
def test_bad_budgets_are_one_line_errors(tmp_path, make_tiny_experiment, train, eval_, message):
    path = _file(tmp_path, make_tiny_experiment, train, eval_)
    with pytest.raises(UserError) as e:
        load_experiment(path)
    assert message in str(e.value) and "\n" not in str(e.value).strip()


def test_budget_specs_round_trip_and_leave_other_run_ids_alone(tmp_path, make_tiny_experiment):
    plain = _spec(tmp_path, make_tiny_experiment)
    assert "budget" not in plain.to_dict()["train"] and "budget_points" not in plain.to_dict()["eval"]
    spec = _spec(tmp_path, make_tiny_experiment, train={"steps": None, "budget": {"rollouts": 100}},
                 eval={"every": None})
    d = spec.to_dict()
    assert d["train"]["budget"] == {"rollouts": 100} and "steps" not in d["train"]
    back = RunSpec.from_dict(d)
    assert back.train.steps == 7 and back.train.budget.amount == 100 and back.to_dict() == d
