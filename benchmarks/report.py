"""Benchmark `harness report` on 100 fake runs with ~1 million sample rows in total.

    python benchmarks/report.py [--runs-per-variant 20] [--keep DIR]

Generates fake results (5 variants x 20 seeds, 100 training steps, 5 evaluations x 2 benchmarks x
32 problems x 32 samples = 10,240 rows per run) into a temp dir with harness.report.fake, then times
`python -m harness report` end to end in a fresh process (the target is < 30 s on 2 CPU cores).
The command prints its own breakdown (load, tables, plots, html).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from harness.report.fake import make_fake_results

VARIANTS = ("grpo", "ppo", "dapo", "psr_nsr", "ngrpo")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-per-variant", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--keep", type=Path, default=None, help="write results/reports here and keep them")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="report-bench-"))
    results, reports = tmp / "results", tmp / "reports"
    try:
        t0 = time.perf_counter()
        dirs = make_fake_results(results, experiment="bench", variants=VARIANTS, seeds=args.runs_per_variant,
                                 steps=args.steps, eval_every=args.steps // 4, benchmarks=("math500", "aime25"),
                                 n_problems=32, n_samples=32, seed=0)
        t_gen = time.perf_counter() - t0
        rows = sum(pq.ParquetFile(d / "samples.parquet").metadata.num_rows for d in dirs)
        print(f"generated {len(dirs)} runs, {rows:,} sample rows in {t_gen:.1f}s -> {results}")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "harness", "report", str(results), "--out", str(reports)],
                              capture_output=True, text=True, env={"COLUMNS": "160", **__import__("os").environ})
        t_report = time.perf_counter() - t0
        tail = "\n".join(proc.stdout.strip().splitlines()[-4:])
        print(tail)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        verdict = "OK" if t_report < 30 else "SLOWER THAN 30 s TARGET"
        print(f"harness report over {len(dirs)} runs / {rows:,} rows: {t_report:.1f}s wall "
              f"(fresh process incl. imports) [{verdict}]")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
