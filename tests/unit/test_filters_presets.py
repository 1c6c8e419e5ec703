"""Group filters, reward shaping, registries and presets."""

import pytest
import torch

import algorithms
from algorithms import get_preset
from algorithms.filters import apply_filter, group_outcomes
from algorithms.registry import Registry
from algorithms.shaping import overlong, overlong_penalty_values

ACC = torch.tensor([1, 1, 0, 0, 0, 0, 1, 1, 1, 0], dtype=torch.bool)
GID = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])  # groups: mixed? no: [1,1] all-correct, [0,0] all-wrong, ...


def test_filters():
    assert apply_filter("keep_all", ACC, GID).all()
    assert apply_filter("drop_all_correct", ACC, GID).tolist() == [False, False, True, True, True, True, False, False, True, True]
    assert apply_filter("drop_homogeneous", ACC, GID).tolist() == [False] * 8 + [True, True]
    assert apply_filter("drop_all_wrong", ACC, GID).tolist() == [True, True, False, False, False, False, True, True, True, True]
    out = group_outcomes(ACC, GID)
    assert out["all_correct_frac"] == pytest.approx(0.4)
    assert out["all_wrong_frac"] == pytest.approx(0.4)
    assert out["mixed_frac"] == pytest.approx(0.2)


def test_filters_refuse_non_boolean_acc():
    for name in algorithms.GROUP_FILTERS.names():
        with pytest.raises(TypeError, match="acc must be a boolean"):
            apply_filter(name, ACC.float(), GID)


def test_overlong_penalty():
    lengths = torch.tensor([10, 16, 18, 20, 25])
    pen = overlong_penalty_values(lengths, max_len=20, cache_len=4)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0, -1.0])
    shaped = overlong(torch.ones(5), lengths, 20, cache_len=4)
    assert shaped.tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0, 0.0])
    # defaults: max_len = generation limit, cache = limit // 5
    assert overlong(torch.zeros(2), torch.tensor([7, 10]), 10).tolist() == pytest.approx([0.0, -1.0])
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty_values(lengths, 20, 0)


def test_registry_refuses_duplicates_and_lists_names():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)
    with pytest.raises(KeyError, match="valid names: a"):
        reg.get("b")
    with pytest.raises(ValueError, match="already registered"):
        algorithms.register_advantage("group_zscore")(lambda r, g: r)


def test_presets_match_recipes():
    ng = get_preset("ngrpo")
    assert ng.pieces["advantage"] == "virtual_max" and ng.pieces["group_filter"] == "drop_all_correct"
    assert ng.knobs["eps_pos"] == 0.24 and ng.knobs["eps_neg"] == 0.16 and ng.knobs["r_max"] == 1.0
    assert ng.knobs["kl_coef"] == 0.0 and ng.knobs["entropy_coef"] == 0.001
    gr = get_preset("grpo")
    assert (gr.knobs["eps_low"], gr.knobs["eps_high"], gr.knobs["kl_coef"]) == (0.2, 0.2, 0.001)
    da = get_preset("dapo")
    assert (da.knobs["eps_low"], da.knobs["eps_high"]) == (0.2, 0.28)
    assert da.pieces["group_filter"] == "drop_homogeneous" and da.pieces["reward_shaper"] == "overlong"
    ps = get_preset("psr_nsr")
    assert ps.knobs["lam"] == 0.1 and ps.pieces["advantage"] == "fixed_sign"
    pp = get_preset("ppo")
    assert pp.knobs["use_critic"] and pp.knobs["kl_in_reward_coef"] == 0.001 and pp.knobs["value_clip"] == 0.5
    assert ng.group_relative and gr.group_relative and not pp.group_relative and not ps.group_relative


def test_preset_overrides_and_errors():
    p = get_preset("ngrpo", eps_pos=0.2, eps_neg=0.2, r_max=0.5)
    assert (p.knobs["eps_pos"], p.knobs["eps_neg"], p.knobs["r_max"]) == (0.2, 0.2, 0.5)
    assert get_preset("ngrpo").knobs["eps_pos"] == 0.24  # base untouched
    p = get_preset("ngrpo", advantage="group_zscore")
    assert "r_max" not in p.knobs and p.knobs["eps_pos"] == 0.24
    assert get_preset("ngrpo", group_filter="drop_homogeneous").pieces["group_filter"] == "drop_homogeneous"
    with pytest.raises(KeyError, match="unknown preset 'gpro'; valid presets: dapo, grpo, ngrpo, ppo, psr_nsr"):
        get_preset("gpro")
    with pytest.raises(KeyError, match="unknown knob 'eps'"):
        get_preset("grpo", eps=0.3)
    with pytest.raises(ValueError, match="eps_high' must be in \\(0, 1\\)"):
        get_preset("dapo", eps_high=1.0)
    with pytest.raises(ValueError, match="must be a number"):
        get_preset("grpo", kl_coef="lots")
    with pytest.raises(ValueError, match="must be true or false"):
        get_preset("grpo", use_critic=1)
    with pytest.raises(KeyError, match="valid names"):
        get_preset("grpo", advantage="gpro")


def test_list_registered():
    reg = algorithms.list_registered()
    assert set(reg["preset"]) == {"ppo", "grpo", "dapo", "psr_nsr", "ngrpo"}
    assert {"group_zscore", "virtual_max", "fixed_sign", "gae"} <= set(reg["advantage"])


def test_swapped_piece_drops_the_old_pieces_knob_values():
    """psr_nsr's lam (W-REINFORCE's lambda = 0.1) must not become GAE's lambda when advantage is swapped."""
    p = get_preset("psr_nsr", advantage="gae")
    assert p.piece_knobs("advantage") == {"gamma": 1.0, "lam": 1.0, "whiten": True}  # GAE's own defaults
    assert get_preset("psr_nsr", advantage="gae", lam=0.95).piece_knobs("advantage")["lam"] == 0.95
    assert get_preset("psr_nsr").piece_knobs("advantage") == {"mode": "w_reinforce", "lam": 0.1}
    ns = get_preset("ngrpo").namespaces()
    assert set(ns) == {"objective", "advantage", "policy_loss", "group_filter", "reward_shaper"}
    assert ns["policy_loss"]["eps_pos"] == 0.24 and ns["objective"]["entropy_coef"] == 0.001
    assert "eps_pos" not in ns["advantage"] and "r_max" not in ns["policy_loss"]


def test_knob_names_are_unique_across_namespaces(monkeypatch):
    reg = algorithms.GROUP_FILTERS
    monkeypatch.setitem(reg._fns, "f_with_lam", lambda acc, gids, *, lam=0.5: acc)
    monkeypatch.setitem(reg._meta, "f_with_lam", {})
    with pytest.raises(ValueError, match="knob 'lam' is declared by group_filter 'f_with_lam' and by advantage 'fixed_sign'"):
        get_preset("psr_nsr", group_filter="f_with_lam")
    monkeypatch.setitem(reg._fns, "f_with_kl", lambda acc, gids, *, kl_coef=0.5: acc)
    monkeypatch.setitem(reg._meta, "f_with_kl", {})
    with pytest.raises(ValueError, match="knob 'kl_coef' is declared by group_filter 'f_with_kl' and by objective"):
        get_preset("grpo", group_filter="f_with_kl")


def test_a_preset_knob_that_no_piece_declares_is_refused():
    from algorithms.presets import Preset, _resolve

    bad = Preset("bad", "", "", dict(get_preset("grpo").pieces), {"eps_pos": 0.2})
    with pytest.raises(KeyError, match="preset 'bad' sets knob 'eps_pos', which none of its pieces"):
        _resolve(bad, {})


def test_use_critic_needs_an_advantage_that_uses_values():
    with pytest.raises(ValueError, match="knob 'use_critic' is true but advantage 'group_zscore' does not use"):
        get_preset("grpo", use_critic=True)
    with pytest.raises(ValueError, match="advantage 'fixed_sign' does not use"):
        get_preset("ppo", advantage="fixed_sign")  # ppo's use_critic with a swapped-in outcome advantage
    assert get_preset("ppo").objective("use_critic")
