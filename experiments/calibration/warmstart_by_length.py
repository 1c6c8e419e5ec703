"""Strict pass@1 of an experiment's warm start per chain length, at the eval and the rollout temperature.

    python experiments/calibration/warmstart_by_length.py experiments/main_comparison.yaml

100 random problems per length (2-7 operations) x 8 samples: pass@1 at T = 0.6 / top-p 0.95 and at
T = 1, and the fraction of all-wrong and all-correct groups of 8. Builds (and caches) the warm start
if needed. Used for the calibration in docs/findings.md.
"""

import sys
from pathlib import Path

import numpy as np

from harness.embedded import common
from harness.embedded.sampler import sample
from harness.embedded.warmstart import warm_policy
from harness.config.experiment import load_experiment
from harness.config.runspec import expand
from harness.core.paths import default_cache
from harness.tasks import modchain


def main(path: str) -> None:
    spec = expand(load_experiment(path))[0]
    common.pin_threads(1)
    model = warm_policy(spec, default_cache())
    tok = common.tokenizer()
    print(path, spec.warm_start)
    for k in range(2, 8):
        probs = modchain.sample_problems(np.random.default_rng(k), 100, k, k)
        rep = [p for p in probs for _ in range(8)]
        out = []
        for temp, top_p in ((0.6, 0.95), (1.0, 1.0)):
            roll = sample(model, tok, [p.prompt for p in rep], max_new_tokens=spec.train.max_new_tokens,
                          temperature=temp, top_p=top_p, seed=1)
            c = modchain.grade(roll.texts, rep, "strict").reshape(100, 8)
            out.append(f"T={temp}: pass@1 {c.mean():.3f} all-wrong {(c.sum(1) == 0).mean():.2f} all-correct {(c.sum(1) == 8).mean():.2f}")
        print(k, " | ".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
