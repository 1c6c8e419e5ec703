"""One training batch from repeated sampling rounds, the same loop for every backend.

    while fewer than B groups are kept and fewer than train.max_sample_rounds rounds were drawn:
        round r = sample B prompts x G responses, grade, shape, filter whole groups   (the backend's)
        keep its first kept groups, up to B in all

Metrics: the outcome fractions and train/* means of round 0 (fresh prompts, before any filtering, so
they compare across algorithms), then groups/kept, groups/sample_rounds and train/sample_rounds_capped
(1.0 when the round cap stopped the loop short of B groups; capped_warning() at the end of a run says
when more than 5% of its steps were), and what the step generated over all its rounds:
budget/step_rollouts and budget/step_tokens (harness.backends.budget sums them and stops on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

import torch

from algorithms.filters import group_outcomes
from harness.backends.budget import STEP_ROLLOUTS, STEP_TOKENS
from harness.core import results

Part = TypeVar("Part")
CAPPED = "train/sample_rounds_capped"
CAPPED_WARN_FRACTION = 0.05


@dataclass(frozen=True)
class Round(Generic[Part]):
    """One graded, shaped and filtered sampling round of N = B x G responses; group g is rows g*G..g*G+G-1."""

    acc: torch.Tensor  # [N] bool, correctness (never the shaped reward)
    reward: torch.Tensor  # [N] float, the (shaped) training reward
    group_ids: torch.Tensor  # [N] int
    lengths: torch.Tensor  # [N] response lengths in tokens
    truncated: torch.Tensor  # [N] bool, hit the generation limit
    keep: torch.Tensor  # [N] bool, the group filter's verdict (whole groups)
    select: Callable[[torch.Tensor], Part]  # rows idx [n] -> the backend's kept part


def first_round_metrics(r: Round) -> dict[str, float]:
    """Outcome fractions (groups/*) and train/ means of one round."""
    out = {f"groups/{k}": v for k, v in group_outcomes(r.acc, r.group_ids).items()}
    out["train/acc"] = r.acc.float().mean().item()
    out["train/reward"] = r.reward.float().mean().item()
    out["train/response_length"] = r.lengths.float().mean().item()
    out["train/truncated_frac"] = r.truncated.float().mean().item()
    return out


def collect_groups(
    sample_round: Callable[[int], Round[Part]], groups: int, group_size: int, max_rounds: int,
) -> tuple[list[Part], dict[str, float]]:
    """Call sample_round(0), sample_round(1), ... until `groups` groups are kept or max_rounds rounds were
    drawn -> (the kept parts in order, at most `groups` groups in all; metrics, see the module docstring)."""
    kept: list[Part] = []
    n_kept, rounds, metrics, rollouts, tokens = 0, 0, {}, 0, 0
    while n_kept < groups and rounds < max_rounds:
        r = sample_round(rounds)
        rollouts += r.lengths.numel()
        tokens += int(r.lengths.sum().item())
        if rounds == 0:
            metrics.update(first_round_metrics(r))
        idx = r.keep.nonzero().squeeze(-1)[: (groups - n_kept) * group_size]
        if idx.numel():
            kept.append(r.select(idx))
            n_kept += idx.numel() // group_size
        rounds += 1
    metrics["groups/kept"] = n_kept
    metrics["groups/sample_rounds"] = rounds
    metrics[CAPPED] = float(n_kept < groups)
    metrics[STEP_ROLLOUTS], metrics[STEP_TOKENS] = rollouts, tokens
    return kept, metrics


def mini_batch_rows(n_groups: int, group_size: int, mini_batches: int, seed: int) -> list[torch.Tensor]:
    """The rows of each optimizer step of one epoch: the groups shuffled (seeded), split into
    min(mini_batches, n_groups) near-equal runs of whole groups (7 groups, 2 mini-batches: 4 + 3).
    The one rule for a partial batch on every backend."""
    order = torch.randperm(n_groups, generator=torch.Generator().manual_seed(seed))
    return [(groups[:, None] * group_size + torch.arange(group_size)).reshape(-1)
            for groups in torch.tensor_split(order, min(mini_batches, n_groups))]


def capped_warning(run_dir: Path, max_rounds: int) -> str | None:
    """A warning when more than 5% of a run's steps hit the sampling-round cap (their batches were partial:
    verl's cluster mode refills without a cap, so such a run is not quite the same recipe); else None."""
    flags = [r[CAPPED] for r in results.read_metrics_records(run_dir) if CAPPED in r]
    if not flags or sum(flags) <= CAPPED_WARN_FRACTION * len(flags):
        return None
    return (f"{int(sum(flags))} of {len(flags)} steps ({sum(flags) / len(flags):.0%}) hit train.max_sample_rounds = "
            f"{max_rounds} before the batch was full, so they trained on partial batches (verl's cluster mode "
            "refills without a cap): raise train.max_sample_rounds for the same recipe")
