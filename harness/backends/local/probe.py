"""Gradient-dynamics probe on the embedded backend (`harness probe FILE`, config in harness/probe/probe.py).

From one policy state, take groups whose G sampled responses are all wrong, all correct or mixed;
for each group type and each algorithm, start from the identical state and apply K updates on that
fixed batch (the first is "one update"), measuring after every update:

    grad_norm       norm of the policy-gradient loss's gradient before the update
    update_norm     ||theta_k - theta_0||
    logp_wrong      mean sequence log-prob of the batch's sampled wrong responses (NaN if none)
    logp_correct    mean sequence log-prob of the reference solution of each prompt (teacher forced)
    entropy         mean token entropy along the batch's sampled responses
and, per group type, the cosine between algorithms' first gradients and between their K-update
displacements; after K updates, n samples per prompt at the eval temperature (pass@k on them).

The loss is the algorithm's policy-gradient term only (advantage piece + policy-loss piece on the
fixed batch, old log-probs from the starting state, so the clip can bind from the second update
on); the entropy bonus, the KL term and AdamW's weight decay are left out so that the measured
update is the advantage's alone (with them, "zero update" would never be zero). Rewards are the
binary correctness (no shaping); group filters do not apply (the probe picks the groups).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

import algorithms
from harness.embedded import common
from harness.embedded.sampler import sample, sequence_forward
from harness.config.runspec import RunSpec
from harness.core.errors import UserError
from harness.tasks import modchain

GROUP_TYPES = ("all_wrong", "all_correct", "mixed")


@dataclass
class ProbeBatch:
    """n groups x G responses of one group type. Tensors [N, ...] with N = n * G, groups contiguous."""

    problems: list[modchain.Problem]  # one per group
    prompt_ids: torch.Tensor  # [N, P]
    completion_ids: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T] float
    acc: torch.Tensor  # [N] bool
    group_ids: torch.Tensor  # [N]
    solution_ids: torch.Tensor  # [N/G, S] reference completions (with EOS), right-padded
    group_prompt_ids: torch.Tensor  # [N/G, P] one prompt row per group


def classify_groups(acc: torch.Tensor, group_size: int) -> np.ndarray:
    """acc [n*G] bool -> group type per group [n] ("all_wrong" | "all_correct" | "mixed")."""
    c = acc.view(-1, group_size).sum(-1)
    return np.where(c == 0, "all_wrong", np.where(c == group_size, "all_correct", "mixed"))


def find_groups(policy, spec: RunSpec, cfg: dict) -> tuple[dict[str, ProbeBatch], dict[str, int]]:
    """Sample cfg["candidates"] prompts x G at the rollout temperature; keep the first groups_per_type of each type."""
    tok, tr, G = common.tokenizer(), spec.train, spec.train.group_size
    problems = common.train_problems(
        spec, cfg["candidates"], cfg["min_ops"], cfg["max_ops"], "probe", cfg["seed"]
    )
    rep = [p for p in problems for _ in range(G)]
    roll = sample(
        policy,
        tok,
        [p.prompt for p in rep],
        max_new_tokens=tr.max_new_tokens,
        temperature=tr.temperature,
        top_p=tr.top_p,
        seed=common.derive_seed("probe-rollout", cfg["seed"]),
    )
    acc = torch.from_numpy(modchain.grade(roll.texts, rep, spec.task.grader))
    kinds = classify_groups(acc, G)
    found = {t: int((kinds == t).sum()) for t in GROUP_TYPES}
    short = {t: n for t, n in found.items() if n < cfg["groups_per_type"]}
    if short:
        raise UserError(
            f"probe: found {found} groups among {cfg['candidates']} candidate prompts, too few {sorted(short)} "
            f"(need groups_per_type = {cfg['groups_per_type']} each); raise `candidates` or change min_ops/max_ops"
        )
    out = {}
    for t in GROUP_TYPES:
        gids = np.flatnonzero(kinds == t)[: cfg["groups_per_type"]]
        rows = torch.from_numpy((gids[:, None] * G + np.arange(G)).reshape(-1))
        probs = [problems[g] for g in gids]
        width = int(roll.lengths[rows].max())
        sol = tok.encode_completions([p.solution for p in probs])
        gp, _ = tok.encode_prompts([p.prompt for p in probs])
        out[t] = ProbeBatch(
            probs,
            roll.prompt_ids[rows],
            roll.completion_ids[rows, :width],
            roll.completion_mask[rows, :width].float(),
            acc[rows],
            torch.arange(len(gids)).repeat_interleave(G),
            sol,
            gp,
        )
    return out, found


@torch.no_grad()
def measure(policy, b: ProbeBatch, temperature: float) -> dict[str, float]:
    """logp_wrong, logp_correct, entropy of the policy on batch b (sequence log-probs summed over tokens)."""
    policy.eval()
    tok = common.tokenizer()
    logp, ent = sequence_forward(
        policy, tok, b.prompt_ids, b.completion_ids, b.mask, with_entropy=True, temperature=temperature
    )
    seq = (logp * b.mask).sum(-1)
    wrong = ~b.acc
    sol_mask = (b.solution_ids != tok.PAD).float()
    sol_lp, _ = sequence_forward(
        policy, tok, b.group_prompt_ids, b.solution_ids, sol_mask, temperature=temperature
    )
    return {
        "logp_wrong": float(seq[wrong].mean()) if bool(wrong.any()) else float("nan"),
        "logp_correct": float((sol_lp * sol_mask).sum(-1).mean()),
        "entropy": float((ent * b.mask).sum() / b.mask.sum()),
    }


def pg_loss(
    policy, b: ProbeBatch, preset: algorithms.Preset, old_logp: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The preset's policy-gradient loss on b: its advantage piece on binary rewards, its policy-loss piece."""
    name = preset.pieces["advantage"]
    if algorithms.ADVANTAGES.meta(name).get("token_level", False):
        raise UserError(f"probe: preset {preset.name!r} uses the token-level advantage {name!r} (a critic); "
                        "the probe compares outcome advantages (grpo, ngrpo, psr_nsr, dapo, ...)")
    adv = algorithms.compute_advantages(
        name, b.acc.float(), b.group_ids, acc=b.acc, **preset.piece_knobs("advantage")
    )
    policy.train()
    logp, _ = sequence_forward(
        policy, common.tokenizer(), b.prompt_ids, b.completion_ids, b.mask, temperature=temperature
    )
    loss, _ = algorithms.POLICY_LOSSES.get(preset.pieces["policy_loss"])(
        logp, old_logp, adv, b.mask, **preset.piece_knobs("policy_loss")
    )
    return loss


def _flat_grad(policy) -> torch.Tensor:
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in policy.parameters()]
    )


def _flat_params(policy) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in policy.parameters()])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float("nan") if na == 0.0 or nb == 0.0 else float(a @ b) / (na * nb)


def run_updates(start, b: ProbeBatch, preset: algorithms.Preset, cfg: dict, temperature: float):
    """K updates of a copy of `start` on b. Returns (policy after K, rows per update k = 0..K, first gradient, displacement)."""
    policy = copy.deepcopy(start)
    tok = common.tokenizer()
    with torch.no_grad():
        policy.eval()
        old_logp, _ = sequence_forward(
            policy, tok, b.prompt_ids, b.completion_ids, b.mask, temperature=temperature
        )
    opt = (torch.optim.Adam(policy.parameters(), lr=cfg["lr"]) if cfg["optimizer"] == "adam"
           else torch.optim.SGD(policy.parameters(), lr=cfg["lr"]))
    theta0 = _flat_params(policy)
    rows = [{"update": 0, "grad_norm": float("nan"), "update_norm": 0.0, **measure(policy, b, temperature)}]
    first_grad = None
    for k in range(1, cfg["updates"] + 1):
        opt.zero_grad(set_to_none=False)
        pg_loss(policy, b, preset, old_logp, temperature).backward()
        g = _flat_grad(policy)
        if first_grad is None:
            first_grad = g.clone()
        opt.step()
        disp = _flat_params(policy) - theta0
        rows.append(
            {
                "update": k,
                "grad_norm": float(g.norm()),
                "update_norm": float(disp.norm()),
                **measure(policy, b, temperature),
            }
        )
    return policy, rows, first_grad, _flat_params(policy) - theta0


def eval_samples(policy, b: ProbeBatch, spec: RunSpec, cfg: dict, label: str, step: int) -> pd.DataFrame:
    """cfg["eval_n"] samples per probe prompt at the eval temperature / top-p -> per-sample rows."""
    ev, n = spec.eval, cfg["eval_n"]
    rep = [p for p in b.problems for _ in range(n)]
    roll = sample(
        policy,
        common.tokenizer(),
        [p.prompt for p in rep],
        max_new_tokens=spec.train.max_new_tokens,
        temperature=ev.temperature,
        top_p=ev.top_p,
        seed=common.derive_seed("probe-eval", cfg["seed"]),
    )
    return pd.DataFrame({"algorithm": label, "step": step, "problem_id": [p.problem_id for p in rep],
                         "sample_idx": np.tile(np.arange(n), len(b.problems)),
                         "correct": modchain.grade(roll.texts, rep, spec.task.grader)})


def run_probe(start, spec: RunSpec, cfg: dict, presets: dict[str, algorithms.Preset], progress=None):
    """Everything for one probe. Returns (metric rows, cosine rows, eval sample rows, groups found per type)."""
    temperature = spec.train.temperature
    torch.manual_seed(common.derive_seed("probe", cfg["seed"]))
    batches, found = find_groups(start, spec, cfg)
    rows, cos_rows, samples = [], [], []
    total, done = len(GROUP_TYPES) * len(presets), 0
    for t, b in batches.items():
        samples.append(eval_samples(start, b, spec, cfg, "start", 0).assign(group_type=t))
        grads, disps = {}, {}
        for name, preset in presets.items():
            policy, r, grads[name], disps[name] = run_updates(start, b, preset, cfg, temperature)
            rows += [{"group_type": t, "algorithm": name, **x} for x in r]
            samples.append(eval_samples(policy, b, spec, cfg, name, cfg["updates"]).assign(group_type=t))
            done += 1
            if progress is not None:
                progress(done, total, {"group_type": t, "algorithm": name})
        names = list(presets)
        for i, a in enumerate(names):
            for c in names[i + 1:]:
                cos_rows.append(
                    {
                        "group_type": t,
                        "a": a,
                        "b": c,
                        "cos_first_grad": _cosine(grads[a], grads[c]),
                        "cos_displacement": _cosine(disps[a], disps[c]),
                    }
                )
    return rows, cos_rows, pd.concat(samples, ignore_index=True), found
