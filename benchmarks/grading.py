"""Grading throughput (answers/s) of harness.grading.MathGrader on MATH500-style answers.

Responses are MATH500 reference solutions (full text ending in \\boxed{...}; graded correct) and
the same solutions with the next problem's answer boxed (mostly incorrect), so half the work is
the harder "not equal" path. Falls back to synthetic answers when ../shared/data is absent.
Worker start-up is excluded (a warm-up batch runs first); each pair is graded once, as in training.

    python benchmarks/grading.py [--processes 2] [--timeout 5] [--repeat 1]

Last measured output (2 CPU cores shared with a training job, load average ~3; cold worker caches):
    1000 answers with 2 processes in 3.79s: 264 answers/s (503 correct, 0 timeouts/restarts)
    (187-264 answers/s across runs; 508 answers/s on a second pass with warm parse caches;
     1 process: 261 answers/s)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness.grading import MathGrader

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks" / "math500" / "test.jsonl"


def workload() -> tuple[list[str], list[str]]:
    """(responses, golds): MATH500 solutions and wrong-answer variants, or a synthetic stand-in."""
    if DATA.exists():
        rows = [json.loads(x) for x in DATA.read_text().splitlines() if x.strip()]
        sols, golds = [r["solution"] for r in rows], [r["answer"] for r in rows]
    else:
        golds = [f"\\frac{{{i}}}{{{i + 7}}}" if i % 3 else f"{i}\\sqrt{{2}}" for i in range(500)]
        sols = [f"We compute step by step. Hence the answer is $\\boxed{{{g}}}$." for g in golds]
    wrong = [s + "\nOn reflection: $\\boxed{" + golds[(i + 1) % len(golds)] + "}$" for i, s in enumerate(sols)]
    return sols + wrong, golds + golds


def main() -> None:
    ap = argparse.ArgumentParser(description="grading throughput")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    responses, golds = workload()
    with MathGrader(processes=args.processes, timeout=args.timeout) as grader:
        grader.grade_many(["\\boxed{1}"] * args.processes, ["1"] * args.processes)  # start workers
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = grader.grade_many(responses, golds)
            dt = time.perf_counter() - t0
            n_ok = sum(r.correct for r in res)
            print(f"{len(res)} answers with {args.processes} processes in {dt:.2f}s: "
                  f"{len(res) / dt:.0f} answers/s ({n_ok} correct, {grader.restarts} timeouts/restarts)")


if __name__ == "__main__":
    main()
