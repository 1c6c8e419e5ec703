"""Compose a list of verl overrides into a config and check it, as `main_ppo` would and beyond.

verl itself catches unknown keys without `+` (Hydra) and, in the sections it converts to
dataclasses, unknown `+` keys and bad enum values (`validate_config`, `omega_conf_to_dataclass`).
It does not catch: a wrong type (`clip_ratio_low=abc` stays a string), an unregistered estimator or
loss name (fails at the first step), or a `+key` in a section it never converts (`+trainer.x`,
`+algorithm.x` are accepted and ignored). `check()` adds exactly those checks.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

from harness.backends.verl.overrides import CONVERTED, PLUS_ALLOWED, VerlMappingError

REWARD_METRICS = (
    "reward",
    "acc",
    "score",
    "ngrpo_keep",
    "right_keep",
)  # filter_groups.metric values the reward function provides


def config_dir() -> str:
    return str(importlib.resources.files("verl") / "trainer" / "config")


def _compose(overrides: tuple[str, ...]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base=None):
        return compose(config_name="ppo_trainer", overrides=list(overrides))


@lru_cache(maxsize=1)
def defaults():
    """verl's config with no override (the types every override is checked against)."""
    return _compose(())


def _key(override: str) -> tuple[str, bool]:
    key = override.split("=", 1)[0]
    return key.lstrip("+~"), key.startswith("+")


def compose(overrides: list[str]):
    """The resolved verl config for these overrides; VerlMappingError with verl's own message on failure."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise VerlMappingError(f"override {bad[0]!r}: expected key=value (or +key=value to add a key)")
    try:
        cfg = _compose(tuple(overrides))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        msg = " ".join(str(e).split())
        if "Could not override" in msg:
            key = msg.split("'")[1] if "'" in msg else msg
            msg = f"unknown verl key {key!r} (check the spelling; `+{key}=...` adds a key verl may ignore)"
        raise VerlMappingError(msg) from None
    return cfg


def check(cfg, overrides: list[str], model_is_local: bool = True) -> None:
    """verl's own validation plus the harness's checks (VerlMappingError naming the key).

    verl's model-config conversion opens the model folder; with a hub id or a path that exists only
    on the cluster (model_is_local=False) the model and critic sections are not converted here
    (main_ppo converts them on the cluster)."""
    from omegaconf import OmegaConf

    base = defaults()
    for o in overrides:
        key, plus = _key(o)
        default = OmegaConf.select(base, key, default=None)
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise VerlMappingError(f"{key}: must be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and default is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise VerlMappingError(f"{key}: must be a number, got {value!r}")
        if plus and default is None and not key.startswith(PLUS_ALLOWED) and not key.startswith(CONVERTED):
            raise VerlMappingError(
                f"+{key}: not a verl 0.9.1 setting, and verl would accept and ignore it (remove it)"
            )
    _check_names(cfg)
    _verl_validate(cfg, model_is_local)


def check_quietly(cfg, overrides: list[str], model_is_local: bool = True) -> None:
    """check() without verl's "All configuration checks passed" banner on stdout."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        check(cfg, overrides, model_is_local)


def _check_names(cfg) -> None:
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, POLICY_LOSS_REGISTRY, AdvantageEstimator

    est = cfg.algorithm.adv_estimator
    builtin = {e.value for e in AdvantageEstimator}
    if est not in ADV_ESTIMATOR_REGISTRY and est not in builtin:
        raise VerlMappingError(f"algorithm.adv_estimator: {est!r} is not registered in verl "
                               f"(registered: {', '.join(sorted(ADV_ESTIMATOR_REGISTRY))})")
    _check_harness_knobs(cfg)
    loss = cfg.actor_rollout_ref.actor.policy_loss.loss_mode
    if loss not in POLICY_LOSS_REGISTRY:
        raise VerlMappingError(
            f"actor_rollout_ref.actor.policy_loss.loss_mode: {loss!r} is not registered in verl "
            f"(registered: {', '.join(sorted(POLICY_LOSS_REGISTRY))})"
        )
    try:
        get_reward_manager_cls(cfg.reward.reward_manager.name)
    except (ValueError, KeyError) as e:
        raise VerlMappingError(f"reward.reward_manager.name: {e}") from None
    fg = cfg.algorithm.filter_groups
    if fg.enable and fg.metric not in REWARD_METRICS:
        raise VerlMappingError(f"algorithm.filter_groups.metric: {fg.metric!r} is not produced by the reward "
                               f"function (one of {', '.join(REWARD_METRICS)})")


def _check_harness_knobs(cfg) -> None:
    """`+algorithm.harness.<knob>` must name a knob of the harness estimator in use (verl would drop a typo)."""
    from harness.backends.verl.plugin import PREFIX, knobs_from_config

    harness_cfg = cfg.algorithm.get("harness", None)
    if not harness_cfg:
        return
    est = str(cfg.algorithm.adv_estimator)
    if not est.startswith(PREFIX):
        raise VerlMappingError(
            f"+algorithm.harness.{next(iter(harness_cfg))}: knobs of the harness's estimators, "
            f"but algorithm.adv_estimator is verl's own {est!r} (remove them)"
        )
    try:
        knobs_from_config(est.removeprefix(PREFIX), cfg.algorithm)
    except ValueError as e:
        raise VerlMappingError(str(e)) from None


def _verl_validate(cfg, model_is_local: bool) -> None:
    """verl's validate_config and the dataclass conversions its workers make."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    critic = need_critic(cfg)
    try:
        validate_config(
            cfg, use_reference_policy=need_reference_policy(cfg), use_critic=critic and model_is_local
        )
        omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
        if model_is_local:
            omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
            if critic:
                omega_conf_to_dataclass(cfg.critic)
    except Exception as e:  # noqa: BLE001 - verl raises AssertionError, ValueError, InstantiationException...
        msg = " ".join(str(e).split())[:400]
        raise VerlMappingError(f"verl rejects the config: {type(e).__name__}: {msg}") from None
