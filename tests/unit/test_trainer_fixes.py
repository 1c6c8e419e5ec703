"""Trainer fixes of issue 18: Dr. GRPO's constant normaliser, the partial-batch rule, the KL penalty in the reward."""

import copy

import torch

from harness.backends.local.rollout import Batch, collect_batch
from harness.backends.local.trainer import LocalTrainer
from harness.config.experiment import Experiment
from harness.config.runspec import expand
from harness.embedded import common
from harness.embedded.warmstart import ensure_warm_start


def trainer_and_batch(tmp_path, agg, preset="psr_nsr", **knobs):
    exp = Experiment.model_validate({
        "name": "t", "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
        "warm_start": {"steps": 20, "batch_size": 16, "max_ops": 3},
        "train": {"steps": 1, "prompts_per_step": 4, "group_size": 4, "mini_batches": 1, "max_new_tokens": 16},
        "eval": {"benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
        "variants": [{"name": "v", "preset": preset, "overrides": {"agg": agg, **knobs}}],
    })
    spec = expand(exp)[0]
    ensure_warm_start(spec, tmp_path)
    trainer = LocalTrainer(spec, tmp_path)
    batch, _ = collect_batch(trainer.policy, spec, trainer.preset, 1)
    return trainer, batch


def widened(b: Batch, extra: int) -> Batch:
    """The same batch with `extra` more pad columns (as if a longer response had been in it)."""
    pad = common.tokenizer().PAD
    w = lambda t, v: torch.nn.functional.pad(t, (0, extra), value=v)  # noqa: E731
    out = copy.copy(b)
    out.completion_ids, out.mask, out.sample_logp = w(b.completion_ids, pad), w(b.mask, 0.0), w(b.sample_logp, 0.0)
    return out


def pg_loss(trainer, batch):
    data = trainer.score(batch)
    return trainer.optimize(data, torch.arange(batch.size))["pg_loss"]


def test_seq_mean_token_sum_norm_divides_by_the_generation_limit(tmp_path):
    trainer, batch = trainer_and_batch(tmp_path, "seq-mean-token-sum-norm")
    state = copy.deepcopy(trainer.policy.state_dict())
    narrow = pg_loss(trainer, batch)
    trainer.policy.load_state_dict(state)
    wide = pg_loss(trainer, widened(batch, 3))
    assert narrow != 0.0 and abs(narrow - wide) < 1e-6 * max(1.0, abs(narrow)), (narrow, wide)


def test_mini_batch_rows_split_whole_groups_into_near_equal_steps():
    from harness.backends.batching import mini_batch_rows

    steps = mini_batch_rows(7, 4, 2, seed=3)
    assert [len(r) for r in steps] == [16, 12]  # 7 groups, 2 mini-batches: 4 + 3 groups, never one step
    rows = torch.cat(steps)
    assert sorted(rows.tolist()) == list(range(28)) and all((r.view(-1, 4) % 4 == torch.arange(4)).all() for r in steps)
    assert [len(r) for r in mini_batch_rows(2, 4, 4, seed=0)] == [4, 4]  # at most one step per group


def test_kl_in_reward_reaches_outcome_level_advantages(tmp_path):
    """grpo + kl_in_reward_coef: the group z-scores are of reward - coef * sum_t k1_t (verl's token_level_rewards)."""
    trainer, batch = trainer_and_batch(tmp_path, "token-mean", "grpo", kl_in_reward_coef=0.5)
    from algorithms import compute_advantages
    from harness.embedded.sampler import chunked_forward

    old = chunked_forward(trainer.policy, trainer.tok, batch.prompt_ids, batch.completion_ids, batch.mask, 64)
    ref = old + 0.3 * torch.randn(old.shape, generator=torch.Generator().manual_seed(0)) * batch.mask
    adv, _ = trainer.advantages(batch, old, ref, None)
    penalised = batch.reward - 0.5 * ((old - ref) * batch.mask).sum(dim=1)
    knobs = trainer.preset.piece_knobs("advantage")
    want = compute_advantages("group_zscore", penalised, batch.group_ids, acc=batch.acc, **knobs)
    plain = compute_advantages("group_zscore", batch.reward, batch.group_ids, acc=batch.acc, **knobs)
    assert torch.allclose(adv, want) and not torch.allclose(adv, plain)


def test_runs_whose_steps_hit_the_round_cap_are_warned(tmp_path):
    from harness.backends.batching import CAPPED, capped_warning
    from harness.core import results

    for step in range(1, 21):
        results.append_metrics(tmp_path, {"kind": "train", "step": step, CAPPED: float(step == 5)})
    assert capped_warning(tmp_path, 4) is None  # 1 of 20 steps = 5%: not more than 5%
    results.append_metrics(tmp_path, {"kind": "train", "step": 21, CAPPED: 1.0})
    msg = capped_warning(tmp_path, 4)
    assert msg.startswith("2 of 21 steps (10%) hit train.max_sample_rounds = 4") and "raise train.max_sample_rounds" in msg


def test_a_capped_local_run_records_the_warning_in_its_status(tmp_path, capsys):
    """dapo with one sampling round on a model that answers nothing right: every step is capped."""
    from harness.backends.local.trainer import train
    from harness.core import results

    exp = Experiment.model_validate({
        "name": "t", "model": {"n_layer": 1, "n_head": 2, "d_model": 16},
        "warm_start": {"steps": 2, "batch_size": 4, "max_ops": 3},
        "train": {"steps": 2, "prompts_per_step": 2, "group_size": 2, "mini_batches": 1, "max_new_tokens": 6,
                  "max_sample_rounds": 1, "checkpoint_every": 2},
        "eval": {"every": 2, "n": 2, "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 2}}},
        "variants": [{"name": "dapo", "preset": "dapo"}],
    })
    spec = expand(exp)[0]
    ensure_warm_start(spec, tmp_path / "cache")
    train(spec, tmp_path / "run", tmp_path / "cache")
    st = results.read_status(tmp_path / "run")
    assert st["state"] == "done" and "2 of 2 steps (100%) hit train.max_sample_rounds = 1" in st["warnings"][0]
    assert "warning: " in capsys.readouterr().err
