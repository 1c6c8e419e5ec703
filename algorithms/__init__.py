"""Pure-torch pieces of RL objectives for LLM reasoning, and the five algorithms as presets.

Public API:
    get_preset(name, **overrides) -> Preset
    list_registered() -> {"advantage": [...], "policy_loss": [...], "group_filter": [...],
                          "reward_shaper": [...], "preset": [...]}
    compute_advantages(name, rewards [N], group_ids [N], **params) -> advantages [N]
Registries (decorators refuse duplicates and pieces that do not fit their role's contract, with
ContractError): register_advantage, register_policy_loss, register_group_filter, register_reward_shaper.
The contracts: AdvantageFn, PolicyLossFn, GroupFilterFn, RewardShaperFn (algorithms.registry).
"""

from algorithms.advantages import compute_advantages
from algorithms.filters import apply_filter, group_outcomes
from algorithms.losses import aggregate, entropy_from_logits, kl_estimate, value_loss
from algorithms.presets import (
    OBJECTIVE_KNOBS,
    PRESETS,
    ROLES,
    Preset,
    get_preset,
    list_presets,
    register_preset,
)
from algorithms.registry import (
    ADVANTAGES,
    GROUP_FILTERS,
    AdvantageFn,
    ContractError,
    GroupFilterFn,
    PolicyLossFn,
    RewardShaperFn,
    POLICY_LOSSES,
    REWARD_SHAPERS,
    UnknownNameError,
    register_advantage,
    register_group_filter,
    register_policy_loss,
    register_reward_shaper,
)


def list_registered() -> dict[str, list[str]]:
    """Names of every registered piece per role, plus the presets."""
    out = {role: reg.names() for role, reg in ROLES.items()}
    out["preset"] = list_presets()
    return out


__all__ = [
    "AdvantageFn",
    "ContractError",
    "GroupFilterFn",
    "PolicyLossFn",
    "RewardShaperFn",
    "ADVANTAGES",
    "GROUP_FILTERS",
    "OBJECTIVE_KNOBS",
    "POLICY_LOSSES",
    "PRESETS",
    "Preset",
    "REWARD_SHAPERS",
    "ROLES",
    "UnknownNameError",
    "aggregate",
    "apply_filter",
    "compute_advantages",
    "entropy_from_logits",
    "get_preset",
    "group_outcomes",
    "kl_estimate",
    "list_presets",
    "list_registered",
    "register_advantage",
    "register_group_filter",
    "register_policy_loss",
    "register_preset",
    "register_reward_shaper",
    "value_loss",
]
