"""Seconds from the first Ctrl-C to exit of `harness run`, as a user at a terminal sees it.

    python benchmarks/interrupt.py [--experiment experiments/quickstart.yaml] [--delay 45] [--cache-dir DIR] [--src DIR]

Starts `harness run EXPERIMENT` under a pseudo-terminal (progress bars, as typed in a shell) in its
own process group, waits until the first RL run has logged a step and then `--delay` seconds more,
sends SIGINT to the whole group (what Ctrl-C does) and reports the seconds until the command exits,
its exit code, each run's status afterwards and the load average. `--src DIR` runs the harness
package of another checkout (e.g. an export of an older commit) for a before/after comparison;
`--cache-dir` reuses a warm-start cache (the warm start is built before RL either way, not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", type=Path, default=REPO / "experiments" / "quickstart.yaml")
    ap.add_argument("--delay", type=float, default=45.0, help="seconds of RL before the Ctrl-C")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--src", type=Path, default=REPO, help="checkout whose harness package runs")
    ap.add_argument("--limit", type=float, default=600.0, help="give up (and kill) after this many seconds")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="interrupt-bench-"))
    cache = args.cache_dir or work / "cache"
    results = work / "results"
    master, slave = pty.openpty()
    cmd = [sys.executable, "-m", "harness", "run", str(args.experiment.resolve()), "--results", str(results), "--cache-dir", str(cache)]
    proc = subprocess.Popen(cmd, cwd=args.src, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(args.src.resolve()), "COLUMNS": "120"})
    os.close(slave)
    screen = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    threading.Thread(target=drain, daemon=True).start()
    while not list(results.rglob("metrics.jsonl")):
        if proc.poll() is not None:
            print(screen.decode(errors="replace")[-3000:])
            raise SystemExit(f"harness exited ({proc.returncode}) before RL started")
        time.sleep(0.2)
    print(f"RL started; Ctrl-C in {args.delay:.0f} s")
    time.sleep(args.delay)
    load = os.getloadavg()
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(args.limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        print(f"no exit within {args.limit:.0f} s of the Ctrl-C (killed)")
    seconds = time.monotonic() - t0
    for status in sorted(results.rglob("status.json")):
        st = json.loads(status.read_text())
        print(f"  {status.parent.name}: {st['state']} at step {st.get('step')}")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace")).replace("\r", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip() and "━" not in line]
    print("  last lines:\n    " + "\n    ".join(lines[-6:]))
    print(f"first Ctrl-C to exit: {seconds:.1f} s, exit code {rc}, load average at the Ctrl-C "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (src {args.src})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
