"""`harness eval`: sample n completions per benchmark problem, grade them, write the results layout.

The samplers (``SAMPLERS``, the hf and vllm backends) are in ``harness.evaluation.samplers``; the
command's options are parsed in ``harness.cli.eval`` into an ``EvalOptions``, checked by
``check_options`` and run by ``run_eval``.

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
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.core.errors import UserError
from harness.core.metrics import eval_summary
from harness.core import provenance
from harness.core.results import (
    append_metrics, append_samples, atomic_write_bytes, read_samples, write_spec, write_status,
)
# re-exported: harness.backends.local.eval_sampler and tests import them from here
from harness.evaluation.samplers import (
    SAMPLERS, Completion, HFSampler, Sampler, SamplerFactory, VLLMSampler, get_sampler_factory, seed_for,
)
from harness.grading.grader import MathGrader
from harness.tasks.math_data import MathProblem, load_benchmark, parse_benchmark_arg

__all__ = [
    "SAMPLERS", "Completion", "HFSampler", "Sampler", "SamplerFactory", "VLLMSampler", "get_sampler_factory",
    "seed_for", "EvalOptions", "check_options", "run_eval", "read_completions", "append_completions",
]


@dataclass(frozen=True)
class EvalOptions:
    """The options of one `harness eval` (see harness.cli.eval for their meaning)."""

    model: str
    benchmarks: list[str]  # NAME=SOURCE arguments, as given
    n: int
    k_max: int | None
    out: Path
    experiment: str
    variant: str | None
    run_id: str | None
    step: int | None
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    backend: str
    gpu_memory_utilization: float | None
    device: str
    limit: int | None
    batch_problems: int
    grading_processes: int
    grading_timeout: float
    system_prompt: str


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


def validate(
    benchmark_args: list[str], n: int, k_max: int | None, limit: int | None
) -> dict[str, list[MathProblem]]:
    """Check options and load every benchmark (UserError before anything is written)."""
    if not benchmark_args:
        raise UserError("--benchmark: give at least one, e.g. --benchmark math500=path/to/test.jsonl")
    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if k_max is not None and (k_max < 1 or n < k_max):
        raise UserError(f"--n {n} is smaller than the largest requested k (--k-max {k_max}); "
                        f"raise --n to at least {k_max}")
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
    ("text", pa.string()), ("extracted", pa.string()), ("parsed", pa.string()), ("status", pa.string()),
    ("gold", pa.string()),
])


def grade_rows(
    grader: MathGrader, problems: list[MathProblem], comps: list[list[Completion]], step: int, benchmark: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Grade completions: (samples rows (SAMPLE_COLUMNS), completions rows (COMPLETIONS_SCHEMA))."""
    flat = [(p, j, c) for p, cs in zip(problems, comps) for j, c in enumerate(cs)]
    results = grader.grade_many([c.text for _, _, c in flat], [p.answer for p, _, _ in flat])
    keys = {"step": step, "benchmark": benchmark, "problem_id": [p.id for p, _, _ in flat],
            "sample_idx": [j for _, j, _ in flat]}
    samples = pd.DataFrame({
        **keys, "correct": [r.correct for r in results], "length": [c.length_tokens for _, _, c in flat],
        "truncated": [c.truncated for _, _, c in flat],
    })
    completions = pd.DataFrame({
        **keys, "text": [c.text for _, _, c in flat], "extracted": [r.extracted for r in results],
        "parsed": [r.parsed for r in results], "status": [r.status for r in results],
        "gold": [p.answer for p, _, _ in flat],
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
    table = pa.Table.from_pandas(df[COMPLETIONS_SCHEMA.names], schema=COMPLETIONS_SCHEMA,
                                 preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write_bytes(Path(run_dir) / COMPLETIONS_FILE, sink.getvalue().to_pybytes())


def gold_warnings(grader: MathGrader, problems: list[MathProblem]) -> list[dict]:
    """Problems whose gold did not parse as a whole (graded by string comparison) or at all (never
    correct): [{"problem_id", "gold", "status"}]."""
    out = []
    for p in problems:
        info = grader.gold_info(p.answer)
        if info is not None and info.status != "ok":
            out.append({"problem_id": p.id, "gold": p.answer, "status": info.status})
    return out


def prompts_sha256(prompts: list[str]) -> str:
    """One hash of a benchmark's rendered prompts, so two evaluations can be checked to have used the
    same ones."""
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()


def summary_metrics(samples: pd.DataFrame, benchmark: str, step: int, k_max: int | None) -> dict:
    """eval/<benchmark>/pass@k and AUC for metrics.jsonl (computed by harness.core.metrics)."""
    rec: dict[str, Any] = {"step": step, **eval_summary(samples, k_max)}
    rec[f"eval/{benchmark}/mean_length"] = float(samples["length"].mean())
    return rec




# ----------------------------------------------------------------------------- one evaluation run
def check_options(opts: EvalOptions) -> dict[str, list[MathProblem]]:
    """Check the options and load every benchmark: {name: problems}. UserError before anything is written."""
    problems = validate(opts.benchmarks, opts.n, opts.k_max, opts.limit)
    if opts.temperature < 0 or not 0 < opts.top_p <= 1 or opts.max_new_tokens < 1:
        raise UserError("--temperature must be >= 0, --top-p in (0, 1], --max-new-tokens >= 1")
    gpu_mem = opts.gpu_memory_utilization
    if gpu_mem is not None and (opts.backend != "vllm" or not 0 < gpu_mem <= 1):
        raise UserError(f"--gpu-memory-utilization {gpu_mem}: only for --backend vllm, and in (0, 1]")
    return problems


def eval_settings(opts: EvalOptions, checkpoint_step: int | None = None) -> dict:
    """The settings that name the run (run_id_for) and go to spec.yaml's `eval` section.

    The step: --step, else the step the sampler read from the checkpoint (checkpoint_step), else the
    one in the model path's name (step_100, checkpoint-100), else 0.
    """
    model = opts.model
    step = opts.step if opts.step is not None else (
        checkpoint_step if checkpoint_step is not None else infer_step(model))
    return {
        "model": str(Path(model).resolve()) if Path(model).exists() else model, "benchmarks": opts.benchmarks,
        "n": opts.n, "temperature": opts.temperature, "top_p": opts.top_p,
        "max_new_tokens": opts.max_new_tokens, "seed": opts.seed, "limit": opts.limit,
        "step": step,
        "system_prompt": opts.system_prompt, "backend": opts.backend,
    }


def load_sampler(opts: EvalOptions) -> Sampler:
    """The backend's sampler for the model (loads it; may raise UserError)."""
    factory = get_sampler_factory(opts.backend)
    gpu_mem = opts.gpu_memory_utilization
    kw = {"gpu_memory_utilization": gpu_mem} if gpu_mem is not None else {}
    return factory(opts.model, device=opts.device, **kw)


def eval_spec(opts: EvalOptions, settings: dict, run_id: str, problems: dict[str, list[MathProblem]],
              rendered: dict[str, list[str]]) -> dict:
    """spec.yaml of an evaluation run."""
    variant = opts.variant or Path(opts.model.rstrip("/")).name
    return {"experiment": opts.experiment, "variant": variant, "seed": opts.seed, "run_id": run_id,
            "backend": opts.backend, "kind": "eval",
            "eval": {**settings, "k_max": opts.k_max or opts.n,
                     "benchmarks": {b: len(p) for b, p in problems.items()},
                     "prompts_sha256": {b: prompts_sha256(r) for b, r in rendered.items()}}}


def run_eval(opts: EvalOptions, problems: dict[str, list[MathProblem]]) -> Path:
    """Sample, grade and write one evaluation run (checked options, loaded benchmarks) -> its folder.

    Benchmarks already complete in samples.parquet are skipped; status.json ends done, or failed
    with the error (which is raised again).
    """
    sampler = load_sampler(opts)  # loads the model; may raise UserError, nothing written yet
    # a sampler that loaded a training checkpoint (the local backend's run folders) knows its step
    settings = eval_settings(opts, getattr(sampler, "step", None))
    step, run_id = settings["step"], opts.run_id or run_id_for(settings)
    # every prompt is rendered before anything is written (a prompt the sampler cannot take fails here)
    rendered = {b: [sampler.render(p.prompt, opts.system_prompt) for p in probs]
                for b, probs in problems.items()}
    run_dir = opts.out / opts.experiment / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_status(run_dir, "pending", error=None,
                 provenance={**provenance.fingerprint(), "model": str(opts.model), "backend": opts.backend})
    write_spec(run_dir, eval_spec(opts, settings, run_id, problems, rendered))
    done = complete_benchmarks(run_dir, step, {b: len(p) * opts.n for b, p in problems.items()})
    warnings: dict[str, list[dict]] = {}
    write_status(run_dir, "running", error=None)
    try:
        with MathGrader(processes=opts.grading_processes, timeout=opts.grading_timeout) as grader, \
                _progress() as progress:
            for bench, probs in problems.items():
                task = progress.add_task(f"{bench} (n={opts.n})", total=len(probs),
                                         completed=len(probs) if bench in done else 0)
                if bench in done:
                    continue
                _eval_benchmark(opts, sampler, grader, run_dir, step, bench, probs, rendered[bench],
                                lambda m: progress.advance(task, m))
                if bad := gold_warnings(grader, probs):
                    warnings[bench] = bad
                    progress.console.print(
                        f"warning: {bench}: {len(bad)} gold answer(s) do not parse as a whole "
                        f"(graded by string comparison) or at all (never correct): "
                        + ", ".join(f"{w['problem_id']} ({w['status']})" for w in bad))
                    write_status(run_dir, "running", error=None, gold_warnings=warnings)
    except BaseException as e:
        write_status(run_dir, "failed", error=f"{type(e).__name__}: {e}", gold_warnings=warnings)
        raise
    write_status(run_dir, "done", error=None, gold_warnings=warnings)
    return run_dir


def _progress():
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn())


def _eval_benchmark(opts: EvalOptions, sampler: Sampler, grader: MathGrader, run_dir: Path, step: int,
                    bench: str, probs: list[MathProblem], prompts: list[str],
                    advance: Callable[[int], None]) -> None:
    """Sample and grade one benchmark in chunks of opts.batch_problems; write its completions, samples
    and metrics record. advance(m) is called after each chunk of m problems."""
    frames, texts, t_gen, t_grade = [], [], 0.0, 0.0
    size = opts.batch_problems
    for start in range(0, len(probs), size):
        chunk = probs[start : start + size]
        t0 = time.perf_counter()
        comps = sampler.generate(prompts[start : start + size], opts.n, opts.temperature, opts.top_p,
                                 opts.max_new_tokens, seed_for(opts.seed, bench, start))
        t1 = time.perf_counter()
        rows, comp_rows = grade_rows(grader, chunk, comps, step, bench)
        t_gen, t_grade = t_gen + t1 - t0, t_grade + time.perf_counter() - t1
        frames.append(rows)
        texts.append(comp_rows)
        advance(len(chunk))
    rows = pd.concat(frames, ignore_index=True)
    append_completions(run_dir, pd.concat(texts, ignore_index=True))  # before samples: see the docstring
    append_samples(run_dir, rows)
    record = summary_metrics(rows, bench, step, opts.k_max)
    record.update({f"time/{bench}/generate_s": t_gen, f"time/{bench}/grade_s": t_grade,
                   f"eval/{bench}/generated_tokens": int(rows["length"].sum())})
    append_metrics(run_dir, record)
