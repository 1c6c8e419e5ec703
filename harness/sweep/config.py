"""`harness sweep`: an Optuna study over a variant's knobs (e.g. NGRPO's eps_pos / eps_neg).

A sweep file names a base experiment and variant, the parameters to search (float, log-float, int
or categorical; knobs of the variant's preset or experiment fields such as `train.lr`), the sampler
(tpe, random, grid, cmaes) and the objective (any metric the report computes on one held-out
benchmark at the final step: `auc`, or `pass@K`; averaged over the sweep's seeds; maximised or
minimised). Each trial is a set of ordinary runs (one RunSpec per seed) under
results/<experiment>_sweep_<variant>/, so `harness report` reads them like any experiment and adds
the sweep's own figures. Optuna storages and samplers: harness/sweep/optuna_glue.py; the driver:
harness/sweep/driver.py; what a run does in its worker process: harness/sweep/worker.py; the command:
harness/cli/sweep.py.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import algorithms
from harness.config.experiment import (
    CLIP_KNOBS,
    Experiment,
    Name,
    canonical_hash,
    clip_cannot_bind,
    load_experiment,
    read_yaml,
    validation_message,
)
from harness.config.runspec import expand
from harness.core.errors import UserError

Choice = Union[bool, int, float, str]
SAMPLERS = ("tpe", "random", "grid", "cmaes")
_METRIC = re.compile(r"^(auc|pass@[1-9][0-9]*)$")


class Param(BaseModel):
    """One searched parameter: a numeric range (float or int, optionally log) or a list of choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["float", "int", "categorical"] | None = Field(
        None,
        description="float | int | categorical (default: categorical when `choices` is given, else float)",
    )
    low: float | None = Field(None, description="lower bound (inclusive)")
    high: float | None = Field(None, description="upper bound (inclusive)")
    log: bool = Field(False, description="sample on a log scale (needs low > 0)")
    step: float | None = Field(None, gt=0, description="discretisation step (not with log)")
    choices: list[Choice] | None = Field(None, description="categorical values")
    grid: int | None = Field(
        None, ge=2, description="grid sampler: this many points from low to high (log-spaced when log)"
    )
    values: list[Choice] | None = Field(None, description="grid sampler: explicit values instead of `grid`")

    @model_validator(mode="after")
    def _check(self) -> "Param":
        kind = self.kind
        if kind == "categorical":
            if not self.choices:
                raise ValueError("choices: empty; list at least one value")
            if self.low is not None or self.high is not None or self.log or self.grid or self.values:
                raise ValueError("a categorical parameter takes only `choices`")
            return self
        if self.choices is not None:
            raise ValueError(f"`choices` is for categorical parameters; this one is {kind}")
        if self.low is None or self.high is None:
            raise ValueError("a numeric range needs both low and high (or give `choices`)")
        if self.low == self.high:
            raise ValueError(f"empty range (low = high = {self.low}); widen it or drop the parameter")
        if self.low > self.high:
            raise ValueError(f"inverted range (low {self.low} > high {self.high}); swap them")
        if self.log and self.low <= 0:
            raise ValueError(
                f"log range with a non-positive bound (low = {self.low}); a log scale needs low > 0"
            )
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna); drop one")
        if kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int range needs integer low and high")
        for v in self.values or []:
            if isinstance(v, (bool, str)) or not self.low <= float(v) <= self.high:
                raise ValueError(f"values: {v!r} is outside [{self.low}, {self.high}]")
        return self

    @property
    def kind(self) -> str:
        return self.type or ("categorical" if self.choices is not None else "float")

    def grid_values(self) -> list[Choice] | None:
        """The finite list a grid sampler visits, or None when the parameter has none."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.values:
            return [int(v) if self.kind == "int" else float(v) for v in self.values]
        if self.kind == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.grid:
            pts = (
                np.geomspace(self.low, self.high, self.grid)
                if self.log
                else np.linspace(self.low, self.high, self.grid)
            )
            return (
                sorted({int(round(p)) for p in pts})
                if self.kind == "int"
                else [float(f"{p:.10g}") for p in pts]
            )
        return None

    def suggest(self, trial, name: str) -> Choice:
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    experiment: str = Field(description="base experiment file (relative to the sweep file)")
    variant: Name = Field(description="variant of the base experiment whose settings are searched")
    params: dict[str, Param] = Field(
        min_length=1,
        description="name -> Param: a knob of the variant's preset (eps_pos) or an experiment field (train.lr)",
    )
    benchmark: str = Field(description="held-out benchmark the objective is computed on")
    metric: str = Field(
        "auc", description="objective metric at the final step: auc (Pass@k AUC) or pass@K (K <= eval.n)"
    )
    direction: Literal["maximize", "minimize"] = Field("maximize", description="optimisation direction")
    trials: int | None = Field(
        None, gt=0, description="complete trials wanted (default: every grid point for grid, else 12)"
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0], min_length=1, description="seeds per trial (objective = mean)"
    )
    sampler: Literal["tpe", "random", "grid", "cmaes"] = Field(
        "tpe", description="Optuna sampler (grid: exact, reproducible)"
    )
    pruner: Literal["median", "none"] = Field(
        "median", description="prune trials whose intermediate value is worse than the median"
    )
    seed: int = Field(
        0,
        description="sampler seed (trial n draws from seed and n, so parallel workers never repeat each other)",
    )
    max_failed: int | None = Field(
        None, ge=0, description="stop asking for new trials after this many failed ones (default: trials)"
    )

    @model_validator(mode="after")
    def _cross(self) -> "SweepConfig":
        if not _METRIC.match(self.metric):
            raise ValueError(f"metric: {self.metric!r} is not auc or pass@K (e.g. pass@1, pass@8)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicates")
        if self.sampler == "grid":
            missing = [k for k, p in self.params.items() if p.grid_values() is None]
            if missing:
                raise ValueError(f"sampler grid: give `grid: N` or `values: [...]` for {', '.join(missing)}")
            if self.trials and self.trials > self.grid_size:
                raise ValueError(f"trials ({self.trials}) exceeds the grid's {self.grid_size} points")
        if self.sampler == "cmaes":
            cat = [k for k, p in self.params.items() if p.kind == "categorical"]
            if cat or len(self.params) < 2:
                raise ValueError(
                    "sampler cmaes needs at least two numeric parameters and no categorical one "
                    f"({'categorical: ' + ', '.join(cat) if cat else 'only one parameter'}); use tpe"
                )
        return self

    @property
    def grid_space(self) -> dict[str, list[Choice]]:
        return {k: p.grid_values() for k, p in self.params.items()}

    @property
    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid_space.values())

    @property
    def target(self) -> int:
        """Trials wanted: complete or pruned ones (failed ones are replaced; a failed grid point is spent)."""
        return self.trials or (self.grid_size if self.sampler == "grid" else 12)

    def fingerprint(self) -> str:
        """Identity of the study: everything except how many trials and failures to allow."""
        return canonical_hash(self.model_dump(exclude={"trials", "max_failed"}))


def load_sweep(path: Path) -> tuple[SweepConfig, Experiment]:
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file")
    raw = read_yaml(path) or {}
    if isinstance(raw, dict) and "variants" in raw:
        raise UserError(
            f"{path}: this is an experiment file (it has `variants:`): run it with `harness run {path}`"
        )
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{path}: {validation_message(e, SweepConfig)}") from None
    exp = load_experiment(path.parent / cfg.experiment)
    if cfg.variant not in {v.name for v in exp.variants}:
        raise UserError(
            f"{path}: variant: {cfg.variant!r} is not in {cfg.experiment} (variants: {', '.join(v.name for v in exp.variants)})"
        )
    if cfg.benchmark not in exp.eval.benchmarks:
        raise UserError(f"{path}: benchmark: {cfg.benchmark!r} is not one of {sorted(exp.eval.benchmarks)}")
    if cfg.metric != "auc" and int(cfg.metric[5:]) > exp.eval.n:
        raise UserError(
            f"{path}: metric: {cfg.metric} needs k <= eval.n ({exp.eval.n}); lower k or raise eval.n"
        )
    for name in cfg.params:
        _check_param_name(path, name, cfg, exp)
    eps = CLIP_KNOBS & set(cfg.params)
    if eps and clip_cannot_bind(exp):
        raise UserError(
            f"{path}: params: sweeping {sorted(eps)} is meaningless with train.mini_batches = 1 and "
            f"train.epochs = 1 (the ratio is identically 1, no clip bound can bind); raise mini_batches"
        )
    for name, p in cfg.params.items():  # every bound / choice must make a valid experiment
        base = {k: _probe(q) for k, q in cfg.params.items()}
        for v in (p.choices if p.kind == "categorical" else [p.low, p.high]):
            try:
                trial_exp(cfg, exp, {**base, name: int(v) if p.kind == "int" else v})
            except UserError as e:
                raise UserError(f"{path}: params.{name}: {v!r} is not a valid setting ({e})") from None
    return cfg, exp


def _probe(p: Param) -> Choice:
    return p.choices[0] if p.kind == "categorical" else (int(p.low) if p.kind == "int" else p.low)


def _check_param_name(path: Path, name: str, cfg: SweepConfig, exp: Experiment) -> None:
    """A knob or piece of the variant's preset, or a `section.field` of the experiment."""
    if "." in name:
        section, _, field = name.partition(".")
        model = Experiment.model_fields.get(section)
        sub = getattr(model.annotation, "model_fields", None) if model else None
        if section in ("seeds", "variants", "name") or not sub or field not in sub:
            fields = [
                f"{s}.{f}"
                for s in ("train", "task", "model", "warm_start")
                for f in type(getattr(exp, s)).model_fields
            ]
            raise UserError(
                f"{path}: params.{name}: unknown parameter: not an experiment field (e.g. {', '.join(fields[:6])}, ...)"
            )
        if section == "verl" and exp.backend != "verl":
            raise UserError(
                f"{path}: params.{name}: the base experiment is `backend: {exp.backend}`; verl.* settings "
                f"apply only to `backend: verl` experiments"
            )
        return
    base = next(v for v in exp.variants if v.name == cfg.variant)
    preset = algorithms.get_preset(base.preset)
    valid = sorted(set(preset.knobs) | set(preset.pieces))
    if name not in valid:
        raise UserError(f"{path}: params.{name}: unknown parameter: not a knob of preset {base.preset!r} "
                        f"(knobs: {', '.join(valid)}) nor an experiment field such as train.lr")


def _fmt(v: Choice) -> str:
    return f"{v:.6g}" if isinstance(v, float) else re.sub(r"[^A-Za-z0-9_.-]", "-", str(v))


def trial_exp(cfg: SweepConfig, exp: Experiment, params: dict[str, Choice]) -> Experiment:
    """The base experiment reduced to the swept variant with the trial's settings (same params -> same run ids)."""
    base = next(v for v in exp.variants if v.name == cfg.variant)
    tag = "_".join(f"{k}{_fmt(v)}" for k, v in sorted(params.items()))
    raw = exp.model_dump(
        exclude={"verl"} if exp.backend == "local" else set()
    )  # `verl:` only on verl experiments
    knobs = {k: v for k, v in params.items() if "." not in k}
    for k, v in params.items():
        if "." in k:
            section, _, field = k.partition(".")
            raw[section] = {**raw[section], field: v}
    raw.update(
        name=f"{exp.name}_sweep_{cfg.variant}",
        seeds=list(cfg.seeds),
        variants=[
            {"name": f"{cfg.variant}__{tag}", "preset": base.preset, "overrides": {**base.overrides, **knobs}}
        ],
    )
    try:
        out = Experiment.model_validate(raw)
        expand(out)
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(
            f"{'.'.join(map(str, err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
        ) from None
    return out


def base_values(cfg: SweepConfig, exp: Experiment) -> dict:
    """Each swept parameter's value without the sweep (the base variant's knob, or the experiment field)."""
    import algorithms

    base = next(v for v in exp.variants if v.name == cfg.variant)
    knobs = algorithms.get_preset(base.preset, **base.overrides).knobs
    out = {}
    for k in cfg.params:
        section, _, field_ = k.partition(".")
        v = getattr(getattr(exp, section), field_) if field_ else knobs.get(k, base.overrides.get(k))
        if v is not None:
            out[k] = v
    return out
