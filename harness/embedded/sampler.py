"""KV-cached batched sampling and log-probs for TinyGPT, in micro-batches.

Every random draw takes an explicit torch.Generator, so a sample depends only on (weights, prompts,
generator seed): the basis of reproducible and exactly resumable runs.

Temperature and top-p. The sampler draws token t from softmax(filter_top_p(logits / T)). The trainer's
log-probs (old, new, reference) and entropy come from `sequence_forward(..., temperature=T)`, i.e.
from softmax(logits / T): the policy that was sampled, as verl does (its actor divides the logits by
the rollout temperature before log_softmax, for the old, new and reference log-probs and the entropy).
Top-p is *not* applied there, as in verl: the nucleus is a sampling-side truncation, not part of the
policy being optimised. For a sampled token (always inside the nucleus) the two differ by the log of
the nucleus mass: log pi_sampled = log pi_T - log(nucleus mass) >= log pi_T, with equality at
top_p = 1 (`Rollout.logprobs` records the sampled distribution's log-probs, so the gap is measurable).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.embedded.model import CharTokenizer, TinyGPT
from algorithms.losses import entropy_from_logits


@dataclass
class Rollout:
    """Sampled completions. prompt_ids [B, P] left-padded; completion_ids [B, T] right-padded (EOS kept)."""

    prompt_ids: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor  # [B, T] 1 for generated tokens up to and including EOS
    texts: list[str]
    lengths: torch.Tensor  # [B] generated tokens incl. EOS
    truncated: torch.Tensor  # [B] bool: hit max_new_tokens without EOS
    logprobs: (
        torch.Tensor
    )  # [B, T] log-prob of each token under the distribution it was drawn from (0 past EOS; 0 when greedy)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    cum = probs.cumsum(-1)
    remove = cum - probs > top_p  # keep the smallest set whose mass reaches top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)


@torch.no_grad()
def _sample_chunk(
    model: TinyGPT,
    tok: CharTokenizer,
    prompt_ids: torch.Tensor,
    max_new: int,
    temperature: float,
    top_p: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (completion ids [B, max_new], their log-probs under the sampling distribution [B, max_new])."""
    B, P = prompt_ids.shape
    cache = model.new_cache(B, P + max_new)
    logits = model(prompt_ids, prompt_ids != tok.PAD, cache)[:, -1]
    out = torch.full((B, max_new), tok.PAD, dtype=torch.long)
    out_lp = torch.zeros(B, max_new)
    done = torch.zeros(B, dtype=torch.bool)
    for t in range(max_new):
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            logp = torch.log_softmax(_top_p_filter(logits.float() / temperature, top_p), dim=-1)
            nxt = torch.multinomial(logp.exp(), 1, generator=gen).squeeze(-1)
            out_lp[:, t] = torch.where(done, 0.0, logp.gather(-1, nxt[:, None]).squeeze(-1))
        nxt = torch.where(done, torch.full_like(nxt, tok.PAD), nxt)
        out[:, t] = nxt
        done = done | (nxt == tok.EOS)
        if bool(done.all()) or t == max_new - 1:
            break
        logits = model(nxt[:, None], ~done[:, None] | (nxt[:, None] == tok.EOS), cache)[:, -1]
    return out, out_lp


def sample(
    model: TinyGPT, tok: CharTokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
    top_p: float = 1.0, seed: int = 0, chunk: int = 256,
) -> Rollout:
    """Sample one completion per prompt (repeat prompts for G samples), in chunks of `chunk` sequences.

    Decoding steps process one token per sequence, so chunks of 256 are stable and ~25% faster than
    64 here (benchmarks/local_step.py); full-sequence training forwards use smaller chunks.
    """
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    prompt_ids, _ = tok.encode_prompts(prompts)
    pieces = [
        _sample_chunk(model, tok, prompt_ids[i : i + chunk], max_new_tokens, temperature, top_p, gen)
        for i in range(0, len(prompts), chunk)
    ]
    comp = torch.cat([c for c, _ in pieces])
    comp_lp = torch.cat([lp for _, lp in pieces])
    is_eos = comp == tok.EOS
    has_eos = is_eos.any(-1)
    first_eos = torch.where(
        has_eos, is_eos.float().argmax(-1), torch.full_like(has_eos, max_new_tokens, dtype=torch.long)
    )
    lengths = torch.where(has_eos, first_eos + 1, torch.full_like(first_eos, max_new_tokens))
    mask = torch.arange(max_new_tokens)[None, :] < lengths[:, None]
    texts = [tok.decode(row.tolist()) for row in comp]
    return Rollout(prompt_ids, comp, mask, texts, lengths, ~has_eos, comp_lp * mask)


def sequence_forward(
    model: TinyGPT,
    tok: CharTokenizer,
    prompt_ids: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    with_entropy: bool = False,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs [B, T] of the completion (and entropies [B, T]); values [B, T] for a value model.

    Position P-1+t predicts completion token t, i.e. the state before emitting it. Log-probs and
    entropy are those of softmax(logits / temperature): pass the rollout temperature so they belong
    to the policy that was sampled (top-p is not applied; see the module docstring).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 for log-probs, got {temperature}")
    P = prompt_ids.shape[1]
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    valid = torch.cat([prompt_ids != tok.PAD, completion_mask.bool()], dim=1)
    out = model(ids, valid)[:, P - 1 : -1]
    if out.ndim == 2:  # value head
        return out, None
    logits = out.float() / temperature if temperature != 1.0 else out.float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, completion_ids[..., None]).squeeze(-1)
    ent = entropy_from_logits(logits) if with_entropy else None
    return logp, ent


@torch.no_grad()
def chunked_forward(
    model, tok, prompt_ids, completion_ids, completion_mask, chunk: int = 64, temperature: float = 1.0
) -> torch.Tensor:
    """sequence_forward without grad, in micro-batches; returns log-probs at `temperature` (or values) [B, T]."""
    model.eval()
    parts = [
        sequence_forward(
            model,
            tok,
            prompt_ids[i : i + chunk],
            completion_ids[i : i + chunk],
            completion_mask[i : i + chunk],
            temperature=temperature,
        )[0]
        for i in range(0, prompt_ids.shape[0], chunk)
    ]
    return torch.cat(parts)
