"""Compare two results folders of one experiment run by run: are they the same results?

    python scripts/compare_results.py BEFORE/quickstart AFTER/quickstart \
        [--rename actor/approx_kl=actor/ppo_kl] [--ignore actor/kl_k3]

For every run folder: the run ids of both sides, samples.parquet byte for byte, spec.yaml byte for byte,
and metrics.jsonl record by record with time/* dropped. `--rename OLD=NEW` maps a metric of BEFORE to
its name in AFTER (a renamed diagnostic); `--ignore KEY` drops a metric that only AFTER logs. Exit 0
when every run is identical, 1 otherwise (each difference printed).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
from pathlib import Path


def records(run_dir: Path, rename: dict[str, str], ignore: set[str]) -> list[dict]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = {rename.get(k, k): v for k, v in json.loads(line).items()
               if not k.startswith("time/") and k not in ignore}
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rename", action="append", default=[], help="OLD=NEW: BEFORE's metric OLD is AFTER's NEW")
    ap.add_argument("--ignore", action="append", default=[], help="a metric only AFTER logs")
    a = ap.parse_args(argv)
    rename = dict(r.split("=", 1) for r in a.rename)
    runs = {side: sorted(p.name for p in d.iterdir() if (p / "spec.yaml").exists()) for side, d in
            (("before", a.before), ("after", a.after))}
    same = runs["before"] == runs["after"]
    tail = "" if same else f" vs {runs['after']}"
    print(f"run ids: {'the same' if same else 'DIFFERENT'}: {runs['before']}{tail}")
    for rid in sorted(set(runs["before"]) & set(runs["after"])):
        b, c = a.before / rid, a.after / rid
        checks = {
            "samples.parquet": filecmp.cmp(b / "samples.parquet", c / "samples.parquet", shallow=False),
            "spec.yaml": filecmp.cmp(b / "spec.yaml", c / "spec.yaml", shallow=False),
            "metrics.jsonl": records(b, rename, set()) == records(c, {}, set(a.ignore)),
        }
        print(f"{rid}: " + ", ".join(f"{k} {'identical' if v else 'DIFFERENT'}" for k, v in checks.items()))
        same &= all(checks.values())
    print("identical" if same else "different")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
