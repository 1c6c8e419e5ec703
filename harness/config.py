"""Experiment files: a typed schema (pydantic), validated before any work, expanded into RunSpecs.

An experiment = shared settings (task, model, warm start, train, eval, seeds, backend) + a list of
variants (preset + piece/knob overrides). Each (variant, seed) becomes a RunSpec: a fully resolved,
JSON-able dict whose content hash is the run id, so re-running the same file finds finished runs
and an edited file makes new ones.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

import algorithms
from harness.errors import UserError

Pos = Field(gt=0)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"{v!r}: use letters, digits, '_', '-' or '.'")
    return v


Name = Annotated[str, AfterValidator(_check_name)]


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
    min_ops: int = Field(gt=0)
    max_ops: int = Field(gt=0, le=12)
    problems: int = Field(64, gt=0, description="held-out problems (fixed by eval.seed, disjoint from training prompts)")


class EvalConfig(_Strict):
    every: int = Field(10, gt=0, description="evaluate every N steps (plus before RL and at the end)")
    n: int = Field(32, gt=0, description="samples per problem (paper: 256)")
    k_max: int | None = Field(None, gt=0, description="largest k reported (default: n); must be <= n")
    temperature: float = Field(0.6, gt=0, description="eval temperature (paper protocol: 0.6)")
    top_p: float = Field(0.95, gt=0, le=1, description="eval top-p (paper protocol: 0.95)")
    seed: int = Field(1234, description="seed of the held-out problem sets (shared by all runs)")
    benchmarks: dict[str, BenchmarkConfig] = Field(
        default_factory=lambda: {
            "easy": BenchmarkConfig(min_ops=2, max_ops=3),
            "medium": BenchmarkConfig(min_ops=4, max_ops=5),
            "hard": BenchmarkConfig(min_ops=6, max_ops=8),
        },
        description="name -> held-out set by chain length",
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
                spec.loader.exec_module(module)
            else:
                importlib.import_module(p)
        except Exception as e:  # noqa: BLE001 - any failure of user code is reported as bad input
            raise UserError(f"plugins: cannot import {p!r} ({type(e).__name__}: {e})") from None


class Experiment(_Strict):
    name: Name = Field(description="experiment name: results/<name>/ and reports/<name>/")
    description: str = ""
    plugins: list[str] = Field(
        default_factory=list,
        description="modules (dotted names, or .py paths relative to the experiment file) imported first; "
        "they may register pieces and presets (algorithms.register_*), e.g. a sixth algorithm",
    )
    backend: Literal["local"] = Field("local", description="local (embedded CPU backend)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    task: TaskConfig = TaskConfig()
    model: ModelSettings = ModelSettings()
    warm_start: WarmStartConfig = WarmStartConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    variants: list[Variant] = Field(min_length=1)

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


def load_experiment(path: str | Path) -> Experiment:
    """Parse and validate an experiment file; any problem raises UserError naming the field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such experiment file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with keys name, variants, ...")
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise UserError(f"{path}: plugins: must be a list of module names or .py paths")
    raw = {**raw, "plugins": [str((path.parent / p).resolve()) if p.endswith(".py") else p for p in plugins]}
    import_plugins(raw["plugins"])
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `harness validate --help` for the schema)"
        raise UserError(f"{path}: {loc}: {msg}") from None
    for i in range(len(exp.variants)):
        resolve_variant(exp, i)
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


def expand(exp: Experiment) -> list[dict]:
    """One RunSpec (a plain, JSON-able dict) per (variant, seed); run_id = hash of the content."""
    specs = []
    # `plugins` enters the spec (and so the run id) only when used
    base = exp.model_dump(exclude={"variants", "seeds", "description"} | (set() if exp.plugins else {"plugins"}))
    for i, v in enumerate(exp.variants):
        preset = resolve_variant(exp, i)
        for seed in exp.seeds:
            spec = {
                "experiment": exp.name,
                "variant": v.name,
                "seed": seed,
                "backend": exp.backend,
                "preset": v.preset,
                "overrides": dict(v.overrides),
                "algorithm": preset.as_dict(),
                **base,
            }
            spec["warm_start"] = {**spec["warm_start"], "seed": exp.warm_start.seed if exp.warm_start.seed is not None else seed}
            spec["run_id"] = f"{v.name}-s{seed}-{canonical_hash(spec)}"
            specs.append(spec)
    return specs
