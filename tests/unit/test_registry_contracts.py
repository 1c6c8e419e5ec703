"""Registry contracts: a piece that does not fit its role's signature is refused when it is registered."""

import pytest

import algorithms
from algorithms.registry import (
    ADVANTAGES,
    GROUP_FILTERS,
    POLICY_LOSSES,
    REWARD_SHAPERS,
    ContractError,
    Registry,
    contract_problem,
)


@pytest.fixture()
def scratch():
    """Names registered by a test are removed afterwards."""
    added: list[tuple[Registry, str]] = []

    def add(registry: Registry, name: str, fn, **meta):
        registry.add(name, fn, **meta)
        added.append((registry, name))

    yield add
    for registry, name in added:
        registry._fns.pop(name, None)
        registry._meta.pop(name, None)


def test_every_built_in_piece_fits_its_contract():
    for registry in (ADVANTAGES, POLICY_LOSSES, GROUP_FILTERS, REWARD_SHAPERS):
        for name in registry.names():
            contract = registry.contract_for(registry.meta(name))
            assert contract_problem(registry.get(name), contract) is None, (registry.kind, name)


def test_a_fitting_piece_of_each_role_registers(scratch):
    def adv(rewards, group_ids, acc=None, *, scale: float = 1.0):
        return scale * rewards

    def tok_adv(rewards, group_ids, acc=None, values=None, mask=None, token_rewards=None, *, gamma=1.0):
        return values

    def loss(logp, old_logp, advantages, mask, *, agg: str = "token-mean", beta: float = 0.0):
        return logp.sum(), {}

    def flt(acc, group_ids):
        return acc | True

    def shaper(rewards, lengths, limit, *, bonus: float = 0.0):
        return rewards + bonus

    scratch(ADVANTAGES, "contract_adv", adv, group_relative=True)
    scratch(ADVANTAGES, "contract_tok_adv", tok_adv, token_level=True)
    scratch(POLICY_LOSSES, "contract_loss", loss)
    scratch(GROUP_FILTERS, "contract_flt", flt)
    scratch(GROUP_FILTERS, "contract_flt_lambda", lambda a, g: a)  # inputs passed by position: any names
    scratch(REWARD_SHAPERS, "contract_shaper", shaper)
    assert ADVANTAGES.knobs("contract_adv") == {"scale": 1.0}
    assert REWARD_SHAPERS.knobs("contract_shaper") == {"bonus": 0.0}


def bad_adv_no_acc(rewards, group_ids, *, scale: float = 1.0): ...
def bad_adv_positional_knob(rewards, group_ids, acc=None, scale=1.0): ...
def bad_adv_acc_renamed(rewards, group_ids, correct=None): ...
def bad_adv_acc_required(rewards, group_ids, acc): ...
def bad_adv_knob_no_default(rewards, group_ids, acc=None, *, scale): ...
def bad_adv_kwargs(rewards, group_ids, acc=None, **knobs): ...
def bad_adv_args(rewards, group_ids, acc=None, *more): ...


@pytest.mark.parametrize("fn,meta,message", [
    (bad_adv_no_acc, {}, r"takes 2 positional parameters \(rewards, group_ids\) but the contract has 3 "),
    (bad_adv_positional_knob, {}, "takes 4 positional parameters .* knobs go after `\\*`"),
    (bad_adv_acc_renamed, {}, "positional parameter 'correct' must be 'acc'"),
    (bad_adv_acc_required, {}, "parameter 'acc' needs a default"),
    (bad_adv_knob_no_default, {}, "knob 'scale' has no default"),
    (bad_adv_kwargs, {}, r"\*\*knobs is not allowed"),
    (bad_adv_args, {}, r"\*more is not allowed"),
    (bad_adv_no_acc, {"token_level": True}, r"advantage \(token_level\) contract: takes 2 positional"),
])
def test_advantage_contract_refusals(scratch, fn, meta, message):
    with pytest.raises(ContractError, match=message) as err:
        algorithms.register_advantage("contract_bad_adv", **meta)(fn)
    text = str(err.value)
    assert "advantage estimator 'contract_bad_adv'" in text
    assert "expected fn(rewards, group_ids, acc=None" in text
    assert "\n" not in text
    assert "contract_bad_adv" not in ADVANTAGES


def bad_loss_three(logp, old_logp, advantages, *, agg: str = "token-mean"): ...
def bad_loss_no_agg(logp, old_logp, advantages, mask, *, eps: float = 0.2): ...
def bad_loss_knob_no_default(logp, old_logp, advantages, mask, *, agg: str = "token-mean", eps): ...
def bad_loss_kwargs(logp, old_logp, advantages, mask, *, agg: str = "token-mean", **kw): ...


@pytest.mark.parametrize("fn,message", [
    (bad_loss_three, r"takes 3 positional parameters \(logp, old_logp, advantages\) but the contract has 4"),
    (bad_loss_no_agg, "lacks the keyword-only knob\\(s\\) agg"),
    (bad_loss_knob_no_default, "knob 'eps' has no default"),
    (bad_loss_kwargs, r"\*\*kw is not allowed"),
])
def test_policy_loss_contract_refusals(fn, message):
    prefix = "policy loss 'contract_bad_loss' does not fit the policy_loss contract: "
    with pytest.raises(ContractError, match=prefix + message):
        algorithms.register_policy_loss("contract_bad_loss")(fn)
    assert "contract_bad_loss" not in POLICY_LOSSES


@pytest.mark.parametrize("fn,message", [
    (lambda acc: acc, r"takes 1 positional parameters \(acc\) but the contract has 2 \(acc, group_ids\)"),
    (lambda acc, group_ids, rounds: acc, "takes 3 positional parameters"),
    (lambda acc, group_ids, *, strict=True: acc, r"takes knobs \(strict\) but this role is called"),
    (lambda *args: args[0], r"\*args is not allowed"),
])
def test_group_filter_contract_refusals(fn, message):
    prefix = "group filter 'contract_bad_flt' does not fit the group_filter contract: "
    with pytest.raises(ContractError, match=prefix + message):
        algorithms.register_group_filter("contract_bad_flt")(fn)
    assert "contract_bad_flt" not in GROUP_FILTERS


@pytest.mark.parametrize("fn,message", [
    (lambda rewards, lengths: rewards, "takes 2 positional parameters .* but the contract has 3"),
    (lambda rewards, lengths, limit, *, bonus: rewards, "knob 'bonus' has no default"),
    (lambda rewards, lengths, limit, **kw: rewards, r"\*\*kw is not allowed"),
    (len, "takes 1 positional parameters"),
])
def test_reward_shaper_contract_refusals(fn, message):
    prefix = "reward shaper 'contract_bad_shp' does not fit the reward_shaper contract: "
    with pytest.raises(ContractError, match=prefix + message):
        algorithms.register_reward_shaper("contract_bad_shp")(fn)
    assert "contract_bad_shp" not in REWARD_SHAPERS


def test_contract_errors_are_value_errors_and_duplicates_are_checked_first():
    assert issubclass(ContractError, ValueError)
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register_advantage("group_zscore")(lambda r, g: r)


def test_a_registry_without_a_contract_checks_nothing():
    reg = Registry("thing")
    reg.register("a")(lambda *args, **kw: 1)
    assert reg.get("a")() == 1
