#!/usr/bin/env bash
# scripts/step0_at.sh COMMIT [EXPERIMENT]: the before-RL (step 0) pass@1 of EXPERIMENT (default
# experiments/main_comparison.yaml) as the code at COMMIT computes it from a clean cache: a detached
# worktree at COMMIT, the experiment reduced to its first variant, seed 0 and 1 step, `harness run`,
# then step 0's pass@1 per held-out set. Used to find which commit moves a published number (issue 19).
#   PYTHON=.venv/bin/python scripts/step0_at.sh 65cb27d
set -euo pipefail
commit=$1; exp=${2:-experiments/main_comparison.yaml}
repo=$(cd "$(dirname "$0")/.." && pwd); py=${PYTHON:-$repo/.venv/bin/python}
work=$(mktemp -d); trap 'git -C "$repo" worktree remove --force "$work/tree" >/dev/null 2>&1; rm -rf "$work"' EXIT
git -C "$repo" worktree add -q --detach "$work/tree" "$commit"
"$py" - "$work/tree/$exp" "$work/exp.yaml" <<'PY'
import sys
from pathlib import Path
import yaml
raw = yaml.safe_load(Path(sys.argv[1]).read_text())
raw.update(name="step0", seeds=[0], variants=raw["variants"][:1])
raw["train"] = {**raw.get("train", {}), "steps": 1}
raw["eval"] = {**raw.get("eval", {}), "every": 1000}
Path(sys.argv[2]).write_text(yaml.safe_dump(raw))
PY
(cd "$work/tree" && NGRPO_HARNESS_CACHE="$work/cache" PYTHONPATH="$work/tree" \
    "$py" -m harness run "$work/exp.yaml" --results "$work/res" --jobs 1 > "$work/log.txt" 2>&1) \
    || { tail -5 "$work/log.txt"; exit 1; }
"$py" - "$work/res" "$commit" <<'PY'
import glob, json, sys
(f,) = glob.glob(f"{sys.argv[1]}/step0/*/metrics.jsonl")
rec = next(r for r in map(json.loads, open(f)) if r.get("kind") == "eval" and r["step"] == 0)
print(sys.argv[2], {k: round(v, 3) for k, v in sorted(rec.items()) if k.endswith("pass@1")})
PY
