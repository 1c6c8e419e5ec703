"""`harness probe FILE`: the gradient-dynamics probe (what one and K updates of each algorithm do to
all-wrong, all-correct and mixed groups, from one identical policy state).

A probe file names a base experiment (task, model, warm start, rollout temperature, learning rate,
eval protocol) and the algorithms to compare:

    name: gradient_probe
    experiment: main_comparison.yaml     # relative to this file
    algorithms: [{name: grpo, preset: grpo}, {name: ngrpo, preset: ngrpo},
                 {name: w_reinforce, preset: psr_nsr}]
    groups_per_type: 16
    updates: 8

Output (results/<name>/): probe.yaml (the resolved settings), probe.jsonl (one line per group type x
algorithm x update, then the cosines), probe_samples.parquet (pass@k samples before and after K
updates), status.json. `harness report` renders it (harness/report/probe.py).
The computation is harness/backends/local/probe.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import Field, ValidationError, model_validator

import algorithms
from harness.core import results
from harness.config.experiment import Name, Variant, _Strict, load_experiment, resolve_variant
from harness.config.runspec import RunSpec, expand
from harness.core.errors import UserError

PROBE_FILE, PROBE_METRICS, PROBE_SAMPLES = "probe.yaml", "probe.jsonl", "probe_samples.parquet"


class ProbeConfig(_Strict):
    name: Name = Field(description="probe name: results/<name>/ and reports/<name>/")
    description: str = ""
    experiment: str = Field(
        description="base experiment file (relative to the probe file): task, model, warm start, "
        "train.temperature/top_p/group_size/max_new_tokens and the eval protocol")
    algorithms: list[Variant] = Field(
        default_factory=lambda: [Variant(name="grpo", preset="grpo"), Variant(name="ngrpo", preset="ngrpo"),
                                 Variant(name="w_reinforce", preset="psr_nsr")],
        min_length=1, description="algorithms compared from the identical state (outcome-advantage presets; "
        "W-REINFORCE = preset psr_nsr)")
    seed: int = Field(0, description="seed of the probe's prompts, rollouts and eval draws")
    checkpoint: str | None = Field(
        None, description="a run folder (relative to the probe file) whose "
        "checkpoints/latest.pt is the starting state; default: the experiment's warm start")
    candidates: int = Field(
        256, gt=0, description="prompts sampled (x G responses) to find groups of each type")
    groups_per_type: int = Field(
        16, gt=0, description="groups per type (all_wrong, all_correct, mixed) in each probe batch")
    min_ops: int | None = Field(
        None, gt=0, description="fewest operations in probe prompts (default: the experiment's task.min_ops)")
    max_ops: int | None = Field(
        None, gt=0, le=12, description="most operations (default: the experiment's task.max_ops)")
    updates: int = Field(
        8, gt=0, description="K: updates on each fixed batch (the first one is 'one update')")
    lr: float | None = Field(None, gt=0, description="learning rate (default: the experiment's train.lr)")
    optimizer: Literal["adam", "sgd"] = Field(
        "adam", description="adam (as training, no weight decay: the update is the "
        "gradient's alone) or sgd (update = -lr x gradient)")
    eval_n: int = Field(
        32, gt=0, description="samples per probe prompt for pass@k before and after K updates")

    @model_validator(mode="after")
    def _names(self) -> "ProbeConfig":
        names = [a.name for a in self.algorithms]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"algorithms: duplicate names {twice}")
        return self


def load_probe(path: Path) -> tuple[ProbeConfig, dict, dict, dict]:
    """Validate a probe file -> (config, base RunSpec, resolved settings, presets by name).

    UserError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such probe file")
    try:
        raw = yaml.safe_load(path.read_text())
        cfg = ProbeConfig.model_validate(raw if isinstance(raw, dict) else {})
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"{path}: {loc}: {err['msg'].removeprefix('Value error, ')}") from None
    exp = load_experiment(path.parent / cfg.experiment)
    if exp.backend != "local":
        raise UserError(f"{path}: experiment: the probe runs on the embedded backend (backend: local), "
                        f"not {exp.backend!r}")
    probe_exp = exp.model_copy(update={"variants": cfg.algorithms, "seeds": [exp.seeds[0]]})
    presets = {}
    for i, a in enumerate(cfg.algorithms):
        try:
            presets[a.name] = resolve_variant(probe_exp, i)
        except UserError as e:
            raise UserError(f"{path}: algorithms: {e}") from None
        adv = presets[a.name].pieces["advantage"]
        if algorithms.ADVANTAGES.meta(adv).get("token_level", False):
            raise UserError(f"{path}: algorithms[{i}] ({a.name}): preset {a.preset!r} uses the token-level "
                            f"advantage {adv!r} (a critic); the probe compares outcome advantages "
                            "(grpo, ngrpo, psr_nsr, dapo, ...)")
    spec = expand(probe_exp)[0]
    ckpt = None
    if cfg.checkpoint:
        ckpt = (path.parent / cfg.checkpoint).resolve()
        if not (ckpt / results.CKPT_DIR / "latest.pt").is_file():
            raise UserError(f"{path}: checkpoint: {ckpt} has no {results.CKPT_DIR}/latest.pt "
                            "(pass a run folder)")
    settings = {
        **cfg.model_dump(exclude={"checkpoint"}), "checkpoint": str(ckpt) if ckpt else None,
        "min_ops": cfg.min_ops or exp.task.min_ops, "max_ops": cfg.max_ops or exp.task.max_ops,
        "lr": cfg.lr or exp.train.lr, "experiment_name": exp.name, "group_size": exp.train.group_size,
        "temperature": exp.train.temperature, "eval_temperature": exp.eval.temperature,
        "eval_top_p": exp.eval.top_p,
        "algorithms": {n: p.as_dict() for n, p in presets.items()},
    }
    return cfg, spec, settings, presets


def run_probe_file(file: Path, results_dir: Path, cache_dir: Path | None) -> None:
    """Run the probe that `file` describes into <results_dir>/<name>/, then print its summary table.

    cache_dir: the warm-start cache (None: $NGRPO_HARNESS_CACHE or ~/.cache/ngrpo-harness).
    """
    from rich.console import Console

    from harness.core.paths import default_cache

    console = Console(stderr=True)
    cfg, spec, settings, presets = load_probe(file)
    out = Path(results_dir) / cfg.name
    cache = Path(cache_dir or default_cache())
    t0 = time.perf_counter()
    with console.status("loading the starting policy (building the warm start if it is not cached)"):
        start = _start_policy(spec, settings, cache)
    t_start = time.perf_counter() - t0
    from harness.backends.local.probe import run_probe

    out.mkdir(parents=True, exist_ok=True)
    results.atomic_write_text(out / PROBE_FILE, yaml.safe_dump(settings, sort_keys=False))
    results.write_status(out, "running")
    with console.status("probing") as status:
        def progress(i, n, info):
            last = f"{info['algorithm']} on {info['group_type']} groups"
            status.update(f"probing: {i}/{n} done (last: {last})")

        try:
            rows, cos_rows, samples, found = run_probe(start, spec, _run_cfg(settings), presets, progress)
        except BaseException as e:
            results.write_status(out, "failed", error=f"{type(e).__name__}: {e}")
            raise
    lines = ([json.dumps({"kind": "update", **r}) for r in rows]
             + [json.dumps({"kind": "cosine", **r}) for r in cos_rows])
    results.atomic_write_text(out / PROBE_METRICS, "\n".join(lines) + "\n")
    import io

    buf = io.BytesIO()
    samples.to_parquet(buf, index=False)
    results.atomic_write_bytes(out / PROBE_SAMPLES, buf.getvalue())
    seconds = time.perf_counter() - t0
    results.write_status(out, "done", seconds=round(seconds, 1), start_policy_seconds=round(t_start, 1),
                         groups_found=found)
    console.print(f"[green]wrote[/] {out} in {seconds:.0f}s (groups found among {cfg.candidates} prompts: "
                  f"{found}); `harness report {results_dir}` plots it")
    _print_summary(console, pd.DataFrame(rows), cfg.updates)


def _run_cfg(settings: dict) -> dict:
    keys = ("seed", "candidates", "groups_per_type", "min_ops", "max_ops", "updates", "lr", "optimizer",
            "eval_n")
    return {k: settings[k] for k in keys}


def _start_policy(spec: RunSpec, settings: dict, cache: Path):
    from harness.embedded import common
    from harness.embedded.warmstart import warm_policy

    common.pin_threads(spec.train.threads)
    if not settings["checkpoint"]:
        return warm_policy(spec, cache).eval()
    policy = common.build_model(spec)  # a run's checkpoint: tensors only (weights_only=True), as on resume
    ckpt = common.load_checkpoint(Path(settings["checkpoint"]) / results.CKPT_DIR / "latest.pt")
    policy.load_state_dict(ckpt["policy"])
    return policy.eval()


def _print_summary(console, rows: pd.DataFrame, k: int) -> None:
    from rich.table import Table

    t = Table(title=f"Probe: change after 1 and {k} updates (log-probs are sequence sums)",
              title_justify="left")
    for c in ("group type", "algorithm", "grad norm (1st)", "Δ logp wrong 1/K", "Δ logp correct 1/K",
              "Δ entropy K"):
        t.add_column(c)
    for (g, a), d in rows.groupby(["group_type", "algorithm"], sort=False):
        d = d.set_index("update")
        dw = d["logp_wrong"] - d.loc[0, "logp_wrong"]
        dc = d["logp_correct"] - d.loc[0, "logp_correct"]
        t.add_row(g, a, f"{d.loc[1, 'grad_norm']:.3g}", f"{dw.loc[1]:+.3g} / {dw.loc[k]:+.3g}",
                  f"{dc.loc[1]:+.3g} / {dc.loc[k]:+.3g}", f"{d.loc[k, 'entropy'] - d.loc[0, 'entropy']:+.3g}")
    console.print(t)
