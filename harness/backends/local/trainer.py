"""The embedded CPU backend's RL loop, built only from registry pieces (CleanRL-style, one run per call).

    for step in 1..steps:
        batch   = collect_batch(...)            # B prompts x G, grade, shape, filter, re-sample
        adv     = advantage piece on the batch   # group statistics over the whole batch, once
        log-probs (old, new, reference) and entropy at train.temperature: the policy that was sampled
        for epoch, mini-batch: loss piece + entropy bonus + KL to the reference; AdamW, grad clip
        PPO: critic regression on GAE returns
        eval every eval.every steps -> samples.parquet + pass@k summary in metrics.jsonl
        checkpoint every train.checkpoint_every steps (model, optimizers, step) -> exact resume
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

import algorithms
from algorithms.advantages import gae_advantages_and_returns
from algorithms.losses import aggregate, kl_estimate, value_loss
from harness.core import metrics as hm
from harness.core import results
from harness.tracking import trackers as tracking
from harness.embedded import common
from harness.backends.local.rollout import Batch, collect_batch
from harness.embedded.sampler import chunked_forward, sample, sequence_forward
from harness.embedded.warmstart import load_warm_start
from harness.config.experiment import import_plugins
from harness.core.errors import StopRequested
from harness.tasks import modchain

MICRO = 64  # sequences per forward: one 512-sequence forward is erratic on a 2-core VM, chunks of 64 are not
Progress = Callable[[int, int, dict], None]


def evaluate(policy, spec: dict, step: int) -> pd.DataFrame:
    """n samples per held-out problem at the eval temperature -> samples rows (results.SAMPLE_COLUMNS)."""
    ev, tok = spec["eval"], common.tokenizer()
    frames = []
    for name, problems in common.heldout_sets(spec).items():
        rep = [p for p in problems for _ in range(ev["n"])]
        roll = sample(
            policy, tok, [p.prompt for p in rep], max_new_tokens=spec["train"]["max_new_tokens"],
            temperature=ev["temperature"], top_p=ev["top_p"], seed=common.derive_seed("eval", spec["seed"], step, name),
        )
        frames.append(pd.DataFrame({
            "step": step, "benchmark": name, "problem_id": [p.problem_id for p in rep],
            "sample_idx": np.tile(np.arange(ev["n"]), len(problems)),
            "correct": modchain.grade(roll.texts, rep, spec["task"]["grader"]),
            "length": roll.lengths.numpy(), "truncated": roll.truncated.numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


class LocalTrainer:
    """State of one RL run: policy, reference, critic, optimizers."""

    def __init__(self, spec: dict, cache_dir: Path) -> None:
        self.spec, self.tr = spec, spec["train"]
        import_plugins(spec.get("plugins", []))  # absent when the experiment has none; a spawned worker registers them too
        self.preset = algorithms.get_preset(spec["preset"], **spec["overrides"])
        self.knobs = self.preset.knobs
        common.pin_threads(self.tr["threads"])
        torch.manual_seed(common.derive_seed("init", spec["seed"]))
        self.tok = common.tokenizer()
        self.policy = common.build_model(spec)
        self.policy.load_state_dict(load_warm_start(spec, cache_dir))
        needs_ref = self.knobs["kl_coef"] > 0 or self.knobs["kl_in_reward_coef"] > 0
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False) if needs_ref else None
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=self.tr["lr"], weight_decay=self.tr["weight_decay"])
        self.critic = self.critic_opt = None
        if self.knobs["use_critic"]:
            self.critic = common.build_model(spec, value_head=True)
            body = {k: v for k, v in self.policy.state_dict().items() if not k.startswith("head.")}
            self.critic.load_state_dict(body, strict=False)  # critic starts from the warm-started body
            self.critic_opt = torch.optim.AdamW(
                self.critic.parameters(), lr=self.tr["lr"] * self.knobs["critic_lr_mult"], weight_decay=self.tr["weight_decay"]
            )

    # ------------------------------------------------------------------ checkpoints
    def state(self, step: int) -> dict:
        s = {"step": step, "policy": self.policy.state_dict(), "opt": self.opt.state_dict()}
        if self.critic is not None:
            s.update(critic=self.critic.state_dict(), critic_opt=self.critic_opt.state_dict())
        return s

    def load(self, s: dict) -> int:
        self.policy.load_state_dict(s["policy"])
        self.opt.load_state_dict(s["opt"])
        if self.critic is not None:
            self.critic.load_state_dict(s["critic"])
            self.critic_opt.load_state_dict(s["critic_opt"])
        return int(s["step"])

    # ------------------------------------------------------------------ one update
    def advantages(self, b: Batch, old_logp, ref_logp, values):
        """Advantages [N] (or [N, T] for token-level pieces such as GAE) from the registered piece, and
        the critic's regression targets (GAE returns with the piece's gamma/lambda) when there is a critic.
        The PPO KL penalty enters as per-token rewards."""
        name = self.preset.pieces["advantage"]
        knobs = self.preset.piece_knobs("advantage")
        tok_r = -self.knobs["kl_in_reward_coef"] * kl_estimate(old_logp, ref_logp, "k1") if ref_logp is not None and self.knobs["kl_in_reward_coef"] > 0 else None
        inputs = {"acc": b.acc}
        if algorithms.ADVANTAGES.meta(name).get("token_level", False):
            inputs.update(values=values, mask=b.mask, token_rewards=tok_r)
        adv = algorithms.compute_advantages(name, b.reward, b.group_ids, **inputs, **knobs)
        returns = None
        if self.critic is not None:
            _, returns = gae_advantages_and_returns(b.reward, values, b.mask, tok_r, knobs["gamma"], knobs["lam"])
        return adv, returns

    def update(self, b: Batch, step: int) -> dict:
        agg = self.knobs["agg"]
        temp = self.tr["temperature"]  # log-probs of the policy that was sampled (see sampler.py)
        old_logp = chunked_forward(self.policy, self.tok, b.prompt_ids, b.completion_ids, b.mask, MICRO, temp)
        ref_logp = chunked_forward(self.ref, self.tok, b.prompt_ids, b.completion_ids, b.mask, MICRO, temp) if self.ref else None
        values = chunked_forward(self.critic, self.tok, b.prompt_ids, b.completion_ids, b.mask, MICRO) if self.critic else None
        adv, returns = self.advantages(b, old_logp, ref_logp, values)
        loss_fn = algorithms.POLICY_LOSSES.get(self.preset.pieces["policy_loss"])
        loss_knobs = self.preset.piece_knobs("policy_loss")
        G = self.tr["group_size"]
        n_groups = b.size // G
        logs: list[dict] = []
        self.policy.train()
        for epoch in range(self.tr["epochs"]):
            gen = torch.Generator().manual_seed(common.derive_seed("minibatch", self.spec["seed"], step, epoch))
            order = torch.randperm(n_groups, generator=gen)
            for mb_groups in torch.tensor_split(order, min(self.tr["mini_batches"], n_groups)):
                idx = (mb_groups[:, None] * G + torch.arange(G)).reshape(-1)
                logs.append(self._minibatch(b, idx, old_logp, ref_logp, adv, returns, values, loss_fn, loss_knobs, agg))
        out = {f"actor/{key}": float(np.mean([l[key] for l in logs if key in l])) for key in logs[0] if not key.startswith("critic/")}
        out.update({key: float(np.mean([l[key] for l in logs])) for key in logs[0] if key.startswith("critic/")})
        out["actor/adv_mean"] = float(adv.mean())
        out["actor/adv_abs_mean"] = float(adv.abs().mean())
        # log pi_sampled - log pi_trainer per token: 0 when the trainer scores the sampled policy (top_p = 1),
        # log(1 / nucleus mass) >= 0 under top-p; a large value at top_p = 1 means a temperature mismatch
        out["actor/rollout_logp_gap"] = float(((b.sample_logp - old_logp) * b.mask).sum() / b.mask.sum())
        return out

    def _minibatch(self, b, idx, old_logp, ref_logp, adv, returns, values, loss_fn, loss_knobs, agg) -> dict:
        k = self.knobs
        mask = b.mask[idx]
        total_tok, total_seq = mask.sum(), idx.numel()
        self.opt.zero_grad(set_to_none=True)
        acc: dict[str, float] = {}
        for micro in torch.split(idx, MICRO):
            m = b.mask[micro]
            w = float(m.sum() / total_tok) if agg == "token-mean" else micro.numel() / total_seq
            logp, ent = sequence_forward(self.policy, self.tok, b.prompt_ids[micro], b.completion_ids[micro], m, with_entropy=True,
                                         temperature=self.tr["temperature"])
            pg, met = loss_fn(logp, old_logp[micro], adv[micro], m, **loss_knobs)
            ent_term = aggregate(ent, m, agg)
            loss = pg - k["entropy_coef"] * ent_term
            met["entropy"] = float(ent_term.detach())
            if self.ref is not None and k["kl_coef"] > 0:
                kl = aggregate(kl_estimate(logp, ref_logp[micro], k["kl_estimator"]), m, agg)
                loss = loss + k["kl_coef"] * kl
                met["kl_ref"] = float(kl.detach())
            (loss * w).backward()
            met["pg_loss"] = float(pg.detach())
            for key, v in met.items():
                acc[key] = acc.get(key, 0.0) + w * v
        acc["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.tr["grad_clip"]))
        self.opt.step()
        if self.critic is not None:
            self.critic.train()
            self.critic_opt.zero_grad(set_to_none=True)
            for micro in torch.split(idx, MICRO):
                m = b.mask[micro]
                v, _ = sequence_forward(self.critic, self.tok, b.prompt_ids[micro], b.completion_ids[micro], m)
                vl, vm = value_loss(v, values[micro], returns[micro], m, k["value_clip"], agg)
                w = float(m.sum() / total_tok)
                (vl * w).backward()
                acc["critic/value_loss"] = acc.get("critic/value_loss", 0.0) + w * float(vl.detach())
                acc["critic/value_clipfrac"] = acc.get("critic/value_clipfrac", 0.0) + w * vm["value_clipfrac"]
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.tr["grad_clip"])
            self.critic_opt.step()
        return acc


def train(spec: dict, run_dir: Path, cache_dir: Path, progress: Progress | None = None) -> None:
    """Run (or resume) one RunSpec into run_dir. The warm start must already be cached."""
    run_dir = Path(run_dir)
    ckpt_path = run_dir / results.CKPT_DIR / "latest.pt"
    trainer = LocalTrainer(spec, cache_dir)
    start = 0
    if ckpt_path.exists():
        start = trainer.load(common.load_checkpoint(ckpt_path))
    # Drop anything logged after the checkpoint (a killed run may have gone further before dying);
    # with no checkpoint, start clean (the step-0 evaluation is redone).
    keep = (lambda r: r.get("step", 0) <= start) if start else (lambda r: False)
    results.truncate_metrics(run_dir, keep)
    samples = results.read_samples(run_dir)
    if len(samples) and (samples["step"].max() > start or not start):
        results.write_samples(run_dir, samples[samples["step"] <= start] if start else samples.iloc[:0])
    steps, ev = spec["train"]["steps"], spec["eval"]
    results.write_status(run_dir, "running", step=start, total_steps=steps, threads=torch.get_num_threads())
    tracker = tracking.start(spec, run_dir)  # the experiment's `loggers:` get every metrics.jsonl record; never fails the run

    def do_eval(step: int) -> None:
        t0 = time.perf_counter()
        rows = evaluate(trainer.policy, spec, step)
        results.append_samples(run_dir, rows)
        rec = {"kind": "eval", "step": step, "time/eval_s": time.perf_counter() - t0, **hm.eval_summary(rows, ev["k_max"])}
        results.append_metrics(run_dir, rec)
        tracker.log(rec)

    def checkpoint(step: int) -> None:
        common.atomic_torch_save(trainer.state(step), ckpt_path)
        results.write_status(run_dir, "running", step=step, total_steps=steps, threads=torch.get_num_threads())

    if start == 0:
        do_eval(0)
    for step in range(start + 1, steps + 1):
        t0 = time.perf_counter()
        batch, rec = collect_batch(trainer.policy, spec, trainer.preset, step)
        t1 = time.perf_counter()
        if batch is not None:
            rec.update(trainer.update(batch, step))
        rec.update({"kind": "train", "step": step, "time/sample_s": t1 - t0, "time/train_s": time.perf_counter() - t1})
        results.append_metrics(run_dir, rec)
        tracker.log(rec)
        if step % ev["every"] == 0 or step == steps:
            do_eval(step)
        saved = step % spec["train"]["checkpoint_every"] == 0 or step == steps
        if saved:
            checkpoint(step)
        if progress is not None:
            try:
                progress(step, steps, rec)
            except StopRequested:  # Ctrl-C / SIGTERM: keep this step, then stop
                if not saved:
                    checkpoint(step)
                raise
    results.write_status(run_dir, "done", step=steps, total_steps=steps, threads=torch.get_num_threads())
    tracker.close()
