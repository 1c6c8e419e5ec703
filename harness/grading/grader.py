"""Answer grading: exact match for synthetic tasks, math-verify for competition math.

Model outputs are hostile input (huge expressions, endless nesting, power towers), and in RL a
grader that says "correct" for a wrong answer is a reward hack, so math grading never runs sympy
in the caller's process and every doubt ends as *incorrect*:

1. ``extract_answer`` (pure, linear time) takes the last ``\\boxed{}``/``\\fbox{}`` of the
   response, else the answer after the last "the answer is"/"final answer is", else the last
   number in the response's tail (Qwen2.5-Math's order).
2. ``precheck`` rejects, as incorrect, answers over ``max_answer_chars``, nested deeper than
   ``max_depth`` or holding a numeric power tower, without starting any parser.
3. Answer-form conventions (multiple-choice letters, percent, ``1e-3``, a.m./p.m., whitespace in
   unparsed strings) are applied as described in ``harness.grading.rules``.
4. Each distinct gold is parsed **once**, with its own time budget (``gold_timeout``), and cached
   by the grader; the parsed gold is shipped to the workers pickled. A gold is parsed *as a whole*
   (math-verify's first ``\\boxed`` match only, never a number pulled out of it): a gold that does
   not parse that way is ``unparsed`` and compared as a normalised string (status
   ``gold_unparsed``); a gold whose parse times out or fails makes every answer against it
   incorrect (``gold_timeout`` / ``gold_error``). ``MathGrader.gold_info(gold)`` tells which.
5. math-verify (``verify(gold, pred)``) runs in worker *subprocesses* (``python -c``; not
   multiprocessing, so it also works inside daemonic processes and from any thread). A worker
   applies a soft ``setitimer`` timeout whose exception is a ``BaseException`` (math-verify's
   ``except Exception`` fallbacks cannot swallow it) and, if it fired at all during a task, the
   task ends as ``timeout`` whatever was computed; the parent enforces the hard per-answer
   timeout by killing a worker that has not answered and starting a fresh one. math-verify's own
   signal timeouts are disabled (they fail outside the main thread).

0. Before any of this reaches a worker, the fast tier (``harness.grading.fast``) settles what a
   cheap comparison decides for certain: two plain numbers (integers, decimals, ``a/b``,
   ``\\frac{a}{b}``), in the caller's process; and, once the gold's parse is cached, an answer equal
   to the gold after ``rules.normalize_text``. It never gives a verdict math-verify's path would not
   (``tests/unit/test_grading_fast.py`` compares the two); ``MathGrader(fast=False)`` turns it off.

Statuses: ``ok``, ``no_answer``, ``rejected`` (pre-check), ``timeout``, ``error: ...``,
``gold_unparsed`` (graded by string comparison), ``gold_timeout``, ``gold_error``. Only ``ok`` and
``gold_unparsed`` can be correct.

Public API: ``grade_math(response, gold, timeout=5.0) -> bool``, ``MathGrader.grade_many``,
``MathGrader.gold_info``, ``grade_exact``, ``extract_answer``.

Where: steps 1-2 and exact match in ``harness.grading.extract``, step 3 in ``harness.grading.rules``,
the fast tier in ``harness.grading.fast``,
the worker subprocesses of step 5 in ``harness.grading.pool`` (parent side) and
``harness.grading.worker`` (child side); this module holds the API and the gold cache.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass
from typing import Sequence

from harness.grading import fast as fast
from harness.grading import rules as rules
# re-exported: harness.tasks.math_data, the tests and the README import them from here
from harness.grading.extract import (
    MAX_ANSWER_CHARS, MAX_DEPTH, TAIL_CHARS, extract_answer, extract_boxed, grade_exact, max_nesting,
    normalize_exact, precheck,
)
from harness.grading.pool import Worker, WorkerPool

__all__ = [
    "MAX_ANSWER_CHARS", "MAX_DEPTH", "TAIL_CHARS", "extract_answer", "extract_boxed", "grade_exact",
    "max_nesting", "normalize_exact", "precheck", "GradeResult", "GoldInfo", "MathGrader", "grade_math",
]


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one response.

    correct: the verdict (False for anything that could not be graded).
    extracted: the answer string taken from the response (None if none was found).
    parsed: math-verify's parse of the prediction, as a string (None if not parsed); for an answer the
        fast tier settled, its exact value (``3/4``) or None.
    status: "ok", "no_answer", "rejected" (pre-check), "timeout", "error: ...", "gold_unparsed",
        "gold_timeout" or "gold_error" (see the module docstring).
    """

    correct: bool
    extracted: str | None
    parsed: str | None
    status: str


@dataclass(frozen=True)
class GoldInfo:
    """A gold answer parsed once: status "ok" | "unparsed" | "timeout" | "error: ...", its parse as text."""

    status: str
    parsed: str | None
    blob: str | None  # pickled math-verify parse (base64), shipped to workers


_GOLD_STATUS = {"ok": "ok", "unparsed": "gold_unparsed", "timeout": "gold_timeout"}



class MathGrader:
    """A reusable pool of math-verify worker subprocesses with a hard per-answer timeout.

    ``MathGrader(processes=2, timeout=5.0).grade_many(responses, golds) -> list[GradeResult]``.
    A worker that exceeds ``timeout`` seconds on one answer is killed and replaced; that answer
    is graded incorrect with status "timeout". Each distinct gold is parsed once (budget
    ``gold_timeout`` seconds) and cached for the grader's lifetime. Safe from the main thread,
    worker threads (the math-verify part of calls is serialised by a lock; extraction and the fast
    tier are not) and subprocesses. Use as a context manager or call ``close()``. The subprocesses
    are a ``harness.grading.pool.WorkerPool``. ``fast=False`` sends every answer to math-verify (the
    grader before the fast tier); ``golds``: a gold cache shared with other graders (a dict).
    """

    def __init__(
        self, processes: int = 2, timeout: float = 5.0, max_answer_chars: int = MAX_ANSWER_CHARS,
        max_depth: int = MAX_DEPTH, memory_limit_mb: int | None = 4096, last_number_fallback: bool = True,
        gold_timeout: float = 10.0, fast: bool = True, golds: dict[str, GoldInfo] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"MathGrader: processes must be >= 1, got {processes}")
        if timeout <= 0 or gold_timeout <= 0:
            raise ValueError(f"MathGrader: timeout and gold_timeout must be > 0 seconds, got {timeout}, "
                             f"{gold_timeout}")
        self.processes, self.timeout, self.gold_timeout = processes, float(timeout), float(gold_timeout)
        self.max_answer_chars, self.max_depth = max_answer_chars, max_depth
        self.memory_limit_mb, self.last_number_fallback = memory_limit_mb, last_number_fallback
        self.pool = WorkerPool(processes, memory_limit_mb)
        self.fast = fast
        self.golds: dict[str, GoldInfo] = {} if golds is None else golds
        self._lock = threading.Lock()

    @property
    def workers(self) -> list[Worker]:
        """The pool's live workers."""
        return self.pool.workers

    @property
    def restarts(self) -> int:
        """Workers killed and replaced so far (hard timeouts, crashes)."""
        return self.pool.restarts

    def __enter__(self) -> "MathGrader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            self.pool.close()

    def gold_info(self, gold: str) -> GoldInfo | None:
        """How a gold parsed (None if it was never needed: every answer against it was settled earlier)."""
        return self.golds.get(str(gold))

    def prepare(self, response: str, gold: str) -> GradeResult | tuple[str, str]:
        """Extraction, pre-checks, the string-level conventions and the fast tier's numbers (pure, no
        lock): a final GradeResult, or the (pred, gold) pair to verify."""
        pred = extract_answer(response, self.last_number_fallback)
        if pred is None:
            return GradeResult(False, None, None, "no_answer")
        if not precheck(pred, self.max_answer_chars, self.max_depth):
            return GradeResult(False, pred[:100], None, "rejected")
        gold = str(gold)
        letter = rules.choice_gold(gold)
        if letter is not None:  # multiple choice: compare option letters, no parser
            picked = rules.choice_letter(pred)
            return GradeResult(picked == letter, pred, picked, "ok")
        if rules.time_mismatch(pred, gold):
            return GradeResult(False, pred, None, "ok")
        settled = fast.verdict(pred, gold) if self.fast else None
        if settled is not None:
            value = fast.number(pred)
            return GradeResult(settled, pred, None if value is None else str(value[0]), "ok")
        return pred, gold

    def grade_many(self, responses: Sequence[str], golds: Sequence[str]) -> list[GradeResult]:
        """Grade responses[i] against golds[i]; order is preserved."""
        if len(responses) != len(golds):
            raise ValueError(f"grade_many: {len(responses)} responses but {len(golds)} golds")
        results: list[GradeResult | None] = [None] * len(responses)
        pairs: dict[int, tuple[str, str]] = {}
        for i, (r, g) in enumerate(zip(responses, golds)):
            prep = self.prepare(r, g)
            if isinstance(prep, GradeResult):
                results[i] = prep
            else:
                pairs[i] = prep
        if pairs:
            with self._lock:
                self._parse_golds({g for _, g in pairs.values()})
                todo = {}
                for i, (pred, gold) in pairs.items():
                    info = self.golds[gold]
                    if info.status in ("ok", "unparsed") and self.fast and fast.same_text(pred, gold):
                        results[i] = GradeResult(True, pred, None, _GOLD_STATUS[info.status])
                    elif info.status in ("ok", "unparsed"):
                        todo[i] = {"op": "grade", "pred": pred, "gold": gold}
                    else:
                        status = _GOLD_STATUS.get(info.status, "gold_error")
                        results[i] = GradeResult(False, pred, None, status)
                if todo:
                    self.pool.ensure()
                for i, msg in self.pool.run(todo, self.timeout, self._gold_blob).items():
                    status = msg["status"]
                    if status == "ok" and self.golds[pairs[i][1]].status == "unparsed":
                        status = "gold_unparsed"
                    results[i] = GradeResult(bool(msg["correct"]) and status in ("ok", "gold_unparsed"),
                                             pairs[i][0], msg.get("parsed"), status)
        return results  # type: ignore[return-value]

    def _parse_golds(self, golds: set[str]) -> None:
        """Parse every gold not yet cached, each once, with its own budget."""
        new = sorted(g for g in golds if g not in self.golds)
        if new:
            self.pool.ensure()
        tasks = {i: {"op": "gold", "gold": g} for i, g in enumerate(new)}
        done = self.pool.run(tasks, self.gold_timeout, self._gold_blob)
        for i, g in enumerate(new):
            msg = done[i]
            self.golds[g] = GoldInfo(msg["status"], msg.get("parsed"), msg.get("blob"))

    def _gold_blob(self, gold: str) -> str | None:
        return self.golds[gold].blob


# ----------------------------------------------------------------------------- one-shot API
_DEFAULT: dict[float, MathGrader] = {}
_DEFAULT_LOCK = threading.Lock()


def _default_grader(timeout: float) -> MathGrader:
    with _DEFAULT_LOCK:
        if timeout not in _DEFAULT:
            _DEFAULT[timeout] = MathGrader(processes=1, timeout=timeout)
        return _DEFAULT[timeout]


@atexit.register
def _close_defaults() -> None:
    for g in _DEFAULT.values():
        g.close()


def grade_math(response: str, gold: str, timeout: float = 5.0) -> bool:
    """True if the response's final answer is mathematically equivalent to ``gold``.

    The answer is extracted (last ``\\boxed{}``, else "final answer is X", else the last number)
    and compared with math-verify (gold first) in a worker subprocess killed after ``timeout``
    seconds; anything unparseable, oversized, too deeply nested or too slow is incorrect.
    Reuses one lazily started worker per timeout value; safe from any thread or subprocess.
    """
    return _default_grader(float(timeout)).grade_many([response], [gold])[0].correct
