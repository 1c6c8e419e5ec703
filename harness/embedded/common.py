"""Shared helpers of the embedded model: seeding, tokenizer/model construction, task sets, checkpoints."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from harness.core.errors import UserError
from harness.embedded.model import CharTokenizer, ModelConfig, TinyGPT
from harness.config.runspec import RunSpec
from harness.tasks import modchain


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across processes and Python versions)."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


def tokenizer() -> CharTokenizer:
    return CharTokenizer(modchain.VOCAB)


def build_model(spec: RunSpec, value_head: bool = False) -> TinyGPT:
    m = spec.model
    max_len = spec.task.max_ops * 4 + 8 + spec.train.max_new_tokens
    for b in spec.eval.benchmarks.values():
        max_len = max(max_len, b.max_ops * 4 + 8 + spec.train.max_new_tokens)
    cfg = ModelConfig(
        vocab_size=tokenizer().vocab_size,
        n_layer=m.n_layer,
        n_head=m.n_head,
        d_model=m.d_model,
        max_len=max_len,
    )
    return TinyGPT(cfg, value_head=value_head)


def pin_threads(n: int) -> None:
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


@lru_cache(maxsize=32)
def _heldout(
    eval_seed: int, name: str, min_ops: int, max_ops: int, problems: int
) -> tuple[modchain.Problem, ...]:
    r = rng("heldout", eval_seed, name)
    seen: dict[str, modchain.Problem] = {}
    while len(seen) < problems:
        for p in modchain.sample_problems(r, problems, min_ops, max_ops):
            if len(seen) < problems:
                seen.setdefault(p.prompt, p)
    return tuple(seen.values())


def heldout_sets(spec: RunSpec) -> dict[str, list[modchain.Problem]]:
    """Held-out benchmarks, fixed by eval.seed (identical for every run of every experiment with that seed)."""
    ev = spec.eval
    return {
        name: list(_heldout(ev.seed, name, b.min_ops, b.max_ops, b.problems))
        for name, b in sorted(ev.benchmarks.items())
    }


def heldout_prompts(spec: RunSpec) -> frozenset[str]:
    return frozenset(p.prompt for ps in heldout_sets(spec).values() for p in ps)


def train_problems(
    spec: RunSpec, n: int, min_ops: int, max_ops: int, *seed_parts: object
) -> list[modchain.Problem]:
    """n training problems, disjoint from every held-out set, fixed by seed_parts."""
    exclude = heldout_prompts(spec)
    r = rng("train", *seed_parts)
    out: list[modchain.Problem] = []
    while len(out) < n:
        out.extend(p for p in modchain.sample_problems(r, n, min_ops, max_ops) if p.prompt not in exclude)
    return out[:n]


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded safely; the message names the file."""


def load_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary pickled code
    (a results folder may come from someone else). Anything else -> CheckpointError naming the file."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load: it holds more than tensors and plain containers, which could run code "
            f"when loaded ({first}); only load checkpoints written by this harness, or delete it to start the run over"
        ) from None


def atomic_torch_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
