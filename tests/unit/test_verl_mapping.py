"""RunSpec -> verl overrides: every preset's values, composition against the installed verl config,
the checks verl does not make, and errors for settings verl cannot express."""

import copy

import pytest

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
import algorithms  # noqa: E402
from harness.backends.verl import compose  # noqa: E402
from harness.backends.verl.overrides import VerlMappingError, algorithm_overrides, overrides  # noqa: E402
from harness.config.experiment import VerlSettings  # noqa: E402
from harness.config.runspec import AlgorithmSpec, RunSpec  # noqa: E402

BASE = {
    "experiment": "m", "variant": "v", "seed": 3, "run_id": "v-s3-abc", "plugins": [],
    "task": {"name": "modchain", "min_ops": 2, "max_ops": 3, "grader": "strict"},
    "train": {"steps": 5, "prompts_per_step": 8, "group_size": 4, "mini_batches": 2, "epochs": 1, "lr": 1e-4,
              "weight_decay": 0.01, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 20,
              "max_sample_rounds": 4, "threads": 1, "checkpoint_every": 5},
    "eval": {"every": 5, "n": 4, "k_max": None, "temperature": 0.6, "top_p": 0.95, "seed": 1,
             "benchmarks": {"easy": {"min_ops": 2, "max_ops": 3, "problems": 4}}},
}


def spec_for(preset: str, mode: str = "cluster", verl_overrides: tuple[str, ...] = (), **knobs) -> RunSpec:
    s = copy.deepcopy(BASE)
    s.update(preset=preset, overrides=knobs, verl=VerlSettings(mode=mode, overrides=list(verl_overrides)).model_dump(),
             backend="verl", algorithm=AlgorithmSpec.of(algorithms.get_preset(preset, **knobs)), model={}, warm_start={})
    return RunSpec.model_validate(s)


def as_dict(ov: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in ov)


def build(spec: RunSpec, model: str, mode: str = "cluster"):
    ov = overrides(spec, mode, "/tmp/run", model, model, "/tmp/run/t.parquet", ["/tmp/run/v.parquet"], ["console", "file"])
    cfg = compose.compose(ov)
    compose.check_quietly(cfg, ov, model_is_local=True)
    return ov, cfg


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny exported model folder: verl's model-config conversion opens it."""
    import torch

    from harness.embedded import common
    from harness.embedded.model import ModelConfig, TinyGPT
    from harness.backends.verl.hf_export import export_hf

    tok = common.tokenizer()
    return str(export_hf(TinyGPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_len=64)), tok,
                         tmp_path_factory.mktemp("m")))


@pytest.mark.parametrize("mode", ["cluster", "inproc"])
@pytest.mark.parametrize("preset", ["ppo", "grpo", "dapo", "psr_nsr", "ngrpo"])
def test_every_preset_composes_and_passes_verls_validation(preset, mode, model):
    ov, cfg = build(spec_for(preset, mode), model, mode)
    a = cfg.actor_rollout_ref.actor
    assert cfg.data.train_batch_size == 8 and cfg.actor_rollout_ref.rollout.n == 4 and a.ppo_mini_batch_size == 4
    assert cfg.trainer.total_training_steps == 5 and cfg.trainer.test_freq == 5 and cfg.trainer.val_before_train
    assert cfg.actor_rollout_ref.rollout.val_kwargs.n == 4 and cfg.actor_rollout_ref.rollout.val_kwargs.temperature == 0.6
    assert a.optim.lr == 1e-4 and a.clip_ratio_c == 1e9  # dual clip off unless asked
    assert cfg.reward.custom_reward_function.path == "pkg://harness.backends.verl.reward"
    assert cfg.trainer.validation_data_dir == "/tmp/run/verl/val" and cfg.trainer.default_local_dir == "/tmp/run/checkpoints"


def test_preset_values_reach_verl(model):
    c = {p: build(spec_for(p), model)[1] for p in ("ppo", "grpo", "dapo", "psr_nsr", "ngrpo")}
    ng = c["ngrpo"]
    assert ng.algorithm.adv_estimator == "harness_virtual_max"
    assert ng.algorithm.harness.r_max == 1.0 and ng.algorithm.harness.n_virtual == 1
    assert (ng.actor_rollout_ref.actor.clip_ratio_low, ng.actor_rollout_ref.actor.clip_ratio_high) == (0.16, 0.24)
    assert ng.algorithm.filter_groups.enable and ng.algorithm.filter_groups.metric == "ngrpo_keep"
    assert not ng.actor_rollout_ref.actor.use_kl_loss and ng.actor_rollout_ref.actor.entropy_coeff == 0.001
    gr = c["grpo"]
    assert gr.algorithm.adv_estimator == "harness_group_zscore" and not gr.algorithm.filter_groups.enable
    assert gr.actor_rollout_ref.actor.use_kl_loss and gr.actor_rollout_ref.actor.kl_loss_coef == 0.001
    assert gr.actor_rollout_ref.actor.kl_loss_type == "low_var_kl"
    da = c["dapo"]
    assert (da.actor_rollout_ref.actor.clip_ratio_low, da.actor_rollout_ref.actor.clip_ratio_high) == (0.2, 0.28)
    assert da.algorithm.filter_groups.metric == "acc" and da.reward.reward_manager.name == "dapo"
    assert da.reward.reward_kwargs.overlong_buffer_cfg.len == 4 and da.reward.reward_kwargs.max_resp_len == 20
    pp = c["ppo"]
    assert pp.algorithm.adv_estimator == "gae" and pp.critic.enable and pp.critic.optim.lr == pytest.approx(1e-3)
    assert pp.algorithm.use_kl_in_reward and pp.algorithm.kl_ctrl.kl_coef == 0.001 and pp.critic.cliprange_value == 0.5
    ps = c["psr_nsr"]
    assert ps.algorithm.adv_estimator == "harness_fixed_sign" and ps.algorithm.harness.lam == 0.1
    ov = as_dict(build(spec_for("ngrpo", r_max=1.5, n_virtual=4, clip_c=3.0, agg="seq-mean-token-mean"), model)[0])
    assert ov["+algorithm.harness.r_max"] == "1.5" and ov["+algorithm.harness.n_virtual"] == "4"
    assert ov["actor_rollout_ref.actor.clip_ratio_c"] == "3.0"
    assert ov["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-mean"
    ov = as_dict(algorithm_overrides(spec_for("grpo", group_filter="drop_all_wrong")))  # homogeneous_groups.yaml
    assert ov["algorithm.filter_groups.enable"] == "true" and ov["algorithm.filter_groups.metric"] == "right_keep"


def test_settings_without_a_verl_equivalent_are_errors():
    with pytest.raises(VerlMappingError, match="whiten=false has no verl equivalent"):
        algorithm_overrides(spec_for("ppo", whiten=False))
    with pytest.raises(ValueError, match="knob 'use_critic' is true but advantage 'group_zscore'"):
        algorithm_overrides(spec_for("grpo", use_critic=True))  # refused when the preset resolves (issue 18)
    algorithms.register_group_filter("drop_none_test")(lambda acc, gid: acc | True)
    try:
        with pytest.raises(VerlMappingError, match="group filter 'drop_none_test' has no verl equivalent"):
            algorithm_overrides(spec_for("grpo", group_filter="drop_none_test"))
    finally:
        algorithms.GROUP_FILTERS._fns.pop("drop_none_test")
        algorithms.GROUP_FILTERS._meta.pop("drop_none_test")


@pytest.mark.parametrize("extra,message", [
    (["actor_rollout_ref.actor.clip_ratio_hgih=0.3"], "unknown verl key 'actor_rollout_ref.actor.clip_ratio_hgih'"),
    (["actor_rollout_ref.actor.clip_ratio_low=abc"], "clip_ratio_low: must be a number, got 'abc'"),
    (["trainer.val_before_train=maybe"], "val_before_train: must be true or false"),
    (["+trainer.seed_everything=1"], r"\+trainer.seed_everything: not a verl 0.9.1 setting"),
    (["+actor_rollout_ref.actor.clip_mode=dual"], "verl rejects the config"),
    (["algorithm.adv_estimator=harness_nope"], "'harness_nope' is not registered in verl"),
    (["actor_rollout_ref.actor.policy_loss.loss_mode=nope"], "'nope' is not registered in verl"),
    (["algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=pred_len"], "not produced by the reward function"),
    (["actor_rollout_ref.actor.loss_agg_mode=bogus"], "verl rejects the config"),
    (["+algorithm.harness.std_epss=0.1"], r"\+algorithm.harness.std_epss: not a knob of advantage 'group_zscore' "
                                           r"\(valid: norm_by_std, std_eps\)"),
])
def test_bad_verl_overrides_are_caught(extra, message, model):
    s = spec_for("grpo", verl_overrides=tuple(extra))
    with pytest.raises(VerlMappingError, match=message):
        build(s, model)


def test_harness_knobs_need_a_harness_estimator(model):
    s = spec_for("ppo", verl_overrides=("+algorithm.harness.lam=0.5",))
    with pytest.raises(VerlMappingError, match=r"\+algorithm.harness.lam: knobs of the harness's estimators, but "
                                               r"algorithm.adv_estimator is verl's own 'gae'"):
        build(s, model)


def test_estimator_refuses_an_unknown_knob_at_call_time():
    from omegaconf import OmegaConf

    from harness.backends.verl.plugin import knobs_from_config

    assert knobs_from_config("virtual_max", OmegaConf.create({"harness": {"r_max": 2.0}})) == {"r_max": 2.0}
    with pytest.raises(ValueError, match="harness.rmax: not a knob of advantage 'virtual_max'"):
        knobs_from_config("virtual_max", OmegaConf.create({"harness": {"rmax": 2.0}}))


def test_paper_recipe_dapo_overlong_buffer_is_the_released_1024(monkeypatch, tmp_path):
    """The released scripts: a 1024-token overlong buffer at a 3072-token limit (not 3072 // 5 = 614)."""
    from pathlib import Path

    from harness.config.experiment import load_experiment
    from harness.config.runspec import expand

    monkeypatch.setenv("NGRPO_MODEL", str(tmp_path))
    monkeypatch.setenv("NGRPO_DATA", str(tmp_path))
    paper = Path(__file__).resolve().parents[2] / "experiments" / "paper_qwen25_math7b.yaml"
    dapo = next(s for s in expand(load_experiment(paper)) if s.variant == "dapo")
    ov = as_dict(algorithm_overrides(dapo))
    assert ov["+reward.reward_kwargs.overlong_buffer_cfg.len"] == "1024"
    assert ov["+reward.reward_kwargs.max_resp_len"] == "3072"
    full = as_dict(overrides(dapo, "cluster", "/tmp/run", "m", "m", "/tmp/t.parquet", ["/tmp/v.parquet"], ["file"]))
    assert (full["trainer.total_training_steps"], full["trainer.total_epochs"]) == ("140", "20")  # min(140, 20 epochs)


def test_max_epochs_left_unset_changes_no_run_id():
    """train.max_epochs (null) is left out of the content: files that do not set it keep their run ids."""
    from harness.config.sections import TrainConfig

    assert "max_epochs" not in TrainConfig().model_dump() and TrainConfig(max_epochs=3).model_dump()["max_epochs"] == 3


def test_dr_grpo_normaliser_is_the_generation_limit_on_verl(model):
    ov, cfg = build(spec_for("grpo", agg="seq-mean-token-sum-norm"), model)
    assert cfg.actor_rollout_ref.actor.loss_agg_mode == "seq-mean-token-sum-norm"
    assert cfg.actor_rollout_ref.actor.loss_scale_factor == BASE["train"]["max_new_tokens"]
    assert "actor_rollout_ref.actor.loss_scale_factor" not in as_dict(build(spec_for("grpo"), model)[0])
