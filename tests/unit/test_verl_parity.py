"""The verl plugin against verl's own code: discovery through the entry point (fresh processes),
estimators through verl's compute_advantage (ALGORITHMS.md numbers, GRPO == verl's grpo), our
clipped losses == verl's vanilla loss (gradients included), NGRPO's all-correct-only filter on
verl's dynamic sampling, and the preflight that catches a broken plugin."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.core_algos import get_policy_loss_fn  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

import algorithms  # noqa: E402
from harness.backends.verl import preflight  # noqa: E402
from harness.backends.verl.reward import compute_score  # noqa: E402
from harness.backends.verl.rollout import filter_keep  # noqa: E402
from harness.core.errors import UserError  # noqa: E402


def fresh(code: str, **env) -> dict:
    """Run code in a new interpreter (a verl process as Ray would start it); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_plugin_is_discovered_through_the_entry_point_in_a_fresh_process():
    probe = """
        import json, sys
        import verl.trainer.ppo.core_algos as ca
        print(json.dumps({"names": sorted(n for n in ca.ADV_ESTIMATOR_REGISTRY if n.startswith("harness_")),
                          "loaded": "harness.backends.verl.plugin" in sys.modules}))
    """
    on = fresh(probe)
    assert on == {"names": ["harness_fixed_sign", "harness_group_zscore", "harness_virtual_max"], "loaded": True}
    off = fresh(probe, VERL_USE_EXTERNAL_PLUGINS="none")  # verl's own switch: the plugin is then absent
    assert off == {"names": [], "loaded": False}


def advantages(estimator: str, rewards: torch.Tensor, uids: list[str], **harness_knobs) -> torch.Tensor:
    """Per-response advantages through verl's ray_trainer.compute_advantage (the trainer's call)."""
    T = 3
    tok = torch.zeros(len(uids), T)
    tok[:, -1] = rewards
    data = DataProto.from_dict(tensors={"token_level_rewards": tok, "response_mask": torch.ones(len(uids), T)},
                               non_tensors={"uid": np.array(uids, dtype=object)})
    cfg = OmegaConf.create({"adv_estimator": estimator, "norm_adv_by_std_in_grpo": True, "harness": harness_knobs})
    out = compute_advantage(data, adv_estimator=estimator, config=cfg, num_repeat=1).batch["advantages"]
    assert torch.equal(out, out[:, :1].expand_as(out))  # one scalar per response, broadcast to its tokens
    return out[:, 0]


# ALGORITHMS.md worked numbers (G = 8): correct c -> (A(correct), A(wrong))
NGRPO = {0: (None, -0.3333), 1: (1.7638, -0.5040), 4: (0.8433, -1.0541), 7: (0.3333, -2.6667), 8: (0.0, None)}
GRPO = {0: (None, 0.0), 1: (2.4749, -0.3536), 4: (0.9354, -0.9354), 7: (0.3536, -2.4749), 8: (0.0, None)}


@pytest.mark.parametrize("estimator,table,knobs", [
    ("harness_virtual_max", NGRPO, {"r_max": 1.0, "n_virtual": 1}),
    ("harness_group_zscore", GRPO, {}),
    ("grpo", GRPO, {}),
])
def test_estimators_through_verl_reproduce_algorithms_md(estimator, table, knobs):
    uids, rewards = [], []
    for c in table:
        uids += [f"g{c}"] * 8
        rewards += [1.0] * c + [0.0] * (8 - c)
    adv = advantages(estimator, torch.tensor(rewards), uids, **knobs).view(len(table), 8)
    for row, (c, (a_pos, a_neg)) in zip(adv, table.items()):
        if a_pos is not None:
            assert row[0].item() == pytest.approx(a_pos, abs=1e-4), (estimator, c)
        if a_neg is not None:
            assert row[-1].item() == pytest.approx(a_neg, abs=1e-4), (estimator, c)


def test_w_reinforce_through_verl():
    adv = advantages("harness_fixed_sign", torch.tensor([1.0, 0.0, 0.0, 1.0]), ["a", "a", "b", "b"], mode="w_reinforce", lam=0.1)
    assert adv.tolist() == pytest.approx([0.1, -1.0, -1.0, 0.1])


@pytest.mark.parametrize("seed", range(4))
def test_harness_grpo_equals_verl_builtin_grpo(seed):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 9, (12,), generator=g).tolist()  # singletons included (verl: A = raw score)
    uids = [f"u{i}" for i, s in enumerate(sizes) for _ in range(s)]
    perm = torch.randperm(len(uids), generator=g).tolist()  # groups interleaved, as after balancing
    uids = [uids[i] for i in perm]
    rewards = torch.rand(len(uids), generator=g).round(decimals=1)
    ours = advantages("harness_group_zscore", rewards, uids)
    theirs = advantages("grpo", rewards, uids)
    assert torch.allclose(ours, theirs, atol=1e-6)


def verl_vanilla(logp, old, adv, mask, low, high, agg):
    cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": low, "clip_ratio_high": high, "clip_ratio_c": 1e9,
                            "global_batch_info": {}, "policy_loss": {"loss_mode": "vanilla"}})
    loss, _ = get_policy_loss_fn("vanilla")(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask.bool(),
                                            loss_agg_mode=agg, config=cfg, rollout_is_weights=None)
    return loss


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("seed", range(3))
def test_clipped_losses_equal_verl_vanilla_with_gradients(agg, seed):
    g = torch.Generator().manual_seed(seed)
    N, T = 24, 11
    base = -torch.rand(N, T, generator=g) * 3
    old = base + 0.3 * torch.randn(N, T, generator=g)  # ratios far enough from 1 that both bounds bind
    adv = torch.randn(N, generator=g)
    mask = (torch.arange(T)[None] < torch.randint(2, T + 1, (N, 1), generator=g)).float()
    cases = [("ppo_clip", {"eps_low": 0.2, "eps_high": 0.28}, 0.2, 0.28),
             ("sign_clip", {"eps_pos": 0.24, "eps_neg": 0.16}, 0.16, 0.24)]
    for name, knobs, low, high in cases:
        l1 = base.clone().requires_grad_(True)
        ours, metrics = algorithms.POLICY_LOSSES.get(name)(l1, old, adv, mask, agg=agg, **knobs)
        ours.backward()
        l2 = base.clone().requires_grad_(True)
        theirs = verl_vanilla(l2, old, adv[:, None].expand(N, T) * mask, mask, low, high, agg)
        theirs.backward()
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7), (name, agg)
        assert torch.allclose(l1.grad, l2.grad, atol=1e-7), (name, agg)
        assert metrics["clipfrac_low"] > 0 and metrics["clipfrac_high"] > 0  # both bounds were exercised


def verl_dapo_filtered(metric_by_key: dict[str, float], monkeypatch) -> set[str]:
    """verl's own dynamic-sampling decision (ReplayBuffer._dapo_filtered_keys) on given reward extra infos."""
    from verl.trainer.ppo.v1 import replay_buffer as rb

    buf = rb.ReplayBuffer.__new__(rb.ReplayBuffer)
    buf.filter_groups_metric = "m"
    uids = {k.split("_")[0] for k in metric_by_key}
    buf.finished_keys = {"train": set(uids)}
    buf.partitions = {"train": list(metric_by_key)}
    buf._dapo_classification_cache = {"train": {}}

    def kv_batch_get(keys, partition_id, select_fields):
        return {"extra_fields": [{"reward_extra_info": {"m": metric_by_key[k]}} for k in keys]}

    monkeypatch.setattr(rb.tq, "kv_batch_get", kv_batch_get)
    return buf._dapo_filtered_keys("train")[0]


def test_ngrpo_filter_metric_drops_all_correct_groups_only_on_verl(monkeypatch):
    """The reward function's `ngrpo_keep` makes verl's zero-spread filter drop all-correct groups only,
    even when every response of an all-wrong group is the same text; `right_keep` drops all-wrong groups
    only; `acc` (DAPO) drops both kinds."""
    gold = {"answer": "3", "solution": "3;3"}
    groups = {"allright": ["3;3"] * 4, "allwrong": ["5;5"] * 4, "mixed": ["3;3", "5;5", "5;5", "3;3"]}
    keep, right, acc = {}, {}, {}
    for uid, outs in groups.items():
        for s, text in enumerate(outs):
            r = compute_score("modchain", text, gold, {"split": "train"}, grader="strict")
            keep[f"{uid}_{s}_0"], right[f"{uid}_{s}_0"], acc[f"{uid}_{s}_0"] = r["ngrpo_keep"], r["right_keep"], float(r["acc"])
    assert verl_dapo_filtered(keep, monkeypatch) == {"allright"}
    assert verl_dapo_filtered(right, monkeypatch) == {"allwrong"}
    assert verl_dapo_filtered(acc, monkeypatch) == {"allright", "allwrong"}
    # the in-process mode applies the same rule
    gid = np.repeat(np.arange(3), 4)
    kept = filter_keep(np.array(list(keep.values())), gid)
    assert kept.tolist() == [False] * 4 + [True] * 8
    assert filter_keep(np.array(list(acc.values())), gid).tolist() == [False] * 8 + [True] * 4
    assert filter_keep(np.array(list(right.values())), gid).tolist() == [True] * 4 + [False] * 4 + [True] * 4


def test_inproc_filter_rule_equals_verls_on_random_metrics(monkeypatch):
    rng = np.random.default_rng(0)
    for _ in range(5):
        metric = rng.integers(0, 3, size=40).astype(float)  # many zero-spread groups by chance
        gid = np.repeat(np.arange(10), 4)
        theirs = verl_dapo_filtered({f"g{g}_{i % 4}_0": m for i, (g, m) in enumerate(zip(gid, metric))}, monkeypatch)
        ours = {f"g{g}" for g in np.unique(gid[~filter_keep(metric, gid)])}
        assert ours == theirs


def test_preflight_fails_loudly_when_the_plugin_cannot_import(tmp_path):
    preflight.check_registered({"harness_virtual_max", "grpo"}, {"vanilla"}, [])  # healthy: no error
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('plugin exploded at import')\n")
    with pytest.raises(UserError, match="harness_virtual_max.*not registered.*plugin exploded at import"):
        preflight.check_registered({"harness_virtual_max"}, {"vanilla"}, [str(broken)])
    with pytest.raises(UserError, match="no_such_loss"):
        preflight.check_registered({"grpo"}, {"no_such_loss"}, [])


@pytest.mark.parametrize("kind,verl_kind", [("k3", "low_var_kl"), ("k1", "kl")])
def test_kl_estimates_equal_verls_kl_penalty_in_value_and_gradient(kind, verl_kind):
    """Log-ratios over [-30, 30] (both clamps of verl's low_var_kl bind at the ends: |d| > 20, k3 > 10)."""
    from verl.trainer.ppo.core_algos import kl_penalty

    d = torch.linspace(-30.0, 30.0, 2401, dtype=torch.float64)
    ref = torch.randn(d.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours_logp, verl_logp = (ref - d).clone().requires_grad_(True), (ref - d).clone().requires_grad_(True)
    ours = algorithms.kl_estimate(ours_logp, ref, kind)
    theirs = kl_penalty(verl_logp, ref, verl_kind)
    assert torch.equal(ours, theirs)
    w = torch.rand(d.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (ours * w).sum().backward()
    (theirs * w).sum().backward()
    assert torch.equal(ours_logp.grad, verl_logp.grad)
    if kind == "k3":
        assert ours.max().item() == 10.0 and (ours_logp.grad[d.abs() > 20] == 0).all()  # the cap and the clamp bind
