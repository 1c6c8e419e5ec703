"""Experiment files: validation errors (one line naming the field, exit 2, nothing written) and expansion."""

import copy
import warnings
from pathlib import Path

import pytest
import yaml

from harness.cli.app import main
from harness.config.experiment import load_experiment, warn_if_clip_cannot_bind
from harness.config.runspec import expand
from harness.core.errors import UserError

BASE = {
    "name": "cfgtest",
    "seeds": [0, 1],
    "train": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2},
    "eval": {"n": 4, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
    "variants": [{"name": "grpo", "preset": "grpo"}, {"name": "ngrpo_sym", "preset": "ngrpo", "overrides": {"eps_pos": 0.2, "eps_neg": 0.2}}],
}


def write(tmp_path: Path, mutate=None) -> Path:
    raw = copy.deepcopy(BASE)
    if mutate:
        mutate(raw)
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_expand_gives_stable_content_hashed_runs(tmp_path):
    exp = load_experiment(write(tmp_path))
    specs = expand(exp)
    assert [(s.variant, s.seed) for s in specs] == [("grpo", 0), ("grpo", 1), ("ngrpo_sym", 0), ("ngrpo_sym", 1)]
    assert len({s.run_id for s in specs}) == 4
    assert [s.run_id for s in expand(load_experiment(write(tmp_path)))] == [s.run_id for s in specs]
    edited = expand(load_experiment(write(tmp_path, lambda r: r["train"].update(lr=1e-5))))
    assert not {s.run_id for s in edited} & {s.run_id for s in specs}
    assert specs[2].algorithm.piece_knobs("policy_loss")["eps_pos"] == 0.2
    assert specs[0].warm_start.seed == 0 and specs[1].warm_start.seed == 0  # one shared warm start
    per_seed = expand(load_experiment(write(tmp_path, lambda r: r.update(warm_start={"seed": None}))))
    assert [s.warm_start.seed for s in per_seed[:2]] == [0, 1]


BAD = [
    (lambda r: r["train"].update(max_epochs=20), "train.max_epochs: the modchain task draws new problems every step"),
    (lambda r: r["variants"].append({"name": "x", "preset": "gpro"}), "variants[2] (x).preset: unknown preset 'gpro'; valid presets"),
    (lambda r: r["variants"][0].update(overrides={"eps": 0.1}), "variants[0] (grpo).overrides: unknown knob 'eps'"),
    (lambda r: r["variants"][0].update(overrides={"eps_low": 1.5}), "knob 'eps_low' must be in (0, 1)"),
    (lambda r: r["variants"][0].update(overrides={"eps_high": 0}), "knob 'eps_high' must be in (0, 1)"),
    (lambda r: r["variants"][0].update(overrides={"kl_coef": "high"}), "knob 'kl_coef' must be a number"),
    (lambda r: r["train"].update(steps="ten"), "train.steps: Input should be a valid integer"),
    (lambda r: r["train"].update(prompts_per_step=0), "train.prompts_per_step: Input should be greater than 0"),
    (lambda r: r["train"].update(lr=-1), "train.lr: Input should be greater than 0"),
    (lambda r: r["train"].update(group_size=1), "train.group_size: must be >= 2 for group-relative preset 'grpo'"),
    (lambda r: r["eval"].update(n=4, k_max=8), "eval: n (4) is smaller than the largest k (8)"),
    (lambda r: r["train"].update(mini_batches=3), "train.mini_batches (3) must divide"),
    (lambda r: r.update(trian={}), "trian: unknown field"),
    (lambda r: r.update(variants=[]), "variants: List should have at least 1 item"),
]


@pytest.mark.parametrize("mutate, message", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, monkeypatch, mutate, message):
    path = write(tmp_path, mutate)
    with pytest.raises(UserError, match=None) as e:
        load_experiment(path)
    assert message in str(e.value)
    monkeypatch.chdir(tmp_path)
    for cmd in (["validate", str(path)], ["run", str(path), "--results", str(tmp_path / "res")]):
        with pytest.raises(SystemExit) as ex:
            main(cmd)
        assert ex.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "res").exists()


def test_group_size_one_allowed_for_non_group_methods(tmp_path):
    path = write(tmp_path, lambda r: (r["train"].update(group_size=1), r.update(variants=[{"name": "w", "preset": "psr_nsr"}])))
    assert load_experiment(path).train.group_size == 1


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(UserError, match="no such experiment file"):
        load_experiment(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(UserError, match="not valid YAML"):
        load_experiment(bad)


def test_clip_cannot_bind_warning(tmp_path, capsys):
    exp = load_experiment(write(tmp_path, lambda r: r["train"].update(mini_batches=1)))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        msg = warn_if_clip_cannot_bind(exp)
    assert msg and "no clip bound" in msg and "ngrpo_sym" in msg and w
    assert warn_if_clip_cannot_bind(load_experiment(write(tmp_path))) is None
    with pytest.raises(SystemExit) as ex:
        main(["validate", str(write(tmp_path, lambda r: r["train"].update(mini_batches=1)))])
    assert ex.value.code == 0
    assert "can bind" in " ".join(capsys.readouterr().err.split())  # rich wraps lines


def test_shipped_experiments_validate(monkeypatch):
    # the paper experiment names its data and model through these (verl files are checked further,
    # against the installed verl, in tests/unit/test_verl_cli.py)
    monkeypatch.setenv("NGRPO_DATA", "/data")
    monkeypatch.setenv("NGRPO_MODEL", "/models/Qwen2.5-Math-7B")
    root = Path(__file__).resolve().parents[2] / "experiments"
    files = sorted(root.glob("*.yaml"))
    assert {"quickstart.yaml", "main_comparison.yaml", "ablation_virtual_reward.yaml"} <= {f.name for f in files}
    from harness.sweep.config import load_sweep

    from harness.probe.probe import load_probe

    for f in files:
        raw = yaml.safe_load(f.read_text())
        if "algorithms" in raw:  # a probe file over a base experiment (harness probe)
            cfg, spec, _, _ = load_probe(f)
            assert spec.experiment and cfg.updates >= 1
            continue
        if "variants" not in raw:  # a sweep file over a base experiment
            cfg, exp = load_sweep(f)
            assert cfg.params
        else:
            exp = load_experiment(f)
        assert exp.train.mini_batches > 1, f"{f.name}: clip bounds must be able to bind"
