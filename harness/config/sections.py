"""The typed sections of an experiment file (pydantic, frozen, unknown fields refused): task, model,
warm start, train, eval and verl settings, with the shared field types (Name, DataPath).

harness/config/experiment.py assembles them into the Experiment; a RunSpec (runspec.py) holds them
resolved for one run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, model_serializer, model_validator,
)

Pos = Field(gt=0)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{v!r}: use letters, digits, '_', '-' or '.'")
    return v


Name = Annotated[str, AfterValidator(_check_name)]


def _resolve_path(v: str, info: ValidationInfo) -> str:
    """Expand $VARS and ~, and make a relative path absolute against the experiment file's folder."""
    missing = [m for m in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", v) if m not in os.environ]
    if missing:
        raise ValueError(
            f"{v!r}: environment variable ${missing[0]} is not set (export it, or write the path)"
        )
    v = os.path.expanduser(os.path.expandvars(v))
    base = (info.context or {}).get("base")
    if base is not None and not os.path.isabs(v) and not v.startswith(("hf:", "hub:")):
        v = str((Path(base) / v).resolve())
    return v


DataPath = Annotated[str, AfterValidator(_resolve_path)]


def _resolve_model(v: str, info: ValidationInfo) -> str:
    """A model: a hub id (org/name that is not a path under the experiment file's folder) as it is, else a
    path as DataPath resolves it (harness.core.hub resolves hub ids when a run needs the weights)."""
    from harness.core.hub import is_hub_id

    expanded = os.path.expanduser(os.path.expandvars(v))
    base = (info.context or {}).get("base")
    local = Path(base) / expanded if base is not None and not os.path.isabs(expanded) else Path(expanded)
    if is_hub_id(expanded) and not local.exists():
        return expanded
    return _resolve_path(v, info)


ModelPath = Annotated[str, AfterValidator(_resolve_model)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    name: Literal["modchain"] = Field(
        "modchain", description="synthetic verifiable task (harness/tasks/modchain.py)"
    )
    min_ops: int = Field(2, gt=0, description="fewest operations in a training prompt")
    max_ops: int = Field(
        8, gt=0, le=12, description="most operations in a training prompt (the difficulty knob)"
    )
    grader: Literal["answer", "strict"] = Field(
        "answer", description="answer: digit after ';' only; strict: whole completion"
    )

    @model_validator(mode="after")
    def _range(self) -> "TaskConfig":
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) must be <= max_ops ({self.max_ops})")
        return self


class MathTaskConfig(_Strict):
    name: Literal["math"] = Field(
        description="competition math with a gold answer per problem (verl backend only)"
    )
    train: DataPath = Field(
        description="training problems: a .jsonl/.parquet file or a folder, in the math-evaluation-harness or verl "
        "layout (e.g. the NGRPO authors' math_train.parquet, accepted as it is); $VARS are expanded and a relative "
        "path is read from the experiment file's folder"
    )
    limit: int | None = Field(None, gt=0, description="only the first N training problems (smoke tests)")
    system_prompt: str | None = Field(
        None,
        description="system message of every prompt; null = the Qwen math prompt (harness.tasks.math_data."
        "SYSTEM_PROMPT: 'Please reason step by step, and put your final answer within \\boxed{}.')",
    )


def _task_tag(v: Any) -> str:
    name = v.get("name", "modchain") if isinstance(v, dict) else getattr(v, "name", "modchain")
    return name if name in ("modchain", "math") else "modchain"


Task = Annotated[
    Annotated[TaskConfig, Tag("modchain")] | Annotated[MathTaskConfig, Tag("math")], Discriminator(_task_tag)
]


class ModelSettings(_Strict):
    n_layer: int = Field(2, gt=0, description="transformer blocks")
    n_head: int = Field(4, gt=0, description="attention heads (must divide d_model)")
    d_model: int = Field(128, gt=0, description="embedding width")

    @model_validator(mode="after")
    def _heads(self) -> "ModelSettings":
        if self.d_model % self.n_head:
            raise ValueError(f"n_head ({self.n_head}) must divide d_model ({self.d_model})")
        return self


class WarmStartConfig(_Strict):
    steps: int = Field(300, ge=0, description="supervised steps on task solutions (0 = random init)")
    batch_size: int = Field(64, gt=0, description="sequences per supervised step")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate of the warm start")
    min_ops: int = Field(2, gt=0, description="fewest operations in warm-start examples")
    max_ops: int = Field(
        4, gt=0, description="most operations in warm-start examples (shorter than RL's: RL must extend)"
    )
    misconception: float = Field(
        0.0,
        ge=0,
        le=1,
        description="probability that each multiplication step of a warm-start solution is written off "
        "by one ((v + 1) mod 10), the chain continuing from the written value: a base policy that has seen the right rule "
        "and a systematic error, so RL has a latent skill to elicit (0 = clean solutions; see docs/findings.md)",
    )
    seed: int | None = Field(
        0,
        description="warm-start seed: one warm start shared by every run of the experiment (seed-to-seed spread "
        "then measures RL alone); null = one warm start per run seed, shared by all variants of that seed",
    )


class BudgetConfig(_Strict):
    """A training budget in generated rollouts or tokens (issue 20): the run stops once it is spent."""

    rollouts: int | None = Field(
        None, gt=0, description="responses generated, every sampling round included (a DAPO step that draws 3 "
        "rounds spends 3 x B x G)")
    tokens: int | None = Field(None, gt=0, description="response tokens generated, every sampling round included")

    @model_validator(mode="before")
    @classmethod
    def _unit(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            raise ValueError(f"give the unit: {{rollouts: N}} or {{tokens: N}}, not {raw!r}")
        return raw

    @model_validator(mode="after")
    def _one(self) -> "BudgetConfig":
        if (self.rollouts is None) == (self.tokens is None):
            raise ValueError("give exactly one of rollouts or tokens, e.g. {rollouts: 30720}")
        return self

    @property
    def unit(self) -> str:
        return "rollouts" if self.rollouts is not None else "tokens"

    @property
    def amount(self) -> int:
        return int(self.rollouts if self.rollouts is not None else self.tokens)


class TrainConfig(_Strict):
    steps: int = Field(40, gt=0, description="RL steps (one batch of prompts each); with train.budget, derived "
                       "(the most steps the budget allows: budget / (B x G)) and not to be given")
    budget: BudgetConfig | None = Field(
        None, description="stop when this many rollouts or tokens are generated ({rollouts: N} or {tokens: N}), "
        "instead of after train.steps: methods that draw several sampling rounds a step (DAPO, NGRPO's filter) then "
        "take fewer optimizer steps; evaluations at eval.budget_points fractions of it (issue 20)")
    prompts_per_step: int = Field(32, gt=0, description="B: prompts per step (paper: 1024)")
    group_size: int = Field(8, gt=0, description="G: responses per prompt (paper: 8)")
    mini_batches: int = Field(
        4,
        gt=0,
        description="M: optimizer steps per batch (paper: 1024/256 = 4); M = 1 and 1 epoch means clipping cannot bind",
    )
    epochs: int = Field(1, gt=0, description="passes over each batch (paper: 1)")
    lr: float = Field(3e-4, gt=0, description="actor AdamW learning rate (paper: 1e-6 for a 7B model)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (paper: 0.01)")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip (paper: 1.0)")
    temperature: float = Field(
        1.0,
        gt=0,
        description="rollout temperature (paper: 1.0); the trainer's old/new/reference "
        "log-probs and entropy use it too (the policy that was sampled, as verl)",
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="rollout top-p (default 1.0 = off); truncates sampling only: the "
        "trainer's log-probs are of the tempered, untruncated policy, as verl (logged gap: actor/rollout_logp_gap)",
    )
    max_new_tokens: int = Field(24, gt=0, description="response length limit")
    max_sample_rounds: int = Field(
        4, gt=0, description="cap on sampling rounds to fill a filtered batch (DAPO dynamic sampling); a step "
        "that hits it trains on a partial batch and logs train/sample_rounds_capped = 1, and a run with more than "
        "5% such steps ends with a warning in its status (cluster verl refills without a cap)"
    )
    threads: int = Field(
        1, gt=0, description="torch intra-op threads per run (pinned and recorded: results depend on it)"
    )
    checkpoint_every: int = Field(10, gt=0, description="steps between resumable checkpoints")
    max_epochs: int | None = Field(
        None, gt=0, description="also stop when the training data has been passed this many times, whichever "
        "comes first with steps (verl: trainer.total_epochs); filtering methods draw several batches a step, so "
        "they take fewer steps (the released NGRPO runs: 140 steps, 20 epochs); math task only (modchain draws "
        "new problems every step); null = steps alone")

    @model_validator(mode="before")
    @classmethod
    def _steps_or_budget(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("budget") is not None and "steps" in raw:
            raise ValueError("train.steps and train.budget: give one (a budgeted run stops when its budget is "
                             "spent; its step count follows)")
        return raw

    @model_validator(mode="after")
    def _budget_steps(self) -> "TrainConfig":
        if self.budget is not None:  # the most steps the budget allows: every step spends >= B x G rollouts
            per_step = self.prompts_per_step * self.group_size
            object.__setattr__(self, "steps", max(1, -(-self.budget.amount // per_step)))
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """max_epochs and budget at their default (null) are left out, so the content (and the run ids) of
        files that do not set them are what they were before they existed; with a budget, steps is derived
        and left out too."""
        out = handler(self)
        if self.max_epochs is None:
            out.pop("max_epochs", None)
        if self.budget is None:
            out.pop("budget", None)
        else:
            out.pop("steps", None)
            out["budget"] = {self.budget.unit: self.budget.amount}
        return out


class BenchmarkConfig(_Strict):
    min_ops: int = Field(gt=0, description="fewest operations in a held-out problem")
    max_ops: int = Field(gt=0, le=12, description="most operations in a held-out problem")
    problems: int = Field(
        64, gt=0, description="held-out problems (fixed by eval.seed, disjoint from training prompts)"
    )


class FileBenchmarkConfig(_Strict):
    path: DataPath = Field(
        description="benchmark file or folder (.jsonl/.parquet; math-evaluation-harness or verl layout, e.g. "
        "MATH500, AMC23, AIME2025); verl backend only")
    limit: int | None = Field(None, gt=0, description="only the first N problems (smoke tests)")


Benchmark = Annotated[
    Annotated[BenchmarkConfig, Tag("modchain")] | Annotated[FileBenchmarkConfig, Tag("file")],
    Discriminator(
        lambda v: (
            "file"
            if (isinstance(v, dict) and "path" in v) or isinstance(v, FileBenchmarkConfig)
            else "modchain"
        )
    ),
]


class EvalConfig(_Strict):
    every: int = Field(10, gt=0, description="evaluate every N steps (plus before RL and at the end); not with "
                       "train.budget (use budget_points)")
    budget_points: int | None = Field(
        None, gt=0, description="with train.budget: evaluate at the first step whose spend reaches each of N equal "
        "fractions of the budget (plus before RL), so every method is evaluated at the same spend (default 3)")
    n: int = Field(32, gt=0, description="samples per problem (paper: 256)")
    k_max: int | None = Field(None, gt=0, description="largest k reported (default: n); must be <= n")
    temperature: float = Field(0.6, gt=0, description="eval temperature (paper protocol: 0.6)")
    top_p: float = Field(0.95, gt=0, le=1, description="eval top-p (paper protocol: 0.95)")
    seed: int = Field(1234, description="seed of the held-out problem sets (shared by all runs)")
    benchmarks: dict[str, Benchmark] = Field(
        default_factory=lambda: {
            "easy": BenchmarkConfig(min_ops=2, max_ops=3),
            "medium": BenchmarkConfig(min_ops=4, max_ops=5),
            "hard": BenchmarkConfig(min_ops=6, max_ops=8),
        },
        description="name -> held-out set: modchain {min_ops, max_ops, problems} or, on the verl backend, a file "
        "{path, limit}",
    )

    @model_validator(mode="after")
    def _k(self) -> "EvalConfig":
        if self.k_max is not None and self.k_max > self.n:
            raise ValueError(
                f"n ({self.n}) is smaller than the largest k ({self.k_max}): raise n or lower k_max"
            )
        if not self.benchmarks:
            raise ValueError("benchmarks: at least one held-out set is needed")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """budget_points at its default (null) is left out (run ids of files without budgets unchanged)."""
        out = handler(self)
        if self.budget_points is None:
            out.pop("budget_points", None)
        return out


class VerlSettings(_Strict):
    """How a `backend: verl` experiment runs (see harness/backends/verl/ and ../shared/docs/VERL_NOTES.md)."""

    mode: Literal["cluster", "inproc"] = Field(
        "cluster",
        description="cluster: `python -m verl.trainer.main_ppo` on GPUs (Ray, FSDP, vLLM/SGLang), one "
        "subprocess per run; inproc: verl's own actor/ref/critic engines in this process on the CPU, with the "
        "harness's sampling of the same model standing in for vLLM (debugging and CI)",
    )
    device: Literal["gpu", "cpu"] = Field(
        "gpu",
        description="cluster mode only: gpu (verl as released) or cpu (the real `main_ppo` on this machine's CPU: "
        "a local Ray bound to 127.0.0.1 with one fake GPU slot, verl's FSDP2 engines and vLLM's CPU engine as the "
        "rollout server, through the workarounds of harness/backends/verl/compat.py; tiny models, tests and CI)",
    )
    model: ModelPath | None = Field(
        None,
        description="policy: a Hugging Face model folder or a hub id such as Qwen/Qwen2.5-Math-7B (read from the "
        "hub cache first, HF_HUB_CACHE; downloaded only when online); null = the experiment's embedded warm "
        "start exported as a HF model (modchain task)",
    )
    critic_model: ModelPath | None = Field(
        None, description="PPO critic initialisation (default: the policy model)"
    )
    rollout_engine: Literal["vllm", "sglang"] = Field(
        "vllm", description="cluster rollout server (verl rollout.name)"
    )
    n_gpus_per_node: int = Field(8, gt=0, description="GPUs per node (paper: 8)")
    nnodes: int = Field(1, gt=0, description="nodes")
    tensor_parallel_size: int = Field(1, gt=0, description="rollout tensor parallelism (paper: 2)")
    gpu_memory_utilization: float = Field(
        0.6, gt=0, le=1, description="rollout KV-cache memory fraction (paper: 0.7)"
    )
    max_prompt_length: int = Field(
        1024, gt=0, description="prompt token limit; longer prompts are filtered out (paper: 1024)"
    )
    micro_batch_size_per_gpu: int | None = Field(
        None,
        gt=0,
        description="sequences per forward/backward; null = dynamic batching by tokens (max_token_len_per_gpu)",
    )
    max_token_len_per_gpu: int = Field(
        16384, gt=0, description="token budget per micro-batch with dynamic batching (paper: 36000 actor)"
    )
    gradient_checkpointing: bool = Field(
        True, description="activation checkpointing in the actor and critic (cluster)"
    )
    ref_param_offload: bool = Field(
        True, description="keep the reference model's parameters on the CPU (paper: true)"
    )
    reward_processes: int = Field(2, gt=0, description="math-verify worker processes per reward worker")
    reward_timeout: float = Field(5.0, gt=0, description="hard per-answer grading timeout in seconds")
    ray_address: str | None = Field(
        None, description="submit to a running Ray cluster (ray_init.address) instead of a local one"
    )
    overrides: list[str] = Field(
        default_factory=list,
        description="extra Hydra overrides for verl (`key=value`, `+key=value`), applied last and "
        "validated against the installed verl config like the harness's own",
    )
