"""Grading agreement on the real benchmarks (../shared/data/benchmarks, never copied into the repo).

Checks, with harness.grading.grader.MathGrader (math-verify in worker processes):
1. every gold answer of MATH500, AMC23, AIME24, AIME25 (600 problems), wrapped in \\boxed{},
   graded against itself;
2. MATH500's `solution` field (its last \\boxed{}) graded against its `answer` field;
3. a negative control: each gold graded against the next problem's (different) gold;
4. the golds that do not parse as a whole, per benchmark file (also the NGRPO verl parquet files);
5. the 800 real labelled responses of tests/data/grading (Qwen2.5-Math outputs, Qwen's labels):
   agreement with the labels and every disagreement with its class (label_review.json).
Prints the agreement rates and every mismatch. To measure an older grader, run this script from a
checkout of it: `cd OLD && PYTHONPATH=OLD python NEW/benchmarks/grading_agreement.py`.

    python benchmarks/grading_agreement.py [--data ../shared/data/benchmarks] [--timeout 5]

Last measured output: grading_agreement.out.txt (before/after for issue 9 in its header).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

from harness.grading.grader import MathGrader
from harness.tasks.math_data import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "benchmarks"
LABELLED = ROOT / "tests" / "data" / "grading"
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


def unparsed_golds(grader: MathGrader, data: Path) -> None:
    """Golds that do not parse as a whole (compared as strings) or at all, per benchmark file."""
    files = [data / n / "test.jsonl" for n in NAMES] + sorted((data.parent / "verl_parquet").glob("*.parquet"))
    for f in files:
        if not f.exists():
            continue
        probs = load_benchmark(f)
        grader.grade_many([r"\boxed{0}"] * len(probs), [p.answer for p in probs])  # parses every gold once
        bad = [(p.id, p.answer, grader.gold_info(p.answer).status) for p in probs
               if grader.gold_info(p.answer) is not None and grader.gold_info(p.answer).status != "ok"]
        print(f"golds not parsed as a whole, {f.parent.name}/{f.name}: {len(bad)}/{len(probs)}")
        for pid, gold, status in bad:
            print(f"  {status} {pid}: {gold!r}")


def labelled(grader: MathGrader) -> None:
    """Agreement with the labels of tests/data/grading, and the disagreements by class."""
    rows = [json.loads(x) for x in (LABELLED / "qwen25_math_cot_100.jsonl").read_text().splitlines()]
    review = json.loads((LABELLED / "label_review.json").read_text())
    res = grader.grade_many([r["response"] for r in rows], [r["gold"] for r in rows])
    bad = [(r, x) for r, x in zip(rows, res) if x.correct != r["label"]]
    print(f"real labelled responses (Qwen2.5-Math outputs, Qwen's labels): {len(rows) - len(bad)}/{len(rows)} agree "
          f"({100 * (len(rows) - len(bad)) / len(rows):.2f}%)")
    classes = collections.Counter(review.get(r["id"], {}).get("class", "unreviewed") for r, _ in bad)
    for cls, count in classes.most_common():
        print(f"  {count} x {cls}")
    for r, x in bad:
        print(f"  DISAGREE {r['id']}: label={r['label']} ours={x.correct} gold={r['gold']!r} extracted={x.extracted!r} "
              f"status={x.status} class={review.get(r['id'], {}).get('class', 'unreviewed')}")


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
        if hasattr(grader, "gold_info"):  # graders before issue 9 parsed golds inside every answer
            unparsed_golds(grader, args.data)
        labelled(grader)
        print(f"worker restarts (hard timeouts): {grader.restarts}")
    total = len(golds) + len(golds2)
    print(f"overall: {total - self_bad - sol_bad}/{total} agree; {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
