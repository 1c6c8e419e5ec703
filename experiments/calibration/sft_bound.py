"""What supervised continuation on true solutions does to the held-out sets in N steps: a bound on what
RL's (noisier) signal can teach at that budget.

    python experiments/calibration/sft_bound.py EXPERIMENT.yaml STEPS LR MIN_OPS MAX_OPS

From the experiment's warm start: STEPS AdamW steps (lr LR, grad clip 1) on 64 true solutions of
MIN_OPS..MAX_OPS operations, then the experiment's evaluation (pass@1 and pass@32 per held-out set).
"""

import sys

import torch

from harness.embedded import common
from harness.embedded.sampler import sequence_forward
from harness.backends.local.trainer import evaluate
from harness.embedded.warmstart import warm_policy
from harness.config.experiment import load_experiment
from harness.config.runspec import expand
from harness.core.metrics import curves_from_samples
from harness.core.paths import default_cache


def main(path: str, steps: int, lr: float, lo: int, hi: int) -> None:
    spec = expand(load_experiment(path))[0]
    common.pin_threads(1)
    model = warm_policy(spec, default_cache())
    tok = common.tokenizer()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    for s in range(steps):
        probs = common.train_problems(spec, 64, lo, hi, "sftbound", s)
        prompt_ids, _ = tok.encode_prompts([p.prompt for p in probs])
        comp = tok.encode_completions([p.solution for p in probs])
        mask = comp != tok.PAD
        model.train()
        logp, _ = sequence_forward(model, tok, prompt_ids, comp, mask)
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    curves = curves_from_samples(evaluate(model, spec, steps), by=("benchmark",))
    print(f"{steps} steps, lr {lr}, {lo}-{hi} ops:")
    print(curves[curves["k"].isin([1, 32])][["benchmark", "k", "pass_at_k"]].round(3).to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
