"""`harness plan`: the spread of a pilot, the seeds it implies, and bad input as one-line errors (exit 2)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.cli.app import main
from harness.core.stats import seeds_for_power, t_power
from harness.core.errors import UserError
from harness.report.fake import make_fake_results
from harness.report.plan import benchmark_spread, plan_seeds


def _aucs(rows):
    return pd.DataFrame(rows, columns=["variant", "seed", "benchmark", "auc"])


def test_paired_spread_by_hand():
    aucs = _aucs([("a", 0, "m", 10.0), ("a", 1, "m", 12.0), ("a", 2, "m", 15.0),
                  ("b", 0, "m", 9.0), ("b", 1, "m", 10.0), ("b", 2, "m", 14.0)])
    design, sd, df, pilot = benchmark_spread(aucs)
    assert (design, df, pilot) == ("paired", 2, 3)
    assert sd == pytest.approx(np.std([1.0, 2.0, 1.0], ddof=1))
    plan = plan_seeds(aucs, effect=1.0).iloc[0]
    assert plan["seeds"] == seeds_for_power(1.0, sd, paired=True)
    assert plan["power_now"] == pytest.approx(t_power(3, 1.0, sd, paired=True))
    assert plan["seeds_sd_upper"] >= plan["seeds"] >= 2


def test_unpaired_spread_pools_within_variants():
    aucs = _aucs([("a", 0, "m", 10.0), ("a", 1, "m", 14.0), ("b", 5, "m", 1.0), ("b", 6, "m", 2.0), ("b", 7, "m", 6.0)])
    design, sd, df, _ = benchmark_spread(aucs)
    assert design == "unpaired" and df == 3
    assert sd == pytest.approx(math.sqrt((8.0 * 1 + np.var([1.0, 2.0, 6.0], ddof=1) * 2) / 3))
    assert plan_seeds(aucs, 2.0).iloc[0]["seeds"] == seeds_for_power(2.0, sd, paired=False)


def test_bad_input_is_a_user_error():
    one_seed = _aucs([("a", 0, "m", 10.0), ("b", 0, "m", 12.0)])
    with pytest.raises(UserError, match="one seed"):
        plan_seeds(one_seed, 1.0)
    with pytest.raises(UserError, match="--effect"):
        plan_seeds(one_seed, 0.0)


@pytest.fixture(scope="module")
def pilots(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    make_fake_results(root / "three", experiment="pilot", variants=("grpo", "ngrpo"), seeds=3, steps=2,
                      eval_every=2, n_problems=8, n_samples=4)
    make_fake_results(root / "one", experiment="pilot", variants=("grpo", "ngrpo"), seeds=1, steps=2,
                      eval_every=2, n_problems=8, n_samples=4)
    return root


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code or 0, out.out, out.err


def test_plan_command(pilots, capsys, tmp_path):
    code, out, err = _cli(capsys, "plan", "pilot", "--effect", "3", "--results", str(pilots / "three"))
    assert code == 0, err
    assert "pilot: seeds per variant to resolve an AUC difference of 3 with 80% power" in out
    lines = out.splitlines()
    assert any(ln.split()[:2] == ["math500", "paired"] for ln in lines)
    assert lines.index(next(ln for ln in lines if ln.strip().startswith("math500"))) < \
        lines.index(next(ln for ln in lines if ln.strip().startswith("aime25")))
    exp = tmp_path / "pilot.yaml"  # the experiment file names the experiment
    exp.write_text("name: pilot\nseeds: [0, 1, 2]\n")
    assert _cli(capsys, "plan", str(exp), "--effect", "3", "--results", str(pilots / "three"))[0] == 0
    for args, needle in ((("pilot", "--effect", "3", "--results", str(pilots / "one")), "one seed"),
                         (("pilot", "--effect", "0", "--results", str(pilots / "three")), "--effect 0"),
                         (("pilot", "--effect", "-1", "--results", str(pilots / "three")), "must be > 0"),
                         (("nope", "--effect", "1", "--results", str(pilots / "three")), "no finished run")):
        code, out, err = _cli(capsys, "plan", *args)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
