"""Math benchmark loaders: MATH500, AMC23, AIME2024, AIME2025 (and any file in the same layouts).

Sources (``load_benchmark(source, name)``):
- a ``.jsonl`` / ``.json`` file, one problem per line (math-evaluation-harness layout: ``problem``
  or ``question``; ``answer``, or a ``solution`` whose last ``\\boxed{}`` is the answer;
  ``unique_id`` / ``id`` / ``idx``);
- a ``.parquet`` file, either flat columns as above or verl format (``prompt`` chat messages,
  ``reward_model.ground_truth`` a string or ``{"target": ...}``, ``extra_info.index``);
- a directory holding exactly one ``test.jsonl`` or ``*.parquet``;
- ``hf:OWNER/NAME[:SPLIT]`` (needs the optional ``datasets`` package and hub access), or just the
  benchmark name (``math500``, ``amc23``, ``aime24``, ``aime25``) for its default hub id.

Bad input raises ``UserError`` naming the file, the field and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from harness.core.errors import UserError
from harness.grading.grader import extract_boxed

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
PLAIN_TEMPLATE = "{system}\n\nQuestion: {problem}\nAnswer:"

# Default hub ids (used only for `--benchmark NAME` without a path, and only when online).
HUB_IDS: dict[str, tuple[str, str]] = {
    "math500": ("HuggingFaceH4/MATH-500", "test"),
    "amc23": ("math-ai/amc23", "test"),
    "aime24": ("HuggingFaceH4/aime_2024", "train"),
    "aime25": ("math-ai/aime25", "test"),
}
ALIASES = {"aime2024": "aime24", "aime2025": "aime25", "math-500": "math500", "amc2023": "amc23"}

PROBLEM_FIELDS = ("problem", "question")
ANSWER_FIELDS = ("answer", "final_answer", "target", "gold")
ID_FIELDS = ("unique_id", "id", "idx", "problem_id")


@dataclass(frozen=True)
class MathProblem:
    """One benchmark problem: a stable id, the problem statement, the gold answer, its benchmark."""

    id: str
    prompt: str
    answer: str
    source: str


def canonical_name(name: str) -> str:
    """Lower-case benchmark name with common aliases folded (aime2025 -> aime25)."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def answer_text(value: Any) -> str:
    """Gold answer as a string: 27.0 -> "27", 0.5 -> "0.5", strings stripped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _first(row: dict, fields: Sequence[str]) -> Any:
    for f in fields:
        v = row.get(f)
        if v is not None and not (isinstance(v, float) and pd.isna(v)) and str(v).strip() != "":
            return v
    return None


def _user_text(messages: Any) -> str | None:
    """Content of the last user message of a chat-message list (verl `prompt` column)."""
    if isinstance(messages, str):
        return messages
    users = [m.get("content") for m in list(messages) if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else None


def problem_from_row(row: dict, index: int, source: str) -> tuple[str | None, str | None, str]:
    """(prompt, answer, id) of one raw row, in either layout; None where a field is absent."""
    reward = row.get("reward_model")
    if isinstance(reward, dict):  # verl format
        truth = reward.get("ground_truth")
        question = truth.get("question") if isinstance(truth, dict) else None
        answer = truth.get("target") if isinstance(truth, dict) else truth
        prompt = question or _user_text(row.get("prompt") if row.get("prompt") is not None else [])
        extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
        pid = _first(row, ("id",))
        pid = pid if pid is not None else extra.get("index", index)
        return prompt, None if answer is None else answer_text(answer), str(pid)
    prompt = _first(row, PROBLEM_FIELDS)
    if prompt is None and isinstance(row.get("prompt"), str):
        prompt = row["prompt"]
    answer = _first(row, ANSWER_FIELDS)
    if answer is None and isinstance(row.get("solution"), str):
        answer = extract_boxed(row["solution"])
    pid = _first(row, ID_FIELDS)
    return prompt, None if answer is None else answer_text(answer), str(index if pid is None else pid)


def problems_from_rows(rows: Iterable[dict], source: str, where: str) -> list[MathProblem]:
    """Turn raw rows into MathProblems; UserError naming `where` for missing fields or no rows."""
    out: list[MathProblem] = []
    for i, row in enumerate(rows):
        prompt, answer, pid = problem_from_row(row, i, source)
        if prompt is None or answer is None:
            field = "problem" if prompt is None else "answer"
            raise UserError(
                f"{where}: row {i} has no {field} (columns {sorted(row)}); need one of "
                f"{list(PROBLEM_FIELDS)} and one of {list(ANSWER_FIELDS)} or a `solution` with \\boxed{{}}, "
                "or the verl layout (prompt, reward_model.ground_truth)"
            )
        out.append(MathProblem(pid, str(prompt), answer, source))
    if not out:
        raise UserError(f"{where}: benchmark {source!r} has no problems; point it at a non-empty file")
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        out = [MathProblem(f"{p.id}#{i}", p.prompt, p.answer, p.source) for i, p in enumerate(out)]
    return out


def read_rows(path: Path) -> list[dict]:
    """Raw rows of a .jsonl/.json/.parquet file (UserError for unreadable or unknown files)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path).to_dict(orient="records")
        if suffix in (".jsonl", ".json"):
            text = path.read_text()
            if suffix == ".json" and text.lstrip().startswith("["):
                return list(json.loads(text))
            return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise UserError(
            f"{path}: cannot read ({type(e).__name__}: {e}); give a valid JSONL or parquet file"
        ) from e
    raise UserError(f"{path}: unknown file type {suffix!r}; give a .jsonl, .json or .parquet file")


def _resolve_dir(path: Path) -> Path:
    candidates = sorted(path.glob("test.jsonl")) or sorted(path.glob("*.jsonl")) + sorted(
        path.glob("*.parquet")
    )
    if len(candidates) != 1:
        raise UserError(
            f"{path}: expected one test.jsonl or one .jsonl/.parquet file in the folder, found "
            f"{[c.name for c in candidates]}; point the benchmark at the file itself"
        )
    return candidates[0]


def load_hub(hub_id: str, split: str, source: str) -> list[MathProblem]:
    """Load a Hugging Face hub dataset through `datasets` (imported lazily; needs network)."""
    try:
        import datasets  # noqa: PLC0415 - optional dependency
    except ImportError as e:
        raise UserError(
            f"benchmark {source!r}: loading hub id {hub_id!r} needs `pip install datasets`; "
            "or pass a local file with NAME=PATH"
        ) from e
    try:
        ds = datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # noqa: BLE001 - offline, missing split, unknown repo
        raise UserError(
            f"benchmark {source!r}: cannot load hub dataset {hub_id}:{split} ({e}); pass NAME=PATH"
        ) from e
    return problems_from_rows(iter(ds), source, f"hf:{hub_id}:{split}")


def load_benchmark(
    source: str | Path, name: str | None = None, limit: int | None = None
) -> list[MathProblem]:
    """Load one benchmark from a file, a folder, ``hf:OWNER/NAME[:SPLIT]`` or a known name.

    name: the benchmark label stored with each problem (default: the file's folder or stem).
    limit: keep only the first `limit` problems (for smoke tests).
    """
    text = str(source)
    if text.startswith("hf:"):
        hub_id, _, split = text[3:].partition(":")
        label = canonical_name(name or hub_id.split("/")[-1])
        problems = load_hub(hub_id, split or "test", label)
    elif not Path(text).exists() and canonical_name(text) in HUB_IDS:
        label = canonical_name(text)
        problems = load_hub(*HUB_IDS[label], label)
    else:
        path = Path(text).expanduser()
        if not path.exists():
            raise UserError(
                f"benchmark {name or text!r}: file {path} does not exist; give NAME=PATH to a .jsonl/.parquet "
                "file or hf:OWNER/NAME for a hub dataset"
            )
        if path.is_dir():
            path = _resolve_dir(path)
        label = canonical_name(name or default_label(path))
        problems = problems_from_rows(read_rows(path), label, str(path))
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be >= 1, got {limit}")
        problems = problems[:limit]
    return problems


def default_label(path: Path) -> str:
    """Benchmark label from a path: .../math500/test.jsonl -> math500, aime2025_test.parquet -> aime25."""
    stem = path.name if path.is_dir() else path.stem
    if stem == "test":
        stem = path.parent.name
    return canonical_name(stem.removesuffix("_test").removesuffix("-test"))


def parse_benchmark_arg(arg: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (name, path); a bare ``NAME`` (hub default) or ``PATH`` -> (label, source)."""
    if "=" in arg:
        name, _, path = arg.partition("=")
        if not name.strip() or not path.strip():
            raise UserError(f"--benchmark {arg!r}: expected NAME=PATH, e.g. math500=data/math500/test.jsonl")
        return canonical_name(name), path.strip()
    if canonical_name(arg) in HUB_IDS and not Path(arg).exists():
        return canonical_name(arg), arg
    return canonical_name(default_label(Path(arg))), arg


def render_plain(problem: str, system: str = SYSTEM_PROMPT) -> str:
    """Plain-text prompt for tokenizers without a chat template."""
    return PLAIN_TEMPLATE.format(system=system, problem=problem)


def render_prompt(tokenizer: Any, problem: str, system: str = SYSTEM_PROMPT) -> str:
    """The Qwen math prompt: system + user through the tokenizer's chat template, else plain text."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": problem}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return render_plain(problem, system)
