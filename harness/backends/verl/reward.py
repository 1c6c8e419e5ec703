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

verl's reward loop calls this function from a thread pool (`run_in_executor`), so grading takes no
global lock: extraction and the grader's fast tier (plain numbers, option letters) run in the calling
thread, and an answer that needs math-verify borrows one of `processes` one-worker graders (`_Graders`,
a queue) for its call, so up to `processes` threads run math-verify at once. The graders share one
gold cache; only their creation is locked.
"""

from __future__ import annotations

import queue
import random
import threading
from typing import Any

from harness.tasks import modchain

_rng = random.SystemRandom()
_create_lock = threading.Lock()  # only around creating the graders of a (processes, timeout)
_graders: dict[tuple[int, float], "_Graders"] = {}


def gold_answer(ground_truth: Any) -> str:
    """The gold answer from verl's reward_model.ground_truth: a string, or a dict with `target`/`answer`."""
    if isinstance(ground_truth, dict):
        for key in ("target", "answer", "ground_truth"):
            if ground_truth.get(key) is not None:
                return str(ground_truth[key])
        raise ValueError(f"ground_truth has no target/answer field: keys {sorted(ground_truth)}")
    return str(ground_truth)


class _Graders:
    """`processes` MathGraders of one worker each, sharing one gold cache, lent to one thread at a time."""

    def __init__(self, processes: int, timeout: float) -> None:
        from harness.grading.grader import MathGrader

        golds: dict = {}
        self.all = [MathGrader(processes=1, timeout=timeout, golds=golds) for _ in range(max(1, processes))]
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        for g in self.all:
            self.idle.put(g)

    def grade(self, response: str, gold: str):
        """One GradeResult. The fast tier answers without borrowing a grader (prepare is pure)."""
        prep = self.all[0].prepare(response, gold)
        if not isinstance(prep, tuple):
            return prep
        g = self.idle.get()
        try:
            return g.grade_many([response], [gold])[0]
        finally:
            self.idle.put(g)

    def close(self) -> None:
        for g in self.all:
            g.close()


def _math_graders(processes: int, timeout: float) -> _Graders:
    key = (processes, timeout)
    graders = _graders.get(key)
    if graders is None:
        with _create_lock:
            graders = _graders.get(key)
            if graders is None:
                graders = _graders[key] = _Graders(processes, timeout)
    return graders


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
    result = _math_graders(processes, timeout).grade(solution_str, gold_answer(ground_truth))
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
