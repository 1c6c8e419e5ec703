"""RunSpec -> verl Hydra overrides, composed and checked against the installed verl config.

`overrides(spec, mode, run_dir, model_path)` maps every setting of a run: the algorithm (estimator and
its knobs, clip bounds, dual clip, loss aggregation, KL loss / in-reward KL, entropy bonus, group
filter, DAPO's overlong buffer, PPO's critic), the training budget (batch, group size, mini-batches,
epochs, optimiser), rollout and validation sampling, data files, reward function, dump directories and
loggers. A knob or piece verl cannot express raises VerlMappingError: nothing is dropped silently.

`compose(overrides)` builds the config as `python -m verl.trainer.main_ppo` would and runs what verl
checks (Hydra composition, `validate_config`, dataclass conversion of the actor, reference, rollout,
model and critic sections) plus what verl does not: numeric and boolean types of every overridden
key, registered estimator / loss / reward-manager names, the filter metric, and `+key` additions in
sections verl accepts without reading.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.config.runspec import RunSpec
import algorithms
from harness.backends.verl.plugin import verl_name

KL_TYPES = {"k1": "kl", "k3": "low_var_kl"}  # harness kl_estimator -> verl kl_loss_type
DUAL_CLIP_OFF = 1e9  # verl always applies dual clip with clip_ratio_c (> 1); this value never binds
CPU_CLUSTER_SLOTS = 16  # Ray logical CPUs for a CPU main_ppo (TaskRunner, TransferQueue, workers, servers)
FP32 = "{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"
FILTER_METRICS = {
    "keep_all": None,
    "drop_homogeneous": "acc",
    "drop_all_correct": "ngrpo_keep",
    "drop_all_wrong": "right_keep",
}
REWARD_FN = "pkg://harness.backends.verl.reward"
# `+key` additions the harness makes on purpose (read by verl or by our plugin/reward function)
PLUS_ALLOWED = (
    "algorithm.harness.",
    "reward.reward_kwargs.",
    "reward.custom_reward_function.reward_kwargs.",
    "actor_rollout_ref.model.override_config.",
    "critic.model.override_config.",
    "ray_kwargs.ray_init.",
    "actor_rollout_ref.rollout.enable_sleep_mode",  # a RolloutConfig field the yaml lacks (CPU: vLLM has no sleep mode)
    "actor_rollout_ref.actor.fsdp_config.mixed_precision",
    "actor_rollout_ref.ref.fsdp_config.mixed_precision",
    "critic.fsdp.mixed_precision",
)
# sections verl converts to dataclasses (an unknown +key there fails conversion, which compose() runs)
CONVERTED = ("actor_rollout_ref.actor.", "actor_rollout_ref.ref.", "actor_rollout_ref.rollout.",
             "actor_rollout_ref.model.", "critic.")


class VerlMappingError(ValueError):
    """A setting with no verl equivalent, or a composed config verl (or the harness) rejects."""


def fmt(v) -> str:
    """A Python value as a Hydra override value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        return repr(float(f"{v:.12g}"))  # 1e-05, not 9.999999999999999e-06
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt(x) for x in v) + "]"
    s = str(v)
    if re.fullmatch(r"[A-Za-z0-9_./:@+-]+", s) and s not in ("true", "false", "null"):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def algorithm_overrides(spec: RunSpec) -> list[str]:
    """The preset's pieces and knobs as verl settings (VerlMappingError where verl has no equivalent)."""
    preset = spec.algorithm
    pieces, k, ak = preset.pieces, preset.knobs.objective, preset.piece_knobs("advantage")
    label = f"variant {spec.variant!r}"
    out: list[str] = []
    adv = pieces["advantage"]
    if algorithms.ADVANTAGES.meta(adv).get("token_level", False):
        if adv != "gae":
            raise VerlMappingError(
                f"{label}: token-level advantage {adv!r} has no verl equivalent (verl's only one is gae)"
            )
        if not ak["whiten"]:
            raise VerlMappingError(
                f"{label}: knob whiten=false has no verl equivalent (verl's GAE always whitens)"
            )
        if not k["use_critic"]:
            raise VerlMappingError(f"{label}: gae needs use_critic=true (verl trains a critic for GAE)")
        out += [
            "algorithm.adv_estimator=gae",
            f"algorithm.gamma={fmt(float(ak['gamma']))}",
            f"algorithm.lam={fmt(float(ak['lam']))}",
        ]
    else:
        out.append(f"algorithm.adv_estimator={verl_name(adv)}")
        out += [f"+algorithm.harness.{n}={fmt(v)}" for n, v in ak.items()]
    loss, lk = pieces["policy_loss"], preset.piece_knobs("policy_loss")
    if loss == "ppo_clip":
        low, high = lk["eps_low"], lk["eps_high"]
    elif loss == "sign_clip":  # A >= 0 only meets the upper bound, A < 0 only the lower: decoupled clip
        low, high = lk["eps_neg"], lk["eps_pos"]
    else:
        raise VerlMappingError(
            f"{label}: policy loss {loss!r} has no verl equivalent (ppo_clip and sign_clip map to vanilla)"
        )
    a = "actor_rollout_ref.actor"
    out += [
        f"{a}.policy_loss.loss_mode=vanilla",
        f"{a}.clip_ratio={fmt(float(low))}",
        f"{a}.clip_ratio_low={fmt(float(low))}",
        f"{a}.clip_ratio_high={fmt(float(high))}",
        f"{a}.clip_ratio_c={fmt(float(lk['clip_c'] if lk['clip_c'] is not None else DUAL_CLIP_OFF))}",
        f"{a}.loss_agg_mode={lk['agg']}",
        f"{a}.entropy_coeff={fmt(float(k['entropy_coef']))}",
        f"{a}.use_kl_loss={fmt(k['kl_coef'] > 0)}",
        f"{a}.kl_loss_coef={fmt(float(k['kl_coef']))}",
        f"{a}.kl_loss_type={KL_TYPES[k['kl_estimator']]}",
        f"algorithm.use_kl_in_reward={fmt(k['kl_in_reward_coef'] > 0)}",
        "algorithm.kl_penalty=kl",
        "algorithm.kl_ctrl.type=fixed",
        f"algorithm.kl_ctrl.kl_coef={fmt(float(k['kl_in_reward_coef']))}",
        f"critic.enable={fmt(bool(k['use_critic']))}",
    ]
    if lk["agg"] == "seq-mean-token-sum-norm":  # Dr. GRPO's constant: the generation limit, not the batch's
        out.append(f"{a}.loss_scale_factor={spec.train.max_new_tokens}")
    if k["use_critic"]:
        out += [
            f"critic.optim.lr={fmt(spec.train.lr * k['critic_lr_mult'])}",
            f"critic.cliprange_value={fmt(float(k['value_clip']))}",
        ]
    flt = pieces["group_filter"]
    if flt not in FILTER_METRICS:
        raise VerlMappingError(
            f"{label}: group filter {flt!r} has no verl equivalent ({', '.join(FILTER_METRICS)})"
        )
    metric = FILTER_METRICS[flt]
    out.append(f"algorithm.filter_groups.enable={fmt(metric is not None)}")
    if metric is not None:
        out.append(f"algorithm.filter_groups.metric={metric}")
    shaper = pieces["reward_shaper"]
    if shaper == "overlong":
        sk = preset.piece_knobs("reward_shaper")
        max_len = int(sk["max_len"] if sk["max_len"] is not None else spec.train.max_new_tokens)
        cache = int(sk["cache_len"] if sk["cache_len"] is not None else max(1, max_len // 5))
        out += [
            "reward.reward_manager.name=dapo",
            "+reward.reward_kwargs.overlong_buffer_cfg.enable=true",
            f"+reward.reward_kwargs.overlong_buffer_cfg.len={cache}",
            "+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor=1.0",
            "+reward.reward_kwargs.overlong_buffer_cfg.log=true",
            f"+reward.reward_kwargs.max_resp_len={max_len}",
        ]
    elif shaper == "none":
        out.append("reward.reward_manager.name=naive")
    else:
        raise VerlMappingError(f"{label}: reward shaper {shaper!r} has no verl equivalent (none, overlong)")
    return out


def train_overrides(spec: RunSpec) -> list[str]:
    tr, ev, vc = spec.train, spec.eval, spec.verl
    a, r = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"
    grader = spec.task.grader if spec.task.name == "modchain" else "math"
    return [
        f"data.train_batch_size={tr.prompts_per_step}",
        f"data.max_prompt_length={vc.max_prompt_length}",
        f"data.max_response_length={tr.max_new_tokens}",
        "data.filter_overlong_prompts=true",
        "data.truncation=error",
        "data.shuffle=false" if spec.task.name == "modchain" else "data.shuffle=true",
        f"data.seed={spec.seed}",
        f"{r}.n={tr.group_size}",
        f"{r}.temperature={fmt(float(tr.temperature))}",
        f"{r}.top_p={fmt(float(tr.top_p))}",
        f"{r}.top_k=-1",
        f"{r}.seed={spec.seed}",
        f"{r}.val_kwargs.n={ev.n}",
        f"{r}.val_kwargs.temperature={fmt(float(ev.temperature))}",
        f"{r}.val_kwargs.top_p={fmt(float(ev.top_p))}",
        f"{r}.val_kwargs.top_k=-1",
        f"{r}.val_kwargs.do_sample=true",
        f"{a}.ppo_mini_batch_size={tr.prompts_per_step // tr.mini_batches}",
        f"{a}.ppo_epochs={tr.epochs}",
        f"{a}.shuffle=true",
        f"{a}.data_loader_seed={spec.seed}",
        f"{a}.optim.lr={fmt(float(tr.lr))}",
        f"{a}.optim.weight_decay={fmt(float(tr.weight_decay))}",
        f"{a}.optim.clip_grad={fmt(float(tr.grad_clip))}",
        f"{a}.grad_clip={fmt(float(tr.grad_clip))}",
        f"critic.grad_clip={fmt(float(tr.grad_clip))}",
        f"trainer.total_training_steps={tr.steps}",
        f"trainer.total_epochs={tr.max_epochs or tr.steps}",  # verl stops at whichever comes first
        f"trainer.save_freq={tr.checkpoint_every}",
        f"trainer.test_freq={ev.every}",
        "trainer.val_before_train=true",
        "trainer.resume_mode=auto",
        "trainer.critic_warmup=0",
        "trainer.log_val_generations=0",
        f"reward.custom_reward_function.path={REWARD_FN}",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.grader={grader}",
        f"+reward.custom_reward_function.reward_kwargs.processes={vc.reward_processes}",
        f"+reward.custom_reward_function.reward_kwargs.timeout={fmt(float(vc.reward_timeout))}",
        # tracker project = the experiment, run name = the run id: verl runs land beside local runs
        f"trainer.project_name={fmt(spec.experiment)}",
        f"trainer.experiment_name={fmt(spec.run_id)}",
    ]


def mode_overrides(spec: RunSpec, mode: str) -> list[str]:
    vc = spec.verl
    a, r, ref, m = (
        "actor_rollout_ref.actor",
        "actor_rollout_ref.rollout",
        "actor_rollout_ref.ref",
        "actor_rollout_ref.model",
    )
    cpu_engine = [  # verl's engine on the CPU: FSDP2, fp32, eager attention, no compile (VERL_NOTES §9)
        f"{a}.strategy=fsdp2",
        f"{ref}.strategy=fsdp2",
        "critic.strategy=fsdp2",
        f"{m}.use_remove_padding=false",
        "critic.model.use_remove_padding=false",
        f"+{m}.override_config.attn_implementation=eager",
        "+critic.model.override_config.attn_implementation=eager",
        f"+{a}.fsdp_config.mixed_precision={FP32}",
        f"+{ref}.fsdp_config.mixed_precision={FP32}",
        f"+critic.fsdp.mixed_precision={FP32}",
        f"{a}.use_torch_compile=false",
        f"{a}.fsdp_config.use_torch_compile=false",
        f"{ref}.fsdp_config.use_torch_compile=false",
        "critic.fsdp.use_torch_compile=false",
        f"{m}.enable_gradient_checkpointing=false",
        "critic.model.enable_gradient_checkpointing=false",
    ]
    if mode == "inproc":
        out = [f"{r}.name=vllm", "trainer.n_gpus_per_node=1", "trainer.nnodes=1", "trainer.device=cpu", *cpu_engine]
    elif vc.device == "cpu":
        out = cpu_cluster_overrides(spec) + cpu_engine
    else:
        out = [
            f"{r}.name={vc.rollout_engine}", f"{r}.tensor_model_parallel_size={vc.tensor_parallel_size}",
            f"{r}.gpu_memory_utilization={fmt(float(vc.gpu_memory_utilization))}",
            f"trainer.n_gpus_per_node={vc.n_gpus_per_node}", f"trainer.nnodes={vc.nnodes}",
            f"{m}.use_remove_padding=true", "critic.model.use_remove_padding=true",
            f"{m}.enable_gradient_checkpointing={fmt(vc.gradient_checkpointing)}",
            f"critic.model.enable_gradient_checkpointing={fmt(vc.gradient_checkpointing)}",
            f"{ref}.fsdp_config.param_offload={fmt(vc.ref_param_offload)}",
        ]
    if vc.micro_batch_size_per_gpu:
        mb = vc.micro_batch_size_per_gpu
        out += [f"{a}.ppo_micro_batch_size_per_gpu={mb}", f"{r}.log_prob_micro_batch_size_per_gpu={mb}",
                f"{ref}.log_prob_micro_batch_size_per_gpu={mb}", f"critic.ppo_micro_batch_size_per_gpu={mb}"]
    else:
        t = vc.max_token_len_per_gpu
        out += [
            f"{a}.use_dynamic_bsz=true",
            f"{a}.ppo_max_token_len_per_gpu={t}",
            f"{r}.log_prob_max_token_len_per_gpu={t}",
            f"{ref}.log_prob_max_token_len_per_gpu={t}",
            f"critic.ppo_max_token_len_per_gpu={t}",
        ]
    if vc.ray_address:
        out.append(f"+ray_kwargs.ray_init.address={fmt(vc.ray_address)}")
    return out


def cpu_cluster_overrides(spec: RunSpec) -> list[str]:
    """Cluster mode with `device: cpu`: the real main_ppo on this machine (harness.backends.verl.compat).

    One fake GPU slot in a local Ray bound to 127.0.0.1 (verl's worker groups ask Ray for a GPU per rank),
    logical CPUs for verl's many actors (the slots are a count, not cores), one TransferQueue storage unit,
    one agent-loop and one reward worker, and vLLM's CPU engine: fp32, eager, no chunked prefill (CPU
    generators cannot rewind a seeded request), no sleep mode, KV cache at 0.2 of the NUMA node's memory.
    """
    r, vc = "actor_rollout_ref.rollout", spec.verl
    return [
        f"{r}.name=vllm", f"{r}.tensor_model_parallel_size=1", f"{r}.dtype=float32", f"{r}.enforce_eager=true",
        f"{r}.free_cache_engine=false", f"+{r}.enable_sleep_mode=false", f"{r}.enable_chunked_prefill=false",
        f"{r}.enable_prefix_caching=false",
        f"{r}.gpu_memory_utilization={fmt(min(float(vc.gpu_memory_utilization), 0.2))}",
        f"{r}.max_num_seqs=64", f"{r}.agent.num_workers=1", "reward.num_workers=1",
        "trainer.n_gpus_per_node=1", "trainer.nnodes=1", "trainer.device=cpu",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"+ray_kwargs.ray_init.num_cpus={CPU_CLUSTER_SLOTS}", "+ray_kwargs.ray_init.num_gpus=1",
        "+ray_kwargs.ray_init._node_ip_address=127.0.0.1", "+ray_kwargs.ray_init.include_dashboard=false",
    ]


def path_overrides(
    run_dir: Path, model: str, critic_model: str, train: Path, val: list[Path], loggers: list[str]
) -> list[str]:
    return [
        f"actor_rollout_ref.model.path={fmt(model)}", f"critic.model.path={fmt(critic_model)}",
        f"data.train_files={fmt([str(train)])}", f"data.val_files={fmt([str(p) for p in val])}",
        f"trainer.default_local_dir={fmt(str(Path(run_dir) / 'checkpoints'))}",
        f"trainer.validation_data_dir={fmt(str(Path(run_dir) / 'verl' / 'val'))}",
        f"trainer.logger={fmt(loggers)}",
    ]


def overrides(
    spec: RunSpec,
    mode: str,
    run_dir: Path,
    model: str,
    critic_model: str,
    train: Path,
    val: list[Path],
    loggers: list[str],
) -> list[str]:
    """Every override of one run, the user's `verl.overrides` last."""
    return (algorithm_overrides(spec) + train_overrides(spec) + mode_overrides(spec, mode)
            + path_overrides(run_dir, model, critic_model, train, val, loggers) + list(spec.verl.overrides))
