"""One calibration pilot: a base experiment + JSON overrides, run, then pass@1 / pass@k before and after.

    python experiments/calibration/pilot.py TAG '{"warm_start": {"steps": 2000}}' [--base FILE] [--variants grpo] [--seeds 0]

Writes results/calibration/exps/TAG.yaml, runs it (nice 10, --jobs $JOBS or 2) into results/calibration/,
and appends one JSON line to results/calibration/pilots.jsonl (settings, wall time, load average, and per
run: pass@1 and pass@k_max per held-out set at the first and last evaluation, training accuracy /
entropy / all-wrong fraction over the first and last fifth of the steps). pilots.jsonl next to this
script is the log of the calibration in docs/findings.md; its overrides are relative to the
pre-calibration quickstart (`git show 5d4b25e:experiments/quickstart.yaml`).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from harness.core import results
from harness.core.metrics import curves_from_samples

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "calibration"


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def summarise(exp_dir: Path) -> list[dict]:
    rows = []
    for rd in results.find_run_dirs(exp_dir):
        rec = results.load_run(rd)
        if rec.state != "done":
            continue
        c = curves_from_samples(rec.samples, by=("step", "benchmark"))
        first, last = c["step"].min(), c["step"].max()
        tr = rec.metrics[rec.metrics["kind"] == "train"]
        row = {"variant": rec.variant, "seed": rec.seed}
        for b in c["benchmark"].unique():
            for s, tag in ((first, "pre"), (last, "post")):
                cc = c[(c["step"] == s) & (c["benchmark"] == b)].set_index("k")["pass_at_k"]
                row[f"{b}@1_{tag}"] = round(cc.loc[1], 3)
                row[f"{b}@{cc.index.max()}_{tag}"] = round(cc.iloc[-1], 3)
        n = max(1, len(tr) // 5)
        for key, short in (("train/acc", "acc"), ("actor/entropy", "ent"), ("groups/all_wrong_frac", "allwrong")):
            if key in tr:
                row[f"{short}_first5"] = round(tr[key].head(n).mean(), 3)
                row[f"{short}_last5"] = round(tr[key].tail(n).mean(), 3)
        row["train_s"] = round(tr["time/sample_s"].sum() + tr["time/train_s"].sum(), 1)
        rows.append(row)
    return rows


def main() -> None:
    tag, over, args = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
    opt = lambda name, default: args[args.index(name) + 1] if name in args else default  # noqa: E731
    base = yaml.safe_load(Path(opt("--base", REPO / "experiments" / "quickstart.yaml")).read_text())
    exp = merge(base, {k: v for k, v in over.items() if k != "variants"})
    exp.update(name=f"calib_{tag}", seeds=[int(s) for s in opt("--seeds", "0").split(",")])
    exp["variants"] = over.get("variants") or [{"name": v, "preset": v} for v in opt("--variants", "grpo").split(",")]
    path = OUT / "exps" / f"{tag}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    t0 = time.time()
    subprocess.run(["nice", "-n", "10", str(REPO / ".venv/bin/harness"), "run", str(path), "--results", str(OUT),
                    "--jobs", os.environ.get("JOBS", "2")], check=False)
    wall = time.time() - t0
    rows = summarise(OUT / exp["name"])
    with open(OUT / "pilots.jsonl", "a") as f:
        f.write(json.dumps({"tag": tag, "overrides": over, "variants": [v["name"] for v in exp["variants"]],
                            "seeds": exp["seeds"], "wall_s": round(wall), "load1": os.getloadavg()[0], "runs": rows}) + "\n")
    print(pd.DataFrame(rows).T.to_string())


if __name__ == "__main__":
    main()
