"""Decorator registries for the pluggable pieces of an RL objective.

Four registries: advantage estimators, policy losses, group filters, reward shapers. A name can be
registered once (a duplicate is refused); an unknown name raises an error that lists the valid ones.
Knobs are the keyword-only parameters of a registered function; `check_knobs` validates a dict of
them against the signature so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

F = Callable[..., Any]


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name or knob; str() is the full message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    """name -> function, with duplicate refusal and helpful misses."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._fns: dict[str, F] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        """Decorator: register `fn` under `name` with optional metadata (e.g. group_relative=True)."""

        def deco(fn: F) -> F:
            if name in self._fns:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._fns[name].__module__})")
            self._fns[name] = fn
            self._meta[name] = meta
            return fn

        return deco

    def get(self, name: str) -> F:
        try:
            return self._fns[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._fns))}") from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        return sorted(self._fns)

    def knobs(self, name: str) -> dict[str, Any]:
        """Keyword-only parameters of a registered function with their defaults."""
        sig = inspect.signature(self.get(name))
        return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


ADVANTAGES = Registry("advantage estimator")
POLICY_LOSSES = Registry("policy loss")
GROUP_FILTERS = Registry("group filter")
REWARD_SHAPERS = Registry("reward shaper")

register_advantage = ADVANTAGES.register
register_policy_loss = POLICY_LOSSES.register
register_group_filter = GROUP_FILTERS.register
register_reward_shaper = REWARD_SHAPERS.register


def check_knobs(registry: Registry, name: str, params: dict[str, Any]) -> None:
    """Raise UnknownNameError naming the first knob that `name` does not take."""
    valid = registry.knobs(name)
    for key in params:
        if key not in valid:
            raise UnknownNameError(
                f"unknown knob {key!r} for {registry.kind} {name!r}; valid knobs: {', '.join(sorted(valid)) or '(none)'}"
            )
