"""Decorator registries for the pluggable pieces of an RL objective, and the contract of each role.

Four registries: advantage estimators, policy losses, group filters, reward shapers. A name can be
registered once (a duplicate is refused); an unknown name raises an error that lists the valid ones.
Knobs are the keyword-only parameters of a registered function; `check_knobs` validates a dict of
them against the signature so a typo fails loudly instead of being ignored.

Each role has one contract (a Protocol below, plus a `Contract` the registry checks): the inputs the
trainers pass, in order, and the return value. Inputs passed by position may be named freely; inputs
passed by keyword must carry the contract's name and a default. Knobs are keyword-only with defaults.
A piece that does not fit is refused when it is registered (ContractError), not at step 1.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

if TYPE_CHECKING:
    from torch import Tensor

F = Callable[..., Any]


# ------------------------------------------------------------------ the four roles' signatures
class AdvantageFn(Protocol):
    """rewards [N] float (shaped), group_ids [N] int, acc [N] bool or None -> advantages [N].

    Token-level pieces (registered with token_level=True, e.g. gae) also take values [N, T],
    mask [N, T] and token_rewards [N, T] (or None) and return advantages [N, T].
    """

    def __call__(self, rewards: Tensor, group_ids: Tensor, /, acc: Tensor | None = None) -> Tensor: ...


class PolicyLossFn(Protocol):
    """logp, old_logp [N, T], advantages [N] or [N, T], mask [N, T]; knob `agg` (aggregation mode)
    -> (loss: scalar tensor, metrics: dict[str, float] with clipfrac_low, clipfrac_high, approx_kl)."""

    def __call__(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, /, *, agg: str = "token-mean",
    ) -> tuple[Tensor, dict[str, float]]: ...


class GroupFilterFn(Protocol):
    """acc [N] bool, group_ids [N] int -> keep [N] bool (whole groups kept or dropped). No knobs."""

    def __call__(self, acc: Tensor, group_ids: Tensor, /) -> Tensor: ...


class RewardShaperFn(Protocol):
    """rewards [N] float, lengths [N] int, generation_limit (max new tokens) -> shaped rewards [N] float."""

    def __call__(self, rewards: Tensor, lengths: Tensor, generation_limit: int, /) -> Tensor: ...


@dataclass(frozen=True)
class Contract:
    """What a role's callers pass: `positional` inputs by position (any name), then `by_name` inputs by
    keyword (that name, with a default), then knobs (keyword-only, with defaults) if `knobs` allows any;
    `required_knobs` must be among them. `returns` is documentation for the error messages."""

    role: str
    positional: tuple[str, ...]
    by_name: tuple[str, ...] = ()
    knobs: bool = True
    required_knobs: tuple[str, ...] = ()
    returns: str = ""

    def describe(self) -> str:
        params = [*self.positional, *(f"{p}=None" for p in self.by_name)]
        if self.knobs:
            params.append("*, " + ", ".join(f"{k}=<default>" for k in (*self.required_knobs, "<knob>")))
        return f"fn({', '.join(params)}) -> {self.returns}"


ADVANTAGE_CONTRACT = Contract("advantage", ("rewards", "group_ids"), ("acc",), returns="advantages [N]")
TOKEN_ADVANTAGE_CONTRACT = Contract(
    "advantage (token_level)", ("rewards", "group_ids"), ("acc", "values", "mask", "token_rewards"),
    returns="advantages [N, T]",
)
POLICY_LOSS_CONTRACT = Contract(
    "policy_loss", ("logp", "old_logp", "advantages", "mask"), required_knobs=("agg",),
    returns="(loss, metrics)",
)
GROUP_FILTER_CONTRACT = Contract("group_filter", ("acc", "group_ids"), knobs=False, returns="keep [N] bool")
REWARD_SHAPER_CONTRACT = Contract(
    "reward_shaper", ("rewards", "lengths", "generation_limit"), returns="shaped rewards [N]",
)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def contract_problem(fn: F, contract: Contract) -> str | None:
    """What is wrong with fn's signature under `contract`, in a few words; None when it fits."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return "its signature cannot be inspected"
    for p in params:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return f"*{p.name} is not allowed (inputs are passed by position, knobs by name)"
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return f"**{p.name} is not allowed (knobs must be named keyword-only parameters)"
    pos = [p for p in params if p.kind in _POSITIONAL]
    want = (*contract.positional, *contract.by_name)
    if len(pos) != len(want):
        got = ", ".join(p.name for p in pos) or "none"
        return (f"takes {len(pos)} positional parameters ({got}) but the contract has {len(want)} "
                f"({', '.join(want)}); knobs go after `*`")
    for p, name in zip(pos[len(contract.positional):], contract.by_name):
        if p.name != name or p.kind is inspect.Parameter.POSITIONAL_ONLY:
            return f"positional parameter {p.name!r} must be {name!r} (passed by keyword)"
        if p.default is inspect.Parameter.empty:
            return f"parameter {name!r} needs a default (None): callers may omit it"
    knobs = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if knobs and not contract.knobs:
        return f"takes knobs ({', '.join(p.name for p in knobs)}) but this role is called without any"
    for p in knobs:
        if p.default is inspect.Parameter.empty:
            return f"knob {p.name!r} has no default"
    missing = [k for k in contract.required_knobs if k not in {p.name for p in knobs}]
    if missing:
        return f"lacks the keyword-only knob(s) {', '.join(missing)} that the trainers read"
    return None


class ContractError(ValueError):
    """A piece whose signature does not fit its role's contract; raised at registration."""


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name or knob; str() is the full message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry:
    """name -> function, with duplicate refusal, helpful misses and (when given) a signature contract.

    `contract` applies to every piece; `variants` maps a metadata flag to the contract of pieces
    registered with that flag set (e.g. token_level=True advantages take per-token inputs too).
    """

    def __init__(
        self, kind: str, contract: Contract | None = None, variants: Mapping[str, Contract] | None = None,
    ) -> None:
        self.kind = kind
        self.contract = contract
        self.variants = dict(variants or {})
        self._fns: dict[str, F] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def contract_for(self, meta: Mapping[str, Any]) -> Contract | None:
        """The contract a piece registered with `meta` must fit (None: unchecked)."""
        for flag, contract in self.variants.items():
            if meta.get(flag, False):
                return contract
        return self.contract

    def add(self, name: str, fn: F, **meta: Any) -> F:
        """Register `fn` under `name` with optional metadata (e.g. group_relative=True).

        Refuses a duplicate name, and a signature that does not fit the role's contract (ContractError).
        """
        if name in self._fns:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self._fns[name].__module__})")
        contract = self.contract_for(meta)
        problem = contract_problem(fn, contract) if contract is not None else None
        if problem is not None:
            raise ContractError(
                f"{self.kind} {name!r} does not fit the {contract.role} contract: {problem}; "
                f"expected {contract.describe()}"
            )
        self._fns[name] = fn
        self._meta[name] = meta
        return fn

    def register(self, name: str, **meta: Any) -> Callable[[F], F]:
        """Decorator form of `add`."""

        def deco(fn: F) -> F:
            return self.add(name, fn, **meta)

        return deco

    def get(self, name: str) -> F:
        try:
            return self._fns[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._fns))}"
            ) from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._meta[name])

    def names(self) -> list[str]:
        return sorted(self._fns)

    def knobs(self, name: str) -> dict[str, Any]:
        """Keyword-only parameters of a registered function with their defaults."""
        sig = inspect.signature(self.get(name))
        params = sig.parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


ADVANTAGES = Registry("advantage estimator", ADVANTAGE_CONTRACT, {"token_level": TOKEN_ADVANTAGE_CONTRACT})
POLICY_LOSSES = Registry("policy loss", POLICY_LOSS_CONTRACT)
GROUP_FILTERS = Registry("group filter", GROUP_FILTER_CONTRACT)
REWARD_SHAPERS = Registry("reward shaper", REWARD_SHAPER_CONTRACT)

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
                f"unknown knob {key!r} for {registry.kind} {name!r}; "
                f"valid knobs: {', '.join(sorted(valid)) or '(none)'}"
            )
