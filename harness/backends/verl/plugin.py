"""verl plugin: the project's advantage estimators in verl's registry, wrapping the `algorithms` pieces.

Loaded by verl itself in every process that imports verl (trainer, Ray workers), through the entry
point group `verl.plugins` declared in pyproject.toml. Importing it registers, idempotently, one
verl estimator per outcome-level advantage piece of `algorithms` (group_zscore, virtual_max,
fixed_sign, and any piece a user plugin registered) under the name `harness_<piece>`. The
estimator is the same function the local backend calls (`algorithms.compute_advantages`), not a copy.

verl passes the raw `algorithm` DictConfig to custom estimators: knobs reach them as
`+algorithm.harness.<knob>=<value>` (e.g. NGRPO's r_max and n_virtual); absent knobs take the
piece's defaults. User plugin modules named in $NGRPO_HARNESS_PLUGINS (os.pathsep-separated
module names or .py paths) are imported first, so a sixth algorithm's estimator exists in every
verl process too.

Policy losses need no registration: NGRPO's sign-dependent clip and PPO's decoupled clip are both
verl's built-in `vanilla` loss with clip_ratio_low/high (tests/unit/test_verl_parity.py proves the
equality, gradients included). verl swallows plugin import errors, so the harness checks the
registry in a fresh process before a run starts (harness.backends.verl.preflight).
"""

from __future__ import annotations

import os

import numpy as np
import torch

import algorithms

PREFIX = "harness_"
PLUGINS_ENV = "NGRPO_HARNESS_PLUGINS"


def verl_name(piece: str) -> str:
    return PREFIX + piece


def outcome_pieces() -> list[str]:
    """Advantage pieces verl can call: one scalar per response (token-level ones, like gae, are verl's own)."""
    return [
        n
        for n in algorithms.ADVANTAGES.names()
        if not algorithms.ADVANTAGES.meta(n).get("token_level", False)
    ]


def group_ids_from_index(index) -> torch.Tensor:
    """verl's per-row prompt uids (np object array [bs]) -> dense integer group ids [bs]."""
    _, inverse = np.unique(np.asarray(index, dtype=object).astype(str), return_inverse=True)
    return torch.as_tensor(inverse.reshape(-1), dtype=torch.long)


def knobs_from_config(piece: str, config) -> dict:
    """The piece's knobs from `config.harness` (verl's algorithm DictConfig); absent ones keep their defaults.

    A name the piece does not take is an error (ValueError naming it and the valid knobs), never dropped.
    """
    given = {}
    if config is not None:
        harness_cfg = config.get("harness", None) if hasattr(config, "get") else None
        if harness_cfg is not None:
            given = dict(harness_cfg)
    valid = algorithms.ADVANTAGES.knobs(piece)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"+algorithm.harness.{unknown[0]}: not a knob of advantage {piece!r} "
                         f"(valid: {', '.join(sorted(valid)) or 'none'})")
    return given


def make_estimator(piece: str):

    def estimator(
        token_level_rewards: torch.Tensor, response_mask: torch.Tensor, config=None, index=None, **kwargs
    ):
        """verl estimator over `algorithms` piece. token_level_rewards, response_mask [bs, T] -> (advantages, returns) [bs, T].

        The scalar reward of a response is the sum of its token rewards (verl puts it on the last
        token); groups are the prompt uids in `index`. Correctness for pieces that need it
        (fixed_sign) is reward > 0, the piece's own fallback when no boolean acc is given.
        """
        if index is None:
            raise ValueError(
                f"{verl_name(piece)}: verl passed no prompt uids (index); group statistics need them"
            )
        scores = token_level_rewards.sum(dim=-1)
        with torch.no_grad():
            adv = algorithms.compute_advantages(
                piece, scores, group_ids_from_index(index), **knobs_from_config(piece, config)
            )
        adv = adv.to(token_level_rewards.dtype).unsqueeze(-1) * response_mask
        return adv, adv

    estimator.__name__ = verl_name(piece)
    estimator.__qualname__ = verl_name(piece)
    return estimator


def register_all() -> list[str]:
    """Register every outcome piece in verl's registry (idempotent); returns the verl names."""
    from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY, register_adv_est

    names = []
    for piece in outcome_pieces():
        name = verl_name(piece)
        if name not in ADV_ESTIMATOR_REGISTRY:  # verl refuses a second, different function under one name
            register_adv_est(name)(make_estimator(piece))
        names.append(name)
    return names


def _import_user_plugins() -> None:
    raw = os.environ.get(PLUGINS_ENV, "")
    if raw:
        from harness.config.experiment import import_plugins

        import_plugins([p for p in raw.split(os.pathsep) if p])


_import_user_plugins()
REGISTERED = register_all()
