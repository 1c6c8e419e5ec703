"""Train an experiment's warm start (seed 0's spec) in a fresh cache and print its weights' sha256 and its
policy before RL (pass@1, pass@k_max per held-out set), with the CPU and torch's kernel path.

Float results differ between CPUs, and between kernel paths on one CPU; 2000 warm-start steps turn that into
a different starting policy (docs/findings.md, "Machines"). Compare with a published run's provenance
(`warm_start.sha256`, `step0`). The kernel path can be changed from the environment, e.g.

    python scripts/warm_start_machine.py experiments/main_comparison.yaml
    ATEN_CPU_CAPABILITY=avx2 python scripts/warm_start_machine.py experiments/main_comparison.yaml

About 100 s for the warm start and 60 s for the evaluation on one core.
"""

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", type=Path, help="an embedded-backend experiment file")
    args = ap.parse_args()

    import torch

    from harness.backends.local.trainer import evaluate
    from harness.config.experiment import load_experiment
    from harness.config.runspec import expand
    from harness.core import provenance
    from harness.core.metrics import curves_from_samples
    from harness.embedded import common
    from harness.embedded.warmstart import warm_policy, warm_start_record

    spec = next(s for s in expand(load_experiment(args.experiment)) if s.seed == 0)
    common.pin_threads(spec.train.threads)
    with tempfile.TemporaryDirectory() as cache:
        policy = warm_policy(spec, Path(cache))
        out = {"machine": provenance.machine()["cpu"], "kernels": torch.backends.cpu.get_cpu_capability(),
               **warm_start_record(spec, Path(cache))}
    for bench, c in curves_from_samples(evaluate(policy, spec, 0)).groupby("benchmark"):
        c = c.sort_values("k")
        out[bench] = {"pass@1": round(float(c["pass_at_k"].iat[0]), 4),
                      f"pass@{int(c['k'].iat[-1])}": round(float(c["pass_at_k"].iat[-1]), 4)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
