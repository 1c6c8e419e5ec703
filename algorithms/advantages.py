"""Advantage estimators. Outcome estimators map rewards [N] + group ids [N] to advantages [N].

All group statistics are segment reductions (index_add_ over group indices): no per-sample loops,
and the result does not depend on the order of responses or on how the batch is later split into
mini-batches (advantages are computed once per batch, before mini-batching).

Inputs (positional or keyword): rewards [N] float, group_ids [N] int, acc [N] bool (optional).
Knobs are keyword-only; their defaults here are the papers' (see presets.py for the recipes).
"""

from __future__ import annotations

import torch

from algorithms._checks import check_1d, check_bool, check_finite
from algorithms.registry import ADVANTAGES, check_knobs, register_advantage


def group_index(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map arbitrary group ids [N] to (dense index [N] in 0..G-1, group sizes [G]).

    Ids need not be sorted or contiguous; sorted ids (the usual batch layout) take a faster path.
    """
    if group_ids.numel() < 2 or bool((group_ids[1:] >= group_ids[:-1]).all()):
        _, inverse, counts = torch.unique_consecutive(group_ids, return_inverse=True, return_counts=True)
    else:
        _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    return inverse, counts


def segment_sum(x: torch.Tensor, index: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Sum x [N] into num_groups buckets given index [N] -> [G]."""
    return torch.zeros(num_groups, dtype=x.dtype, device=x.device).index_add_(0, index, x)


def _zscore_with_virtual(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    r_virtual: float,
    n_virtual: int,
    norm_by_std: bool,
    std_eps: float,
) -> torch.Tensor:
    """(r - mean(R')) / (std(R') + eps) with R' = group rewards plus n_virtual copies of r_virtual.

    std is unbiased (divisor |R'| - 1). A set R' of one value gets mean 0 and std 1 (verl's GRPO
    convention for singleton groups, so A = r).
    """
    r = rewards if rewards.is_floating_point() else rewards.float()
    index, counts = group_index(group_ids)
    num_groups = counts.numel()
    n = counts.to(r.dtype) + n_virtual
    mean = (segment_sum(r, index, num_groups) + n_virtual * r_virtual) / n
    dev = r - mean[index]
    sq = segment_sum(dev * dev, index, num_groups)
    if n_virtual:
        sq = sq + n_virtual * (r_virtual - mean) ** 2
    std = torch.sqrt(sq / (n - 1).clamp(min=1))
    single = n == 1
    if bool(single.any()):  # verl's convention: a set of one value has mean 0 and std 1 (A = r)
        mean = torch.where(single, torch.zeros_like(mean), mean)
        std = torch.where(single, torch.ones_like(std), std)
        dev = r - mean[index]
    return dev / (std[index] + std_eps) if norm_by_std else dev


@register_advantage("group_zscore", group_relative=True)
def group_zscore(
    rewards: torch.Tensor, group_ids: torch.Tensor, acc: torch.Tensor | None = None, *,
    norm_by_std: bool = True, std_eps: float = 1e-6,
) -> torch.Tensor:
    """GRPO (Shao et al. 2024, arXiv 2402.03300): A_i = (r_i - mean(r)) / (std(r) + 1e-6) per group.

    norm_by_std=False gives Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): A_i = r_i - mean(r).
    rewards [N], group_ids [N] -> advantages [N]. Homogeneous groups get 0.
    """
    return _zscore_with_virtual(rewards, group_ids, 0.0, 0, norm_by_std, std_eps)


@register_advantage("virtual_max", group_relative=True)
def virtual_max(
    rewards: torch.Tensor, group_ids: torch.Tensor, acc: torch.Tensor | None = None, *,
    r_max: float = 1.0, n_virtual: int = 1, norm_by_std: bool = True, std_eps: float = 1e-6,
) -> torch.Tensor:
    """NGRPO advantage calibration (arXiv 2509.18851): add n_virtual virtual responses of reward r_max
    to each group for the mean and std only. An all-wrong group of G binary rewards gets
    -1/sqrt(G+1) on every response instead of 0. rewards [N], group_ids [N] -> advantages [N].
    """
    return _zscore_with_virtual(rewards, group_ids, float(r_max), int(n_virtual), norm_by_std, std_eps)


FIXED_SIGN_MODES = ("w_reinforce", "psr", "nsr")


@register_advantage("fixed_sign", group_relative=False, needs_acc=True)
def fixed_sign(
    rewards: torch.Tensor, group_ids: torch.Tensor, acc: torch.Tensor | None = None, *,
    mode: str = "w_reinforce", lam: float = 0.1,
) -> torch.Tensor:
    """PSR-NSR (Zhu et al. 2025, arXiv 2506.01347): fixed advantages, no baseline, no normalisation.

    mode "w_reinforce": +lam for correct, -1 for incorrect; "psr": +1 / 0; "nsr": 0 / -1.
    Correctness comes from `acc` [N] bool when given, else from rewards > 0.
    """
    if mode not in FIXED_SIGN_MODES:
        raise ValueError(f"fixed_sign: mode must be one of {FIXED_SIGN_MODES}, got {mode!r}")
    correct = acc if acc is not None else rewards > 0
    pos, neg = {"w_reinforce": (lam, -1.0), "psr": (1.0, 0.0), "nsr": (0.0, -1.0)}[mode]
    return torch.where(correct, torch.full_like(rewards, pos), torch.full_like(rewards, neg))


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries (unbiased var, as verl's masked_whiten)."""
    m = mask.to(x.dtype)
    count = m.sum()
    mean = (x * m).sum() / count
    var = (((x - mean) * m) ** 2).sum() / (count - 1).clamp(min=1)
    return (x - mean) * torch.rsqrt(var + eps) * m


def gae_advantages_and_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    token_rewards: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016) on right-padded responses; loops over time only, vectorised over N.

    rewards [N] terminal reward (placed on each response's last token), values [N, T],
    mask [N, T] (1 for response tokens, a prefix of each row), token_rewards [N, T] optional per-token
    rewards (e.g. the PPO KL penalty). Returns (advantages [N, T] unwhitened, returns [N, T] = A + V).
    """
    m = mask.to(values.dtype)
    r_tok = torch.zeros_like(values) if token_rewards is None else token_rewards * m
    last = (m.sum(dim=1).long() - 1).clamp(min=0)
    r_tok = r_tok.index_put((torch.arange(len(last), device=values.device), last), rewards.to(r_tok), accumulate=True)
    v = values * m
    adv = torch.zeros_like(values)
    running = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    for t in reversed(range(values.shape[1])):
        next_v = v[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = r_tok[:, t] + gamma * next_v - v[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        adv[:, t] = running
    return adv, (adv + v) * m


@register_advantage("gae", group_relative=False, token_level=True)
def gae(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    acc: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    token_rewards: torch.Tensor | None = None,
    *,
    gamma: float = 1.0,
    lam: float = 1.0,
    whiten: bool = True,
) -> torch.Tensor:
    """PPO's GAE advantages [N, T] (whitened over the batch by default); needs values and mask [N, T]."""
    if values is None or mask is None:
        raise ValueError("gae: values [N, T] and mask [N, T] are required")
    if values.shape != mask.shape or values.shape[0] != rewards.shape[0]:
        raise ValueError(
            f"gae: values {tuple(values.shape)} and mask {tuple(mask.shape)} must be [N, T] with N = {rewards.shape[0]}"
        )
    adv, _ = gae_advantages_and_returns(rewards, values, mask, token_rewards, gamma, lam)
    return masked_whiten(adv, mask) if whiten else adv


def compute_advantages(name: str, rewards: torch.Tensor, group_ids: torch.Tensor, **params) -> torch.Tensor:
    """Public entry point: validate inputs and knobs, then run the registered estimator `name`.

    rewards [N] float, group_ids [N] int; params: `acc` [N] bool and (for gae) `values`, `mask`,
    `token_rewards`, plus the estimator's knobs. Returns advantages [N] ([N, T] for token-level gae).
    """
    fn = ADVANTAGES.get(name)
    check_1d("rewards", rewards)
    check_finite("rewards", rewards)
    check_1d("group_ids", group_ids, rewards.shape[0])
    if group_ids.is_floating_point() or group_ids.dtype == torch.bool:
        raise TypeError(f"group_ids must be an integer tensor, got {group_ids.dtype}")
    inputs = {k: params.pop(k) for k in ("acc", "values", "mask", "token_rewards") if k in params}
    if inputs.get("acc") is not None:
        check_bool("acc", inputs["acc"])
        check_1d("acc", inputs["acc"], rewards.shape[0])
    check_knobs(ADVANTAGES, name, params)
    return fn(rewards, group_ids, **inputs, **params)
