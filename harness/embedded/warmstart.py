"""Supervised warm start on task solutions (optionally with a systematic misconception), cached on disk.

The cache key is (task, model, warm-start settings and seed, the inputs of the model's length, the
hash of the held-out prompts its data excluded, and the code id of the source that trains it,
harness.core.provenance.source_hash: a warm start built by other code is never reused); the file
records the held-out hash too and is trained again when it does not match, so no held-out problem is
ever in warm-start data, whatever the cache holds. Training problems exclude the held-out prompts when they are drawn (common.train_problems).

Every run of an experiment with the same seed starts from the identical policy, and the warm start
is paid once: the runner builds the missing ones before launching RL runs.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from harness.embedded import common
from harness.embedded.sampler import sequence_forward
from harness.config.experiment import canonical_hash
from harness.config.runspec import RunSpec
from harness.core import provenance
from harness.tasks import modchain


def heldout_digest(spec: RunSpec) -> str:
    """sha256 of the spec's held-out prompts (sorted): what warm-start data must exclude."""
    return hashlib.sha256("\n".join(sorted(common.heldout_prompts(spec))).encode()).hexdigest()[:16]


def warm_start_key(spec: RunSpec) -> str:
    """Cache key: everything the warm start depends on, the exact held-out set it excluded included."""
    keyed = {k: getattr(spec, k).model_dump() for k in ("task", "model", "warm_start")}
    keyed["max_len_inputs"] = (
        spec.train.max_new_tokens,
        sorted((n, b.max_ops) for n, b in spec.eval.benchmarks.items()),
    )
    keyed["heldout_sha256"] = heldout_digest(spec)
    keyed["code"] = provenance.source_hash()
    return canonical_hash(keyed, 16)


def warm_start_path(spec: RunSpec, cache_dir: Path) -> Path:
    return Path(cache_dir) / "warmstart" / f"{warm_start_key(spec)}.pt"


def warm_start_ready(spec: RunSpec, cache_dir: Path) -> bool:
    """Whether the cache holds this spec's warm start, recording that its data excluded exactly this
    spec's held-out prompts (a file without that record, e.g. an older version's, is not ready)."""
    path = warm_start_path(spec, cache_dir)
    if not path.exists():
        return False
    return _excluded_heldout(common.load_checkpoint(path), spec)


def _excluded_heldout(saved: dict, spec: RunSpec) -> bool:
    """Whether a saved warm start records excluding exactly this spec's held-out prompts."""
    return "heldout_sha256" in saved and saved["heldout_sha256"] == heldout_digest(spec)


def train_warm_start(spec: RunSpec, progress=None) -> dict:
    """Teacher-forced cross-entropy on completions of random problems; returns the state dict."""
    ws = spec.warm_start
    seed = ws.seed
    torch.manual_seed(common.derive_seed("warm-init", seed))
    model = common.build_model(spec)
    tok = common.tokenizer()
    opt = torch.optim.AdamW(model.parameters(), lr=ws.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(1, ws.steps))
    )
    model.train()
    for step in range(ws.steps):
        probs = common.train_problems(spec, ws.batch_size, ws.min_ops, ws.max_ops, "warm", seed, step)
        prompt_ids, _ = tok.encode_prompts([p.prompt for p in probs])
        comp = tok.encode_completions(
            modchain.slipped_solutions(probs, common.rng("slip", seed, step), ws.misconception)
        )
        mask = comp != tok.PAD
        logp, _ = sequence_forward(model, tok, prompt_ids, comp, mask)
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, ws.steps, {"loss": loss.item()})
    return model.state_dict()


def ensure_warm_start(spec: RunSpec, cache_dir: Path, progress=None) -> Path:
    """Path of the cached warm start for this spec, training (and caching) it first if missing."""
    path = warm_start_path(spec, cache_dir)
    # whatever the cache holds (an older version's file, a copied cache): a file that does not record
    # the held-out set its data excluded, or records another, is trained again
    if not warm_start_ready(spec, cache_dir):
        common.pin_threads(spec.train.threads)
        t0 = time.perf_counter()
        state = train_warm_start(spec, progress)
        common.atomic_torch_save(
            {
                "state_dict": state,
                "seconds": time.perf_counter() - t0,
                "key": warm_start_key(spec),
                "heldout_sha256": heldout_digest(spec),
            },
            path,
        )
    return path


def load_warm_start(spec: RunSpec, cache_dir: Path) -> dict:
    """The cached warm start's weights; CheckpointError if its data did not exclude this spec's held-out sets."""
    path = warm_start_path(spec, cache_dir)
    saved = common.load_checkpoint(path)
    if not _excluded_heldout(saved, spec):
        raise common.CheckpointError(
            f"{path}: this warm start does not record excluding the held-out problems of "
            f"{spec.experiment} (delete it; the next run trains it again)"
        )
    return saved["state_dict"]


def warm_start_record(spec: RunSpec, cache_dir: Path) -> dict:
    """{"warm_start": {key, sha256 of its weights}} for a run's provenance ({} when not built yet)."""
    path = warm_start_path(spec, cache_dir)
    if not path.exists():
        return {}
    saved = common.load_checkpoint(path)
    return {"warm_start": {"key": warm_start_key(spec), "sha256": provenance.state_dict_sha256(saved["state_dict"])}}


def warm_policy(spec: RunSpec, cache_dir: Path, progress=None):
    """The spec's policy model holding its warm start (built and cached first if needed)."""
    ensure_warm_start(spec, Path(cache_dir), progress=progress)
    model = common.build_model(spec)
    model.load_state_dict(load_warm_start(spec, Path(cache_dir)))
    return model
