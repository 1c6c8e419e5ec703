"""`harness eval --backend local`: sample from an embedded-backend run's checkpoint.

MODEL is a run folder (results/<experiment>/<run_id>/, using checkpoints/latest.pt) or a
checkpoint file inside one. The model is character-level: benchmark prompts must use its task's
characters (e.g. modchain problems `{"problem": "4*9+4=", "answer": "0"}`); the system prompt is
ignored. Importing this module registers the sampler in harness.evaluation.evaluate.SAMPLERS.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.core import results
from harness.embedded import common
from harness.embedded.sampler import sample
from harness.config.runspec import RunSpec
from harness.core.errors import UserError
from harness.evaluation.evaluate import SAMPLERS, Completion


class LocalSampler:
    """Sampler protocol of harness.evaluation.evaluate over a TinyGPT checkpoint (CPU)."""

    def __init__(self, model: str, device: str = "auto") -> None:
        path = Path(model)
        ckpt = path / results.CKPT_DIR / "latest.pt" if path.is_dir() else path
        run_dir = ckpt.parent.parent
        if not ckpt.is_file() or not (run_dir / results.SPEC_FILE).is_file():
            raise UserError(
                f"MODEL {model}: not an embedded-backend run folder (needs spec.yaml and checkpoints/latest.pt)"
            )
        if device not in ("auto", "cpu"):
            raise UserError(f"--device {device}: the local backend runs on the CPU only")
        self.spec = RunSpec.from_dict(yaml.safe_load((run_dir / results.SPEC_FILE).read_text()))
        common.pin_threads(self.spec.train.threads)
        self.tok = common.tokenizer()
        self.model = common.build_model(self.spec)
        state = common.load_checkpoint(ckpt)  # once, and never executing pickled code
        self.model.load_state_dict(state["policy"])
        self.step = int(state["step"])

    def render(self, problem: str, system: str) -> str:
        """The problem text itself (no system prompt); refuses characters outside the model's vocabulary."""
        try:
            self.tok.encode(problem.strip())
        except ValueError as e:
            raise UserError(f"local backend: {e}; this model only reads its task's characters") from None
        return problem.strip()

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed) -> list[list[Completion]]:
        rep = [p for p in prompts for _ in range(n)]
        try:
            roll = sample(
                self.model,
                self.tok,
                rep,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
            )
        except ValueError as e:
            raise UserError(f"local backend: {e}; this model only reads its task's characters") from None
        comps = [
            Completion(t, int(n_tok), bool(tr))
            for t, n_tok, tr in zip(roll.texts, roll.lengths, roll.truncated)
        ]
        return [comps[i * n : (i + 1) * n] for i in range(len(prompts))]


SAMPLERS.setdefault("local", LocalSampler)
