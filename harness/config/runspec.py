"""The RunSpec: one (variant, seed) of an experiment, fully resolved, frozen and typed.

`expand(experiment)` makes one RunSpec per (variant, seed). Its sections are the experiment's own
typed settings (task, model, warm_start, train, eval, verl); its `algorithm` holds the preset's
pieces and one knob namespace per piece plus the objective's (algorithms/presets.py), so a knob
always belongs to exactly one piece.

The run id is `<variant>-s<seed>-<hash>`, the hash of `to_dict()` without `run_id` and `loggers`:
the same JSON-able content as the plain dicts of earlier versions (the algorithm's knobs flattened
into one mapping, as `Preset.as_dict()`), so existing run folders and caches keep their ids.
`to_dict()` is also what spec.yaml holds; `RunSpec.from_dict` reads it back.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

import algorithms
from harness.config.experiment import Experiment, canonical_hash, resolve_variant
from harness.config.sections import (
    EvalConfig,
    ModelSettings,
    Task,
    TrainConfig,
    VerlSettings,
    WarmStartConfig,
    _Strict,
)

ROLES = tuple(algorithms.ROLES)  # advantage, policy_loss, group_filter, reward_shaper


class Knobs(_Strict):
    """One namespace per registry piece's knobs (its keyword-only parameters), plus the objective's."""

    objective: dict[str, Any]
    advantage: dict[str, Any]
    policy_loss: dict[str, Any]
    group_filter: dict[str, Any]
    reward_shaper: dict[str, Any]

    def flat(self) -> dict[str, Any]:
        """All knobs in one mapping (names are unique across namespaces: algorithms/presets.py)."""
        return {k: v for ns in (self.objective, *(getattr(self, r) for r in ROLES)) for k, v in ns.items()}


class AlgorithmSpec(_Strict):
    """The resolved algorithm: the preset's name, its four pieces and their knobs.

    Reads like an `algorithms.Preset`: `pieces`, `piece_knobs(role)`, `objective(name)`, `group_relative`.
    """

    name: str
    advantage: str
    policy_loss: str
    group_filter: str
    reward_shaper: str
    knobs: Knobs

    @model_validator(mode="before")
    @classmethod
    def _flat_knobs(cls, v: Any) -> Any:
        """Accept the flat layout of spec.yaml ({"knobs": {name: value}}) and split it by namespace."""
        if isinstance(v, dict) and isinstance(v.get("knobs"), dict) and "objective" not in v["knobs"]:
            pieces = {role: v[role] for role in ROLES}
            v = {**v, "knobs": algorithms.presets.knob_namespaces(pieces, v["knobs"])}
        return v

    @classmethod
    def of(cls, preset: algorithms.Preset) -> "AlgorithmSpec":
        return cls(name=preset.name, **dict(preset.pieces), knobs=Knobs(**preset.namespaces()))

    @property
    def pieces(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in ROLES}

    def piece_knobs(self, role: str) -> dict[str, Any]:
        """The knob values of the piece in `role` (advantage, policy_loss, group_filter, reward_shaper)."""
        return dict(getattr(self.knobs, role))

    def objective(self, name: str) -> Any:
        """An objective-level knob (algorithms.OBJECTIVE_KNOBS: kl_coef, entropy_coef, use_critic, ...)."""
        return self.knobs.objective[name]

    @property
    def group_relative(self) -> bool:
        return bool(algorithms.ADVANTAGES.meta(self.advantage).get("group_relative", False))

    def to_dict(self) -> dict[str, Any]:
        """The layout of spec.yaml and of the run-id hash (= `Preset.as_dict()`)."""
        return {"name": self.name, **self.pieces, "knobs": self.knobs.flat()}


class RunSpec(_Strict):
    """One run: a (variant, seed) of an experiment with every setting resolved."""

    experiment: str
    variant: str
    seed: int
    backend: Literal["local", "verl"]
    preset: str
    overrides: dict[str, Any]
    algorithm: AlgorithmSpec
    plugins: list[str] | None = None  # only when the experiment names plugins (they enter the run id)
    verl: VerlSettings | None = None  # only on the verl backend (idem)
    task: Task
    model: ModelSettings
    warm_start: WarmStartConfig  # seed resolved: never null here
    train: TrainConfig
    eval: EvalConfig
    run_id: str = ""
    loggers: list[str] = []  # not part of the run id: trackers change nothing a run computes

    def content(self) -> dict[str, Any]:
        """What the run id hashes: `to_dict()` without run_id and loggers."""
        d: dict[str, Any] = {
            "experiment": self.experiment,
            "variant": self.variant,
            "seed": self.seed,
            "backend": self.backend,
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "algorithm": self.algorithm.to_dict(),
            "name": self.experiment,
        }
        if self.plugins is not None:
            d["plugins"] = list(self.plugins)
        if self.verl is not None:
            d["verl"] = self.verl.model_dump()
        for key in ("task", "model", "warm_start", "train", "eval"):
            d[key] = getattr(self, key).model_dump()
        return d

    def to_dict(self) -> dict[str, Any]:
        """The plain, JSON-able layout (spec.yaml), key order as earlier versions wrote it."""
        return {**self.content(), "run_id": self.run_id, "loggers": list(self.loggers)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        """Read back `to_dict()` (e.g. a run folder's spec.yaml); plugins must be imported first."""
        return cls.model_validate({k: v for k, v in d.items() if k != "name"})

    def with_id(self) -> "RunSpec":
        return self.model_copy(
            update={"run_id": f"{self.variant}-s{self.seed}-{canonical_hash(self.content())}"}
        )


def expand(exp: Experiment) -> list[RunSpec]:
    """One RunSpec per (variant, seed), in file order; run_id = hash of the content."""
    shared = {key: getattr(exp, key) for key in ("task", "model", "train", "eval")}
    used = {"plugins": list(exp.plugins) if exp.plugins else None,  # in the run id only when used
            "verl": exp.verl if exp.backend == "verl" else None}
    specs = []
    for i, v in enumerate(exp.variants):
        algorithm = AlgorithmSpec.of(resolve_variant(exp, i))
        for seed in exp.seeds:
            ws = exp.warm_start
            warm = ws if ws.seed is not None else ws.model_copy(update={"seed": seed})  # null: one per run seed
            spec = RunSpec(experiment=exp.name, variant=v.name, seed=seed, backend=exp.backend, preset=v.preset,
                           overrides=dict(v.overrides), algorithm=algorithm, warm_start=warm,
                           loggers=list(exp.loggers), **shared, **used)
            specs.append(spec.with_id())
    return specs
