"""`harness eval MODEL -b NAME=PATH ...` (the work: harness/evaluation/evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.tasks.math_data import SYSTEM_PROMPT


def eval_command(
    model: str = typer.Argument(
        ..., help="Model to evaluate: a local Hugging Face model folder (hf, vllm) or a checkpoint of the "
        "embedded backend (local)."),
    benchmark: list[str] = typer.Option(
        [], "--benchmark", "-b", help="NAME=PATH to a .jsonl/.parquet file or folder (repeatable); also "
        "NAME=hf:OWNER/DATASET[:SPLIT], or a bare name (math500, amc23, aime24, aime25) for its hub default "
        "(needs `datasets` and network)."),
    n: int = typer.Option(
        16, "--n", help="Completions per problem (the paper uses up to 256). Must be >= --k-max."),
    k_max: int | None = typer.Option(
        None, "--k-max", help="Largest k for pass@k in metrics.jsonl (default: n)."),
    out: Path = typer.Option(
        Path("results"), "--out", help="Results root; the run goes to OUT/EXPERIMENT/RUN_ID/."),
    experiment: str = typer.Option("eval", "--experiment", help="Experiment name (results sub-folder)."),
    variant: str | None = typer.Option(
        None, "--variant", help="Label of this model in reports (default: the model folder's name)."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Run folder name (default: a hash of the settings, so reruns resume)."),
    step: int | None = typer.Option(
        None, "--step", help="Checkpoint step stored in samples (default: the step a local-backend run "
        "folder's checkpoint records, else parsed from MODEL like step_100, else 0)."),
    temperature: float = typer.Option(
        0.6, "--temperature", help="Sampling temperature (paper: 0.6; 0 = greedy)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling top-p (paper: 0.95)."),
    max_new_tokens: int = typer.Option(
        4096, "--max-new-tokens",
        help="Generation cap per completion (the NGRPO authors evaluate with 4096; training generates at most "
        "3072); hitting it marks the sample truncated."),
    seed: int = typer.Option(0, "--seed", help="Base seed (each benchmark/problem/chunk derives its own)."),
    backend: str = typer.Option(
        "hf", "--backend", help="Sampler backend: hf (transformers), vllm (vLLM engine; GPU, or CPU via "
        "`make install-dev`) or local (embedded backend)."),
    gpu_memory_utilization: float | None = typer.Option(
        None, "--gpu-memory-utilization", help="vllm only: share of device memory (CPU: of the NUMA node's "
        "memory) for the KV cache (default 0.9 on GPU, 0.2 on CPU; vLLM's own default 0.92 fails on a shared "
        "CPU machine)."),
    device: str = typer.Option(
        "auto", "--device", help="Device for the hf/local backends: auto, cpu, cuda, cuda:1, ..."),
    limit: int | None = typer.Option(
        None, "--limit", help="Only the first N problems of each benchmark (smoke tests)."),
    batch_problems: int = typer.Option(
        8, "--batch-problems", help="Problems per generate() call (progress granularity)."),
    grading_processes: int = typer.Option(2, "--grading-processes", help="math-verify worker processes."),
    grading_timeout: float = typer.Option(
        5.0, "--grading-timeout", help="Hard per-answer grading timeout in seconds."),
    system_prompt: str = typer.Option(
        SYSTEM_PROMPT, "--system-prompt", help="System prompt (default: the Qwen math prompt)."),
) -> None:
    """Sample n completions per benchmark problem, grade them with math-verify, write samples.parquet.

    Example: harness eval ckpt/ -b math500=data/math500/test.jsonl -b aime25=data/aime25.parquet --n 256
    """
    from harness.evaluation.evaluate import EvalOptions, check_options, run_eval

    opts = EvalOptions(
        model=model, benchmarks=benchmark, n=n, k_max=k_max, out=out, experiment=experiment, variant=variant,
        run_id=run_id, step=step, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
        seed=seed, backend=backend, gpu_memory_utilization=gpu_memory_utilization, device=device, limit=limit,
        batch_problems=batch_problems, grading_processes=grading_processes, grading_timeout=grading_timeout,
        system_prompt=system_prompt,
    )
    run_dir = run_eval(opts, check_options(opts))
    print(f"wrote {run_dir}")
