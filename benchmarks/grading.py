"""Grading throughput and agreement, before and after the fast tier, side by side with verl's math rewards.

The responses: the 800 real labelled responses of tests/data/grading (Qwen2.5-Math outputs on 100 MATH
problems x 8 samples, the RL step's shape; the ones grading_agreement.py and test_grading_real.py use),
graded one call per response (as verl's reward managers call a reward function) and in one batch, all in
this process, on the same responses:

- `grade_math` per call: ``MathGrader(processes=1)``, what ``grade_math`` runs, ``fast=False`` for
  "before" (every answer to math-verify), the default for "after" (harness.grading.fast first);
- `grade_many` batched: ``MathGrader(processes=2).grade_many`` of all 800, before and after;
- the verl reward function (harness.backends.verl.reward.compute_score) from 8 threads at once, as
  verl's reward loop calls it (``run_in_executor``), processes=2: "before" is its previous body (one
  grader behind a global lock, no fast tier), "after" the current one;
- verl's ``reward_score.prime_math`` and ``reward_score.math_reward`` per call.

Warm: imports done and worker processes started before timing; each pass starts with an empty gold
cache (a new RL step brings new problems), so the golds' parses are in the times. Agreement is given
against Qwen's labels and against the labels as reviewed by hand (label_review.json).

    python benchmarks/grading.py [--repeat 1] [--no-verl]

Last measured output: grading.out.txt.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from harness.grading import fast
from harness.grading.grader import MathGrader

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "tests" / "data" / "grading"


def load() -> tuple[list[str], list[str], list[bool], list[bool]]:
    """(responses, golds, Qwen's labels, reviewed labels)."""
    rows = [json.loads(x) for x in (LABELLED / "qwen25_math_cot_100.jsonl").read_text().splitlines()]
    review = json.loads((LABELLED / "label_review.json").read_text())
    reviewed = [review[r["id"]]["verdict"] if r["id"] in review else r["label"] for r in rows]
    return [r["response"] for r in rows], [r["gold"] for r in rows], [r["label"] for r in rows], reviewed


def line(label: str, verdicts: list[bool], dt: float, labels: list[bool], reviewed: list[bool]) -> str:
    n = len(verdicts)
    agree = sum(v == x for v, x in zip(verdicts, labels))
    fixed = sum(v == x for v, x in zip(verdicts, reviewed))
    return (
        f"{label:44s} {n / dt:9.0f} answers/s  ({n} in {dt:6.2f} s)  agree {agree}/{n} with Qwen's labels, "
        f"{fixed}/{n} reviewed"
    )


def timed(fn: Callable[[], list[bool]]) -> tuple[list[bool], float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def warm(grader: MathGrader) -> MathGrader:
    """Start the grader's workers (an answer only math-verify decides), then forget the warm-up gold."""
    grader.grade_many([r"\boxed{x+1}"] * grader.processes, ["1+x"] * grader.processes)
    grader.golds.clear()
    return grader


def per_call(grader: MathGrader, responses: list[str], golds: list[str]) -> list[bool]:
    return [grader.grade_many([r], [g])[0].correct for r, g in zip(responses, golds)]


def reward_threads(
    grade_one: Callable[[str, str], bool], responses: list[str], golds: list[str]
) -> list[bool]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(grade_one, responses, golds))


def project_rows(responses, golds, labels, reviewed) -> None:
    for kind, is_fast in (("before", False), ("after", True)):
        with warm(MathGrader(processes=1, fast=is_fast)) as g:
            print(
                line(
                    f"grade_math per call, {kind}",
                    *timed(lambda: per_call(g, responses, golds)),
                    labels,
                    reviewed,
                )
            )
    for kind, is_fast in (("before", False), ("after", True)):
        with warm(MathGrader(processes=2, fast=is_fast)) as g:
            res, dt = timed(lambda: [r.correct for r in g.grade_many(responses, golds)])
            print(line(f"grade_many batched (2 processes), {kind}", res, dt, labels, reviewed))


def reward_rows(responses, golds, labels, reviewed) -> None:
    from harness.backends.verl import reward

    lock = threading.Lock()
    with warm(MathGrader(processes=2, fast=False)) as g:

        def before(r: str, gold: str) -> bool:  # reward.py before: one grader, a global lock
            with lock:
                return g.grade_many([r], [gold])[0].correct

        print(
            line(
                "verl reward fn, 8 threads, before",
                *timed(lambda: reward_threads(before, responses, golds)),
                labels,
                reviewed,
            )
        )
    graders = reward._math_graders(2, 5.0)
    for m in graders.all:
        warm(m)

    def after(r: str, gold: str) -> bool:
        return reward.compute_score("MATH", r, gold, {"split": "test"}, processes=2, timeout=5.0)["acc"]

    print(
        line(
            "verl reward fn, 8 threads, after",
            *timed(lambda: reward_threads(after, responses, golds)),
            labels,
            reviewed,
        )
    )
    graders.close()


def quiet(fn):
    """fn() with stdout discarded (verl's math_reward prints its exceptions)."""
    with open(os.devnull, "w") as null:
        old, sys.stdout = sys.stdout, null
        try:
            return fn()
        finally:
            sys.stdout = old


def verl_rows(responses, golds, labels, reviewed) -> None:
    from verl.utils.reward_score import math_reward, prime_math

    prime_math.compute_score(r"\boxed{\frac{1}{2}}", "0.5")  # warm: imports, sympy caches
    res, dt = timed(lambda: [bool(prime_math.compute_score(r, g)[0]) for r, g in zip(responses, golds)])
    print(line("verl prime_math per call", res, dt, labels, reviewed))
    res, dt = timed(
        lambda: quiet(lambda: [math_reward.compute_score(r, g) == 1.0 for r, g in zip(responses, golds)])
    )
    print(line("verl math_reward per call", res, dt, labels, reviewed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="passes over the responses (each prints its lines)")
    ap.add_argument("--no-verl", action="store_true", help="skip verl's graders (verl not installed)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    responses, golds, labels, reviewed = load()
    print(
        f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, load average "
        f"{open('/proc/loadavg').read().split()[:3]}, {os.cpu_count()} CPUs"
    )
    probe = MathGrader(processes=1)
    prepared = [probe.prepare(r, g) for r, g in zip(responses, golds)]
    numeric = sum(not isinstance(p, tuple) for p in prepared)
    text = sum(isinstance(p, tuple) and fast.same_text(*p) for p in prepared)
    print(
        f"# {len(responses)} responses, {len(set(golds))} golds: settled without a worker {numeric} "
        f"(extraction, letters, the fast tier's numbers), by the string rule once the gold is parsed {text}, "
        f"by math-verify {len(responses) - numeric - text}"
    )
    for _ in range(args.repeat):
        project_rows(responses, golds, labels, reviewed)
        reward_rows(responses, golds, labels, reviewed)
        if not args.no_verl:
            verl_rows(responses, golds, labels, reviewed)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
