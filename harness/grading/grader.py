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
   by the pool; the parsed gold is shipped to the workers pickled. A gold is parsed *as a whole*
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

Statuses: ``ok``, ``no_answer``, ``rejected`` (pre-check), ``timeout``, ``error: ...``,
``gold_unparsed`` (graded by string comparison), ``gold_timeout``, ``gold_error``. Only ``ok`` and
``gold_unparsed`` can be correct.

Public API: ``grade_math(response, gold, timeout=5.0) -> bool``, ``MathGrader.grade_many``,
``MathGrader.gold_info``, ``grade_exact``, ``extract_answer``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness.grading import rules as rules

MAX_ANSWER_CHARS = 1000
MAX_DEPTH = 50
TAIL_CHARS = 4000  # fallbacks (final-answer phrase, last number) only look at the response's tail

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*")
# a numeric power tower (9^{9^9}, 10^{-10^{10}}) or an exponent with 5+ digits: sympy would try to
# evaluate it exactly. None of the 13,100 MATH/AMC/AIME gold answers matches.
_HUGE_POWER_RE = re.compile(r"\d\s*\^\s*\{?\s*-?\s*\d+\s*\^|\^\s*\{?\s*-?\s*\d{5,}")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


@dataclass(frozen=True)
class GradeResult:
    """Outcome of grading one response.

    correct: the verdict (False for anything that could not be graded).
    extracted: the answer string taken from the response (None if none was found).
    parsed: math-verify's parse of the prediction, as a string (None if not parsed).
    status: "ok", "no_answer", "rejected" (pre-check), "timeout", "error: ...", "gold_unparsed",
        "gold_timeout" or "gold_error" (see the module docstring).
    """

    correct: bool
    extracted: str | None
    parsed: str | None
    status: str


# ----------------------------------------------------------------------------- extraction
def _braced(text: str, start: int) -> str | None:
    """The content of the balanced ``{...}`` group opening at text[start], or None if unbalanced.

    Vectorised (numpy cumsum over brace marks), so a megabyte of braces costs milliseconds.
    """
    codes = np.frombuffer(text[start:].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    step = (codes == 123).astype(np.int64) - (codes == 125)
    step[1:][codes[:-1] == 92] = 0  # escaped \{ and \} do not count
    closes = np.flatnonzero(np.cumsum(step) == 0)
    return text[start + 1 : start + int(closes[0])] if closes.size else None


def extract_boxed(text: str, attempts: int = 3) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (also ``\\boxed 5``), else None.

    Only the last ``attempts`` markers are tried, which keeps hostile inputs linear.
    """
    for m in list(_BOX_RE.finditer(text))[::-1][:attempts]:
        end = m.end()
        if text[end : end + 1] == "{":
            inner = _braced(text, end)
            if inner is not None:
                return inner.strip()
        else:
            tail = re.match(r"[^\s$]+", text[end : end + 200])
            if tail:
                return tail.group(0)
    return None


def extract_answer(response: str, last_number_fallback: bool = True) -> str | None:
    """The final answer in a response: last boxed, else the "the answer is X" phrase, else the last number."""
    boxed = extract_boxed(response)
    if boxed is not None:
        return boxed
    tail = response[-TAIL_CHARS:]
    phrase = rules.answer_phrase(tail)
    if phrase is not None:
        return phrase
    if last_number_fallback:
        numbers = _NUMBER_RE.findall(tail)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def max_nesting(text: str) -> int:
    """Deepest nesting of (), [], {} in text (linear time)."""
    depth = best = 0
    for ch in text:
        if ch in "({[":
            depth += 1
            best = max(best, depth)
        elif ch in ")}]":
            depth = max(0, depth - 1)
    return best


def precheck(answer: str, max_answer_chars: int = MAX_ANSWER_CHARS, max_depth: int = MAX_DEPTH) -> bool:
    """True if the answer is small, shallow and free of numeric power towers (safe for math-verify)."""
    if len(answer) > max_answer_chars or _HUGE_POWER_RE.search(answer):
        return False
    return max_nesting(answer) <= max_depth


# ----------------------------------------------------------------------------- exact match
def normalize_exact(answer: str) -> str:
    """Whitespace-free, ``$``-free, trailing-period-free form; numbers like 27.0 become 27."""
    s = re.sub(r"\s+", "", answer).strip("$").rstrip(".")
    try:
        f = float(s.replace(",", ""))
        return str(int(f)) if f.is_integer() and abs(f) < 1e18 else repr(f)
    except ValueError:
        return s


def grade_exact(response: str, gold: str, extract: bool = True) -> bool:
    """Exact-match grading for synthetic tasks (after extraction and light normalisation)."""
    pred = extract_answer(response) if extract else response
    return pred is not None and normalize_exact(pred) == normalize_exact(str(gold))


# ----------------------------------------------------------------------------- pool
_WORKER_CODE = "from harness.grading.worker import worker_main; worker_main()"


class _Worker:
    """One grading subprocess, with a line buffer, the task it is working on and the golds it holds."""

    def __init__(self, memory_limit_mb: int | None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
        preexec = None
        if memory_limit_mb:
            limit = memory_limit_mb * 1024 * 1024

            def preexec() -> None:  # runs in the child before exec
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, preexec_fn=preexec, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.task: int | None = None
        self.deadline = float("inf")
        self.golds: set[str] = set()  # golds whose parse this worker has been sent

    def read_lines(self) -> list[str] | None:
        """Lines now available (non-blocking after select); None on EOF (the worker died)."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [ln.decode() for ln in lines]

    def send(self, idx: int, payload: dict, timeout: float) -> None:
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())
        self.proc.stdin.flush()
        self.task, self.deadline = idx, time.monotonic() + timeout

    def kill(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


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
    worker threads (calls are serialised by a lock) and subprocesses. Use as a context manager or
    call ``close()``.
    """

    def __init__(
        self, processes: int = 2, timeout: float = 5.0, max_answer_chars: int = MAX_ANSWER_CHARS,
        max_depth: int = MAX_DEPTH, memory_limit_mb: int | None = 4096, last_number_fallback: bool = True,
        gold_timeout: float = 10.0,
    ) -> None:
        if processes < 1:
            raise ValueError(f"MathGrader: processes must be >= 1, got {processes}")
        if timeout <= 0 or gold_timeout <= 0:
            raise ValueError(f"MathGrader: timeout and gold_timeout must be > 0 seconds, got {timeout}, {gold_timeout}")
        self.processes, self.timeout, self.gold_timeout = processes, float(timeout), float(gold_timeout)
        self.max_answer_chars, self.max_depth = max_answer_chars, max_depth
        self.memory_limit_mb, self.last_number_fallback = memory_limit_mb, last_number_fallback
        self.workers: list[_Worker] = []
        self.spare: _Worker | None = None  # started after the first kill, so a replacement is warm
        self.restarts = 0
        self.golds: dict[str, GoldInfo] = {}
        self._start_failures = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "MathGrader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        with self._lock:
            for w in self.workers + ([self.spare] if self.spare else []):
                w.kill()
            self.workers, self.spare = [], None

    def gold_info(self, gold: str) -> GoldInfo | None:
        """How a gold parsed (None if it was never needed: every answer against it was settled earlier)."""
        return self.golds.get(str(gold))

    def _ensure_workers(self) -> None:
        self.workers = [w for w in self.workers if w.proc.poll() is None]
        while len(self.workers) < self.processes:
            self.workers.append(_Worker(self.memory_limit_mb))

    def _replace(self, w: _Worker) -> None:
        """Kill w and put the warm spare (or a new worker) in its place; start a new spare."""
        w.kill()
        spare = self.spare if self.spare is not None and self.spare.proc.poll() is None else None
        self.workers[self.workers.index(w)] = spare or _Worker(self.memory_limit_mb)
        self.spare = _Worker(self.memory_limit_mb)
        self.restarts += 1

    def prepare(self, response: str, gold: str) -> GradeResult | tuple[str, str]:
        """Extraction, pre-checks and the string-level conventions: a final GradeResult, or the (pred, gold) pair to verify."""
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
                self._ensure_workers()
                self._parse_golds({g for _, g in pairs.values()})
                todo = {}
                for i, (pred, gold) in pairs.items():
                    info = self.golds[gold]
                    if info.status in ("ok", "unparsed"):
                        todo[i] = {"op": "grade", "pred": pred, "gold": gold}
                    else:
                        results[i] = GradeResult(False, pred, None, _GOLD_STATUS.get(info.status, "gold_error"))
                for i, msg in self._run(todo, self.timeout).items():
                    status = msg["status"]
                    if status == "ok" and self.golds[pairs[i][1]].status == "unparsed":
                        status = "gold_unparsed"
                    results[i] = GradeResult(bool(msg["correct"]) and status in ("ok", "gold_unparsed"),
                                             pairs[i][0], msg.get("parsed"), status)
        return results  # type: ignore[return-value]

    def _parse_golds(self, golds: set[str]) -> None:
        """Parse every gold not yet cached, each once, with its own budget."""
        new = sorted(g for g in golds if g not in self.golds)
        done = self._run({i: {"op": "gold", "gold": g} for i, g in enumerate(new)}, self.gold_timeout)
        for i, g in enumerate(new):
            msg = done[i]
            self.golds[g] = GoldInfo(msg["status"], msg.get("parsed"), msg.get("blob"))

    def _payload(self, w: _Worker, task: dict) -> dict:
        """The task as sent to worker w: a grade task carries the gold's parse the first time w sees that gold."""
        if task["op"] == "grade" and task["gold"] not in w.golds:
            w.golds.add(task["gold"])
            return {**task, "gold_blob": self.golds[task["gold"]].blob}
        return task

    def _run(self, tasks: dict[int, dict], timeout: float) -> dict[int, dict]:
        """Run tasks on the pool; each gets a reply dict or {"status": "timeout"/"error: worker died"}."""
        pending: deque[int] = deque(tasks)
        replies: dict[int, dict] = {}
        busy = 0
        while pending or busy:
            for w in self.workers:  # dispatch to idle, ready workers
                if w.ready and w.task is None and pending:
                    i = pending.popleft()
                    try:
                        w.send(i, {**self._payload(w, tasks[i]), "timeout": timeout}, timeout)
                        busy += 1
                    except OSError:  # died between tasks: retry on a fresh worker
                        pending.appendleft(i)
                        self._replace(w)
            now = time.monotonic()
            wait = min([w.deadline for w in self.workers if w.task is not None], default=now + 1.0) - now
            readable, _, _ = select.select([w.fd for w in self.workers], [], [], max(0.0, wait))
            for w in list(self.workers):
                if w.fd in readable:
                    lines = w.read_lines()
                    if lines is None:  # crashed (e.g. memory limit): its task is incorrect
                        self._start_failures = 0 if w.ready else self._start_failures + 1
                        if self._start_failures >= 3:
                            raise RuntimeError(f"grading workers exit at start-up (3 in a row); run {sys.executable} -c "
                                               f"{_WORKER_CODE!r} to see why")
                        if w.task is not None:
                            replies[w.task] = {"status": "error: worker died", "correct": False}
                            busy -= 1
                        self._replace(w)
                        continue
                    for line in lines:
                        if line == "ready":
                            w.ready = True
                        elif w.task is not None:
                            replies[w.task] = json.loads(line)
                            w.task, w.deadline, busy = None, float("inf"), busy - 1
                elif w.task is not None and time.monotonic() >= w.deadline:
                    replies[w.task] = {"status": "timeout", "correct": False}
                    busy -= 1
                    self._replace(w)
        return replies


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
