"""Collect one training batch: sample B prompts x G responses, grade, shape, filter groups, re-sample.

Round r of step s always draws the same prompts for a given seed (whatever the algorithm), so every
variant sees the same prompts in the same order; only filtered variants draw extra rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial

import torch

import algorithms
from harness.backends.batching import Round, collect_groups
from harness.config.runspec import AlgorithmSpec, RunSpec
from harness.embedded import common
from harness.embedded.sampler import Rollout, sample
from harness.tasks import modchain


@dataclass
class Batch:
    """A filtered training batch of n_groups x G responses."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    completion_ids: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T] float
    acc: torch.Tensor  # [N] bool
    reward: torch.Tensor  # [N] float (shaped)
    group_ids: torch.Tensor  # [N] long
    lengths: torch.Tensor  # [N]
    truncated: torch.Tensor  # [N] bool
    sample_logp: torch.Tensor  # [N, T] log-probs under the distribution sampled (temperature + top-p)

    @property
    def size(self) -> int:
        return self.acc.shape[0]


_FIELDS = tuple(f.name for f in fields(Batch))  # prompt_ids first (it needs padding to concatenate)


def _left_pad(ids: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    if ids.shape[1] == width:
        return ids
    return torch.cat([torch.full((ids.shape[0], width - ids.shape[1]), pad, dtype=ids.dtype), ids], dim=1)


def _concat(parts: list[Batch], pad: int) -> Batch:
    width = max(p.prompt_ids.shape[1] for p in parts)
    return Batch(
        torch.cat([_left_pad(p.prompt_ids, width, pad) for p in parts]),
        *(torch.cat([getattr(p, f) for p in parts]) for f in _FIELDS[1:]),
    )


def _select(b: Batch, keep: torch.Tensor) -> Batch:
    return Batch(*(getattr(b, f)[keep] for f in _FIELDS))


def collect_batch(
    policy, spec: RunSpec, preset: algorithms.Preset | AlgorithmSpec, step: int
) -> tuple[Batch | None, dict]:
    """Sample, grade, shape and filter until B groups are kept or max_sample_rounds is reached
    (harness.backends.batching.collect_groups).

    Returns (batch or None when no group survived, metrics). Outcome fractions are those of the
    first round (fresh prompts, before any filtering), so they compare across algorithms.
    """
    tr, seed, tok = spec.train, spec.seed, common.tokenizer()
    B, G = tr.prompts_per_step, tr.group_size
    shaper = algorithms.REWARD_SHAPERS.get(preset.pieces["reward_shaper"])
    shaper_knobs = preset.piece_knobs("reward_shaper")

    def sample_round(rounds: int) -> Round[Batch]:
        lo, hi = spec.task.min_ops, spec.task.max_ops
        problems = common.train_problems(spec, B, lo, hi, seed, step, rounds)
        rep = [p for p in problems for _ in range(G)]
        roll: Rollout = sample(
            policy, tok, [p.prompt for p in rep], max_new_tokens=tr.max_new_tokens,
            temperature=tr.temperature, top_p=tr.top_p,
            seed=common.derive_seed("rollout", seed, step, rounds),
        )
        acc = torch.from_numpy(modchain.grade(roll.texts, rep, spec.task.grader))
        reward = shaper(acc.float(), roll.lengths, tr.max_new_tokens, **shaper_knobs).float()
        gid = torch.arange(B).repeat_interleave(G) + rounds * B
        batch = Batch(roll.prompt_ids, roll.completion_ids, roll.completion_mask.float(), acc, reward, gid,
                      roll.lengths, roll.truncated, roll.logprobs)
        keep = algorithms.apply_filter(preset.pieces["group_filter"], acc, gid)
        return Round(acc, reward, gid, roll.lengths, roll.truncated, keep, partial(_select, batch))

    kept, metrics = collect_groups(sample_round, B, G, tr.max_sample_rounds)
    return (_trim(_concat(kept, tok.PAD)) if kept else None), metrics


def _trim(b: Batch) -> Batch:
    """Drop completion columns past the longest response (pure padding: losses are unchanged)."""
    width = int(b.lengths.max())
    b.completion_ids, b.mask = b.completion_ids[:, :width], b.mask[:, :width]
    b.sample_logp = b.sample_logp[:, :width]
    return b
