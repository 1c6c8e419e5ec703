"""What the harness adds to a verl step: our estimator vs verl's `grpo`, our reward vs `math_reward`, ingest.

The harness puts three things on verl's path (issue 21, item 6); the policy losses are verl's own
(`vanilla` with the clip ratios), so they add nothing:

1. the advantage estimator (`harness_<piece>`, harness.backends.verl.plugin): measured here at the
   paper's shape, 1,024 prompts x 8 responses x 3,072 response tokens, on CPU tensors, which is where
   verl's driver computes advantages (ray_trainer.compute_advantage), against verl's built-in GRPO
   (core_algos.compute_grpo_outcome_advantage) on the same batch;
2. the reward function (harness.backends.verl.reward.compute_score), called once per response by verl's
   reward loop: measured per call on the 800 real labelled responses of tests/data/grading (Qwen2.5-Math
   outputs on MATH problems), against verl's default `math_reward` and `prime_math`, with a fresh gold
   cache (each RL step brings new problems);
3. the ingest (harness.backends.verl.ingest.sync): runs in the `harness run` process beside main_ppo
   every 60 s, never inside verl's step; measured on synthetic validation dumps made of the real
   responses, at --dumps dumps of --val-responses each. Cluster dumps carry text, so sync tokenizes
   every output; Qwen's tokenizer cannot be downloaded here, so a byte-level BPE trained on the
   responses (vocab 16k, the same Rust `tokenizers` code path) stands in for it.

Also printed: the one-off import cost of the plugin in a Ray worker, and, with --run-dir, verl's own
timing_s/* means per step of a cluster run (e.g. results/verl_cluster_cpu/grpo-s0-*).

    python benchmarks/verl_overhead.py [--prompts 1024 --group 8 --tokens 3072] [--run-dir DIR]

Last measured output: verl_overhead.out.txt.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from grading import load, quiet, warm  # noqa: E402  (the labelled responses, stdout muted, the grader warm-up)


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(median, min) seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def paper_batch(prompts: int, group: int, tokens: int, seed: int = 0):
    """token_level_rewards, response_mask [prompts*group, tokens] and verl's uid array, as the driver holds them."""
    g = torch.Generator().manual_seed(seed)
    n = prompts * group
    lengths = torch.randint(1, tokens + 1, (n,), generator=g)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).float()
    p_correct = torch.rand(prompts, generator=g).repeat_interleave(group)
    scores = (torch.rand(n, generator=g) < p_correct).float()
    rewards = torch.zeros(n, tokens)
    rewards[torch.arange(n), lengths - 1] = scores
    uids = np.array([str(uuid.UUID(int=i)) for i in range(prompts)], dtype=object).repeat(group)
    return rewards, mask, uids


def estimator_rows(prompts: int, group: int, tokens: int, repeat: int) -> dict:
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos

    importlib.import_module("harness.backends.verl.plugin")  # registers harness_* in verl's registry

    rewards, mask, uids = paper_batch(prompts, group, tokens)
    cfg = OmegaConf.create({"adv_estimator": "x", "norm_adv_by_std_in_grpo": True, "harness": {}})
    runs = {
        "verl grpo (built-in)": lambda: core_algos.compute_grpo_outcome_advantage(
            token_level_rewards=rewards, response_mask=mask, index=uids, norm_adv_by_std_in_grpo=True
        ),
    }
    for piece in ("group_zscore", "virtual_max"):
        fn = core_algos.get_adv_estimator_fn(f"harness_{piece}")
        runs[f"harness_{piece}"] = lambda fn=fn: fn(
            token_level_rewards=rewards, response_mask=mask, config=cfg, index=uids
        )
    ref = runs["verl grpo (built-in)"]()[0]
    ours = runs["harness_group_zscore"]()[0]
    out = {}
    print(f"## 1. advantage estimator, {prompts} x {group} responses x {tokens} tokens (CPU tensors), "
          f"median of {repeat}")
    for name, fn in runs.items():
        med, low = best_of(fn, repeat)
        out[name] = med
        print(f"{name:28s} {med * 1e3:9.1f} ms a step  (min {low * 1e3:.1f})")
    print(f"# harness_group_zscore vs verl grpo on this batch: max |advantage difference| "
          f"{float((ref - ours).abs().max()):.2e}")
    return out


def reward_rows(repeat: int) -> dict:
    from verl.utils.reward_score import math_reward, prime_math

    from harness.backends.verl import reward

    responses, golds, labels, _ = load()
    graders = reward._math_graders(2, 5.0)
    for m in graders.all:
        warm(m)

    def ours():
        graders.all[0].golds.clear()  # a new step: new problems, golds parsed again
        return [reward.compute_score("MATH", r, g, {"split": "train"})["acc"] for r, g in zip(responses, golds)]

    prime_math.compute_score(r"\boxed{\frac{1}{2}}", "0.5")
    runs = {
        "harness compute_score": ours,
        "verl math_reward": lambda: quiet(lambda: [math_reward.compute_score(r, g) for r, g in zip(responses, golds)]),
        "verl prime_math": lambda: [prime_math.compute_score(r, g)[0] for r, g in zip(responses, golds)],
    }
    print(f"## 2. reward function, one call per response, one thread, {len(responses)} real responses, "
          f"median of {repeat} passes")
    out = {}
    for name, fn in runs.items():
        med, _ = best_of(fn, repeat)
        out[name] = med / len(responses)
        print(f"{name:28s} {out[name] * 1e3:9.3f} ms a response  ({len(responses) / med:8.0f} answers/s)")
    acc = ours()
    print(f"# harness compute_score agrees with Qwen's labels on {sum(a == b for a, b in zip(acc, labels))}"
          f"/{len(labels)}")
    graders.close()
    return out


def bpe_counter(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=16000, show_progress=False))
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def write_dumps(val_dir: Path, first: int, dumps: int, per_dump: int, responses: list[str]) -> None:
    rng = np.random.default_rng(first)
    val_dir.mkdir(parents=True, exist_ok=True)
    for d in range(first, first + dumps):
        with open(val_dir / f"{d * 14}.jsonl", "w") as f:
            for i in range(per_dump):
                prob, sess = divmod(i, 32)
                rec = {"input": "Problem ...", "output": responses[rng.integers(len(responses))],
                       "gts": "1", "score": 1.0, "step": d * 14, "acc": bool(rng.integers(2)), "pred": "1",
                       "harness_benchmark": "math500", "harness_problem": str(prob),
                       "uid": f"{uuid.UUID(int=prob)}_{sess}_0"}
                f.write(json.dumps(rec) + "\n")


def timed_sync(run_dir: Path, spec, count) -> float:
    from harness.backends.verl import ingest

    t0 = time.perf_counter()
    ingest.sync(run_dir, spec, count)
    return time.perf_counter() - t0


def ingest_rows(dumps_list: list[int], per_dump: int) -> dict:
    from harness.backends.verl import ingest
    from harness.config.experiment import load_experiment
    from harness.config.runspec import expand

    responses = load()[0]
    count = bpe_counter(responses)
    spec = expand(load_experiment(ROOT / "experiments" / "verl_cluster_cpu.yaml"))[0]
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"max_new_tokens": 3072})})
    print(f"## 3. ingest (harness run process, every 60 s, outside verl's step): sync() with D dumps of "
          f"{per_dump} validation responses on disk, BPE token counts. 'first' parses every dump (what "
          "every sync did before the per-dump cache); 'nothing new' and '1 new dump' are the syncs after it")
    out = {}
    for dumps in dumps_list:
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp)
            val = ingest.verl_dir(run_dir) / "val"
            write_dumps(val, 0, dumps, per_dump, responses)
            first = timed_sync(run_dir, spec, count)
            same = timed_sync(run_dir, spec, count)
            write_dumps(val, dumps, 1, per_dump, responses)
            new = timed_sync(run_dir, spec, count)
        out[dumps] = (first, same, new)
        n = dumps * per_dump
        print(f"D = {dumps:2d} ({n:7d} responses): first {first:7.2f} s ({first / n * 1e6:5.1f} us a response), "
              f"nothing new {same:6.2f} s, 1 new dump {new:6.2f} s")
    return out


def import_rows() -> None:
    py = sys.executable
    base = "import verl.trainer.ppo.core_algos"
    print("## 4. one-off import in a Ray worker (fresh interpreter, median of 3)")
    for label, code in (("verl core_algos", base),
                        ("+ harness plugin", base + "; import harness.backends.verl.plugin"),
                        ("+ harness reward", base + "; import harness.backends.verl.reward")):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([py, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            times.append(time.perf_counter() - t0)
        print(f"{label:28s} {statistics.median(times):7.2f} s")


def timing_rows(run_dir: Path) -> None:
    recs = []
    if not (run_dir / "verl" / "metrics").is_dir():
        raise SystemExit(f"--run-dir {run_dir}: no verl/metrics folder (give a verl run's folder)")
    for path in sorted((run_dir / "verl" / "metrics").glob("attempt-*.jsonl")):
        recs += [json.loads(x)["data"] for x in path.read_text().splitlines() if x.strip()]
    keys = sorted({k for r in recs for k in r if k.startswith("timing_s/")})
    print(f"## 5. verl's own timings, {run_dir.name}: mean over {len(recs)} step(s)")
    for k in keys:
        vals = [r[k] for r in recs if k in r]
        print(f"{k:32s} {statistics.mean(vals):8.3f} s  (n={len(vals)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=1024, help="prompts a step (paper: 1,024)")
    ap.add_argument("--group", type=int, default=8, help="responses a prompt (paper: 8)")
    ap.add_argument("--tokens", type=int, default=3072, help="response tokens (paper: 3,072)")
    ap.add_argument("--repeat", type=int, default=5, help="timed repetitions of each measurement")
    ap.add_argument("--val-responses", type=int, default=18240,
                    help="validation responses a dump (paper file: 570 problems x n = 32)")
    ap.add_argument("--dumps", type=int, nargs="+", default=[1, 2, 4], help="dump counts to time sync() at")
    ap.add_argument("--run-dir", type=Path, help="a verl cluster run folder: print its timing_s/* means")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    print(f"# {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, load average "
          f"{open('/proc/loadavg').read().split()[:3]}, {os.cpu_count()} CPUs, torch threads 1")
    estimator_rows(args.prompts, args.group, args.tokens, args.repeat)
    reward_rows(max(1, args.repeat // 2))
    ingest_rows(args.dumps, args.val_responses)
    import_rows()
    if args.run_dir:
        timing_rows(args.run_dir)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
