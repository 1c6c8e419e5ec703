"""Advantage estimators against ALGORITHMS.md's worked numbers and closed forms."""

import math

import pytest
import torch

import algorithms
from algorithms.advantages import gae_advantages_and_returns, group_zscore, virtual_max

# (c correct of G=8) -> (NGRPO A+, NGRPO A-, GRPO A+, GRPO A-) from ALGORITHMS.md
WORKED = {
    0: (None, -0.3333, None, 0.0),
    1: (1.7638, -0.5040, 2.4749, -0.3536),
    4: (0.8433, -1.0541, 0.9354, -0.9354),
    7: (0.3333, -2.6667, 0.3536, -2.4749),
    8: (0.0, None, 0.0, None),
}


def _group(c, g=8):
    return torch.tensor([1.0] * c + [0.0] * (g - c)), torch.zeros(g, dtype=torch.long)


@pytest.mark.parametrize("c", sorted(WORKED))
def test_worked_numbers(c):
    r, gid = _group(c)
    ng_pos, ng_neg, gr_pos, gr_neg = WORKED[c]
    ng = algorithms.compute_advantages("virtual_max", r, gid)
    gr = algorithms.compute_advantages("group_zscore", r, gid)
    for expect, adv, idx in [(ng_pos, ng, 0), (ng_neg, ng, -1), (gr_pos, gr, 0), (gr_neg, gr, -1)]:
        if expect is not None:
            assert adv[idx].item() == pytest.approx(expect, abs=1e-4)


@pytest.mark.parametrize("G", [2, 4, 8, 16, 64])
def test_ngrpo_closed_form(G):
    for c in range(0, G):
        r, gid = _group(c, G)
        adv = virtual_max(r.double(), gid)
        a_neg = -math.sqrt(G * (c + 1) / ((G + 1) * (G - c)))
        assert adv[-1].item() == pytest.approx(a_neg, rel=1e-5)
        if c > 0:
            a_pos = math.sqrt(G * (G - c) / ((G + 1) * (c + 1)))
            assert adv[0].item() == pytest.approx(a_pos, rel=1e-5)
    # all-wrong: -1/sqrt(G+1) on every response
    r, gid = _group(0, G)
    assert torch.allclose(virtual_max(r.double(), gid), torch.full((G,), -1 / math.sqrt(G + 1), dtype=torch.float64), atol=1e-5)


def test_w_reinforce_and_psr_nsr():
    for c in [0, 1, 4, 7, 8]:
        r, gid = _group(c)
        adv = algorithms.compute_advantages("fixed_sign", r, gid, acc=r > 0)
        expect = torch.tensor([0.1] * c + [-1.0] * (8 - c))
        assert torch.allclose(adv, expect)
    r, gid = _group(3)
    assert algorithms.compute_advantages("fixed_sign", r, gid, mode="psr").tolist() == [1.0] * 3 + [0.0] * 5
    assert algorithms.compute_advantages("fixed_sign", r, gid, mode="nsr").tolist() == [0.0] * 3 + [-1.0] * 5
    # acc, not the reward, decides the sign (a shaped reward of a correct answer can be negative)
    shaped = torch.tensor([-0.5, 0.0])
    adv = algorithms.compute_advantages("fixed_sign", shaped, torch.zeros(2, dtype=torch.long), acc=torch.tensor([True, False]))
    assert adv.tolist() == pytest.approx([0.1, -1.0])


def test_singleton_groups():
    r = torch.tensor([1.0, 0.0, 1.0])
    gid = torch.tensor([0, 1, 2])
    assert group_zscore(r, gid).tolist() == pytest.approx([1.0, 0.0, 1.0], abs=1e-5)  # verl: mean 0, std 1
    # NGRPO singleton with r=1: R' = {1, 1} -> A = 0; with r = 0: R' = {0, 1} -> (0 - .5)/0.7071
    assert virtual_max(r, gid).tolist() == pytest.approx([0.0, -0.5 / math.sqrt(0.5), 0.0], abs=1e-5)


def test_virtual_max_with_zero_virtual_equals_grpo():
    torch.manual_seed(0)
    r = torch.rand(64)
    gid = torch.arange(64) // 8
    assert torch.allclose(virtual_max(r, gid, n_virtual=0), group_zscore(r, gid), atol=1e-6)


def test_dr_grpo_no_std():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    adv = group_zscore(r, torch.zeros(4, dtype=torch.long), norm_by_std=False)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])
    # verl's check: group [1,0,0,0] with std (unbiased) 0.5 -> [1.5, -0.5, ...]
    assert group_zscore(r, torch.zeros(4, dtype=torch.long)).tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)


def test_group_stats_independent_of_order_and_minibatching():
    torch.manual_seed(1)
    r = (torch.rand(96) > 0.6).float()
    gid = torch.arange(96) // 8
    full = virtual_max(r, gid)
    perm = torch.randperm(96)
    assert torch.allclose(virtual_max(r[perm], gid[perm]), full[perm])
    # non-contiguous, arbitrary ids give the same result
    assert torch.allclose(virtual_max(r, gid * 1000 + 7), full)
    # computing on the whole batch then slicing into mini-batches == per-group computation
    for mb in torch.split(torch.arange(96), 32):
        assert torch.allclose(full[mb], virtual_max(r[mb], gid[mb]))


def test_gae_gamma_lambda_one_hand_example():
    # two responses, T=3; second has 2 tokens. rewards terminal 1 and 0; values given.
    values = torch.tensor([[0.5, 0.6, 0.7], [0.2, 0.4, 9.9]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = torch.tensor([1.0, 0.0])
    adv, ret = gae_advantages_and_returns(rewards, values, mask)
    # gamma=lambda=1: A_t = (sum of future rewards) - V_t ; returns = A + V = reward-to-go
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.3], [-0.2, -0.4, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    # per-token rewards (KL penalty) add to the reward-to-go
    tok = torch.tensor([[-0.1, -0.1, -0.1], [0.0, -0.2, 5.0]])
    _, ret2 = gae_advantages_and_returns(rewards, values, mask, token_rewards=tok)
    assert torch.allclose(ret2, torch.tensor([[0.7, 0.8, 0.9], [-0.2, -0.2, 0.0]]))


def test_gae_whitened_via_registry():
    values = torch.zeros(4, 3)
    mask = torch.ones(4, 3)
    adv = algorithms.compute_advantages("gae", torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.arange(4), values=values, mask=mask)
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert adv.std().item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: algorithms.compute_advantages("group_zscore", torch.rand(4), torch.zeros(3, dtype=torch.long)), "group_ids"),
        (lambda: algorithms.compute_advantages("group_zscore", torch.rand(0), torch.zeros(0, dtype=torch.long)), "empty"),
        (lambda: algorithms.compute_advantages("group_zscore", torch.tensor([1.0, float("nan")]), torch.zeros(2, dtype=torch.long)), "NaN"),
        (lambda: algorithms.compute_advantages("group_zscore", torch.rand(2, 2), torch.zeros(2, dtype=torch.long)), "rewards"),
        (lambda: algorithms.compute_advantages("nope", torch.rand(2), torch.zeros(2, dtype=torch.long)), "valid names: fixed_sign"),
        (lambda: algorithms.compute_advantages("virtual_max", torch.rand(2), torch.zeros(2, dtype=torch.long), rmax=1), "unknown knob 'rmax'"),
        (lambda: algorithms.compute_advantages("fixed_sign", torch.rand(2), torch.zeros(2, dtype=torch.long), acc=torch.ones(2)), "acc must be a boolean"),
        (lambda: algorithms.compute_advantages("group_zscore", torch.rand(2), torch.zeros(2)), "integer"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        call()


def test_gae_builds_its_tensors_on_the_inputs_device():
    """Device-agnostic (issue 18): on the meta device (a stand-in for a GPU, no data), no tensor is made on the CPU."""
    from algorithms.advantages import gae_advantages_and_returns

    v, m, r = torch.randn(4, 5, device="meta"), torch.ones(4, 5, device="meta"), torch.ones(4, device="meta")
    adv, ret = gae_advantages_and_returns(r, v, m, None, 1.0, 0.95)
    assert adv.device.type == ret.device.type == "meta" and adv.shape == ret.shape == (4, 5)
