"""`harness eval` end to end: a tiny GPT-2 + byte-level tokenizer built locally (no hub), and a fake sampler."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.evaluation import evaluate
from harness.cli.app import main
from harness.evaluation.evaluate import Completion
from harness.core.metrics import aucs_from_curves, curves_from_samples
from harness.core.results import SAMPLE_COLUMNS, load_run, read_samples

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "math"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tiny_model(path: Path, chat_template: bool) -> Path:
    """A 1-layer GPT-2 with a byte-level BPE tokenizer (no merges), saved with save_pretrained."""
    torch = pytest.importorskip("torch", reason="torch is required")
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install -e '.[dev]')")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    cfg = transformers.GPT2Config(vocab_size=len(vocab), n_positions=1024, n_embd=32, n_layer=1, n_head=2,
                                  eos_token_id=len(vocab) - 1, bos_token_id=len(vocab) - 1)
    model = transformers.GPT2LMHeadModel(cfg)
    fast.save_pretrained(path)
    model.save_pretrained(path)
    return path


@pytest.mark.e2e
@pytest.mark.parametrize("chat_template", [True, False])
def test_eval_hf_tiny_model(tmp_path: Path, chat_template: bool, math_fixtures: Path) -> None:
    model_dir = make_tiny_model(tmp_path / "step_7", chat_template)
    args = ["eval", str(model_dir), "--benchmark", f"math500={FIX / 'math500_mini.jsonl'}",
            "--benchmark", f"aime25={math_fixtures / 'aime2025_verl_mini.parquet'}", "--n", "4", "--k-max", "4",
            "--max-new-tokens", "6", "--out", str(tmp_path / "results"), "--experiment", "tiny",
            "--device", "cpu", "--grading-processes", "1", "--grading-timeout", "5", "--limit", "2"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    (run_dir,) = list((tmp_path / "results" / "tiny").iterdir())
    run = load_run(run_dir)
    assert run.error is None and run.state == "done"
    assert run.spec["variant"] == "step_7" and run.spec["backend"] == "hf" and run.spec["eval"]["n"] == 4
    df = run.samples
    assert list(df.columns) == list(SAMPLE_COLUMNS)
    assert len(df) == 2 * 2 * 4 and set(df["benchmark"]) == {"math500", "aime25"}
    assert (df["step"] == 7).all() and df["length"].between(1, 6).all()
    assert df.groupby(["benchmark", "problem_id"]).size().eq(4).all()
    aucs = aucs_from_curves(curves_from_samples(df))
    assert set(aucs["benchmark"]) == {"math500", "aime25"} and aucs["k_max"].eq(4).all()
    assert "eval/math500/pass@4" in run.metrics.columns

    # rerun with the same settings resumes: nothing is regenerated, rows are unchanged
    mtime = (run_dir / "samples.parquet").stat().st_mtime_ns
    with pytest.raises(SystemExit):
        main(args)
    assert (run_dir / "samples.parquet").stat().st_mtime_ns == mtime


class OracleSampler:
    """A fake backend: sample j of a problem is correct iff j < (problem index % (n + 1))."""

    answers: dict[str, str] = {}

    def __init__(self, model: str, device: str = "auto") -> None:
        self.model = model

    def render(self, problem: str, system: str) -> str:
        return problem

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        out = []
        for prompt in prompts:
            gold = self.answers[prompt]
            c = len(prompt) % (n + 1)
            out.append([Completion(f"so \\boxed{{{gold if j < c else 'wrong'}}}", 5 + j, j == 0) for j in range(n)])
        return out


@pytest.mark.e2e
def test_eval_with_registered_sampler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.tasks.math_data import load_benchmark

    probs = load_benchmark(FIX / "amc23_mini.jsonl") + load_benchmark(FIX / "math500_mini.jsonl")
    monkeypatch.setattr(OracleSampler, "answers", {p.prompt: p.answer for p in probs})
    monkeypatch.setitem(evaluate.SAMPLERS, "oracle", OracleSampler)
    with pytest.raises(SystemExit) as exc:
        main(["eval", "fake-model", "-b", f"amc23={FIX / 'amc23_mini.jsonl'}", "-b", f"math500={FIX / 'math500_mini.jsonl'}",
              "--n", "4", "--backend", "oracle", "--out", str(tmp_path), "--experiment", "x", "--step", "3",
              "--grading-processes", "1", "--run-id", "r1"])
    assert exc.value.code in (0, None)
    df = read_samples(tmp_path / "x" / "r1")
    per_problem = df.groupby(["benchmark", "problem_id"])["correct"].sum()
    expected = {("amc23" if p in probs[:3] else "math500", p.id): len(p.prompt) % 5 for p in probs}
    assert per_problem.to_dict() == expected
    assert (df["truncated"] == (df["sample_idx"] == 0)).all() and (df["step"] == 3).all()
    assert isinstance(df, pd.DataFrame) and len(df) == len(probs) * 4


class CheckpointSampler(OracleSampler):
    """A sampler over a checkpoint that knows its training step (as the local backend's run folders)."""

    step = 42


@pytest.mark.e2e
def test_eval_writes_the_checkpoints_own_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.tasks.math_data import load_benchmark

    probs = load_benchmark(FIX / "amc23_mini.jsonl")
    monkeypatch.setattr(OracleSampler, "answers", {p.prompt: p.answer for p in probs})
    monkeypatch.setitem(evaluate.SAMPLERS, "ckpt", CheckpointSampler)
    args = ["eval", "run-folder", "-b", f"amc23={FIX / 'amc23_mini.jsonl'}", "--n", "2", "--backend", "ckpt",
            "--out", str(tmp_path), "--experiment", "x", "--grading-processes", "1"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--run-id", "r1"])
    assert exc.value.code in (0, None) and (read_samples(tmp_path / "x" / "r1")["step"] == 42).all()
    with pytest.raises(SystemExit):
        main([*args, "--run-id", "r2", "--step", "5"])  # an explicit --step still wins
    assert (read_samples(tmp_path / "x" / "r2")["step"] == 5).all()


class TextSampler:
    """A fake backend whose completions are fixed texts per prompt; raises if told to."""

    texts: dict[str, list[str]] = {}

    def __init__(self, model: str, device: str = "auto") -> None:
        self.model = model

    def render(self, problem: str, system: str) -> str:
        return problem

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        if "boom" in self.model:
            raise RuntimeError("sampler crashed")
        return [[Completion(t, 7, False) for t in self.texts[p][:n]] for p in prompts]


@pytest.mark.e2e
def test_eval_keeps_texts_answers_statuses_and_status_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.core import results

    bench = tmp_path / "b.jsonl"
    matrix = r"\begin{pmatrix}\frac{18}{5}\-\frac{9}{5}\end{pmatrix}"  # a real gold that does not parse as a whole
    bench.write_text("\n".join(json.dumps(r) for r in [
        {"problem": "p1", "answer": "5", "unique_id": "q1"}, {"problem": "p2", "answer": matrix, "unique_id": "q2"}]))
    monkeypatch.setattr(TextSampler, "texts", {
        "p1": [r"so \boxed{5}", "no answer here", r"the answer is $6$. Then 5."], "p2": [r"\boxed{-\frac{9}{5}}", r"\boxed{" + matrix + "}", "x"]})
    monkeypatch.setitem(evaluate.SAMPLERS, "texts", TextSampler)
    states: list[str] = []
    real_write_status = results.write_status
    monkeypatch.setattr(evaluate, "write_status", lambda d, s, **kw: (states.append(s), real_write_status(d, s, **kw)))
    args = ["eval", "m", "-b", f"b={bench}", "--n", "3", "--backend", "texts", "--out", str(tmp_path), "--experiment", "x",
            "--run-id", "r", "--grading-processes", "1"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    run_dir = tmp_path / "x" / "r"
    assert states[0] == "pending" and states[-1] == "done" and "running" in states
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["gold_warnings"] == {"b": [{"problem_id": "q2", "gold": matrix, "status": "unparsed"}]}
    samples = read_samples(run_dir)
    assert list(samples.columns) == list(SAMPLE_COLUMNS) and len(samples) == 6  # samples.parquet keeps its schema
    comp = evaluate.read_completions(run_dir).sort_values(["problem_id", "sample_idx"]).reset_index(drop=True)
    assert comp["text"].tolist() == TextSampler.texts["p1"] + TextSampler.texts["p2"]
    assert [None if pd.isna(x) else x for x in comp["extracted"]] == ["5", None, "6", r"-\frac{9}{5}", matrix, None]
    assert comp["status"].tolist() == ["ok", "no_answer", "ok", "gold_unparsed", "gold_unparsed", "no_answer"]
    merged = samples.merge(comp, on=["step", "benchmark", "problem_id", "sample_idx"])
    assert merged.sort_values(["problem_id", "sample_idx"])["correct"].tolist() == [True, False, False, False, True, False]

    states.clear()  # a sampler that fails leaves status failed with the error
    with pytest.raises(RuntimeError):
        main(["eval", "boom"] + args[2:-2] + ["--run-id", "r2"])
    status = json.loads((tmp_path / "x" / "r2" / "status.json").read_text())
    assert states == ["pending", "running", "failed"] and status["error"] == "RuntimeError: sampler crashed"


@pytest.mark.e2e
def test_eval_a_hub_id_from_the_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`harness eval Org/tiny` with HF_HUB_OFFLINE=1: the model is read from a hub cache laid out on disk."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--Org--tiny"
    make_tiny_model(repo / "snapshots" / sha, chat_template=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["eval", "Org/tiny", "--benchmark", f"math500={FIX / 'math500_mini.jsonl'}", "--n", "2", "--k-max", "2",
            "--max-new-tokens", "4", "--out", str(tmp_path / "results"), "--experiment", "hub", "--device", "cpu",
            "--grading-processes", "1", "--limit", "1", "--run-id", "r"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code in (0, None)
    run = load_run(tmp_path / "results" / "hub" / "r")
    assert run.state == "done" and run.spec["eval"]["model"] == "Org/tiny" and len(run.samples) == 2
