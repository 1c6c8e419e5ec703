"""A sixth algorithm from a plugin file: registered pieces + a preset, run by the unchanged trainer."""

from pathlib import Path

import pytest
import torch
import yaml

from harness.core import results
from harness.cli.app import main

pytestmark = pytest.mark.e2e

PLUGIN = '''
import torch
from algorithms import Preset, register_advantage, register_preset
from algorithms.advantages import group_index, segment_sum

@register_advantage("group_center_test", group_relative=True)
def group_center(rewards, group_ids, acc=None, *, scale: float = 1.0):
    """A_i = scale * (r_i - mean(r)) per group."""
    idx, counts = group_index(group_ids)
    mean = segment_sum(rewards, idx, counts.numel()) / counts
    return scale * (rewards - mean[idx])

register_preset(Preset(
    "center_test", "group-centred rewards, no std", "test",
    {"advantage": "group_center_test", "policy_loss": "ppo_clip", "group_filter": "keep_all", "reward_shaper": "none"},
    {"scale": 0.5},
))
'''


@pytest.fixture()
def clean_registries():
    """The plugin registers into this process's registries too: remove its names afterwards."""
    import sys

    import algorithms

    before = set(sys.modules)
    yield
    algorithms.PRESETS.pop("center_test", None)
    algorithms.ADVANTAGES._fns.pop("group_center_test", None)
    algorithms.ADVANTAGES._meta.pop("group_center_test", None)
    for name in set(sys.modules) - before:
        if name.startswith("ngrpo_plugin_"):
            del sys.modules[name]


def test_plugin_algorithm_runs_without_touching_the_trainer(tmp_path, monkeypatch, clean_registries):
    monkeypatch.setenv("NGRPO_HARNESS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "my_algo.py").write_text(PLUGIN)
    exp = {
        "name": "plug", "plugins": ["my_algo.py"],
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
        "warm_start": {"steps": 10, "batch_size": 16},
        "train": {"steps": 2, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2, "max_new_tokens": 12},
        "eval": {"every": 2, "n": 2, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 2, "problems": 4}}},
        "variants": [{"name": "mine", "preset": "center_test", "overrides": {"scale": 2.0}}],
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    with pytest.raises(SystemExit) as e:  # spawned worker: imports the plugin from the spec
        main(["run", str(path), "--results", str(tmp_path / "res"), "--jobs", "1", "--cache-dir", str(tmp_path / "cache")])
    assert e.value.code in (0, None)
    (rd,) = results.find_run_dirs(tmp_path / "res")
    assert results.read_status(rd)["state"] == "done"
    spec = yaml.safe_load((rd / "spec.yaml").read_text())
    assert spec["algorithm"]["advantage"] == "group_center_test" and spec["algorithm"]["knobs"]["scale"] == 2.0
    import algorithms

    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert algorithms.compute_advantages("group_center_test", r, torch.zeros(4, dtype=torch.long), scale=2.0).tolist() == [1.5, -0.5, -0.5, -0.5]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**exp, "plugins": ["missing_plugin.py"]}))
    with pytest.raises(SystemExit) as e:
        main(["validate", str(bad)])
    assert e.value.code == 2
