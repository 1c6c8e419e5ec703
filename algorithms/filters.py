"""Group filters: which groups of G responses are kept for training, decided on `acc` (bool) only.

Never filter on the shaped reward: with an overlong penalty or +-1 rewards, "all rewards equal"
no longer means "all answers equal" (verl-recipe PR #125). acc [N] bool, group_ids [N] -> keep [N] bool.
"""

from __future__ import annotations

import torch

from algorithms._checks import check_1d, check_bool
from algorithms.advantages import group_index, segment_sum
from algorithms.registry import GROUP_FILTERS, register_group_filter


def group_correct_counts(
    acc: torch.Tensor, group_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index [N] into groups, correct count per group [G], group size [G])."""
    check_bool("acc", acc)
    check_1d("acc", acc)
    check_1d("group_ids", group_ids, acc.shape[0])
    index, sizes = group_index(group_ids)
    correct = segment_sum(acc.to(torch.int64), index, sizes.numel())
    return index, correct, sizes


def group_outcomes(acc: torch.Tensor, group_ids: torch.Tensor) -> dict[str, float]:
    """Fractions of groups that are all-correct, all-wrong and mixed (logged every step)."""
    _, correct, sizes = group_correct_counts(acc, group_ids)
    all_correct = (correct == sizes).float().mean().item()
    all_wrong = (correct == 0).float().mean().item()
    return {
        "all_correct_frac": all_correct,
        "all_wrong_frac": all_wrong,
        "mixed_frac": 1.0 - all_correct - all_wrong,
    }


@register_group_filter("keep_all")
def keep_all(acc: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Keep every group (GRPO, PPO, PSR-NSR)."""
    check_bool("acc", acc)
    return torch.ones_like(acc)


@register_group_filter("drop_all_correct")
def drop_all_correct(acc: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Drop groups where every response is correct (NGRPO's released recipe); keep all-wrong ones."""
    index, correct, sizes = group_correct_counts(acc, group_ids)
    return (correct != sizes)[index]


@register_group_filter("drop_all_wrong")
def drop_all_wrong(acc: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Drop groups where every response is wrong; keep all-correct ones (the mirror of drop_all_correct,
    for the homogeneous-groups experiment)."""
    index, correct, sizes = group_correct_counts(acc, group_ids)
    return (correct != 0)[index]


@register_group_filter("drop_homogeneous")
def drop_homogeneous(acc: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """DAPO dynamic sampling (arXiv 2503.14476): drop groups whose acc is all 0 or all 1."""
    index, correct, sizes = group_correct_counts(acc, group_ids)
    return ((correct != sizes) & (correct != 0))[index]


def apply_filter(name: str, acc: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Run the registered filter `name`: keep mask [N] bool (whole groups kept or dropped)."""
    return GROUP_FILTERS.get(name)(acc, group_ids)
