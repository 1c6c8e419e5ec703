"""`verl: {mode: inproc}`: one RL run through verl's real engine, in this process, on the CPU.

The step mirrors verl 0.9.1's v1 trainer (`PPOTrainer._step_once`) stage by stage, on verl's own
objects: ActorRolloutRefWorker (actor, and a second one as reference), the critic TrainingWorker,
FSDP2, `compute_advantage` with the registered estimators, the `ppo_loss`/`vanilla` policy loss,
verl's reward manager, its validation-dump writer and its file logger. Only the rollout is the
harness's (harness.backends.verl.rollout; verl cannot select a CPU rollout engine), and the
TransferQueue/Ray plumbing is replaced by direct calls. The config is the one `compose()` builds,
so a config that runs here is the one cluster mode would pass to `main_ppo`.

    sample B prompts x n (rollout temperature/top-p) -> reward manager -> group filter (verl's rule,
    refilling up to train.max_sample_rounds rounds) -> old log-probs (+entropy) -> ref log-probs ->
    values -> in-reward KL -> advantages -> critic update -> actor update -> weight sync
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness.backends.batching import Round, capped_warning, collect_groups, mini_batch_rows
from harness.backends.budget import Schedule
from harness.config.runspec import RunSpec
from harness.core import results
from harness.core.errors import StopRequested
from harness.embedded.common import derive_seed, pin_threads
from harness.backends.verl import compat, ingest
from harness.backends.verl import rollout as ro


class InprocTrainer:
    """verl's workers for one run, built from a composed config."""

    def __init__(self, spec: RunSpec, cfg, run_dir: Path, model_path: str) -> None:
        compat.activate()
        from omegaconf import OmegaConf
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from verl.experimental.reward_loop.reward_manager import (
            get_reward_manager_cls,
        )  # noqa: F401 (registers)
        from verl.trainer.ppo import core_algos
        from verl.trainer.ppo.reward import load_reward_manager
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import TrainingWorkerConfig
        from verl.workers.engine_workers import ActorRolloutRefWorker, TrainingWorker
        from verl.workers.utils.losses import value_loss

        self.spec, self.cfg, self.run_dir = spec, cfg, Path(run_dir)
        pin_threads(spec.train.threads)
        torch.manual_seed(derive_seed("verl-init", spec.seed))  # the critic's fresh value head
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        # each worker gets its own copy, as each Ray worker does (init_model edits its config in place)
        self.actor = ActorRolloutRefWorker(copy.deepcopy(cfg.actor_rollout_ref), role="actor")
        self.actor.init_model()
        self.ref = None
        if need_reference_policy(cfg):
            self.ref = ActorRolloutRefWorker(copy.deepcopy(cfg.actor_rollout_ref), role="ref")
            self.ref.init_model()
        self.critic = None
        if need_critic(cfg):
            ccfg = omega_conf_to_dataclass(copy.deepcopy(cfg.critic))
            ccfg.engine.infer_max_token_len_per_gpu = ccfg.ppo_infer_max_token_len_per_gpu
            ccfg.engine.max_token_len_per_gpu = ccfg.ppo_infer_max_token_len_per_gpu
            self.critic = TrainingWorker(TrainingWorkerConfig(
                model_type="value_model", model_config=ccfg.model, engine_config=ccfg.engine,
                optimizer_config=ccfg.optim, checkpoint_config=ccfg.checkpoint))
            self.critic.reset()
            self.critic.set_loss_fn(partial(value_loss, config=ccfg))
        self.kl_ctrl = (
            core_algos.get_kl_controller(cfg.algorithm.kl_ctrl) if cfg.algorithm.use_kl_in_reward else None
        )
        self.reward = load_reward_manager(cfg, self.tokenizer)
        self.policy = AutoModelForCausalLM.from_pretrained(
            model_path, attn_implementation="eager", dtype=torch.float32
        ).eval()
        ro.sync_weights(self.actor.actor.engine, self.policy)
        self.train_rows = pd.read_parquet(cfg.data.train_files[0]).to_dict(orient="records")
        self.val_rows = {
            Path(f).stem.removeprefix("val_"): pd.read_parquet(f).to_dict(orient="records")
            for f in cfg.data.val_files
        }
        self.cursor = 0  # next training row (verl's dataloader position)
        self.OmegaConf = OmegaConf

    # ------------------------------------------------------------------ prompts
    def data_exhausted(self) -> bool:
        """Whether train.max_epochs passes over the training rows have been drawn (never when it is null)."""
        epochs = self.spec.train.max_epochs
        return epochs is not None and self.cursor >= epochs * len(self.train_rows)

    def next_rows(self, k: int) -> list[dict]:
        """The next k training rows: file order (modchain, data.shuffle=false) or a seeded permutation per epoch."""
        n = len(self.train_rows)
        out = []
        for _ in range(k):
            epoch, pos = divmod(self.cursor, n)
            if self.cfg.data.shuffle:
                perm = np.random.default_rng(derive_seed("verl-data", self.spec.seed, epoch)).permutation(n)
                pos = int(perm[pos])
            out.append(self.train_rows[pos])
            self.cursor += 1
        return out

    # ------------------------------------------------------------------ one step
    def collect(self, step: int) -> tuple[ro.Generated | None, torch.Tensor, list[dict], list[dict], dict]:
        """Sample, score and filter until B groups are kept or train.max_sample_rounds rounds were drawn
        (harness.backends.batching.collect_groups) -> (kept responses, scores [N], reward infos [N],
        kept prompt rows [N / G], metrics)."""
        r = self.cfg.actor_rollout_ref.rollout
        B, G = self.cfg.data.train_batch_size, r.n
        fg = self.cfg.algorithm.filter_groups

        def sample_round(rounds: int) -> Round[tuple]:
            rows = self.next_rows(B)
            seed = derive_seed("verl-rollout", self.spec.seed, step, rounds)
            prompts = ro.render(self.tokenizer, rows)
            gen = ro.generate(self.policy, self.tokenizer, prompts, G, r.temperature, r.top_p,
                              self.cfg.data.max_response_length, seed)
            sc, info = ro.score(self.reward, self.tokenizer, rows, gen, G)
            acc = torch.tensor([bool(i["acc"]) for i in info])
            gid = np.repeat(np.arange(B), G)
            keep = np.ones(B * G, dtype=bool)
            if fg.enable:
                metric = (
                    sc.numpy() if fg.metric == "reward" else np.array([float(i[fg.metric]) for i in info])
                )
                keep = ro.filter_keep(metric, gid)

            def select(idx: torch.Tensor) -> tuple:
                """rows idx [n] -> (responses, scores [n], reward infos [n], prompt rows [n / G])."""
                at = idx.tolist()
                return (
                    ro.select_rows(gen, idx),
                    sc[idx],
                    [info[i] for i in at],
                    [rows[i // G] for i in at[::G]],
                )

            keep_t = torch.from_numpy(keep)
            return Round(acc, sc, torch.as_tensor(gid), gen.lengths, gen.truncated, keep_t, select)

        kept, metrics = collect_groups(sample_round, B, G, self.spec.train.max_sample_rounds)
        if not kept:
            return None, torch.empty(0), [], [], metrics
        gens, scores, infos, rows_kept = zip(*kept)
        return (ro.concat(list(gens), self.pad), torch.cat(scores), [i for part in infos for i in part],
                [row for part in rows_kept for row in part], metrics)

    def advantages(self, gen: ro.Generated, scores: torch.Tensor):
        """verl's stages up to the advantages: old log-probs (+entropy), ref log-probs, values, in-reward KL,
        `compute_advantage` with the configured estimator. -> (DataProto with advantages [N, T], metrics)."""
        from tensordict import TensorDict
        from verl import DataProto
        from verl.trainer.ppo.core_algos import agg_loss
        from verl.trainer.ppo.ray_trainer import apply_kl_penalty
        from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories
        from verl.utils import tensordict_utils as tu
        from verl.workers.utils.padding import no_padding_2_padding

        cfg, G = self.cfg, self.cfg.actor_rollout_ref.rollout.n
        temp = cfg.actor_rollout_ref.rollout.temperature
        N = gen.responses.shape[0]
        metrics = {}
        td = ro.as_tensordict(gen)
        tu.assign_non_tensor(td, calculate_entropy=True, compute_loss=False, temperature=temp)
        out = self.actor.compute_log_prob(td)
        old = no_padding_2_padding(tu.get(out, "log_probs"), td).float()
        ent = no_padding_2_padding(tu.get(out, "entropy"), td).float()
        actor_cfg = cfg.actor_rollout_ref.actor
        metrics["actor/entropy"] = agg_loss(
            loss_mat=ent,
            loss_mask=gen.response_mask,
            loss_agg_mode=actor_cfg.loss_agg_mode,
            loss_scale_factor=actor_cfg.loss_scale_factor,
        ).item()
        batch = {"response_mask": gen.response_mask, "old_log_probs": old}
        if self.ref is not None:
            td = ro.as_tensordict(gen)
            tu.assign_non_tensor(td, calculate_entropy=False, compute_loss=False, temperature=temp)
            batch["ref_log_prob"] = no_padding_2_padding(
                tu.get(self.ref.compute_ref_log_prob(td), "log_probs"), td
            ).float()
        if self.critic is not None:
            td = ro.as_tensordict(gen)
            tu.assign_non_tensor(td, compute_loss=False, temperature=temp)
            batch["values"] = no_padding_2_padding(tu.get(self.critic.infer_batch(td), "values"), td).float()
        # token-level scores: the sequence reward on its last response token (verl's reward loop layout)
        tok = torch.zeros(gen.responses.shape, dtype=torch.float32)
        tok[torch.arange(N), gen.lengths - 1] = scores.float()
        batch["token_level_scores"] = tok
        keys = [f"p{i // G}_{i % G}_0" for i in range(N)]
        data = DataProto(batch=TensorDict(batch, batch_size=N),
                         non_tensor_batch={"uid": np.array([k.split("_")[0] for k in keys], dtype=object)})
        if cfg.algorithm.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(
                data, kl_ctrl=self.kl_ctrl, kl_penalty=cfg.algorithm.kl_penalty
            )
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]
        data = compute_advantage_for_multi_trajectories(
            data,
            batch_keys=keys,
            adv_estimator=cfg.algorithm.adv_estimator,
            gamma=cfg.algorithm.gamma,
            lam=cfg.algorithm.lam,
            num_repeat=G,
            norm_adv_by_std_in_grpo=cfg.algorithm.get("norm_adv_by_std_in_grpo", True),
            config=cfg.algorithm,
        )
        adv = data.batch["advantages"]
        metrics["actor/adv_mean"] = float((adv * gen.response_mask).sum() / gen.response_mask.sum())
        return data, metrics

    def update(self, gen: ro.Generated, scores: torch.Tensor, step: int) -> dict:
        """One training step on a kept batch: advantages, critic update, actor update, weight sync.

        A full batch is mini-batched by verl (train.mini_batches of ppo_mini_batch_size prompts). A partial
        one (the sampling-round cap was hit) is split by the local backend's rule, one optimizer step per
        mini-batch (harness.backends.batching.mini_batch_rows), so both backends take the same number of
        steps on it and a clip bound can bind.

        verl's actor metrics keep their names: actor/ppo_kl is k1 of KL(pi_old || pi), as on the local
        backend; the local backend's actor/kl_k3 has no verl counterpart (verl's vanilla loss logs only k1).
        """
        cfg = self.cfg
        data, metrics = self.advantages(gen, scores)
        n, G = gen.responses.shape[0], cfg.actor_rollout_ref.rollout.n
        if n // G == cfg.data.train_batch_size:
            steps = [(None, cfg.actor_rollout_ref.actor.ppo_mini_batch_size * G, True)]  # all rows, verl batches
        else:
            steps = [(rows, rows.numel(), False) for epoch in range(cfg.actor_rollout_ref.actor.ppo_epochs)
                     for rows in mini_batch_rows(n // G, G, self.spec.train.mini_batches,
                                                 derive_seed("minibatch", self.spec.seed, step, epoch))]
        if self.critic is not None:
            metrics.update(self._train("critic", gen, steps, step, values=data.batch["values"],
                                       returns=data.batch["returns"]))
        extra = {"ref_log_prob": data.batch["ref_log_prob"]} if "ref_log_prob" in data.batch.keys() else {}
        metrics.update(self._train("actor", gen, steps, step, old_log_probs=data.batch["old_log_probs"],
                                   advantages=data.batch["advantages"], **extra))
        ro.sync_weights(self.actor.actor.engine, self.policy)
        return metrics

    def _train(self, which: str, gen: ro.Generated, steps: list, step: int, **tensors) -> dict:
        """verl's actor or critic update over (rows or None for all, mini-batch size, verl's own epochs?)
        steps -> metrics (the mean over the calls of each one's reduced metrics)."""
        from verl.utils import tensordict_utils as tu
        from verl.utils.metric import reduce_metrics

        cfg = self.cfg
        wcfg = cfg.critic if which == "critic" else cfg.actor_rollout_ref.actor
        calls: list[dict] = []
        for rows, size, native in steps:
            part = gen if rows is None else ro.select_rows(gen, rows.numpy())
            td = ro.as_tensordict(part, **{k: v if rows is None else v[rows] for k, v in tensors.items()})
            extra = {} if which == "critic" else {
                "calculate_entropy": wcfg.entropy_coeff != 0 or wcfg.calculate_entropy,
                "distillation_use_topk": False, "distillation_only": False, "compute_loss": True}
            tu.assign_non_tensor(td, global_batch_size=size, mini_batch_size=size,
                                 epochs=wcfg.ppo_epochs if native else 1, seed=wcfg.data_loader_seed + step,
                                 dataloader_kwargs={"shuffle": wcfg.shuffle if native else False},
                                 temperature=cfg.actor_rollout_ref.rollout.temperature, **extra)
            out = self.critic.train_mini_batch(td) if which == "critic" else self.actor.update_actor(td)
            calls.append(reduce_metrics(tu.get(out, "metrics")))
        keys = [k for k in calls[0] if not k.startswith("perf/") and k != "mfu"]
        mean = {k: float(np.mean([c[k] for c in calls if k in c])) for k in keys}
        if which == "critic":
            return {f"critic/{k}".replace("critic/critic/", "critic/"): v for k, v in mean.items()}
        return {(k if k.startswith("actor/") else f"actor/{k}"): v for k, v in mean.items()}

    # ------------------------------------------------------------------ validation
    def validate(self, step: int) -> dict:
        """n samples per validation prompt, scored, dumped with verl's own writer to {validation_data_dir}/{step}.jsonl."""
        from verl.trainer.ppo.metric_utils import process_validation_metrics
        from verl.trainer.ppo.v1.trainer_base import PPOTrainer

        vk = self.cfg.actor_rollout_ref.rollout.val_kwargs
        n = vk.n
        dump = {k: [] for k in ("inputs", "outputs", "gts", "scores")}
        extra: dict[str, list] = {}
        sources, uids = [], []
        for bench, rows in self.val_rows.items():
            prompts = ro.render(self.tokenizer, rows)
            gen = ro.generate(
                self.policy,
                self.tokenizer,
                prompts,
                n,
                vk.temperature,
                vk.top_p,
                self.cfg.data.max_response_length,
                derive_seed("verl-eval", self.spec.seed, step, bench),
            )
            sc, info = ro.score(self.reward, self.tokenizer, rows, gen, n)
            for i in range(len(info)):
                row = rows[i // n]
                p = gen.prompts[i][gen.prompt_mask[i].bool()]
                dump["inputs"].append(self.tokenizer.decode(p, skip_special_tokens=True))
                dump["outputs"].append(
                    self.tokenizer.decode(
                        gen.responses[i][gen.response_mask[i].bool()], skip_special_tokens=True
                    )
                )
                dump["gts"].append(row["reward_model"]["ground_truth"])
                dump["scores"].append(float(sc[i]))
                rec = {"reward": float(sc[i]), **info[i], "uid": f"{bench}-{i // n}_{i % n}_0",
                       "harness_length": int(gen.lengths[i]), "harness_truncated": bool(gen.truncated[i])}
                for k, v in rec.items():
                    extra.setdefault(k, []).append(v)
                sources.append(row["data_source"])
                uids.append(f"{bench}-{i // n}")
        PPOTrainer._write_generations(dump["inputs"], dump["outputs"], dump["gts"], dump["scores"], extra,
                                      self.cfg.trainer.validation_data_dir, step)
        val = process_validation_metrics(sources, uids, {k: extra[k] for k in ("reward", "acc")})
        return {
            f"val-core/{src}/{var}/{name}": v
            for src, d in val.items()
            for var, m in d.items()
            for name, v in m.items()
            if name.startswith("mean@")
        }

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int) -> None:
        """verl's layout: {default_local_dir}/global_step_{N}/{actor,critic} + latest_checkpointed_iteration.txt."""
        root = Path(self.cfg.trainer.default_local_dir)
        folder = root / f"global_step_{step}"
        self.actor.save_checkpoint(str(folder / "actor"), None, step, max_ckpt_to_keep=1)
        if self.critic is not None:
            self.critic.save_checkpoint(str(folder / "critic"), None, step, max_ckpt_to_keep=1)
        results.write_json(folder / "harness_state.json", {"step": step, "cursor": self.cursor})
        results.atomic_write_text(root / "latest_checkpointed_iteration.txt", str(step))
        for old in root.glob("global_step_*"):
            if old != folder and old.is_dir():
                import shutil

                shutil.rmtree(old, ignore_errors=True)

    def load_latest(self) -> int:
        """Resume from the latest checkpoint (0 when there is none)."""
        from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

        folder = find_latest_ckpt_path(str(self.cfg.trainer.default_local_dir))
        if folder is None:
            return 0
        folder = Path(folder)
        self.actor.load_checkpoint(str(folder / "actor"))
        if self.critic is not None:
            self.critic.load_checkpoint(str(folder / "critic"))
        state = json.loads((folder / "harness_state.json").read_text())
        self.cursor = int(state["cursor"])
        ro.sync_weights(self.actor.actor.engine, self.policy)
        return int(state["step"])


def train(spec: RunSpec, cfg, run_dir: Path, model_path: str, progress=None) -> None:
    """Run or resume one RunSpec in-process; metrics and samples are ingested from verl's own outputs."""
    from verl.utils.tracking import Tracking

    run_dir = Path(run_dir)
    trainer = InprocTrainer(spec, cfg, run_dir, model_path)
    start = trainer.load_latest()
    steps = spec.train.steps
    schedule = Schedule.of(spec, start, results.read_metrics_records(run_dir))
    os.environ["VERL_FILE_LOGGER_PATH"] = str(ingest.new_metrics_file(run_dir, start))
    tracker = Tracking(project_name=cfg.trainer.project_name, experiment_name=cfg.trainer.experiment_name,
                       default_backend=[b for b in cfg.trainer.logger if b != "console"],
                       config=trainer.OmegaConf.to_container(cfg, resolve=True))
    results.write_status(run_dir, "running", step=start, total_steps=steps, threads=torch.get_num_threads())
    try:
        if start == 0:
            t0 = time.perf_counter()
            tracker.log({**trainer.validate(0), "timing_s/testing": time.perf_counter() - t0}, step=0)
            ingest.sync(run_dir, spec)
        for step in range(start + 1, steps + 1):
            t0 = time.perf_counter()
            gen, scores, _, _, rec = trainer.collect(step)
            t1 = time.perf_counter()
            if gen is not None:
                rec.update(trainer.update(gen, scores, step))
            rec.update(
                {
                    "time/sample_s": t1 - t0,
                    "time/train_s": time.perf_counter() - t1,
                    "training/global_step": step,
                }
            )
            # the last step: train.steps, the one that spent train.budget (harness.backends.budget), or the one
            # that used up train.max_epochs passes over the data (verl's total_epochs; dynamic sampling draws
            # several batches a step, so filtering methods get there sooner)
            evaluated, last = schedule.after(step, rec)
            last = last or trainer.data_exhausted()
            evaluated = evaluated or last
            if evaluated:
                t2 = time.perf_counter()
                rec.update(trainer.validate(step))
                rec["timing_s/testing"] = time.perf_counter() - t2
            tracker.log(rec, step=step)
            if evaluated:  # the run folder holds every evaluation as soon as it exists (sweeps prune on it)
                ingest.sync(run_dir, spec)

            def checkpoint() -> None:
                trainer.save(step)
                ingest.sync(run_dir, spec)
                results.write_status(
                    run_dir, "running", step=step, total_steps=steps, threads=torch.get_num_threads()
                )

            saved = step % spec.train.checkpoint_every == 0 or last
            if saved:
                checkpoint()
            if progress is not None:
                try:
                    progress(step, steps, rec)
                except StopRequested:  # Ctrl-C / SIGTERM: keep this step, then stop
                    if not saved:
                        checkpoint()
                    raise
            if last:
                steps = step  # a budget or train.max_epochs may end the run early: it is done at this step
                break
    finally:
        tracker.finish()
    ingest.sync(run_dir, spec)
    warning = capped_warning(run_dir, spec.train.max_sample_rounds)
    if warning is not None:
        print(f"warning: {spec.run_id}: {warning}", file=sys.stderr)
    results.write_status(run_dir, "done", step=steps, total_steps=steps, threads=torch.get_num_threads(),
                         **schedule.status(), **({"warnings": [warning]} if warning else {}))
