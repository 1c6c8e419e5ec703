"""The embedded CPU backend's RL loop, built only from registry pieces (CleanRL-style, one run per call).

    for step in 1..steps:
        batch = collect_batch(...)     # B prompts x G, grade, shape, filter, re-sample
        data  = score(batch)           # no grad, once per batch: old and reference log-probs at
                                       # train.temperature (the policy that was sampled), values, advantages
        for epoch, mini-batch of whole groups: optimize(data, rows), per micro-batch
            loss = pg - entropy_coef * entropy + kl_coef * kl     # policy-loss piece, KL to the reference
            AdamW step with grad clip; PPO: critic regression on GAE returns
        eval every eval.every steps -> samples.parquet + pass@k summary in metrics.jsonl
        checkpoint every train.checkpoint_every steps (model, optimizers, step) -> exact resume
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn.utils import clip_grad_norm_

import algorithms
from algorithms.advantages import gae_advantages_and_returns
from algorithms.losses import aggregate, kl_estimate, masked_mean, value_loss
from harness.core import metrics as hm
from harness.core import results
from harness.tracking import trackers as tracking
from harness.embedded import common
from harness.backends.batching import capped_warning, mini_batch_rows
from harness.backends.budget import Schedule
from harness.backends.local.rollout import Batch, collect_batch
from harness.embedded.sampler import chunked_forward, sample, sequence_forward
from harness.embedded.warmstart import load_warm_start
from harness.config.experiment import import_plugins
from harness.config.runspec import RunSpec
from harness.core.errors import StopRequested
from harness.tasks import modchain

MICRO = 64  # sequences per forward: one 512-sequence forward is erratic on a 2-core VM, chunks of 64 are not
Progress = Callable[[int, int, dict], None]


def evaluate(policy, spec: RunSpec, step: int) -> pd.DataFrame:
    """n samples per held-out problem at the eval temperature -> samples rows (results.SAMPLE_COLUMNS)."""
    ev, tok = spec.eval, common.tokenizer()
    frames = []
    for name, problems in common.heldout_sets(spec).items():
        rep = [p for p in problems for _ in range(ev.n)]
        roll = sample(
            policy, tok, [p.prompt for p in rep], max_new_tokens=spec.train.max_new_tokens,
            temperature=ev.temperature, top_p=ev.top_p,
            seed=common.derive_seed("eval", spec.seed, step, name),
        )
        frames.append(pd.DataFrame({
            "step": step, "benchmark": name, "problem_id": [p.problem_id for p in rep],
            "sample_idx": np.tile(np.arange(ev.n), len(problems)),
            "correct": modchain.grade(roll.texts, rep, spec.task.grader),
            "length": roll.lengths.numpy(), "truncated": roll.truncated.numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class MiniBatch:
    """Rows of a training batch with all the step's losses read (N rows, P prompt, T response tokens)."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    completion_ids: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T] float, 1 on response tokens
    old_logp: torch.Tensor  # [N, T] the sampling policy's log-probs, before this step's updates
    adv: torch.Tensor  # [N] (outcome pieces) or [N, T] (token-level pieces such as GAE)
    ref_logp: torch.Tensor | None  # [N, T] reference log-probs, when there is a reference
    values: torch.Tensor | None  # [N, T] critic values before the update, when there is a critic
    returns: torch.Tensor | None  # [N, T] GAE returns (the critic's targets), when there is a critic

    def rows(self, idx: torch.Tensor) -> MiniBatch:
        """The rows idx [n] of every tensor."""
        return MiniBatch(*(None if (t := getattr(self, f.name)) is None else t[idx] for f in fields(self)))


def _to_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """[N, T] -> [N, width], zero-padded on the right (a [N] tensor is returned as it is)."""
    return torch.nn.functional.pad(x, (0, width - x.shape[1])) if x.ndim == 2 else x


def _mini_batch_to_width(mb: MiniBatch, width: int) -> MiniBatch:
    """The token-level tensors of mb padded to `width` response tokens (mask 0 there): Dr. GRPO's
    seq-mean-token-sum-norm then divides by the constant `width`, not by the batch's longest response."""
    return MiniBatch(mb.prompt_ids, mb.completion_ids, _to_width(mb.mask, width), _to_width(mb.old_logp, width),
                     _to_width(mb.adv, width), None if mb.ref_logp is None else _to_width(mb.ref_logp, width),
                     mb.values, mb.returns)


NO_KL = torch.zeros(())  # the KL term when the loss has none: kl_coef is then 0.0 and adds an exact 0


def kl_diagnostics(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """KL(pi_old || pi) estimated on the sampled tokens, named for the formula, with d = logp - old_logp
    per token [N, T] (token means over mask [N, T]):

        ppo_kl = k1 = mean(-d), d clamped to [-20, 20]   (verl's actor/ppo_kl; the loss's approx_kl)
        kl_k3  = k3 = mean(exp(d) - d - 1): kl_estimate's k3 = verl's low_var_kl (d clamped to [-20, 20],
                 each token's value capped at 10; always >= 0)
    """
    with torch.no_grad():
        d = logp.detach() - old_logp
        return {"ppo_kl": masked_mean(-d.clamp(-20.0, 20.0), mask).item(),
                "kl_k3": masked_mean(kl_estimate(old_logp, logp.detach(), "k3"), mask).item()}


def _accumulate(into: dict[str, float], values: dict[str, float], w: float) -> None:
    for key, v in values.items():
        into[key] = into.get(key, 0.0) + w * v


class LocalTrainer:
    """State of one RL run: policy, reference, critic, optimizers, and the pieces of the loss."""

    def __init__(self, spec: RunSpec, cache_dir: Path) -> None:
        self.spec, self.tr = spec, spec.train
        # absent when the experiment has none; a spawned worker registers them too
        import_plugins(spec.plugins or [])
        self.preset = spec.algorithm
        obj = self.preset.objective
        self.loss_fn = algorithms.POLICY_LOSSES.get(self.preset.pieces["policy_loss"])
        self.loss_knobs = self.preset.piece_knobs("policy_loss")
        common.pin_threads(self.tr.threads)
        torch.manual_seed(common.derive_seed("init", spec.seed))
        self.tok = common.tokenizer()
        self.policy = common.build_model(spec)
        self.policy.load_state_dict(load_warm_start(spec, cache_dir))
        needs_ref = obj("kl_coef") > 0 or obj("kl_in_reward_coef") > 0
        self.ref = copy.deepcopy(self.policy).eval().requires_grad_(False) if needs_ref else None
        self.kl_loss = self.ref is not None and obj("kl_coef") > 0
        wd = self.tr.weight_decay
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=self.tr.lr, weight_decay=wd)
        self.critic = self.critic_opt = None
        if obj("use_critic"):
            self.critic = common.build_model(spec, value_head=True)
            body = {k: v for k, v in self.policy.state_dict().items() if not k.startswith("head.")}
            self.critic.load_state_dict(body, strict=False)  # critic starts from the warm-started body
            lr = self.tr.lr * obj("critic_lr_mult")
            self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=lr, weight_decay=wd)

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

    # ------------------------------------------------------------------ one RL step
    def update(self, b: Batch, step: int) -> dict:
        """One RL step on a collected batch: score it once, then one optimizer step per epoch and mini-batch
        (whole groups, shuffled per epoch) -> the step's actor/ and critic/ metrics."""
        G = self.tr.group_size
        data = self.score(b)
        n_groups = b.size // G
        logs: list[dict] = []
        self.policy.train()
        for epoch in range(self.tr.epochs):
            seed = common.derive_seed("minibatch", self.spec.seed, step, epoch)
            for idx in mini_batch_rows(n_groups, G, self.tr.mini_batches, seed):
                logs.append(self.optimize(data, idx))
        return self.summary(logs, data, b)

    def score(self, b: Batch) -> MiniBatch:
        """The whole batch before any update (no grad): old and reference log-probs at the sampling
        temperature (the policy that was sampled, see sampler.py), critic values, advantages, returns."""
        temp, ids = self.tr.temperature, (b.prompt_ids, b.completion_ids, b.mask)
        old_logp = chunked_forward(self.policy, self.tok, *ids, MICRO, temp)
        ref_logp = chunked_forward(self.ref, self.tok, *ids, MICRO, temp) if self.ref is not None else None
        values = chunked_forward(self.critic, self.tok, *ids, MICRO) if self.critic is not None else None
        adv, returns = self.advantages(b, old_logp, ref_logp, values)
        return MiniBatch(b.prompt_ids, b.completion_ids, b.mask, old_logp, adv, ref_logp, values, returns)

    def advantages(self, b: Batch, old_logp, ref_logp, values):
        """Advantages [N] (or [N, T] for token-level pieces such as GAE) from the registered piece, and
        the critic's regression targets (GAE returns with the piece's gamma/lambda) when there is a critic.
        The KL penalty (kl_in_reward_coef) enters as per-token rewards; an outcome-level piece gets their
        sum added to each response's reward, as verl's outcome estimators score token_level_rewards.sum()."""
        name, knobs = self.preset.pieces["advantage"], self.preset.piece_knobs("advantage")
        coef = self.preset.objective("kl_in_reward_coef")
        tok_r = -coef * kl_estimate(old_logp, ref_logp, "k1") if ref_logp is not None and coef > 0 else None
        inputs, rewards = {"acc": b.acc}, b.reward
        if algorithms.ADVANTAGES.meta(name).get("token_level", False):
            inputs.update(values=values, mask=b.mask, token_rewards=tok_r)
        elif tok_r is not None:  # as verl: an outcome piece scores the sum of the token rewards, penalty included
            rewards = b.reward + (tok_r * b.mask).sum(dim=1)
        adv = algorithms.compute_advantages(name, rewards, b.group_ids, **inputs, **knobs)
        returns = None
        if self.critic is not None:
            gamma, lam = knobs["gamma"], knobs["lam"]
            _, returns = gae_advantages_and_returns(b.reward, values, b.mask, tok_r, gamma, lam)
        return adv, returns

    def optimize(self, data: MiniBatch, idx: torch.Tensor) -> dict:
        """One optimizer step of the actor (then the critic) on the rows idx, in micro-batches of MICRO
        whose gradients are weighted by their share of the mini-batch's tokens (or sequences)."""
        obj, agg = self.preset.objective, self.loss_knobs["agg"]
        entropy_coef, kl_coef, kl_estimator = obj("entropy_coef"), obj("kl_coef"), obj("kl_estimator")
        total_tok, total_seq = data.mask[idx].sum(), idx.numel()
        micro = [data.rows(i) for i in torch.split(idx, MICRO)]
        log: dict[str, float] = {}
        self.opt.zero_grad(set_to_none=True)
        for mb in micro:
            w = float(mb.mask.sum() / total_tok) if agg == "token-mean" else mb.mask.shape[0] / total_seq
            logp, ent = sequence_forward(self.policy, self.tok, mb.prompt_ids, mb.completion_ids, mb.mask,
                                         with_entropy=True, temperature=self.tr.temperature)
            if agg == "seq-mean-token-sum-norm":  # Dr. GRPO divides by a constant: the generation limit
                width = self.tr.max_new_tokens
                logp, ent, mb = _to_width(logp, width), _to_width(ent, width), _mini_batch_to_width(mb, width)
            pg, met = self.loss_fn(logp, mb.old_logp, mb.adv, mb.mask, **self.loss_knobs)
            met.pop("approx_kl", None)  # logged as ppo_kl, next to kl_k3
            met.update(kl_diagnostics(logp, mb.old_logp, mb.mask))
            entropy = aggregate(ent, mb.mask, agg)
            kl = NO_KL
            if self.kl_loss:
                kl = aggregate(kl_estimate(logp, mb.ref_logp, kl_estimator), mb.mask, agg)
            loss = pg - entropy_coef * entropy + kl_coef * kl
            (loss * w).backward()
            met["entropy"] = float(entropy.detach())
            if self.kl_loss:
                met["kl_ref"] = float(kl.detach())
            met["pg_loss"] = float(pg.detach())
            _accumulate(log, met, w)
        log["grad_norm"] = float(clip_grad_norm_(self.policy.parameters(), self.tr.grad_clip))
        self.opt.step()
        if self.critic is not None:
            log.update(self.critic_step(micro, total_tok, agg))
        return log

    def critic_step(self, micro: list[MiniBatch], total_tok: torch.Tensor, agg: str) -> dict:
        """One optimizer step of the critic on the clipped value loss, micro-batches weighted by tokens."""
        self.critic.train()
        self.critic_opt.zero_grad(set_to_none=True)
        log: dict[str, float] = {}
        for mb in micro:
            v, _ = sequence_forward(self.critic, self.tok, mb.prompt_ids, mb.completion_ids, mb.mask)
            vl, vm = value_loss(v, mb.values, mb.returns, mb.mask, self.preset.objective("value_clip"), agg)
            w = float(mb.mask.sum() / total_tok)
            (vl * w).backward()
            _accumulate(log, {"critic/value_loss": float(vl.detach()),
                              "critic/value_clipfrac": vm["value_clipfrac"]}, w)
        clip_grad_norm_(self.critic.parameters(), self.tr.grad_clip)
        self.critic_opt.step()
        return log

    @staticmethod
    def summary(logs: list[dict], data: MiniBatch, b: Batch) -> dict:
        """Means over the step's optimizer steps (actor/..., critic/...), the batch's advantage statistics."""
        actor = [k for k in logs[0] if not k.startswith("critic/")]
        out = {f"actor/{k}": float(np.mean([log[k] for log in logs if k in log])) for k in actor}
        out.update({k: float(np.mean([log[k] for log in logs])) for k in logs[0] if k.startswith("critic/")})
        out["actor/adv_mean"] = float(data.adv.mean())
        out["actor/adv_abs_mean"] = float(data.adv.abs().mean())
        # log pi_sampled - log pi_trainer per token: 0 when the trainer scores the sampled policy (top_p = 1),
        # log(1 / nucleus mass) >= 0 under top-p; a large value at top_p = 1 means a temperature mismatch
        out["actor/rollout_logp_gap"] = float(((b.sample_logp - data.old_logp) * b.mask).sum() / b.mask.sum())
        return out


def train(spec: RunSpec, run_dir: Path, cache_dir: Path, progress: Progress | None = None) -> None:
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
    steps, ev = spec.train.steps, spec.eval
    schedule = Schedule.of(spec, start, results.read_metrics_records(run_dir))
    results.write_status(run_dir, "running", step=start, total_steps=steps, threads=torch.get_num_threads())
    # the experiment's `loggers:` get every metrics.jsonl record; never fails the run
    tracker = tracking.start(spec.to_dict(), run_dir)

    def do_eval(step: int) -> None:
        t0 = time.perf_counter()
        rows = evaluate(trainer.policy, spec, step)
        results.append_samples(run_dir, rows)
        rec = {"kind": "eval", "step": step, "time/eval_s": time.perf_counter() - t0,
               **hm.eval_summary(rows, ev.k_max)}
        results.append_metrics(run_dir, rec)
        tracker.log(rec)

    def checkpoint(step: int) -> None:
        common.atomic_torch_save(trainer.state(step), ckpt_path)
        results.write_status(run_dir, "running", step=step, total_steps=steps,
                             threads=torch.get_num_threads())

    if start == 0:
        do_eval(0)
    for step in range(start + 1, steps + 1):
        t0 = time.perf_counter()
        batch, rec = collect_batch(trainer.policy, spec, trainer.preset, step)
        t1 = time.perf_counter()
        if batch is not None:
            rec.update(trainer.update(batch, step))
        rec.update({"kind": "train", "step": step, "time/sample_s": t1 - t0,
                    "time/train_s": time.perf_counter() - t1})
        eval_now, last = schedule.after(step, rec)
        results.append_metrics(run_dir, rec)
        tracker.log(rec)
        if eval_now:
            do_eval(step)
        saved = step % spec.train.checkpoint_every == 0 or last
        if saved:
            checkpoint(step)
        if progress is not None:
            try:
                progress(step, steps, rec)
            except StopRequested:  # Ctrl-C / SIGTERM: keep this step, then stop
                if not saved:
                    checkpoint(step)
                raise
        if last:  # train.steps, or the step that spent train.budget
            steps = step
            break
    warning = capped_warning(run_dir, spec.train.max_sample_rounds)
    if warning is not None:
        print(f"warning: {spec.run_id}: {warning}", file=sys.stderr)
    results.write_status(run_dir, "done", step=steps, total_steps=steps, threads=torch.get_num_threads(),
                         **schedule.status(), **({"warnings": [warning]} if warning else {}))
    tracker.close()
