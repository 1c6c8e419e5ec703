"""A small decoder-only transformer (nanoGPT-like) with a character tokenizer and a value head.

Sequences use one layout everywhere (sampling, log-probs, training):
    [PAD .. PAD, BOS, prompt tokens] [completion tokens, EOS, PAD ..]
     left-padded to P                right-padded to T
Positions count only non-pad tokens, so a prompt's encoding does not depend on its padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


class CharTokenizer:
    """Character-level tokenizer: PAD=0, BOS=1, EOS=2, then one id per character."""

    PAD, BOS, EOS = 0, 1, 2

    def __init__(self, chars: list[str]) -> None:
        self.chars = list(chars)
        self.stoi = {c: i + 3 for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars) + 3

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the tokenizer's vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            if i == self.EOS:
                break
            if i >= 3:
                out.append(self.chars[i - 3])
        return "".join(out)

    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded [B, P] ids (BOS first) and their validity mask."""
        seqs = [[self.BOS] + self.encode(p) for p in prompts]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), self.PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
        return ids, ids != self.PAD

    def encode_completions(self, completions: list[str], width: int | None = None) -> torch.Tensor:
        """Right-padded [B, T] completion ids, each ending with EOS."""
        seqs = [self.encode(c) + [self.EOS] for c in completions]
        width = width or max(map(len, seqs))
        ids = torch.full((len(seqs), width), self.PAD, dtype=torch.long)
        for i, s in enumerate(seqs):
            s = s[:width]
            ids[i, : len(s)] = torch.tensor(s)
        return ids


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    max_len: int = 64


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor, cache: dict | None, layer: int
    ) -> torch.Tensor:
        """x [B, S, D]; attn_mask [B, 1, S, S_total] bool (True = attend); cache holds k/v [B, H, S_total, Dh]."""
        B, S, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, S, self.n_head, D // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            pos = cache["len"]
            cache["k"][layer][:, :, pos : pos + S] = k
            cache["v"][layer][:, :, pos : pos + S] = v
            k = cache["k"][layer][:, :, : pos + S]
            v = cache["v"][layer][:, :, : pos + S]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.proj(y.transpose(1, 2).reshape(B, S, D))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Decoder-only transformer; `value_head=True` adds a scalar head (the PPO critic)."""

    def __init__(self, cfg: ModelConfig, value_head: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, 1 if value_head else cfg.vocab_size, bias=value_head)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids: torch.Tensor, valid: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """ids, valid [B, S] -> logits [B, S, V] (or values [B, S] with a value head).

        Without a cache: full causal attention over valid keys. With a cache: `ids` are the next S
        tokens; cache["valid"] [B, S_max] tracks valid keys and cache["len"] the filled length.
        """
        B, S = ids.shape
        if cache is None:
            key_valid = valid
            positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
            causal = torch.ones(S, S, dtype=torch.bool).tril()
            offset = 0
        else:
            offset = cache["len"]
            cache["valid"][:, offset : offset + S] = valid
            key_valid = cache["valid"][:, : offset + S]
            positions = cache["npos"][:, None] + (valid.long().cumsum(-1) - 1).clamp(min=0)
            causal = torch.ones(S, offset + S, dtype=torch.bool).tril(diagonal=offset) if S > 1 else None
        if cache is not None and S == 1:  # decode step: attend to every valid cached key, and to itself
            attn = key_valid.clone()
            attn[:, -1] = True
            attn = attn[:, None, None, :]
        else:
            attn = causal[None, None] & key_valid[:, None, None, :]
            # a fully padded query row would attend to nothing (NaN): let it see itself
            attn = attn | (torch.arange(offset + S)[None, :] == offset + torch.arange(S)[:, None])[None, None]
        x = self.tok(ids) + self.pos(positions.clamp(max=self.cfg.max_len - 1))
        for i, block in enumerate(self.blocks):
            x = block(x, attn, cache, i)
        if cache is not None:
            cache["len"] += S
            cache["npos"] = cache["npos"] + valid.long().sum(-1)
        out = self.head(self.ln_f(x))
        return out.squeeze(-1) if out.shape[-1] == 1 and self.head.bias is not None else out

    def new_cache(self, batch: int, max_total: int) -> dict:
        H, Dh = self.cfg.n_head, self.cfg.d_model // self.cfg.n_head
        shape = (batch, H, max_total, Dh)
        return {
            "k": [torch.empty(shape) for _ in self.blocks], "v": [torch.empty(shape) for _ in self.blocks],
            "valid": torch.zeros(batch, max_total, dtype=torch.bool), "len": 0,
            "npos": torch.zeros(batch, dtype=torch.long),
        }
