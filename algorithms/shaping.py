"""Reward shapers: change the float reward, never the boolean acc.

Signature: fn(rewards [N], lengths [N], generation_limit: int, *, knobs) -> shaped rewards [N].
"""

from __future__ import annotations

import torch

from algorithms._checks import check_1d, check_finite
from algorithms.registry import register_reward_shaper


@register_reward_shaper("none")
def no_shaping(rewards: torch.Tensor, lengths: torch.Tensor, generation_limit: int) -> torch.Tensor:
    """Rewards unchanged."""
    return rewards


def overlong_penalty_values(lengths: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO soft overlong punishment: 0 if len <= max_len - cache_len; ((max_len - cache_len) - len) / cache_len
    inside the buffer; -1 beyond max_len. lengths [N] -> penalties [N] in [-1, 0]."""
    if cache_len <= 0 or cache_len > max_len:
        raise ValueError(
            f"overlong: need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}"
        )
    lengths = lengths.to(torch.float64)
    start = max_len - cache_len
    pen = ((start - lengths) / cache_len).clamp(max=0.0)
    return torch.where(lengths > max_len, torch.full_like(pen, -1.0), pen)


@register_reward_shaper("overlong")
def overlong(
    rewards: torch.Tensor, lengths: torch.Tensor, generation_limit: int, *,
    max_len: int | None = None, cache_len: int | None = None,
) -> torch.Tensor:
    """DAPO soft overlong punishment (arXiv 2503.14476, L_max 20480 / L_cache 4096 in the paper).

    max_len defaults to the generation limit, cache_len to a fifth of max_len (the paper's ratio).
    """
    check_1d("rewards", rewards)
    check_finite("rewards", rewards)
    check_1d("lengths", lengths, rewards.shape[0])
    L = int(max_len if max_len is not None else generation_limit)
    cache = int(cache_len if cache_len is not None else max(1, L // 5))
    return rewards + overlong_penalty_values(lengths, L, cache).to(rewards.dtype)
