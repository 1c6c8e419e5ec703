"""Datasets in verl's parquet layout, from the harness's tasks and benchmark loaders.

One row per problem (the layout of verl's RLHFDataset and reward managers):

    data_source    modchain | the benchmark name (verl groups validation metrics by it)
    prompt         chat messages: [system (math only), user]; the model's chat template is applied by
                   verl's agent loop (cluster) or by the in-process rollout, both with add_generation_prompt
    ability        math | modchain
    reward_model   {"style": "rule", "ground_truth": answer}   (modchain: {"answer", "solution"})
    extra_info     {"index", "split", "harness_benchmark", "harness_problem"}

Sources: modchain problems exactly as the local backend draws them (so both backends see the same
prompts), and any file `harness.tasks.math_data.load_benchmark` reads, the NGRPO authors' verl
parquet files included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.config.experiment import FileBenchmarkConfig
from harness.config.runspec import RunSpec
from harness.core import results
from harness.embedded import common
from harness.core.errors import UserError


@dataclass(frozen=True)
class VerlData:
    """Where a run's verl datasets live (under the run folder) and what each validation file holds."""

    train: Path
    val: dict[str, Path]  # benchmark name -> parquet

    @property
    def val_files(self) -> list[Path]:
        return list(self.val.values())


def data_paths(run_dir: Path, benchmarks: list[str]) -> VerlData:
    d = Path(run_dir) / "verl" / "data"
    return VerlData(d / "train.parquet", {b: d / f"val_{b}.parquet" for b in benchmarks})


def _row(
    source: str, messages: list[dict], ability: str, truth, index: int, split: str, bench: str, pid: str
) -> dict:
    return {
        "data_source": source,
        "prompt": messages,
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": truth},
        "extra_info": {
            "index": index,
            "split": split,
            "harness_benchmark": bench,
            "harness_problem": str(pid),
        },
    }


def modchain_rows(problems, split: str, bench: str) -> list[dict]:
    return [
        _row(
            "modchain",
            [{"role": "user", "content": p.prompt}],
            "modchain",
            {"answer": p.answer, "solution": p.solution},
            i,
            split,
            bench,
            p.problem_id,
        )
        for i, p in enumerate(problems)
    ]


def math_rows(problems, split: str, bench: str, system_prompt: str) -> list[dict]:
    return [
        _row(
            bench,
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": p.prompt}],
            "math",
            p.answer,
            i,
            split,
            bench,
            p.id,
        )
        for i, p in enumerate(problems)
    ]


def system_prompt(spec: RunSpec) -> str:
    from harness.tasks.math_data import SYSTEM_PROMPT

    return spec.task.system_prompt or SYSTEM_PROMPT


def train_rows(spec: RunSpec) -> list[dict]:
    """Training prompts. modchain: the local backend's draws, round 0 of every step first, then the
    extra rounds filtered variants may need (verl streams the file in order); math: the task's file."""
    task, tr = spec.task, spec.train
    if task.name == "modchain":
        problems = [
            p
            for rnd in range(tr.max_sample_rounds)
            for step in range(1, tr.steps + 1)
            for p in common.train_problems(
                spec, tr.prompts_per_step, task.min_ops, task.max_ops, spec.seed, step, rnd
            )
        ]
        return modchain_rows(problems, "train", "train")
    from harness.tasks.math_data import load_benchmark

    return math_rows(load_benchmark(task.train, "train", task.limit), "train", "train", system_prompt(spec))


def val_rows(spec: RunSpec) -> dict[str, list[dict]]:
    """Validation prompts per benchmark, in the experiment's order."""
    out: dict[str, list[dict]] = {}
    held = None
    for name, b in spec.eval.benchmarks.items():
        if isinstance(b, FileBenchmarkConfig):
            from harness.tasks.math_data import load_benchmark

            out[name] = math_rows(load_benchmark(b.path, name, b.limit), "test", name, system_prompt(spec))
        else:
            held = held if held is not None else common.heldout_sets(spec)
            out[name] = modchain_rows(held[name], "test", name)
    return out


def check_sources(spec: RunSpec) -> None:
    """Load every data source once (UserError naming the file) without writing anything."""
    if not train_rows(spec):
        raise UserError("task: no training problems")
    val_rows(spec)


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), sink)
    results.atomic_write_bytes(path, sink.getvalue().to_pybytes())


def write_datasets(spec: RunSpec, run_dir: Path) -> VerlData:
    """Write (or rewrite, identically) the run's train and validation parquet files."""
    paths = data_paths(run_dir, list(spec.eval.benchmarks))
    write_parquet(paths.train, train_rows(spec))
    for name, rows in val_rows(spec).items():
        write_parquet(paths.val[name], rows)
    return paths
