"""`harness eval` end to end: a tiny GPT-2 + byte-level tokenizer built locally (no hub), and a fake sampler."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness import evaluate
from harness.cli import main
from harness.evaluate import Completion
from harness.metrics import aucs_from_curves, curves_from_samples
from harness.results import SAMPLE_COLUMNS, load_run, read_samples

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
