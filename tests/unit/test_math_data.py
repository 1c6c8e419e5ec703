"""Benchmark loaders (fixtures + the real files when ../shared/data exists) and `harness eval` bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.app import main
from harness.core.errors import EXIT_USER_ERROR, UserError
from harness.tasks.math_data import (
    SYSTEM_PROMPT, MathProblem, answer_text, load_benchmark, parse_benchmark_arg, render_plain, render_prompt,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "math"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared benchmark data not found at {SHARED}")


def test_math500_jsonl_fixture() -> None:
    probs = load_benchmark(FIX / "math500_mini.jsonl", "math500")
    assert len(probs) == 4 and all(isinstance(p, MathProblem) and p.source == "math500" for p in probs)
    assert probs[0] == MathProblem("test/prealgebra/1.json", "What is $1+1$?", "2", "math500")
    assert probs[3].answer == r"\left( 3, \frac{\pi}{2} \right)"


def test_amc_float_answers_and_default_label() -> None:
    probs = load_benchmark(FIX / "amc23_mini.jsonl")
    assert [p.answer for p in probs] == ["27", "36", "0.75"] and probs[0].source == "amc23_mini"
    assert [p.id for p in probs] == ["0", "1", "2"]


def test_aime_without_ids_keeps_leading_zero() -> None:
    probs = load_benchmark(FIX / "aime25_mini.jsonl", "aime2025", limit=5)
    assert [p.id for p in probs] == ["0", "1"] and probs[1].answer == "025" and probs[0].source == "aime25"


def test_verl_and_flat_parquet(math_fixtures: Path) -> None:
    verl = load_benchmark(math_fixtures / "aime2025_verl_mini.parquet")
    assert verl[0].source == "aime2025_verl_mini" and [p.answer for p in verl] == ["5", r"\frac{5}{2}", "2"]
    assert verl[1].prompt == "What is $10/4$?" and verl[2].id == "2"
    flat = load_benchmark(math_fixtures / "flat_mini.parquet", limit=1)
    assert flat == [MathProblem("a", r"What is $3 \times 3$?", "9", "flat_mini")]


def test_solution_only_rows_use_last_boxed(tmp_path: Path) -> None:
    f = tmp_path / "sol.jsonl"
    f.write_text('{"problem": "p", "solution": "first \\\\boxed{1} then \\\\boxed{\\\\frac{1}{2}}"}\n')
    assert load_benchmark(f)[0].answer == r"\frac{1}{2}"


@pytest.mark.parametrize("name, fragment", [
    ("bad_columns.jsonl", "has no answer"), ("empty.jsonl", "has no problems"), ("nope.jsonl", "does not exist"),
])
def test_bad_files_raise_user_error(name: str, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment):
        load_benchmark(FIX / name)


def test_bad_columns_message_names_field(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text('{"problem": "p", "url": "u"}\n')
    with pytest.raises(UserError, match=r"row 0 has no answer .*'url'"):
        load_benchmark(f)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="unknown file type"):
        load_benchmark(tmp_path / "notes.txt")


def test_hub_without_datasets_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails, no network touched
    with pytest.raises(UserError, match="pip install datasets"):
        load_benchmark("hf:HuggingFaceH4/MATH-500:test")
    with pytest.raises(UserError, match="pip install datasets"):
        load_benchmark("math500")


def test_parse_benchmark_arg_and_answer_text() -> None:
    assert parse_benchmark_arg("AIME2025=x.parquet") == ("aime25", "x.parquet")
    assert parse_benchmark_arg("data/math500/test.jsonl") == ("math500", "data/math500/test.jsonl")
    assert parse_benchmark_arg("amc23") == ("amc23", "amc23")
    with pytest.raises(UserError):
        parse_benchmark_arg("=x")
    assert answer_text(27.0) == "27" and answer_text(" 0.5 ") == "0.5" and answer_text(12) == "12"


def test_render_prompt_chat_and_plain() -> None:
    class Tok:
        chat_template = "x"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "|".join(f"{m['role']}:{m['content']}" for m in messages) + ("|assistant:" if add_generation_prompt else "")

    assert render_prompt(Tok(), "Q") == f"system:{SYSTEM_PROMPT}|user:Q|assistant:"
    assert render_prompt(None, "Q") == render_plain("Q") and "\\boxed{}" in render_plain("Q") and "Q" in render_plain("Q")


@needs_shared
def test_real_benchmarks_load() -> None:
    counts = {n: len(load_benchmark(SHARED / "benchmarks" / n / "test.jsonl")) for n in ("math500", "amc23", "aime24", "aime25")}
    assert counts == {"math500": 500, "amc23": 40, "aime24": 30, "aime25": 30}
    verl = {f: load_benchmark(SHARED / "verl_parquet" / f"{f}_test.parquet") for f in ("amc23", "aime2025")}
    assert len(verl["amc23"]) == 40 and len(verl["aime2025"]) == 30 and verl["aime2025"][0].source == "aime25"
    jsonl = load_benchmark(SHARED / "benchmarks" / "aime25")  # a folder with test.jsonl
    diff = [(a.answer, b.answer) for a, b in zip(jsonl, verl["aime2025"]) if a.answer != b.answer]
    assert diff == [("336", "336^\\circ")]  # data quirk: the verl copy of AIME 2025 II P5 has a degree sign


# ----------------------------------------------------------------------------- harness eval bad input
def _eval_exit(args: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["eval", *args])
    assert exc.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


@pytest.mark.parametrize("bench, extra, fragment", [
    ("math500=missing.jsonl", [], "does not exist"),
    (f"x={FIX / 'bad_columns.jsonl'}", [], "has no answer"),
    (f"x={FIX / 'empty.jsonl'}", [], "no problems"),
    (f"amc23={FIX / 'amc23_mini.jsonl'}", ["--n", "4", "--k-max", "8"], "--k-max 8"),
    (f"amc23={FIX / 'amc23_mini.jsonl'}", ["--backend", "nosuch"], "--backend 'nosuch'"),
])
def test_eval_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, bench: str, extra: list[str], fragment: str
) -> None:
    err = _eval_exit(["some-model", "--benchmark", bench, "--out", str(tmp_path / "res"), *extra], capsys)
    assert fragment in err
    assert not (tmp_path / "res").exists()


def test_eval_missing_model_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("transformers", reason="transformers not installed (pip install -e '.[dev]')")
    err = _eval_exit([str(tmp_path / "nomodel"), "-b", f"a={FIX / 'amc23_mini.jsonl'}", "--out", str(tmp_path / "r")], capsys)
    assert "is not a model folder (config.json + weights), nor a hub id" in err and not (tmp_path / "r").exists()
