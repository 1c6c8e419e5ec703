"""Models named by a hub id resolve through the Hugging Face cache (issue 18): a cache laid out on disk."""

import pytest
import yaml

from harness.config.experiment import load_experiment
from harness.core.errors import UserError
from harness.core.hub import is_hub_id, resolve_model

SHA = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_with(root, repo_id: str):
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<sha>/...}."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / SHA
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "gpt2"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    return snap


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_cached_hub_model_resolves_to_its_snapshot(offline_cache):
    snap = hub_cache_with(offline_cache, "Qwen/Qwen2.5-Math-7B")
    assert resolve_model("Qwen/Qwen2.5-Math-7B", "MODEL") == str(snap)


def test_offline_without_a_cached_copy_is_one_line_naming_the_variable_and_the_cache(offline_cache):
    with pytest.raises(UserError) as e:
        resolve_model("Qwen/Qwen2.5-Math-7B", "verl.model")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("verl.model: hub model Qwen/Qwen2.5-Math-7B is not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE" in msg and str(offline_cache) in msg


def test_neither_a_folder_nor_a_hub_id(offline_cache, tmp_path):
    assert resolve_model(str(tmp_path), "MODEL") == str(tmp_path)
    for bad in ("./nope", "/no/such/folder", "a/b/c"):
        assert not is_hub_id(bad)
        with pytest.raises(UserError, match="is not a model folder .*, nor a hub id"):
            resolve_model(bad, "MODEL")


def test_experiment_files_keep_hub_ids_and_resolve_folders(tmp_path, offline_cache):
    (tmp_path / "local_model").mkdir()
    raw = {"name": "hub", "backend": "verl", "verl": {"mode": "cluster", "model": "Qwen/Qwen2.5-Math-7B",
                                                      "critic_model": "local_model"},
           "variants": [{"name": "grpo", "preset": "grpo"}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(raw))
    exp = load_experiment(tmp_path / "e.yaml")
    assert exp.verl.model == "Qwen/Qwen2.5-Math-7B"  # was made a path under the file's folder, then refused
    assert exp.verl.critic_model == str((tmp_path / "local_model").resolve())


def test_validate_names_the_hub_cache_when_a_verl_model_is_offline_and_not_cached(tmp_path, offline_cache, capsys):
    pytest.importorskip("verl", reason="verl backend tests need the verl extra (make test installs it)")
    from harness.cli.app import main

    raw = {"name": "hub", "backend": "verl", "verl": {"mode": "cluster", "model": "Qwen/Qwen2.5-Math-7B"},
           "task": {"name": "math", "train": "train.jsonl"}, "variants": [{"name": "grpo", "preset": "grpo"}],
           "eval": {"benchmarks": {"t": {"path": "train.jsonl"}}}}
    (tmp_path / "train.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit) as e:
        main(["validate", str(tmp_path / "e.yaml")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "hub model Qwen/Qwen2.5-Math-7B is not in the Hugging Face cache" in err
    assert "HF_HUB_OFFLINE" in err and "or a hub id like" not in err  # the old message contradicted itself
