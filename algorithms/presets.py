"""The five algorithms as data: each is a choice of registry pieces plus knob values.

A preset names one advantage estimator, one policy loss, one group filter and one reward shaper, and
sets knobs. Each knob belongs to one namespace: the piece that declares it (its keyword-only
parameters) or the objective (OBJECTIVE_KNOBS, read by every trainer); `Preset.namespaces()` gives
them. A knob name declared in two namespaces is refused, so a knob is set by its plain name.
`get_preset(name, **overrides)` resolves a preset; overrides may swap a piece (e.g.
advantage="group_zscore") and set any knob by name. When a piece is swapped, the preset's values for
the old piece's knobs are dropped: the new piece starts from its own defaults (psr_nsr's lam = 0.1
is W-REINFORCE's lambda and never becomes GAE's lambda). An unknown preset, piece or knob, or a value
out of range, raises an error naming it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

from algorithms import advantages as _adv  # noqa: F401  (registers pieces)
from algorithms import filters as _flt  # noqa: F401
from algorithms import losses as _loss
from algorithms import shaping as _shp  # noqa: F401
from algorithms.registry import (
    ADVANTAGES,
    GROUP_FILTERS,
    POLICY_LOSSES,
    REWARD_SHAPERS,
    Registry,
    UnknownNameError,
)

ROLES: dict[str, Registry] = {
    "advantage": ADVANTAGES,
    "policy_loss": POLICY_LOSSES,
    "group_filter": GROUP_FILTERS,
    "reward_shaper": REWARD_SHAPERS,
}

# Objective-level knobs (used by every trainer), with defaults and help text.
OBJECTIVE_KNOBS: dict[str, tuple[Any, str]] = {
    "kl_coef": (
        0.0,
        "weight of the KL-to-reference term in the loss (GRPO recipe 0.001; 0 disables the reference)",
    ),
    "kl_estimator": (
        "k3",
        "KL estimator for the loss term: k1 (log-ratio) or k3 (low-variance, verl low_var_kl)",
    ),
    "kl_in_reward_coef": (0.0, "per-token k1 KL penalty subtracted from the reward (PPO recipe 0.001)"),
    "entropy_coef": (0.001, "entropy bonus weight (0.001 for every method in the NGRPO recipe)"),
    "use_critic": (False, "train a value model and use it for GAE (PPO)"),
    "critic_lr_mult": (10.0, "critic learning rate as a multiple of the actor's (PPO recipe: 10x)"),
    "value_clip": (0.5, "value-loss clip range (PPO recipe 0.5)"),
}


@dataclass(frozen=True)
class Preset:
    """One algorithm: pieces + knob values. `paper` cites where the defaults come from."""

    name: str
    description: str
    paper: str
    pieces: Mapping[str, str]
    knobs: Mapping[str, Any] = field(default_factory=dict)

    def piece_knobs(self, role: str) -> dict[str, Any]:
        """Knob values of the piece in `role`: its namespace (its signature's keyword-only parameters)."""
        return {k: self.knobs[k] for k in ROLES[role].knobs(self.pieces[role])}

    def namespaces(self) -> dict[str, dict[str, Any]]:
        """role -> the knob values of that role's piece; "objective" -> the objective-level knobs."""
        return knob_namespaces(self.pieces, self.knobs)

    def objective(self, key: str) -> Any:
        return self.knobs[key]

    @property
    def group_relative(self) -> bool:
        return bool(ADVANTAGES.meta(self.pieces["advantage"]).get("group_relative", False))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.pieces), "knobs": dict(self.knobs)}


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> None:
    """Add an algorithm (a Preset of registered pieces); a duplicate name is refused."""
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is already defined")
    PRESETS[preset.name] = _resolve(preset, {})


def _knob_rules() -> dict[str, tuple[Any, str]]:
    """name -> (predicate, requirement text) for knobs with a restricted range."""
    unit = (lambda v: 0.0 < v < 1.0, "in (0, 1)")
    nonneg = (lambda v: v >= 0, ">= 0")
    return {
        "eps_low": unit, "eps_high": unit, "eps_pos": unit, "eps_neg": unit,
        "clip_c": (lambda v: v is None or v > 1.0, "> 1 or null"),
        "kl_coef": nonneg, "kl_in_reward_coef": nonneg, "entropy_coef": nonneg, "lam": nonneg,
        "n_virtual": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0"),
        "gamma": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "std_eps": (lambda v: v > 0, "> 0"),
        "critic_lr_mult": (lambda v: v > 0, "> 0"), "value_clip": (lambda v: v > 0, "> 0"),
        "agg": (lambda v: v in _loss.AGG_MODES, f"one of {_loss.AGG_MODES}"),
        "kl_estimator": (lambda v: v in _loss.KL_ESTIMATORS, f"one of {_loss.KL_ESTIMATORS}"),
        "mode": (lambda v: v in _adv.FIXED_SIGN_MODES, f"one of {_adv.FIXED_SIGN_MODES}"),
    }


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Type-check a knob value against its default's type (ints accepted for floats)."""
    if default is None or default is inspect.Parameter.empty or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"knob {name!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"knob {name!r} must be a number, got {value!r}")
        return float(value) if isinstance(default, float) else value
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"knob {name!r} must be a string, got {value!r}")
    return value


def _namespaced_defaults(pieces: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(knob -> default, knob -> owning namespace) for the chosen pieces plus the objective knobs.

    A knob name declared by two namespaces is refused: a plain knob name must say which piece it sets.
    """
    defaults: dict[str, Any] = {k: v for k, (v, _) in OBJECTIVE_KNOBS.items()}
    owner = dict.fromkeys(OBJECTIVE_KNOBS, "objective")
    for role, registry in ROLES.items():
        for k, v in registry.knobs(pieces[role]).items():
            if k in owner:
                other = owner[k] if owner[k] == "objective" else f"{owner[k]} {pieces[owner[k]]!r}"
                raise ValueError(f"knob {k!r} is declared by {role} {pieces[role]!r} and by {other}: "
                                 "knob names must be unique across a preset's pieces and the objective")
            defaults[k], owner[k] = v, role
    return defaults, owner


def knob_namespaces(pieces: Mapping[str, str], knobs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat knob values -> {"objective": {...}, role: {...}} by the namespace that declares each knob
    (in the order given); a knob that no namespace of these pieces declares is a ValueError naming it."""
    _, owner = _namespaced_defaults(pieces)
    out: dict[str, dict[str, Any]] = {"objective": {}, **{role: {} for role in ROLES}}
    unknown = sorted(k for k in knobs if k not in owner)
    if unknown:
        raise ValueError(f"knobs {unknown} belong to none of the pieces {list(pieces.values())}")
    for k, v in knobs.items():
        out[owner[k]][k] = v
    return out


def _resolve(base: Preset, overrides: Mapping[str, Any]) -> Preset:
    overrides = dict(overrides)
    pieces = dict(base.pieces)
    for role, registry in ROLES.items():
        if role in overrides:
            pieces[role] = overrides.pop(role)
        registry.get(pieces[role])  # unknown piece -> error listing valid names
    defaults, owner = _namespaced_defaults(pieces)
    # The base preset's values carry over for the objective and for pieces the overrides kept; the
    # knobs of a swapped-out piece are dropped, even where the new piece has a knob of the same name.
    kept = {role for role in ROLES if pieces[role] == base.pieces[role]} | {"objective"}
    knobs = dict(defaults)
    for k, v in base.knobs.items():
        if k not in owner:
            if pieces == dict(base.pieces):  # a preset's own knob that none of its pieces declares
                raise UnknownNameError(
                    f"preset {base.name!r} sets knob {k!r}, which none of its pieces ({', '.join(pieces.values())}) "
                    f"declares; valid knobs: {', '.join(sorted(defaults))}"
                )
            continue
        if owner[k] in kept:
            knobs[k] = v
    rules = _knob_rules()
    for k, v in overrides.items():
        if k not in defaults:
            raise UnknownNameError(
                f"unknown knob {k!r} for preset {base.name!r} (pieces {', '.join(pieces.values())}); "
                f"valid knobs: {', '.join(sorted(defaults))}"
            )
        knobs[k] = _coerce(k, v, defaults[k])
    if knobs["use_critic"] and not ADVANTAGES.meta(pieces["advantage"]).get("token_level", False):
        raise ValueError(
            f"knob 'use_critic' is true but advantage {pieces['advantage']!r} does not use a critic's "
            "values (a token-level advantage such as gae does): set use_critic: false or advantage: gae"
        )
    for k, v in knobs.items():
        if v is inspect.Parameter.empty:
            raise ValueError(f"knob {k!r} of preset {base.name!r} has no default: set it")
        if k in rules and not rules[k][0](v):
            raise ValueError(f"knob {k!r} must be {rules[k][1]}, got {v!r}")
    return Preset(base.name, base.description, base.paper, pieces, knobs)


# ------------------------------------------------------------------ the five recipes (ALGORITHMS.md)
register_preset(
    Preset(
        "ppo",
        "PPO with a critic, GAE (gamma = lambda = 1), KL penalty in the reward",
        "Schulman et al. 2017 (arXiv 1707.06347); Ouyang et al. 2022 recipe as in verl",
        {"advantage": "gae", "policy_loss": "ppo_clip", "group_filter": "keep_all", "reward_shaper": "none"},
        {
            "eps_low": 0.2,
            "eps_high": 0.2,
            "use_critic": True,
            "kl_in_reward_coef": 0.001,
            "gamma": 1.0,
            "lam": 1.0,
        },
    )
)
register_preset(
    Preset(
        "grpo",
        "GRPO: group z-score advantages, symmetric clip 0.2, k3 KL loss 0.001",
        "Shao et al. 2024 (arXiv 2402.03300)",
        {
            "advantage": "group_zscore",
            "policy_loss": "ppo_clip",
            "group_filter": "keep_all",
            "reward_shaper": "none",
        },
        {"eps_low": 0.2, "eps_high": 0.2, "kl_coef": 0.001, "kl_estimator": "k3"},
    )
)
register_preset(
    Preset(
        "dapo",
        "DAPO: clip-higher 0.2/0.28, dynamic sampling (drop homogeneous groups), soft overlong penalty, no KL",
        "Yu et al. 2025 (arXiv 2503.14476)",
        {
            "advantage": "group_zscore",
            "policy_loss": "ppo_clip",
            "group_filter": "drop_homogeneous",
            "reward_shaper": "overlong",
        },
        {"eps_low": 0.2, "eps_high": 0.28},
    )
)
register_preset(
    Preset(
        "psr_nsr",
        "W-REINFORCE: +lambda for correct, -1 for wrong responses, no baseline, clip 0.2",
        "Zhu et al. 2025 (arXiv 2506.01347)",
        {
            "advantage": "fixed_sign",
            "policy_loss": "ppo_clip",
            "group_filter": "keep_all",
            "reward_shaper": "none",
        },
        {"mode": "w_reinforce", "lam": 0.1, "eps_low": 0.2, "eps_high": 0.2},
    )
)
register_preset(
    Preset(
        "ngrpo",
        "NGRPO: virtual max-reward sample in the group statistics, asymmetric clip 0.24/0.16, drop all-correct groups",
        "Nan et al. 2025 (arXiv 2509.18851), released recipe",
        {
            "advantage": "virtual_max",
            "policy_loss": "sign_clip",
            "group_filter": "drop_all_correct",
            "reward_shaper": "none",
        },
        {"r_max": 1.0, "n_virtual": 1, "eps_pos": 0.24, "eps_neg": 0.16},
    )
)



def get_preset(name: str, **overrides: Any) -> Preset:
    """The preset `name` with pieces/knobs overridden by name (errors list the valid names)."""
    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    return _resolve(PRESETS[name], overrides) if overrides else PRESETS[name]


def list_presets() -> list[str]:
    return sorted(PRESETS)
