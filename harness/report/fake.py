"""Fake but realistic results folders, for developing and testing reports without training anything.

Each benchmark has problems with a latent difficulty; each variant has a skill that grows with the
training step and a "sharpness" (how much RL concentrates mass on already-solved problems). Sharpening
raises pass@1 but lowers pass@k at large k, so the curves cross as in the papers. Files are written with
the harness.core.results writers, in exactly the layout a training backend produces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness.core import provenance
from harness.core.results import atomic_write_text, write_samples, write_spec, write_status

# variant -> (skill gain per unit of training, sharpening per unit of training, preset)
_PROFILES: dict[str, tuple[float, float, str]] = {
    "ppo": (0.9, 1.2, "ppo"),
    "grpo": (1.1, 1.4, "grpo"),
    "dapo": (1.3, 1.0, "dapo"),
    "psr_nsr": (0.9, 0.4, "psr_nsr"),
    "ngrpo": (1.4, 0.6, "ngrpo"),
    "ngrpo_no_virtual": (1.1, 1.1, "ngrpo"),
}
DEFAULT_VARIANTS = ("grpo", "dapo", "ngrpo")
DEFAULT_BENCHMARKS = ("math500", "aime25")
_BENCH_OFFSET = {"math500": -0.5, "amc23": 0.5, "aime25": 1.8}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _profile(variant: str) -> tuple[float, float, str]:
    if variant in _PROFILES:
        return _PROFILES[variant]
    h = sum(map(ord, variant))  # unknown variant: a deterministic profile of its own
    return 0.8 + (h % 7) / 10, 0.5 + (h % 5) / 5, variant.split("_")[0]


def eval_steps(steps: int, eval_every: int) -> list[int]:
    return sorted({0, *range(eval_every, steps + 1, eval_every), steps})


def _spec(experiment: str, variant: str, seed: int, run_id: str, steps: int, eval_every: int,
          benchmarks: Sequence[str], n_samples: int, preset: str) -> dict:
    return {
        "experiment": experiment, "variant": variant, "seed": seed, "run_id": run_id,
        "backend": "fake", "preset": preset,
        "knobs": {"eps_low": 0.2, "eps_high": 0.28 if preset in ("dapo", "ngrpo") else 0.2,
                  "virtual_reward": preset == "ngrpo" and "no_virtual" not in variant},
        "task": {"name": "synthetic_arith", "difficulty": 3},
        "model": {"name": "tiny-transformer", "d_model": 64},
        "train": {"steps": steps, "group_size": 8, "lr": 1e-6, "batch_prompts": 16},
        "eval": {"every": eval_every, "benchmarks": list(benchmarks), "n_samples": n_samples,
                 "temperature": 0.6, "top_p": 0.95},
    }


def _train_records(
    rng: np.random.Generator, steps: int, gain: float, sharp: float, preset: str
) -> list[dict]:
    recs = []
    for s in range(1, steps + 1):
        t = s / steps
        acc = float(np.clip(_sigmoid(-0.5 + 2.0 * gain * t) + rng.normal(0, 0.03), 0, 1))
        all_correct = float(np.clip(acc**8 * 3 + rng.normal(0, 0.01), 0, 1))
        all_wrong = float(np.clip((1 - acc) ** 8 * 3 + rng.normal(0, 0.01), 0, 1 - all_correct))
        rec = {
            "kind": "train",
            "step": s,
            "train/reward": acc,
            "train/acc": acc,
            "train/response_length": float(120 + 60 * t * sharp + rng.normal(0, 5)),
            "groups/all_correct_frac": all_correct,
            "groups/all_wrong_frac": all_wrong,
            "groups/mixed_frac": 1.0 - all_correct - all_wrong,
            "groups/kept": int(16 * (1 - all_correct)),
            "groups/sample_rounds": 1,
            "actor/clipfrac_low": float(abs(rng.normal(0.01, 0.003))),
            "actor/clipfrac_high": float(abs(rng.normal(0.02 / (1 + (preset in ("dapo", "ngrpo"))), 0.004))),
            "actor/ppo_kl": float(abs(1e-3 * (1 + t * sharp) + rng.normal(0, 2e-4))),
            "actor/entropy": float(max(0.05, 1.2 * np.exp(-sharp * 1.5 * t) + rng.normal(0, 0.02))),
            "actor/grad_norm": float(abs(rng.normal(0.5, 0.1))),
            "actor/pg_loss": float(rng.normal(0, 0.05)),
            "time/sample_s": float(abs(rng.normal(1.0, 0.1))),
            "time/train_s": float(abs(rng.normal(0.5, 0.05))),
        }
        if preset == "ppo":
            rec["critic/value_loss"] = float(abs(rng.normal(0.1 * (1 - t) + 0.02, 0.01)))
        recs.append(rec)
    return recs


def _samples(rng: np.random.Generator, step_frac: float, gain: float, sharp: float,
             difficulty: dict[str, np.ndarray], n_samples: int) -> tuple[pd.DataFrame, dict]:
    frames, summary = [], {}
    for bench, diff in difficulty.items():
        skill = -0.8 + gain * 1.2 * step_frac
        slope = 1.0 + sharp * 2.5 * step_frac  # sharpening: confident where easy, hopeless where hard
        p = _sigmoid(slope * (skill - diff))
        n_p = diff.size
        correct = rng.random((n_p, n_samples)) < p[:, None]
        length = rng.integers(40, 400, size=(n_p, n_samples)).astype(np.int32)
        truncated = length > 380
        frames.append(pd.DataFrame({
            "benchmark": bench,
            "problem_id": np.repeat([f"{bench}-{i:04d}" for i in range(n_p)], n_samples),
            "sample_idx": np.tile(np.arange(n_samples, dtype=np.int32), n_p),
            "correct": correct.ravel(), "length": length.ravel(), "truncated": truncated.ravel(),
        }))
        summary[bench] = float(correct.mean())
    return pd.concat(frames, ignore_index=True), summary


def make_fake_results(
    root: str | Path,
    experiment: str = "fake",
    variants: Sequence[str] = DEFAULT_VARIANTS,
    seeds: int = 3,
    steps: int = 20,
    benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
    n_problems: int = 40,
    n_samples: int = 16,
    seed: int = 0,
    eval_every: int | None = None,
    running: int = 0,
    failed: int = 0,
) -> list[Path]:
    """Write variants x seeds run folders under root/experiment/ and return them.

    `running` / `failed` runs (taken from the last variant's seeds, after the finished ones) stop
    half-way: a running run has status "running" and its evaluations so far; a failed run has status
    "failed" with an error message. Problems' difficulties are shared by every run (same benchmark).
    """
    root = Path(root)
    eval_every = eval_every or max(1, steps // 4)
    evals = eval_steps(steps, eval_every)
    drng = np.random.default_rng(seed)
    difficulty = {b: drng.normal(_BENCH_OFFSET.get(b, 0.0), 1.5, size=n_problems) for b in benchmarks}
    plan = [(v, s) for v in variants for s in range(seeds)]
    extra_states = ["running"] * running + ["failed"] * failed
    plan += [(variants[-1], seeds + i) for i in range(len(extra_states))]
    dirs = []
    for idx, (variant, run_seed) in enumerate(plan):
        state = "done" if idx < len(variants) * seeds else extra_states[idx - len(variants) * seeds]
        gain, sharp, preset = _profile(variant)
        run_id = f"{variant}-s{run_seed}"
        run_dir = root / experiment / run_id
        rng = np.random.default_rng([seed, idx])
        gain = gain * float(rng.normal(1.0, 0.06))  # seed-to-seed variation
        last = steps if state == "done" else steps // 2
        write_spec(
            run_dir,
            _spec(experiment, variant, run_seed, run_id, steps, eval_every, benchmarks, n_samples, preset),
        )
        records = [r for r in _train_records(rng, steps, gain, sharp, preset) if r["step"] <= last]
        frames = []
        for st in (e for e in evals if e <= last):
            df, summary = _samples(rng, st / steps, gain, sharp, difficulty, n_samples)
            df.insert(0, "step", st)
            frames.append(df)
            rec = {"kind": "eval", "step": st}
            rec.update({f"eval/{b}/pass@1": v for b, v in summary.items()})
            records.append(rec)
        records.sort(key=lambda r: (r["step"], r["kind"] == "train"))
        atomic_write_text(
            run_dir / "metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        )
        write_samples(run_dir, pd.concat(frames, ignore_index=True))
        made_by = {"provenance": provenance.fingerprint()}  # fake numbers, but made by this code
        if state == "failed":
            write_status(run_dir, "failed", step=last, total_steps=steps,
                         error="RuntimeError: CUDA out of memory (fake failure)", **made_by)
        else:
            write_status(run_dir, state, step=last, total_steps=steps, error=None, **made_by)
        dirs.append(run_dir)
    return dirs
