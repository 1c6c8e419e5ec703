"""Speed of our vectorised group advantages vs a per-sample Python loop (verl 0.9.1's GRPO style).

    python benchmarks/advantages.py [--n 16384] [--group 8] [--repeats 5]

The loop reference follows verl's compute_grpo_outcome_advantage: bucket scores by prompt id in a
Python dict, then torch.mean / torch.std per group and a per-sample normalisation loop.
Prints the best-of-repeats time of each, the speed ratio (target >= 200x), and checks equal values.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from algorithms.advantages import group_zscore, virtual_max


def loop_reference(scores: torch.Tensor, index: list[int], n_virtual: int, r_max: float, eps: float = 1e-6) -> torch.Tensor:
    scores = scores.clone()
    id2score: dict[int, list[torch.Tensor]] = defaultdict(list)
    id2mean, id2std = {}, {}
    with torch.no_grad():
        for i in range(scores.shape[0]):
            id2score[index[i]].append(scores[i])
        for idx, vals in id2score.items():
            vals = vals + [torch.tensor(r_max)] * n_virtual
            if len(vals) == 1:
                id2mean[idx], id2std[idx] = torch.tensor(0.0), torch.tensor(1.0)
            else:
                t = torch.stack(vals)
                id2mean[idx], id2std[idx] = torch.mean(t), torch.std(t)
        for i in range(scores.shape[0]):
            scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + eps)
    return scores


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16384, help="responses (default 16384)")
    ap.add_argument("--group", type=int, default=8, help="group size G (default 8)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1, recorded)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rewards = (torch.rand(args.n) > 0.6).float()
    gid = torch.arange(args.n) // args.group
    index = gid.tolist()
    print(f"N = {args.n} responses, G = {args.group}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for name, fn, (k, rmax) in [("group_zscore", group_zscore, (0, 0.0)), ("virtual_max", virtual_max, (1, 1.0))]:
        ours = fn(rewards, gid)
        ref = loop_reference(rewards, index, k, rmax)
        equal = torch.allclose(ours, ref, atol=1e-5)
        t_vec = best_time(lambda: fn(rewards, gid), args.repeats)
        t_loop = best_time(lambda: loop_reference(rewards, index, k, rmax), max(1, args.repeats // 2))
        print(f"{name:13s} vectorised {t_vec * 1e3:8.3f} ms | loop {t_loop * 1e3:9.1f} ms | "
              f"ratio {t_loop / t_vec:7.0f}x (target >= 200x) | equal values: {equal} "
              f"(max |diff| {(ours - ref).abs().max().item():.2e})")
        if not equal:
            raise SystemExit(f"{name}: vectorised and loop results differ")


if __name__ == "__main__":
    main()
