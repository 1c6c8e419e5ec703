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
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

import algorithms
from harness.config.sections import (  # noqa: F401  (re-exported: the schema's sections are imported from here too)
    Benchmark,
    BenchmarkConfig,
    DataPath,
    EvalConfig,
    FileBenchmarkConfig,
    MathTaskConfig,
    ModelSettings,
    Name,
    Task,
    TaskConfig,
    TrainConfig,
    VerlSettings,
    WarmStartConfig,
    _Strict,
)
from harness.core.errors import UserError

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
    verl: VerlSettings = Field(
        default_factory=VerlSettings, description="verl backend settings (backend: verl only)"
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0], min_length=1, description="one run per (variant, seed)"
    )
    task: Task = Field(
        default_factory=TaskConfig, description="training task: modchain (synthetic) or math (verl backend)"
    )
    model: ModelSettings = Field(ModelSettings(), description="the policy network (embedded backend)")
    warm_start: WarmStartConfig = Field(
        WarmStartConfig(), description="supervised warm start, cached and shared by runs"
    )
    train: TrainConfig = Field(TrainConfig(), description="RL training budget and optimiser")
    eval: EvalConfig = Field(EvalConfig(), description="held-out evaluation (pass@k samples)")
    variants: list[Variant] = Field(
        min_length=1, description="the algorithms compared: a preset plus overrides each"
    )
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
        if self.train.budget is not None and "every" in self.eval.model_fields_set:
            raise ValueError("eval.every counts steps: with train.budget, evaluations are at eval.budget_points "
                             "fractions of the budget (remove eval.every)")
        if self.train.budget is None and self.eval.budget_points is not None:
            raise ValueError("eval.budget_points: needs train.budget (without a budget, eval.every counts steps)")
        if self.train.max_epochs is not None and self.task.name == "modchain":
            raise ValueError("train.max_epochs: the modchain task draws new problems every step, so it has no "
                             "epochs; remove it (it applies to the math task)")
        if self.backend == "local":
            if self.task.name != "modchain":
                raise ValueError(
                    f"task.name: {self.task.name!r} needs backend: verl (the local backend trains on modchain)"
                )
            files = [n for n, b in self.eval.benchmarks.items() if isinstance(b, FileBenchmarkConfig)]
            if files:
                raise ValueError(
                    f"eval.benchmarks.{files[0]}: file benchmarks need backend: verl (the local backend "
                    "evaluates modchain sets {min_ops, max_ops, problems})"
                )
            if "verl" in self.model_fields_set:
                raise ValueError(
                    "verl: settings for backend: verl, but backend is local (set backend: verl or remove verl:)"
                )
        elif self.verl.model is None and self.task.name != "modchain":
            raise ValueError(
                "verl.model: set a Hugging Face model folder (the embedded warm start exists only for modchain)"
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


def read_yaml(path: Path) -> Any:
    """yaml.safe_load of a user file; a syntax error -> UserError with its line and column."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        raise UserError(
            f"{path}: {where}not valid YAML ({problem}{f', {context}' if context else ''})"
        ) from None


def is_sweep_file(raw: Any) -> bool:
    """A sweep file (harness sweep) names a base `experiment` and `params`, and has no `variants`."""
    return isinstance(raw, dict) and "experiment" in raw and "params" in raw and "variants" not in raw


def validation_message(e: ValidationError, model: type[BaseModel]) -> str:
    """`field.path: message` for the first error; an unknown field gets the closest valid name."""
    from harness.config.fields import fields_at, suggest

    errors = e.errors()
    err = next(
        (x for x in errors if x["type"] == "extra_forbidden"), errors[0]
    )  # a typo explains a missing field
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


CLIP_KNOBS = frozenset(
    {"eps_low", "eps_high", "eps_pos", "eps_neg", "clip_c"}
)  # only matter when the ratio can move


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
