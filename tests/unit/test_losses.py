"""Losses on hand-computed tiny tensors, and sign-asymmetric == decoupled clipping."""

import math

import pytest
import torch

from algorithms import POLICY_LOSSES
from algorithms.losses import aggregate, entropy_from_logits, kl_estimate, ppo_clip, sign_clip, value_loss


def test_aggregation_modes_verl_example():
    x = torch.ones(2, 4)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert aggregate(x, mask, "token-mean").item() == pytest.approx(1.0)
    assert aggregate(x, mask, "seq-mean-token-mean").item() == pytest.approx(1.0)
    assert aggregate(x, mask, "seq-mean-token-sum-norm").item() == pytest.approx(0.75)
    y = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 99.0, 99.0]])
    assert aggregate(y, mask, "token-mean").item() == pytest.approx(40 / 6)
    assert aggregate(y, mask, "seq-mean-token-mean").item() == pytest.approx((2.5 + 15) / 2)
    with pytest.raises(ValueError, match="agg"):
        aggregate(y, mask, "bogus")


def test_ppo_clip_hand_computed():
    # one response, 4 tokens: ratios 1.5, 0.5, 1.1, 0.9; A = +1
    old = torch.zeros(1, 4)
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.9]])
    logp = ratio.log()
    mask = torch.ones(1, 4)
    loss, m = ppo_clip(logp, old, torch.tensor([1.0]), mask, eps_low=0.2, eps_high=0.2)
    # per token: -min(r*A, clip(r)*A) = -[1.2, 0.5, 1.1, 0.9]
    assert loss.item() == pytest.approx(-(1.2 + 0.5 + 1.1 + 0.9) / 4)
    assert m["clipfrac_high"] == pytest.approx(0.25) and m["clipfrac_low"] == 0.0
    assert m["approx_kl"] == pytest.approx(-ratio.log().mean().item())
    # A = -1: -min(-r, -clip(r)) = max(r, clip(r)) -> [1.5, 0.8, 1.1, 0.9]
    loss, m = ppo_clip(logp, old, torch.tensor([-1.0]), mask, eps_low=0.2, eps_high=0.2)
    assert loss.item() == pytest.approx((1.5 + 0.8 + 1.1 + 0.9) / 4)
    assert m["clipfrac_low"] == pytest.approx(0.25) and m["clipfrac_high"] == 0.0
    # dual clip c=1.4 caps the A<0 loss at 1.4 (token with ratio 1.5)
    loss, m = ppo_clip(logp, old, torch.tensor([-1.0]), mask, eps_low=0.2, eps_high=0.2, clip_c=1.4)
    assert loss.item() == pytest.approx((1.4 + 0.8 + 1.1 + 0.9) / 4)
    assert m["dual_clipfrac"] == pytest.approx(0.25)


def test_ratio_one_never_clips():
    logp = torch.randn(8, 5)
    _, m = ppo_clip(logp, logp.clone(), torch.randn(8), torch.ones(8, 5), eps_low=0.01, eps_high=0.01)
    assert m["clipfrac_low"] == 0.0 and m["clipfrac_high"] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_sign_clip_equals_decoupled_clip(seed):
    g = torch.Generator().manual_seed(seed)
    old = torch.randn(64, 16, generator=g)
    logp = old + 0.3 * torch.randn(64, 16, generator=g)
    adv = torch.randn(64, generator=g)
    adv[::7] = 0.0
    mask = (torch.rand(64, 16, generator=g) > 0.2).float()
    for token_adv in (adv, adv[:, None] * torch.rand(64, 16, generator=g)):
        a, ma = sign_clip(logp, old, token_adv, mask, eps_pos=0.24, eps_neg=0.16)
        b, mb = ppo_clip(logp, old, token_adv, mask, eps_low=0.16, eps_high=0.24)
        assert a.item() == pytest.approx(b.item(), abs=1e-7)
        assert ma["clipfrac_low"] == mb["clipfrac_low"] and ma["clipfrac_high"] == mb["clipfrac_high"]
        assert ma["clipfrac_low"] > 0 and ma["clipfrac_high"] > 0  # the bounds do bind here


def test_gradients_match_between_sign_and_decoupled():
    g = torch.Generator().manual_seed(3)
    old = torch.randn(16, 8, generator=g)
    base = old + 0.3 * torch.randn(16, 8, generator=g)
    adv, mask = torch.randn(16, generator=g), torch.ones(16, 8)
    l1 = base.clone().requires_grad_()
    l2 = base.clone().requires_grad_()
    sign_clip(l1, old, adv, mask, eps_pos=0.24, eps_neg=0.16)[0].backward()
    ppo_clip(l2, old, adv, mask, eps_low=0.16, eps_high=0.24)[0].backward()
    assert torch.allclose(l1.grad, l2.grad)


def test_kl_estimators():
    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.25)]])
    assert kl_estimate(logp, ref, "k1").tolist()[0] == pytest.approx([math.log(2), 0.0])
    # k3: d = ref - logp = -log 2 -> 0.5 + log2 - 1
    assert kl_estimate(logp, ref, "k3").tolist()[0] == pytest.approx([0.5 + math.log(2) - 1, 0.0])
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_estimate(logp, ref, "k2")


def test_entropy_from_logits():
    assert entropy_from_logits(torch.zeros(1, 4)).item() == pytest.approx(math.log(4))
    assert entropy_from_logits(torch.tensor([[100.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_value_loss_clipped():
    v = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.0, 0.0]])
    ret = torch.tensor([[0.0, 1.0]])
    loss, m = value_loss(v, old, ret, torch.ones(1, 2), value_clip=0.5)
    # token 1: max((1-0)^2, (0.5-0)^2) = 1 ; token 2: max(1, 1) = 1 -> 0.5 * 1
    assert loss.item() == pytest.approx(0.5)
    v = torch.tensor([[0.2, 0.9]])
    loss, m = value_loss(v, old, ret, torch.ones(1, 2), value_clip=0.5)
    # token 1: max(0.04, 0.04)=0.04; token 2: max(0.01, (0.5-1)^2=0.25)=0.25 -> 0.5*0.145
    assert loss.item() == pytest.approx(0.5 * (0.04 + 0.25) / 2)
    assert m["value_clipfrac"] == pytest.approx(0.5)


def test_loss_bad_input():
    with pytest.raises(ValueError, match="eps_low"):
        ppo_clip(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2), eps_low=1.2)
    with pytest.raises(ValueError, match="must match"):
        ppo_clip(torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1), torch.ones(1, 2))
    with pytest.raises(ValueError, match="advantages"):
        ppo_clip(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(3), torch.ones(2, 2))
    with pytest.raises(KeyError, match="valid names"):
        POLICY_LOSSES.get("vanila")
