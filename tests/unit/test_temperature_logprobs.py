"""The trainer scores the policy that was sampled: log-probs and entropy at the rollout temperature.

Before the fix the trainer used untempered logits, so with train.temperature != 1 the ratio and the
policy gradient belonged to another policy than the one that produced the samples.
"""

import torch

from harness.embedded.model import CharTokenizer, ModelConfig, TinyGPT
from harness.embedded.sampler import _top_p_filter, chunked_forward, sample, sequence_forward
from harness.tasks import modchain

PROMPTS = ["1+2=", "4*9+4+1*5-8+5=", "7-3*2=", "9*9-1="] * 8


def _model(seed=0):
    torch.manual_seed(seed)
    tok = CharTokenizer(modchain.VOCAB)
    model = TinyGPT(ModelConfig(tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_len=48))
    with torch.no_grad():  # sharper than the init so temperature matters
        model.head.weight.mul_(40.0)
    return tok, model.eval()


def test_logprobs_at_rollout_temperature_equal_the_sampled_distribution():
    tok, model = _model()
    roll = sample(model, tok, PROMPTS, max_new_tokens=10, temperature=0.6, top_p=1.0, seed=3)
    m = roll.completion_mask
    tempered = chunked_forward(model, tok, roll.prompt_ids, roll.completion_ids, m, temperature=0.6)
    untempered = chunked_forward(model, tok, roll.prompt_ids, roll.completion_ids, m)
    assert torch.allclose(tempered[m], roll.logprobs[m], atol=1e-5)
    # the old bug: untempered log-probs are a different policy (gap far above float error)
    assert (untempered[m] - roll.logprobs[m]).abs().mean() > 0.05


def test_entropy_is_that_of_the_tempered_distribution():
    tok, model = _model(1)
    roll = sample(model, tok, PROMPTS[:4], max_new_tokens=6, temperature=0.5, seed=0)
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    valid = torch.cat([roll.prompt_ids != tok.PAD, roll.completion_mask], 1)
    with torch.no_grad():
        logits = model(ids, valid)[:, roll.prompt_ids.shape[1] - 1 : -1] / 0.5
        _, ent = sequence_forward(model, tok, roll.prompt_ids, roll.completion_ids, roll.completion_mask, with_entropy=True,
                                  temperature=0.5)
    p = torch.softmax(logits, -1)
    assert torch.allclose(ent, -(p * p.log()).sum(-1), atol=1e-5)


def test_top_p_gap_is_the_log_nucleus_mass():
    """Top-p truncates sampling only: for each sampled token, log pi_sampled - log pi_T = -log(nucleus mass) >= 0."""
    tok, model = _model(2)
    T, top_p = 0.8, 0.7
    roll = sample(model, tok, PROMPTS, max_new_tokens=10, temperature=T, top_p=top_p, seed=5)
    m = roll.completion_mask
    trainer_lp = chunked_forward(model, tok, roll.prompt_ids, roll.completion_ids, m, temperature=T)
    ids = torch.cat([roll.prompt_ids, roll.completion_ids], 1)
    valid = torch.cat([roll.prompt_ids != tok.PAD, m], 1)
    with torch.no_grad():
        logits = model(ids, valid)[:, roll.prompt_ids.shape[1] - 1 : -1].float() / T
    kept = torch.isfinite(_top_p_filter(logits, top_p))
    mass = (torch.softmax(logits, -1) * kept).sum(-1)
    gap = roll.logprobs - trainer_lp
    assert (gap[m] >= -1e-5).all()
    assert torch.allclose(gap[m], -mass.log()[m], atol=1e-4)
    assert gap[m].max() > 1e-3  # the nucleus really cut something here


def test_trainer_update_scores_the_sampled_policy(tmp_path):
    """A real update at train.temperature 0.6: old log-probs equal the sampler's (logged gap ~ 0)."""
    from harness.backends.local.rollout import collect_batch
    from harness.backends.local.trainer import LocalTrainer
    from harness.embedded.warmstart import ensure_warm_start
    from harness.config.experiment import Experiment
    from harness.config.runspec import expand

    exp = Experiment.model_validate({
        "name": "t", "model": {"n_layer": 1, "n_head": 2, "d_model": 32},
        "warm_start": {"steps": 20, "batch_size": 16, "max_ops": 3},
        "train": {"steps": 1, "prompts_per_step": 4, "group_size": 4, "mini_batches": 2, "max_new_tokens": 12,
                  "temperature": 0.6},
        "eval": {"benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
        "variants": [{"name": "grpo", "preset": "grpo"}],
    })
    spec = expand(exp)[0]
    ensure_warm_start(spec, tmp_path)
    trainer = LocalTrainer(spec, tmp_path)
    batch, _ = collect_batch(trainer.policy, spec, trainer.preset, 1)
    logs = trainer.update(batch, 1)
    assert abs(logs["actor/rollout_logp_gap"]) < 1e-4
