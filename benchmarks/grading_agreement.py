"""Grading agreement on the real benchmarks (../shared/data/benchmarks, never copied into the repo).

Checks two things with harness.grading.MathGrader (math-verify in worker processes):
1. every gold answer of MATH500, AMC23, AIME24, AIME25 (600 problems), wrapped in \\boxed{},
   graded against itself;
2. MATH500's `solution` field (its last \\boxed{}) graded against its `answer` field;
3. a negative control: each gold graded against the next problem's (different) gold.
Prints the agreement rates and every mismatch.

    python benchmarks/grading_agreement.py [--data ../shared/data/benchmarks] [--timeout 5]

Last measured output:
    gold vs itself (600 problems): 600/600 agree (100.00%)
    MATH500 solution vs answer: 500/500 agree (100.00%)
    negative control (gold vs next gold): 1/595 graded equal
      EQUAL math500/test/algebra/1837.json: '5' == 'x=5'   (math-verify accepts x=5 for 5 by design)
    worker restarts (hard timeouts): 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness.grading import MathGrader
from harness.tasks.math_data import load_benchmark

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
NAMES = ("math500", "amc23", "aime24", "aime25")


def report(title: str, ids: list[str], golds: list[str], preds: list[str], results: list) -> int:
    """Print the agreement rate and each mismatch; return the number of mismatches."""
    bad = [(i, g, p, r) for i, g, p, r in zip(ids, golds, preds, results) if not r.correct]
    n = len(results)
    print(f"{title}: {n - len(bad)}/{n} agree ({100 * (n - len(bad)) / n:.2f}%)")
    for pid, gold, pred, r in bad:
        print(f"  MISMATCH {pid}: gold={gold!r} pred={pred[-160:]!r} extracted={r.extracted!r} "
              f"parsed={r.parsed!r} status={r.status}")
    return len(bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--processes", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    with MathGrader(processes=args.processes, timeout=args.timeout) as grader:
        ids, golds, preds = [], [], []
        for name in NAMES:
            for p in load_benchmark(args.data / name / "test.jsonl", name):
                ids.append(f"{name}/{p.id}")
                golds.append(p.answer)
                preds.append("\\boxed{" + p.answer + "}")
        self_bad = report("gold vs itself (600 problems)", ids, golds, preds, grader.grade_many(preds, golds))

        rows = [json.loads(x) for x in (args.data / "math500" / "test.jsonl").read_text().splitlines() if x.strip()]
        ids2 = [r["unique_id"] for r in rows]
        golds2 = [r["answer"] for r in rows]
        sols = [r["solution"] for r in rows]
        sol_bad = report("MATH500 solution vs answer", ids2, golds2, sols, grader.grade_many(sols, golds2))
        # negative control: each gold against the next problem's gold (textually different ones)
        pairs = [(i, g, h) for i, g, h in zip(ids, golds, golds[1:] + golds[:1]) if g.strip() != h.strip()]
        neg = grader.grade_many(["\\boxed{" + h + "}" for _, _, h in pairs], [g for _, g, _ in pairs])
        false_pos = [(i, g, h) for (i, g, h), r in zip(pairs, neg) if r.correct]
        print(f"negative control (gold vs next gold): {len(false_pos)}/{len(pairs)} graded equal")
        for pid, g, h in false_pos:
            print(f"  EQUAL {pid}: {g!r} == {h!r}")
        print(f"worker restarts (hard timeouts): {grader.restarts}")
    total = len(golds) + len(golds2)
    print(f"overall: {total - self_bad - sol_bad}/{total} agree; {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
