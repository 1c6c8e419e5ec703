"""The verl reward function: the project's graders behind verl's `custom_reward_function` API.

verl's reward managers (naive, dapo) call `compute_score(data_source=, solution_str=,
ground_truth=, extra_info=, **reward_kwargs)` once per response, in cluster mode inside Ray
reward workers and in the in-process mode directly. The result is a dict: `score` (the float
reward; the paper's 1 for a correct final answer, else 0) and `acc` (a real boolean, never
derived from the shaped reward), plus fields verl copies into `reward_extra_info`:

    pred              the extracted final answer (strings are dumped, not averaged; verl turns it into maj@k)
    ngrpo_keep        1.0 if correct, else a fresh random value in [-2, -1): the filter metric that
                      makes verl's `filter_groups` (drop groups whose metric has zero spread) drop
                      all-correct groups only, NGRPO's released recipe. All-wrong groups keep a spread
                      even when every response is identical. Absent on the test split.
    right_keep        its mirror, for the `drop_all_wrong` filter: 0.0 if wrong, else a fresh random
                      value in [1, 2), so only all-wrong groups have zero spread. Absent on the test split.
    harness_benchmark, harness_problem
                      the benchmark and problem id from the row's extra_info, so validation dumps
                      (which carry no data_source) map back to samples.parquet rows.

Math answers go through harness.grading.grader (math-verify in killable worker processes with a hard
timeout; anything unparseable or too slow is wrong). Modchain rows (data_source `modchain`) are
graded exactly (`grader`: answer or strict).
"""

from __future__ import annotations

import random
import threading
from typing import Any

from harness.tasks import modchain

_rng = random.SystemRandom()
_lock = threading.Lock()
_graders: dict[tuple[int, float], Any] = {}


def gold_answer(ground_truth: Any) -> str:
    """The gold answer from verl's reward_model.ground_truth: a string, or a dict with `target`/`answer`."""
    if isinstance(ground_truth, dict):
        for key in ("target", "answer", "ground_truth"):
            if ground_truth.get(key) is not None:
                return str(ground_truth[key])
        raise ValueError(f"ground_truth has no target/answer field: keys {sorted(ground_truth)}")
    return str(ground_truth)


def _math_grader(processes: int, timeout: float):
    from harness.grading.grader import MathGrader

    key = (processes, timeout)
    if key not in _graders:
        _graders[key] = MathGrader(processes=processes, timeout=timeout)
    return _graders[key]


def grade(
    data_source: str, solution_str: str, ground_truth: Any, *, grader: str, processes: int, timeout: float
) -> tuple[bool, str | None]:
    """(correct, extracted answer) for one response."""
    if str(data_source).startswith("modchain"):
        truth = (
            ground_truth
            if isinstance(ground_truth, dict)
            else {"answer": str(ground_truth), "solution": str(ground_truth)}
        )
        problem = modchain.Problem("", "", str(truth["solution"]), str(truth["answer"]), 0)
        return bool(modchain.grade([solution_str], [problem], grader)[0]), modchain.parse_answer(solution_str)
    with _lock:  # verl calls the reward function from a thread pool; one grader pool per process
        result = _math_grader(processes, timeout).grade_many([solution_str], [gold_answer(ground_truth)])[0]
    return bool(result.correct), result.extracted


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, *,
                  grader: str = "strict", processes: int = 2, timeout: float = 5.0, **_: Any) -> dict:
    """verl custom reward function -> {score, acc, pred, ngrpo_keep, right_keep, harness_benchmark, harness_problem}."""
    extra_info = extra_info if isinstance(extra_info, dict) else {}
    correct, pred = grade(
        data_source, solution_str, ground_truth, grader=grader, processes=processes, timeout=timeout
    )
    out: dict[str, Any] = {
        "score": 1.0 if correct else 0.0,
        "acc": correct,
        "pred": "" if pred is None else str(pred),
    }
    if extra_info.get("split") != "test":
        out["ngrpo_keep"] = 1.0 if correct else -1.0 - _rng.random()
        out["right_keep"] = 1.0 + _rng.random() if correct else 0.0
    for key in ("harness_benchmark", "harness_problem"):
        if key in extra_info:
            out[key] = str(extra_info[key])
    return out
