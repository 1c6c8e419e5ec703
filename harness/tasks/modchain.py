"""modchain: chains of single-digit + - * operations evaluated left to right, mod 10.

Prompt ``4*9+4+1*5-8+5=``; completion ``6,0,1,5,7,2;2`` (the running values, then ``;`` and the
answer). Difficulty = number of operations (2..8). A warm-started tiny model solves short chains
often and long chains rarely, so all-wrong groups are common: the regime NGRPO targets.

Two graders: ``answer`` (only the digit after ``;`` counts; guessable ~10% of the time) and
``strict`` (the whole completion must match).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPS = "+-*"
VOCAB = list("0123456789+-*=,;")  # + PAD, BOS, EOS specials in the tokenizer


@dataclass(frozen=True)
class Problem:
    problem_id: str
    prompt: str
    solution: str  # the full target completion
    answer: str
    n_ops: int


def solve(digits: list[int], ops: list[str], slips=None) -> tuple[list[int], int]:
    """Running values (after each op) and the final answer, all mod 10. slips[i] true writes a
    multiplication's result off by one (the warm-start misconception); the chain continues from it."""
    acc, running = digits[0], []
    for i, (op, d) in enumerate(zip(ops, digits[1:])):
        acc = (
            (acc + d)
            if op == "+"
            else (acc - d) if op == "-" else (acc * d + int(slips is not None and slips[i]))
        )
        acc %= 10
        running.append(acc)
    return running, acc


def format_solution(running: list[int], ans: int) -> str:
    """[3, 9], 9 -> '3,9;9' (the target completion)."""
    return ",".join(map(str, running)) + f";{ans}"


def make_problem(digits: list[int], ops: list[str]) -> Problem:
    prompt = str(digits[0]) + "".join(f"{o}{d}" for o, d in zip(ops, digits[1:])) + "="
    running, ans = solve(digits, ops)
    return Problem(prompt, prompt, format_solution(running, ans), str(ans), len(ops))


def parse_prompt(prompt: str) -> tuple[list[int], list[str]]:
    """'4*9+4=' -> ([4, 9, 4], ['*', '+'])."""
    body = prompt.rstrip("=")
    return [int(c) for c in body[0::2]], list(body[1::2])


def slipped_solutions(problems: list[Problem], rng: np.random.Generator, rate: float) -> list[str]:
    """Completions with a systematic misconception: each multiplication step's running value is written
    off by one ((v + 1) mod 10) with probability `rate`, and the chain continues from the written value
    (every other step is computed correctly from the value before it). rate 0 gives the true solutions.
    """
    if rate == 0:
        return [p.solution for p in problems]
    out = []
    for p in problems:
        digits, ops = parse_prompt(p.prompt)
        out.append(format_solution(*solve(digits, ops, rng.random(len(ops)) < rate)))
    return out


def sample_problems(rng: np.random.Generator, n: int, min_ops: int, max_ops: int) -> list[Problem]:
    """n random problems with a uniform number of operations in [min_ops, max_ops]."""
    n_ops = rng.integers(min_ops, max_ops + 1, size=n)
    out = []
    for k in n_ops:
        digits = rng.integers(0, 10, size=k + 1).tolist()
        ops = [OPS[i] for i in rng.integers(0, 3, size=k)]
        out.append(make_problem(digits, ops))
    return out


def parse_answer(completion: str) -> str | None:
    """The text after the last ';' (None when there is none)."""
    if ";" not in completion:
        return None
    return completion.rsplit(";", 1)[1].strip()


def grade(completions: list[str], problems: list[Problem], grader: str) -> np.ndarray:
    """Boolean correctness per completion (answer-only or strict)."""
    if grader == "answer":
        return np.array([parse_answer(c) == p.answer for c, p in zip(completions, problems)], dtype=bool)
    if grader == "strict":
        return np.array([c == p.solution for c, p in zip(completions, problems)], dtype=bool)
    raise ValueError(f"grader must be 'answer' or 'strict', got {grader!r}")
