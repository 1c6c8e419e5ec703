"""`harness run` on verl experiments: shipped files pass every check, --dry-run, and bad input is a
one-line error with exit code 2 and nothing written."""

import copy
from pathlib import Path

import pytest
import yaml

pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
from harness.backends.verl.backend import VerlBackend  # noqa: E402
from harness.cli.app import main  # noqa: E402
from harness.config.experiment import load_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared benchmark data not found at {SHARED}")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A stand-in HF model folder (verl's checks open the model's config and tokenizer)."""
    from harness.embedded import common
    from harness.embedded.model import ModelConfig, TinyGPT
    from harness.backends.verl.hf_export import export_hf

    tok = common.tokenizer()
    return export_hf(TinyGPT(ModelConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32, max_len=64)), tok,
                     tmp_path_factory.mktemp("m"))


def shipped_verl_experiments() -> list[Path]:
    return [p for p in sorted((ROOT / "experiments").glob("*.yaml"))
            if (yaml.safe_load(p.read_text()) or {}).get("backend") == "verl"]


def test_there_are_shipped_verl_experiments():
    names = {p.name for p in shipped_verl_experiments()}
    assert {"paper_qwen25_math7b.yaml", "verl_cpu.yaml"} <= names


@needs_shared
@pytest.mark.parametrize("path", shipped_verl_experiments(), ids=lambda p: p.name)
def test_shipped_verl_experiments_pass_every_check(path, tiny_model, tmp_path, monkeypatch):
    """Hydra composition against the installed verl config, verl's validate_config and dataclass
    conversion, the harness's own checks and the plugin preflight, for every run of the file."""
    monkeypatch.setenv("NGRPO_DATA", str(SHARED))
    monkeypatch.setenv("NGRPO_MODEL", str(tiny_model))  # stands in for Qwen2.5-Math-7B (config and tokenizer only)
    exp = load_experiment(path)
    runs = VerlBackend().check(exp, for_run=False, results_dir=tmp_path / "results", cache_dir=tmp_path / "cache")
    assert len(runs) == len(exp.variants) * len(exp.seeds)
    assert not (tmp_path / "results").exists()
    if path.name == "paper_qwen25_math7b.yaml":
        from harness.backends.verl import compose

        ov = dict(o.split("=", 1) for o in runs[-1]["overrides"])  # ngrpo
        assert ov["data.train_batch_size"] == "1024" and ov["actor_rollout_ref.actor.ppo_mini_batch_size"] == "256"
        assert ov["actor_rollout_ref.rollout.n"] == "8" and ov["data.max_response_length"] == "3072"
        assert ov["algorithm.adv_estimator"] == "harness_virtual_max" and ov["actor_rollout_ref.actor.clip_ratio_low"] == "0.16"
        cfg = compose.compose(runs[-1]["overrides"])
        assert cfg.actor_rollout_ref.actor.optim.lr == 1e-6 and cfg.trainer.n_gpus_per_node == 8
        assert cfg.actor_rollout_ref.rollout.val_kwargs.temperature == 0.6 and cfg.actor_rollout_ref.rollout.val_kwargs.n == 32


def write(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "experiments" / "verl_cpu.yaml").read_text())
    for k, v in changes.items():
        merge = isinstance(v, dict) and isinstance(raw.get(k), dict) and k != "task"  # a task kind is replaced whole
        raw[k] = {**raw[k], **v} if merge else v
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    return e.value.code or 0


def test_dry_run_prints_the_commands_and_writes_nothing(tmp_path, capsys, tiny_model):
    exp = write(tmp_path, verl={"mode": "cluster", "model": str(tiny_model)})
    assert run_cli("run", exp, "--results", tmp_path / "res", "--cache-dir", tmp_path / "cache", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.count("-m verl.trainer.main_ppo") == 2
    assert "algorithm.adv_estimator=harness_virtual_max" in out and "trainer.experiment_name=ngrpo-s0-" in out
    assert not (tmp_path / "res").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("changes,message", [
    ({"verl": {"mode": "inproc", "overrides": ["actor_rollout_ref.actor.clip_ratio_hgih=0.3"]}},
     "unknown verl key 'actor_rollout_ref.actor.clip_ratio_hgih'"),
    ({"verl": {"mode": "inproc", "overrides": ["actor_rollout_ref.actor.clip_ratio_low=abc"]}},
     "clip_ratio_low: must be a number, got 'abc'"),
    ({"variants": [{"name": "ppo", "preset": "ppo", "overrides": {"whiten": False}}]},
     "variant 'ppo' .*whiten=false has no verl equivalent"),
    ({"verl": {"mode": "inproc", "model": "/nonexistent/model"}}, "verl.model: .*/nonexistent/model is not a model folder"),
    ({"task": {"name": "math", "train": "missing_train.parquet"}, "verl": {"mode": "inproc", "model": "TINY"}},
     "missing_train.parquet does not exist"),
    ({"verl": {"mode": "cluster", "model": "TINY"}}, "verl.mode: cluster runs `main_ppo`, which needs GPUs"),
    ({"backend": "local", "verl": {"mode": "cluster"}}, "verl: settings for backend: verl, but backend is local"),
    ({"train": {"threads": 2}, "verl": {"mode": "cluster", "model": "TINY"}}, "train.threads: no verl equivalent"),
])
def test_bad_verl_input_is_one_line_exit_2_and_nothing_written(changes, message, tmp_path, capsys, tiny_model):
    changes = copy.deepcopy(changes)
    if changes.get("verl", {}).get("model") == "TINY":
        changes["verl"]["model"] = str(tiny_model)
    exp = write(tmp_path, **changes)
    code = run_cli("run", exp, "--results", tmp_path / "res", "--cache-dir", tmp_path / "cache")
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    import re

    assert re.search(message, err), err
    assert len(err.splitlines()) == 1 or err.splitlines()[-1].startswith("error:")
    assert not (tmp_path / "res").exists() and not (tmp_path / "cache").exists()
