"""A budgeted experiment end to end (issue 20): every run stops within one step's rollouts of the budget,
DAPO (several sampling rounds a step) takes fewer optimizer steps than GRPO, and both are evaluated at
the same spends."""

import json

import pytest
import yaml

from harness.cli.app import main
from harness.core import results

pytestmark = pytest.mark.e2e
BUDGET = 160


def test_equal_rollouts_dapo_takes_fewer_steps_than_grpo(tmp_path, tiny_experiment, capsys):
    path = tiny_experiment(variants=[{"name": "grpo", "preset": "grpo"}, {"name": "dapo", "preset": "dapo"}])
    raw = yaml.safe_load(path.read_text())
    raw["train"].pop("steps")
    raw["train"]["budget"] = {"rollouts": BUDGET}
    raw["eval"].pop("every")
    raw["eval"]["budget_points"] = 2
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as e:
        main(["run", str(path), "--results", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")])
    assert e.value.code in (0, None)
    out = "".join(capsys.readouterr())
    assert f"started (budget {BUDGET:,} rollouts, at most " in out, out  # not the step cap alone
    steps = {}
    for rd in results.find_run_dirs(tmp_path / "res"):
        rec = results.load_run(rd)
        train = rec.metrics[rec.metrics["kind"] == "train"].sort_values("step")
        spent = train["budget/rollouts"].tolist()
        assert spent == train["budget/step_rollouts"].cumsum().tolist()
        assert spent[-1] >= BUDGET and spent[-2] < BUDGET  # stopped on the step that spent it
        assert spent[-1] - BUDGET < train["budget/step_rollouts"].iat[-1]  # within one step's rollouts
        status = json.loads((rd / "status.json").read_text())
        assert status["state"] == "done" and status["step"] == train["step"].iat[-1]
        assert status["budget"]["spent"] == spent[-1] and status["budget"]["overshoot"] == spent[-1] - BUDGET
        evals = sorted(rec.samples["step"].unique().tolist())
        half = int(train[train["budget/rollouts"] >= BUDGET // 2]["step"].iat[0])
        assert evals == [0, half, int(train["step"].iat[-1])]  # before RL, at half the budget, at the end
        steps[rec.variant] = int(train["step"].iat[-1])
    assert steps["dapo"] < steps["grpo"] == BUDGET // 16, steps

    # the report against compute: AUC vs rollouts and tokens, and the comparison at the common budget
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep")])
    assert e.value.code in (0, None)
    rep = tmp_path / "rep" / "tiny"
    for name in ("auc_vs_rollouts.png", "auc_vs_tokens.png", "auc_vs_step.png", "comparison_at_budget.md",
                 "comparison_at_budget.csv", "auc_at_budget.csv"):
        assert (rep / name).exists(), name
    import pandas as pd

    comp = pd.read_csv(rep / "comparison_at_budget.csv")
    assert comp["variant"].tolist() == ["dapo"] and comp["reference"].tolist() == ["grpo"]
    finals = []
    for rd in results.find_run_dirs(tmp_path / "res"):
        finals.append(json.loads((rd / "status.json").read_text())["budget"]["spent"])
    assert comp["budget_rollouts"].iat[0] == min(finals)
    html = (rep / "index.html").read_text()
    assert "At a common budget" in html and "AUC vs rollouts" in html
