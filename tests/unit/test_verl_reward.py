"""The verl reward function: score/acc from the project's graders, the NGRPO filter metric, ids for ingest."""

import pytest

from harness.backends.verl.reward import compute_score, gold_answer


def test_modchain_graders_and_fields():
    gold = {"answer": "2", "solution": "6,0,1,5,7,2;2"}
    right = compute_score("modchain", "6,0,1,5,7,2;2", gold, {"split": "train", "harness_benchmark": "train", "harness_problem": "4*9="},
                          grader="strict")
    assert right["score"] == 1.0 and right["acc"] is True and right["pred"] == "2" and right["ngrpo_keep"] == 1.0
    assert right["harness_benchmark"] == "train" and right["harness_problem"] == "4*9="
    lucky = compute_score("modchain", "1,1,1,1,1,1;2", gold, {"split": "train"}, grader="strict")
    assert lucky["acc"] is False and lucky["score"] == 0.0  # strict: the whole completion must match
    assert compute_score("modchain", "1,1,1,1,1,1;2", gold, {"split": "train"}, grader="answer")["acc"] is True


def test_ngrpo_keep_varies_for_identical_wrong_answers_and_is_absent_on_the_test_split():
    gold = {"answer": "2", "solution": "2;2"}
    wrong = [compute_score("modchain", "5;5", gold, {"split": "train"})["ngrpo_keep"] for _ in range(8)]
    assert len(set(wrong)) == 8 and all(-2.0 <= v < -1.0 for v in wrong)
    assert "ngrpo_keep" not in compute_score("modchain", "5;5", gold, {"split": "test"})


def test_math_answers_with_the_authors_ground_truth_layout():
    truth = {"question": "What is 1/2 + 1/2?", "solution": "... $\\boxed{1}$", "target": "1"}  # the NGRPO parquet layout
    assert gold_answer(truth) == "1" and gold_answer("7") == "7"
    ok = compute_score("TianHongZXY/MATH", "so the answer is \\boxed{1.0}", truth, {"index": 0, "split": "train"})
    assert ok["acc"] is True and ok["score"] == 1.0 and ok["pred"] == "1.0"
    bad = compute_score("TianHongZXY/MATH", "\\boxed{2}", truth, {"index": 0, "split": "train"})
    assert bad["acc"] is False and bad["score"] == 0.0
    with pytest.raises(ValueError, match="no target/answer"):
        gold_answer({"question": "q"})


# ----------------------------------------------------------------------------- verl's reward threads
STALL_WORKER = r'''
import os, time, math_verify.parser as mp
real, marks = mp.latex2sympy, os.environ["STALL_MARKS"].split("|")
def stalled(latex, *a, **k):
    if any(m in latex for m in marks):
        t0 = time.time()
        time.sleep(float(os.environ["STALL_SECONDS"]))
        with open(os.environ["STALL_LOG"], "a") as f:
            f.write(f"{t0} {time.time()}\n")
    return real(latex, *a, **k)
mp.latex2sympy = stalled
from harness.grading.worker import worker_main; worker_main()
'''
STALLED = r"so \boxed{4+2\sqrt{2}}"  # not a plain number: math-verify's, and it stalls there


@pytest.fixture
def graders(monkeypatch):
    """The reward function's graders, fresh for the test and closed after it."""
    from harness.backends.verl import reward

    monkeypatch.setattr(reward, "_graders", {})
    yield reward
    for g in reward._graders.values():
        g.close()


@pytest.fixture
def stalling(monkeypatch, graders, tmp_path):
    """Grading workers whose math-verify sleeps 1.5 s on answers holding "4+2" and logs (start, end)."""
    from harness.grading import pool

    monkeypatch.setattr(pool, "_WORKER_CODE", STALL_WORKER)
    monkeypatch.setenv("STALL_MARKS", "4+2")
    monkeypatch.setenv("STALL_SECONDS", "1.5")
    monkeypatch.setenv("STALL_LOG", str(tmp_path / "stalls.txt"))
    return graders, tmp_path / "stalls.txt"


def test_concurrent_calls_give_the_serial_results(graders):
    import json
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "grading" / "qwen25_math_cot_100.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]

    def score(r):
        out = compute_score(
            "MATH", r["response"], {"target": r["gold"]}, {"split": "test"}, processes=2, timeout=10.0
        )
        return out["acc"], out["pred"]

    serial = [score(r) for r in rows]
    for g in graders._graders.values():  # fresh graders: the threads also race on starting and on golds
        g.close()
    graders._graders.clear()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(score, rows)) == serial
    assert sum(a for a, _ in serial) == 729  # Qwen's 728 correct labels and the reviewed row 72-7


def test_math_verify_runs_in_parallel_threads_and_fast_answers_never_wait(stalling):
    import threading
    import time

    reward, log = stalling
    for g in reward._math_graders(2, 5.0).all:  # start both workers and cache the gold
        assert g.grade_many([r"\boxed{x}"], ["7"])[0].status == "ok" and len(g.workers) == 1
    kw = dict(processes=2, timeout=5.0)
    out: list[dict] = []
    def slow() -> None:
        out.append(compute_score("MATH", STALLED, "7", **kw))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while not all(g.workers[0].task is not None for g in reward._math_graders(2, 5.0).all):
        assert not log.exists() and time.monotonic() < deadline  # both graders get busy before a stall ends
        time.sleep(0.01)
    # a plain-number answer is settled in this thread meanwhile, without a grader
    assert compute_score("MATH", r"\boxed{7}", "7", **kw)["acc"] is True
    assert all(t.is_alive() for t in threads)
    for t in threads:
        t.join()
    assert [o["acc"] for o in out] == [False, False]
    (s1, e1), (s2, e2) = [map(float, x.split()) for x in log.read_text().splitlines()]
    assert max(s1, s2) < min(e1, e2)  # the two workers' math-verify ran at the same time
