"""Grading throughput (answers/s) of harness.grading.grader.MathGrader, before and after gold caching.

Two workloads on MATH500 (falls back to synthetic answers when ../shared/data is absent):
- `once`: each reference solution (graded correct) and the same solution with the next problem's
  answer boxed (mostly incorrect), each pair graded once (1,000 answers, 500 golds);
- `eval`: 64 problems x 32 responses, as `harness eval` and an RL step grade them (many answers per
  gold): the solution, its wrong-answer variant, and rephrasings of both ("the answer is ...").
"before" is the grader at commit 5d4b25e (the gold re-parsed inside every answer's task), loaded
from git into a temporary folder; "after" is this checkout (each gold parsed once per grader).
Worker start-up is excluded (a warm-up batch runs first).

    python benchmarks/grading.py [--processes 2] [--timeout 5] [--repeat 1] [--before-rev 5d4b25e]

Last measured (2 processes, load average 8-10 on the shared 2-core VM; see grading.out.txt): the
`eval` workload 214 -> 259 answers/s on the first pass and 263 -> 480 on the second (golds cached);
`once` 52 -> 52 and 86 -> 117. "after" also grades 1040 instead of 872 answers correct: "So the
answer is $X$." is now read (defect class 4), not the last number.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.grading import grader as grading

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "benchmarks" / "math500" / "test.jsonl"


def solutions() -> tuple[list[str], list[str]]:
    if DATA.exists():
        rows = [json.loads(x) for x in DATA.read_text().splitlines() if x.strip()]
        return [r["solution"] for r in rows], [r["answer"] for r in rows]
    golds = [f"\\frac{{{i}}}{{{i + 7}}}" if i % 3 else f"{i}\\sqrt{{2}}" for i in range(500)]
    return [f"We compute step by step. Hence the answer is $\\boxed{{{g}}}$." for g in golds], golds


def workload(kind: str) -> tuple[list[str], list[str]]:
    """(responses, golds) for the `once` or `eval` workload."""
    sols, golds = solutions()
    wrong = [s + "\nOn reflection: $\\boxed{" + golds[(i + 1) % len(golds)] + "}$" for i, s in enumerate(sols)]
    if kind == "once":
        return sols + wrong, golds + golds
    responses, out_golds = [], []
    for i in range(64):
        variants = [sols[i], wrong[i], f"So the answer is ${golds[i]}$.", f"So the answer is ${golds[(i + 1) % len(golds)]}$."]
        responses += [variants[j % 4] + " " * (j // 4) for j in range(32)]  # distinct strings, same answers
        out_golds += [golds[i]] * 32
    return responses, out_golds


def load_before(rev: str, tmp: Path):
    """harness/grading.py at `rev` as a module whose workers run that same code."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:harness/grading.py"], capture_output=True, text=True, check=True).stdout
    (tmp / "grading_before.py").write_text(src)
    spec = importlib.util.spec_from_file_location("grading_before", tmp / "grading_before.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["grading_before"] = mod
    spec.loader.exec_module(mod)
    mod._WORKER_CODE = f"import sys; sys.path.insert(0, {str(tmp)!r}); from grading_before import _worker_main; _worker_main()"
    return mod


def measure(module, label: str, processes: int, timeout: float, repeat: int) -> None:
    for kind in ("once", "eval"):
        responses, golds = workload(kind)
        with module.MathGrader(processes=processes, timeout=timeout) as grader:
            grader.grade_many(["\\boxed{1}"] * processes, ["1"] * processes)  # start workers
            for _ in range(repeat):
                t0 = time.perf_counter()
                res = grader.grade_many(responses, golds)
                dt = time.perf_counter() - t0
                print(f"{label:6s} {kind:4s}: {len(res)} answers ({len(set(golds))} golds), {processes} processes, "
                      f"{dt:.2f}s: {len(res) / dt:.0f} answers/s ({sum(r.correct for r in res)} correct, "
                      f"{sum(r.status == 'timeout' for r in res)} timeouts)")


def main() -> None:
    ap = argparse.ArgumentParser(description="grading throughput, before and after gold caching")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--before-rev", default="5d4b25e", help="git revision of the grader before gold caching ('' to skip)")
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, load average {open('/proc/loadavg').read().split()[:3]}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.before_rev:
            measure(load_before(args.before_rev, Path(tmp)), "before", args.processes, args.timeout, args.repeat)
        measure(grading, "after", args.processes, args.timeout, args.repeat)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
