"""Start-up time of the CLI: `harness --help` and `harness run --help` in fresh processes.

    python benchmarks/cli_help.py [--repeat 5] [--src DIR]

Prints the median wall time and the median CPU time (user + system, which load on a shared machine
does not inflate much) of each command. `--src DIR` runs another checkout's harness package (e.g.
an export of an older commit) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(args: list[str], src: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", *args], cwd=src, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(src)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--src", type=Path, default=REPO)
    args = ap.parse_args()
    src = args.src.resolve()
    for cmd in (["--help"], ["run", "--help"]):
        runs = [measure(cmd, src) for _ in range(args.repeat)]
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"harness {' '.join(cmd):12s} median wall {wall:.2f} s, CPU {cpu:.2f} s ({args.repeat} runs)")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; src {src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
