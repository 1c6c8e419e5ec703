"""Experiment files: a typed schema (pydantic), validated before any work, expanded into RunSpecs.

An experiment = shared settings (task, model, warm start, train, eval, seeds, backend) + a list of
variants (preset + piece/knob overrides). Each (variant, seed) becomes a RunSpec
(harness/config/runspec.py): fully resolved and typed, its content hash the run id, so re-running
the same file finds finished runs and an edited file makes new ones.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator,
    model_validator,
)

import algorithms
from harness.core.errors import UserError

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
        raise ValueError(f"{v!r}: environment variable ${missing[0]} is not set (export it, or write the path)")
    v = os.path.expanduser(os.path.expandvars(v))
    base = (info.context or {}).get("base")
    if base is not None and not os.path.isabs(v) and not v.startswith(("hf:", "hub:")):
        v = str((Path(base) / v).resolve())
    return v


DataPath = Annotated[str, AfterValidator(_resolve_path)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    name: Literal["modchain"] = Field("modchain", description="synthetic verifiable task (harness/tasks/modchain.py)")
    min_ops: int = Field(2, gt=0, description="fewest operations in a training prompt")
    max_ops: int = Field(8, gt=0, le=12, description="most operations in a training prompt (the difficulty knob)")
    grader: Literal["answer", "strict"] = Field("answer", description="answer: digit after ';' only; strict: whole completion")

    @model_validator(mode="after")
    def _range(self) -> "TaskConfig":
        if self.min_ops > self.max_ops:
            raise ValueError(f"min_ops ({self.min_ops}) must be <= max_ops ({self.max_ops})")
        return self


class MathTaskConfig(_Strict):
    name: Literal["math"] = Field(description="competition math with a gold answer per problem (verl backend only)")
    train: DataPath = Field(
        description="training problems: a .jsonl/.parquet file or a folder, in the math-evaluation-harness or verl "
        "layout (e.g. the NGRPO authors' math_train.parquet, accepted as it is); $VARS are expanded and a relative "
        "path is read from the experiment file's folder")
    limit: int | None = Field(None, gt=0, description="only the first N training problems (smoke tests)")
    system_prompt: str | None = Field(
        None, description="system message of every prompt; null = the Qwen math prompt (harness.tasks.math_data."
        "SYSTEM_PROMPT: 'Please reason step by step, and put your final answer within \\boxed{}.')")


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
    max_ops: int = Field(4, gt=0, description="most operations in warm-start examples (shorter than RL's: RL must extend)")
    misconception: float = Field(
        0.0, ge=0, le=1, description="probability that each multiplication step of a warm-start solution is written off "
        "by one ((v + 1) mod 10), the chain continuing from the written value: a base policy that has seen the right rule "
        "and a systematic error, so RL has a latent skill to elicit (0 = clean solutions; see docs/findings.md)")
    seed: int | None = Field(
        0, description="warm-start seed: one warm start shared by every run of the experiment (seed-to-seed spread "
        "then measures RL alone); null = one warm start per run seed, shared by all variants of that seed")


class TrainConfig(_Strict):
    steps: int = Field(40, gt=0, description="RL steps (one batch of prompts each)")
    prompts_per_step: int = Field(32, gt=0, description="B: prompts per step (paper: 1024)")
    group_size: int = Field(8, gt=0, description="G: responses per prompt (paper: 8)")
    mini_batches: int = Field(4, gt=0, description="M: optimizer steps per batch (paper: 1024/256 = 4); M = 1 and 1 epoch means clipping cannot bind")
    epochs: int = Field(1, gt=0, description="passes over each batch (paper: 1)")
    lr: float = Field(3e-4, gt=0, description="actor AdamW learning rate (paper: 1e-6 for a 7B model)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (paper: 0.01)")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip (paper: 1.0)")
    temperature: float = Field(1.0, gt=0, description="rollout temperature (paper: 1.0); the trainer's old/new/reference "
                               "log-probs and entropy use it too (the policy that was sampled, as verl)")
    top_p: float = Field(1.0, gt=0, le=1, description="rollout top-p (default 1.0 = off); truncates sampling only: the "
                         "trainer's log-probs are of the tempered, untruncated policy, as verl (logged gap: actor/rollout_logp_gap)")
    max_new_tokens: int = Field(24, gt=0, description="response length limit")
    max_sample_rounds: int = Field(4, gt=0, description="cap on sampling rounds to fill a filtered batch (DAPO dynamic sampling)")
    threads: int = Field(1, gt=0, description="torch intra-op threads per run (pinned and recorded: results depend on it)")
    checkpoint_every: int = Field(10, gt=0, description="steps between resumable checkpoints")


class BenchmarkConfig(_Strict):
    min_ops: int = Field(gt=0, description="fewest operations in a held-out problem")
    max_ops: int = Field(gt=0, le=12, description="most operations in a held-out problem")
    problems: int = Field(64, gt=0, description="held-out problems (fixed by eval.seed, disjoint from training prompts)")


class FileBenchmarkConfig(_Strict):
    path: DataPath = Field(
        description="benchmark file or folder (.jsonl/.parquet; math-evaluation-harness or verl layout, e.g. "
        "MATH500, AMC23, AIME2025); verl backend only")
    limit: int | None = Field(None, gt=0, description="only the first N problems (smoke tests)")


Benchmark = Annotated[
    Annotated[BenchmarkConfig, Tag("modchain")] | Annotated[FileBenchmarkConfig, Tag("file")],
    Discriminator(lambda v: "file" if (isinstance(v, dict) and "path" in v) or isinstance(v, FileBenchmarkConfig) else "modchain"),
]


class EvalConfig(_Strict):
    every: int = Field(10, gt=0, description="evaluate every N steps (plus before RL and at the end)")
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
            raise ValueError(f"n ({self.n}) is smaller than the largest k ({self.k_max}): raise n or lower k_max")
        if not self.benchmarks:
            raise ValueError("benchmarks: at least one held-out set is needed")
        return self


class Variant(_Strict):
    name: Name = Field(description="label in reports, e.g. ngrpo_no_virtual")
    preset: str = Field(description="one of: " + ", ".join(algorithms.list_presets()))
    overrides: dict[str, Any] = Field(default_factory=dict, description="piece or knob overrides by name")


class VerlSettings(_Strict):
    """How a `backend: verl` experiment runs (see harness/backends/verl/ and ../shared/docs/VERL_NOTES.md)."""

    mode: Literal["cluster", "inproc"] = Field(
        "cluster", description="cluster: `python -m verl.trainer.main_ppo` on GPUs (Ray, FSDP, vLLM/SGLang), one "
        "subprocess per run; inproc: verl's own actor/ref/critic engines in this process on the CPU, with the "
        "harness's sampling of the same model standing in for vLLM (debugging and CI)")
    model: DataPath | None = Field(
        None, description="policy: a Hugging Face model folder (or, in cluster mode, a hub id such as "
        "Qwen/Qwen2.5-Math-7B); null = the experiment's embedded warm start exported as a HF model (modchain task)")
    critic_model: DataPath | None = Field(None, description="PPO critic initialisation (default: the policy model)")
    rollout_engine: Literal["vllm", "sglang"] = Field("vllm", description="cluster rollout server (verl rollout.name)")
    n_gpus_per_node: int = Field(8, gt=0, description="GPUs per node (paper: 8)")
    nnodes: int = Field(1, gt=0, description="nodes")
    tensor_parallel_size: int = Field(1, gt=0, description="rollout tensor parallelism (paper: 2)")
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1, description="rollout KV-cache memory fraction (paper: 0.7)")
    max_prompt_length: int = Field(1024, gt=0, description="prompt token limit; longer prompts are filtered out (paper: 1024)")
    micro_batch_size_per_gpu: int | None = Field(
        None, gt=0, description="sequences per forward/backward; null = dynamic batching by tokens (max_token_len_per_gpu)")
    max_token_len_per_gpu: int = Field(16384, gt=0, description="token budget per micro-batch with dynamic batching (paper: 36000 actor)")
    gradient_checkpointing: bool = Field(True, description="activation checkpointing in the actor and critic (cluster)")
    ref_param_offload: bool = Field(True, description="keep the reference model's parameters on the CPU (paper: true)")
    reward_processes: int = Field(2, gt=0, description="math-verify worker processes per reward worker")
    reward_timeout: float = Field(5.0, gt=0, description="hard per-answer grading timeout in seconds")
    ray_address: str | None = Field(None, description="submit to a running Ray cluster (ray_init.address) instead of a local one")
    overrides: list[str] = Field(
        default_factory=list, description="extra Hydra overrides for verl (`key=value`, `+key=value`), applied last and "
        "validated against the installed verl config like the harness's own")


def import_plugins(plugins: list[str], base: Path | None = None) -> None:
    """Import modules that register pieces/presets: dotted module names or paths to .py files."""
    for p in plugins:
        try:
            if p.endswith(".py"):
                path = Path(p) if Path(p).is_absolute() or base is None else base / p
                mod_name = f"ngrpo_plugin_{canonical_hash(str(path.resolve()), 8)}"
                if mod_name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or not path.is_file():
                    raise ImportError(f"no such file {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[mod_name]  # a failed import must fail again, not look imported
                    raise
            else:
                importlib.import_module(p)
        except Exception as e:  # noqa: BLE001 - any failure of user code is reported as bad input
            raise UserError(f"plugins: cannot import {p!r} ({type(e).__name__}: {e})") from None


class Experiment(_Strict):
    name: Name = Field(description="experiment name: results/<name>/ and reports/<name>/")
    description: str = Field("", description="free text, shown in reports")
    plugins: list[str] = Field(
        default_factory=list,
        description="modules (dotted names, or .py paths relative to the experiment file) imported first; "
        "they may register pieces and presets (algorithms.register_*), e.g. a sixth algorithm",
    )
    backend: Literal["local", "verl"] = Field(
        "local", description="local: the embedded CPU backend; verl: verl 0.9.1 (settings in `verl:`)")
    verl: VerlSettings = Field(default_factory=VerlSettings, description="verl backend settings (backend: verl only)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="one run per (variant, seed)")
    task: Task = Field(default_factory=TaskConfig, description="training task: modchain (synthetic) or math (verl backend)")
    model: ModelSettings = Field(ModelSettings(), description="the policy network (embedded backend)")
    warm_start: WarmStartConfig = Field(WarmStartConfig(), description="supervised warm start, cached and shared by runs")
    train: TrainConfig = Field(TrainConfig(), description="RL training budget and optimiser")
    eval: EvalConfig = Field(EvalConfig(), description="held-out evaluation (pass@k samples)")
    variants: list[Variant] = Field(min_length=1, description="the algorithms compared: a preset plus overrides each")
    loggers: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list,
        description="experiment trackers that every run also logs to (metrics.jsonl is always written and stays the "
        "source of truth): tensorboard (event files in the run folder), wandb (offline run in the run folder; "
        "`wandb sync` later), mlflow (SQLite store results/mlflow.db); optional extras, e.g. "
        "pip install 'ngrpo-harness[tracking]'. Not part of the run id: adding a tracker re-runs nothing (harness/tracking/trackers.py)",
    )

    @field_validator("loggers")
    @classmethod
    def _loggers(cls, v: list[str]) -> list[str]:
        from harness.tracking.trackers import missing_message

        if len(set(v)) != len(v):
            raise ValueError("duplicates")
        msg = missing_message(v)
        if msg:
            raise ValueError(msg)
        return v

    @model_validator(mode="after")
    def _cross(self) -> "Experiment":
        names = [v.name for v in self.variants]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"variants: duplicate names {sorted(dup)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicates")
        if self.train.prompts_per_step % self.train.mini_batches:
            raise ValueError(
                f"train.mini_batches ({self.train.mini_batches}) must divide train.prompts_per_step ({self.train.prompts_per_step})"
            )
        if self.backend == "local":
            if self.task.name != "modchain":
                raise ValueError(f"task.name: {self.task.name!r} needs backend: verl (the local backend trains on modchain)")
            files = [n for n, b in self.eval.benchmarks.items() if isinstance(b, FileBenchmarkConfig)]
            if files:
                raise ValueError(f"eval.benchmarks.{files[0]}: file benchmarks need backend: verl (the local backend "
                                 "evaluates modchain sets {min_ops, max_ops, problems})")
            if "verl" in self.model_fields_set:
                raise ValueError("verl: settings for backend: verl, but backend is local (set backend: verl or remove verl:)")
        elif self.verl.model is None and self.task.name != "modchain":
            raise ValueError("verl.model: set a Hugging Face model folder (the embedded warm start exists only for modchain)")
        return self


def resolve_variant(exp: Experiment, idx: int) -> algorithms.Preset:
    """The variant's preset with overrides; errors name the variant and the knob."""
    v = exp.variants[idx]
    try:
        preset = algorithms.get_preset(v.preset, **v.overrides)
    except (KeyError, ValueError, TypeError) as e:
        field = "preset" if "preset" in str(e) and "knob" not in str(e) else "overrides"
        raise UserError(f"variants[{idx}] ({v.name}).{field}: {e}") from None
    if preset.group_relative and exp.train.group_size < 2:
        raise UserError(
            f"train.group_size: must be >= 2 for group-relative preset {v.preset!r} (variant {v.name!r}); "
            f"a group of one has no baseline"
        )
    return preset


def read_yaml(path: Path) -> Any:
    """yaml.safe_load of a user file; a syntax error -> UserError with its line and column."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        raise UserError(f"{path}: {where}not valid YAML ({problem}{f', {context}' if context else ''})") from None


def is_sweep_file(raw: Any) -> bool:
    """A sweep file (harness sweep) names a base `experiment` and `params`, and has no `variants`."""
    return isinstance(raw, dict) and "experiment" in raw and "params" in raw and "variants" not in raw


def validation_message(e: ValidationError, model: type[BaseModel]) -> str:
    """`field.path: message` for the first error; an unknown field gets the closest valid name."""
    from harness.config.fields import fields_at, suggest

    errors = e.errors()
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # a typo explains a missing field
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        hint = suggest(str(err["loc"][-1]), fields_at(model, tuple(err["loc"][:-1])))
        msg = f"unknown field{hint}; `harness validate --schema` lists every field"
    return f"{loc}: {msg}"


def load_experiment(path: str | Path) -> Experiment:
    """Parse and validate an experiment file; any problem raises UserError naming the field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such experiment file")
    raw = read_yaml(path)
    if is_sweep_file(raw):
        raise UserError(f"{path}: this is a sweep file (it has `experiment:` and `params:`): run it with "
                        f"`harness sweep {path}`")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with keys name, variants, ...")
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise UserError(f"{path}: plugins: must be a list of module names or .py paths")
    raw = {**raw, "plugins": [str((path.parent / p).resolve()) if p.endswith(".py") else p for p in plugins]}
    import_plugins(raw["plugins"])
    try:
        exp = Experiment.model_validate(raw, context={"base": path.parent.resolve()})
    except ValidationError as e:
        raise UserError(f"{path}: {validation_message(e, Experiment)}") from None
    for i in range(len(exp.variants)):
        try:
            resolve_variant(exp, i)
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
    return exp


CLIP_KNOBS = frozenset({"eps_low", "eps_high", "eps_pos", "eps_neg", "clip_c"})  # only matter when the ratio can move


def clip_cannot_bind(exp: Experiment) -> bool:
    return exp.train.mini_batches == 1 and exp.train.epochs == 1


def warn_if_clip_cannot_bind(exp: Experiment) -> str | None:
    """With one mini-batch and one epoch the ratio is identically 1: no clip bound can bind."""
    if clip_cannot_bind(exp):
        touched = [v.name for v in exp.variants if CLIP_KNOBS & set(v.overrides)]
        msg = (
            "train.mini_batches = 1 and train.epochs = 1: the policy ratio is identically 1, so no clip bound "
            "(eps_low/eps_high/eps_pos/eps_neg) can bind"
            + (f"; the epsilon settings of {', '.join(touched)} have no effect" if touched else "")
        )
        warnings.warn(msg, stacklevel=2)
        return msg
    return None


def canonical_hash(obj: Any, length: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]




