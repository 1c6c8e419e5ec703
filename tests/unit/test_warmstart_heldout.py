"""No held-out problem is ever in warm-start data, whatever the cache holds (issue 18 item 5)."""

import torch
import yaml

from harness.config.experiment import load_experiment
from harness.config.runspec import expand
from harness.embedded import common, warmstart

TINY = {"name": "ws", "model": {"n_layer": 1, "n_head": 2, "d_model": 16},
        "warm_start": {"steps": 2, "batch_size": 4, "min_ops": 2, "max_ops": 3},
        "train": {"steps": 1, "prompts_per_step": 4, "group_size": 2, "mini_batches": 1, "max_new_tokens": 8},
        "variants": [{"name": "grpo", "preset": "grpo"}]}


def spec_with(tmp_path, name, problems):
    raw = {**TINY, "name": name, "eval": {"benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": problems}}}}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return expand(load_experiment(tmp_path / f"{name}.yaml"))[0]


def test_experiments_with_other_heldout_sets_never_share_a_warm_start(tmp_path):
    a, b = spec_with(tmp_path, "a", 4), spec_with(tmp_path, "b", 8)  # same seed, name and range; more problems
    assert common.heldout_prompts(b) - common.heldout_prompts(a)  # b holds problems a's warm start could have seen
    assert warmstart.warm_start_key(a) != warmstart.warm_start_key(b)
    assert warmstart.warm_start_key(a) == warmstart.warm_start_key(spec_with(tmp_path, "a2", 4))  # still shared


def test_a_cached_file_without_the_heldout_record_is_trained_again(tmp_path, monkeypatch):
    spec = spec_with(tmp_path, "a", 4)
    path = warmstart.warm_start_path(spec, tmp_path)
    common.atomic_torch_save({"state_dict": {"w": torch.zeros(1)}}, path)  # an older version's file, or a copied cache
    assert not warmstart.warm_start_ready(spec, tmp_path)
    trained = []
    monkeypatch.setattr(warmstart, "train_warm_start", lambda s, progress=None: trained.append(1) or {"w": torch.ones(1)})
    warmstart.ensure_warm_start(spec, tmp_path)
    assert trained == [1] and warmstart.warm_start_ready(spec, tmp_path)
    assert torch.equal(warmstart.load_warm_start(spec, tmp_path)["w"], torch.ones(1))
    warmstart.ensure_warm_start(spec, tmp_path)
    assert trained == [1]  # a valid file is reused


def test_loading_a_warm_start_recorded_for_other_heldout_sets_is_refused(tmp_path):
    import pytest

    spec = spec_with(tmp_path, "a", 4)
    common.atomic_torch_save({"state_dict": {}, "heldout_sha256": "0" * 16}, warmstart.warm_start_path(spec, tmp_path))
    with pytest.raises(common.CheckpointError, match="does not record excluding the held-out problems"):
        warmstart.load_warm_start(spec, tmp_path)


def test_warm_start_and_training_problems_exclude_every_heldout_prompt(tmp_path):
    spec = spec_with(tmp_path, "a", 64)
    held = common.heldout_prompts(spec)
    drawn = {p.prompt for step in range(50) for p in common.train_problems(spec, 64, 2, 3, "warm", 0, step)}
    assert held and not drawn & held
