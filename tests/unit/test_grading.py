"""Grading: extraction, exact match, math-verify equivalence, and hostile answers under a hard timeout."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.grading.grader import (
    GradeResult, MathGrader, extract_answer, extract_boxed, grade_exact, grade_math, max_nesting, precheck,
)

TIMEOUT = 1.0
GOLD = "42"


def adversarial_answers() -> list[str]:
    """50 hostile answers: power towers, huge factorials, deep nesting, megabyte strings, junk."""
    rng = random.Random(0)
    junk = "".join(chr(rng.choice([0x202E, 0x200B, 0xFEFF, 0x1F600, 0x0301, 0x4E00, 0x0000])) for _ in range(300))
    items = [
        r"9^{9^{9^{9}}}", r"9^{9^{9}}", r"10^{10^{10}}", r"2^{2^{2^{2^{2^{2}}}}}", r"99999999^{99999999}",
        r"(10^{100})!", r"100000!", r"\binom{10^{10}}{10^{5}}", r"10^{10}!!", r"\sum_{n=1}^{10^{12}} n^{n}",
        r"\prod_{k=1}^{10^{9}} k", r"\int_0^{\infty} e^{-x^{1000}} \sin(x^{99}) dx",
        r"\lim_{x\to 0} \frac{\sin(x^{99})}{x^{98}}",
        "{" * 10000 + "1" + "}" * 10000, "(" * 5000 + "1" + ")" * 5000, "[" * 3000 + "]" * 3000,
        "1" * 1_000_000, "x+" * 500_000, "\\frac{1}{2}" * 500, "\\frac{1}{" * 40 + "2" + "}" * 40,
        "\\frac{1}{2}" * 80, "\\sqrt{" * 45 + "2" + "}" * 45,
        "\\begin{pmatrix}" + "\\\\".join(["&".join(["x^{99}"] * 25)] * 25) + "\\end{pmatrix}",
        junk, "\ud800\udfff\x00\x01", "\u202e24\u202c", "\U0001F600 = 41?", "４２", "NaN", "\\infty - \\infty",
        "0/0", "\\frac{1}{0}", "x^{x^{x^{x^{x^{x}}}}}", "e^{e^{e^{e^{10}}}}", "\\tan(\\frac{\\pi}{2})",
        "\\left(", "\\boxed{", "}{}{}{", "\\\\\\\\\\\\", "$$$$", "\\text{" + "a" * 999 + "}",
        "1,2,3," * 160, "x=" * 400 + "1", "\\{" + ",".join(str(i) for i in range(300)) + "\\}",
        "10^{-10^{10}}", "1e99999999", "0." + "3" * 900, "\\underbrace{" * 30 + "1" + "}_{1}" * 30,
        "\\sqrt[10^{10}]{10^{10^{10}}}", "\\gcd(10^{10^{10}}, 3^{3^{30}})",
    ]
    assert len(items) == 50
    return [f"Reasoning... \\boxed{{{a}}}" if i % 2 == 0 else a for i, a in enumerate(items)]


# ----------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize("text, expected", [
    (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"\boxed{1} then \boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
    (r"\fbox{7}", "7"),
    (r"answer \boxed 5$.", "5"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),
    ("Final Answer: The final answer is $12$. I hope it is correct.", "12"),
    ("we get 3 apples and 1,024 pears", "1024"),
    ("no numbers", None),
])
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_extract_boxed_unbalanced_and_huge_is_fast() -> None:
    assert extract_boxed(r"\boxed{unclosed") is None
    t0 = time.perf_counter()
    assert extract_boxed("\\boxed{" + "{" * 500_000 + "}" * 500_000 + "}") is not None
    assert extract_answer("\\boxed{" * 100_000) is None
    assert time.perf_counter() - t0 < 2.0


def test_precheck_and_nesting() -> None:
    assert max_nesting("((a)[{b}])") == 3
    assert precheck(r"\frac{1}{2}") and not precheck("1" * 2000) and not precheck("{" * 60 + "}" * 60)


def test_grade_exact() -> None:
    assert grade_exact(r"so \boxed{27}", "27.0") and grade_exact("answer: 1,000", "1000")
    assert grade_exact("abc", "abc", extract=False) and not grade_exact(r"\boxed{28}", "27")
    assert not grade_exact("no answer", "5")


# ----------------------------------------------------------------------------- math-verify
@pytest.fixture(scope="module")
def grader():
    with MathGrader(processes=2, timeout=TIMEOUT * 3) as g:
        yield g


def test_grade_many_equivalences(grader: MathGrader) -> None:
    cases = [
        (r"\boxed{0.5}", r"\frac{1}{2}", True), (r"\boxed{\frac12}", "0.5", True), (r"\boxed{3}", "4", False),
        (r"$\boxed{x=5}$", "x=5", True), (r"\boxed{(3,\frac{\pi}{2})}", r"\left( 3, \frac{\pi}{2} \right)", True),
        (r"\boxed{90}", r"90^\circ", True), (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", True), (r"\boxed{6-5i}", "6 - 5i", True),
        (r"\boxed{3, 5, 7}", "3, 5, 7", True), (r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", True),
        (r"\boxed{025}", "25", True), ("nothing here", "1", False),
    ]
    res = grader.grade_many([c[0] for c in cases], [c[1] for c in cases])
    assert [r.correct for r in res] == [c[2] for c in cases]
    assert res[0].parsed == "1/2" and res[0].status == "ok" and res[-1].status == "no_answer"
    assert all(isinstance(r, GradeResult) for r in res)


def test_grade_math_public_api() -> None:
    assert grade_math(r"Thus \boxed{\dfrac{3}{56}}.", r"\frac{3}{56}") is True
    assert grade_math(r"Thus \boxed{3/55}.", r"\frac{3}{56}", timeout=5.0) is False


def test_pool_recovers_from_stuck_and_dead_worker() -> None:
    with MathGrader(processes=1, timeout=TIMEOUT) as g:
        t0 = time.perf_counter()
        res = g.grade_many([r"\boxed{\prod_{k=1}^{10^{9}} k}", r"\boxed{2}"], ["1", "2"])
        assert [r.status for r in res] == ["timeout", "ok"] and [r.correct for r in res] == [False, True]
        assert time.perf_counter() - t0 < 10  # the soft timer stopped it (no kill needed)
        g.workers[0].proc.kill()  # a worker dying between calls is replaced transparently
        g.workers[0].proc.wait()
        assert [r.correct for r in g.grade_many([r"\boxed{7}"], ["7"])] == [True]


# a worker stuck where the soft timer cannot reach it (SIGALRM blocked, as in long C code)
DEAF_WORKER = r'''
import signal, time, math_verify.parser as mp
real = mp.latex2sympy
def deaf(latex, *a, **k):
    if "999" in latex:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    return real(latex, *a, **k)
mp.latex2sympy = deaf
from harness.grading.worker import worker_main; worker_main()
'''


def test_hard_timeout_kills_a_deaf_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.grading import pool as grading

    monkeypatch.setattr(grading, "_WORKER_CODE", DEAF_WORKER)
    with MathGrader(processes=1, timeout=TIMEOUT) as g:
        t0 = time.perf_counter()
        # 999\sqrt{2}: not a plain number, so the fast tier leaves it to the (deaf) worker
        res = g.grade_many([r"\boxed{999\sqrt{2}}", r"\boxed{2}"], ["1", "2"])
        assert [(r.correct, r.status) for r in res] == [(False, "timeout"), (True, "ok")]
        assert g.restarts == 1 and time.perf_counter() - t0 < 15


# ----------------------------------------------------------------------------- hostile answers
def _grade_all(answers: list[str]) -> tuple[list[GradeResult], float]:
    with MathGrader(processes=2, timeout=TIMEOUT) as g:
        t0 = time.perf_counter()
        res = g.grade_many(answers, [GOLD] * len(answers))
        return res, time.perf_counter() - t0


SUBPROCESS_SCRIPT = """
import json, sys, time
from harness.grading.grader import MathGrader
answers = json.load(open(sys.argv[1]))
with MathGrader(processes=2, timeout=float(sys.argv[2])) as g:
    t0 = time.perf_counter()
    res = g.grade_many(answers, ["42"] * len(answers))
    print(json.dumps({"correct": [r.correct for r in res], "status": [r.status for r in res],
                      "elapsed": time.perf_counter() - t0}))
"""


def test_adversarial_answers_main_thread_worker_thread_subprocess(tmp_path: Path) -> None:
    answers = adversarial_answers()
    bound = len(answers) * TIMEOUT / 2 + 15  # worst case: every answer hits the hard timeout
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", SUBPROCESS_SCRIPT, str(path), str(TIMEOUT)],
                            stdout=subprocess.PIPE, text=True, env=env)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(zip(("res", "dt"), _grade_all(answers))))
    thread.start()
    res, dt = _grade_all(answers)  # main thread, concurrently with the thread and the subprocess
    thread.join(timeout=bound + 30)
    out, _ = proc.communicate(timeout=bound + 30)
    sub = json.loads(out.strip().splitlines()[-1])
    assert not any(r.correct for r in res) and dt < bound
    assert "res" in box and not any(r.correct for r in box["res"]) and box["dt"] < bound
    assert proc.returncode == 0 and not any(sub["correct"]) and sub["elapsed"] < bound
    assert len(res) == len(box["res"]) == len(sub["correct"]) == 50
    statuses = {r.status for r in res}
    assert {"rejected", "timeout"} <= statuses, statuses  # pre-checks and the hard timeout both fired


def _daemon_child(q) -> None:
    q.put(grade_math(r"\boxed{2}", "2", timeout=5.0))


def test_grade_math_inside_daemonic_process() -> None:
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_daemon_child, args=(q,), daemon=True)
    p.start()
    assert q.get(timeout=30) is True
    p.join(timeout=10)
