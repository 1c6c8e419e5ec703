"""`harness sweep`: Optuna search over a variant's knobs (e.g. NGRPO's eps_pos / eps_neg).

A sweep file names a base experiment and variant, the knobs to search and the objective (final
Pass@k AUC on one held-out benchmark, averaged over the sweep's seeds). Each trial is a set of
ordinary runs (RunSpecs with the suggested overrides) under results/<experiment>_sweep_<variant>/,
so `harness report` reads them like any experiment. Intermediate AUCs (every eval.every steps)
feed Optuna's pruner; the study lives in a journal file next to the runs, so an interrupted sweep
continues where it stopped.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness import results
from harness.config import CLIP_KNOBS, Experiment, Name, clip_cannot_bind, expand, load_experiment, read_yaml, validation_message
from harness.errors import Interrupted, StopRequested, UserError
from harness.executor import StopSignals


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float = Field(description="lower end of the range")
    high: float = Field(description="upper end of the range")
    log: bool = Field(False, description="sample on a log scale")

    @model_validator(mode="after")
    def _order(self) -> "Range":
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        return self


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    experiment: str = Field(description="base experiment file (relative to the sweep file)")
    variant: Name = Field(description="variant of the base experiment whose knobs are searched")
    params: dict[str, Range] = Field(min_length=1, description="knob -> search range, e.g. eps_pos: {low: 0.1, high: 0.4}")
    benchmark: str = Field(description="held-out benchmark whose final Pass@k AUC is maximised")
    trials: int = Field(12, gt=0, description="number of trials (more can be added by running again)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="seeds per trial (objective = mean AUC)")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler: TPE or uniform random")
    pruner: Literal["median", "none"] = Field("median", description="prune trials whose intermediate AUC is below the median")
    seed: int = Field(0, description="Optuna sampler seed")


def load_sweep(path: Path) -> tuple[SweepConfig, Experiment]:
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file")
    raw = read_yaml(path) or {}
    if isinstance(raw, dict) and "variants" in raw:
        raise UserError(f"{path}: this is an experiment file (it has `variants:`): run it with `harness run {path}`")
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{path}: {validation_message(e, SweepConfig)}") from None
    exp = load_experiment(path.parent / cfg.experiment)
    if cfg.variant not in {v.name for v in exp.variants}:
        raise UserError(f"{path}: variant: {cfg.variant!r} is not in {cfg.experiment} (variants: {', '.join(v.name for v in exp.variants)})")
    if cfg.benchmark not in exp.eval.benchmarks:
        raise UserError(f"{path}: benchmark: {cfg.benchmark!r} is not one of {sorted(exp.eval.benchmarks)}")
    eps = CLIP_KNOBS & set(cfg.params)
    if eps and clip_cannot_bind(exp):
        raise UserError(f"{path}: params: sweeping {sorted(eps)} is meaningless with train.mini_batches = 1 and "
                        f"train.epochs = 1 (the ratio is identically 1, no clip bound can bind); raise mini_batches")
    trial_exp(cfg, exp, {k: r.low for k, r in cfg.params.items()})  # unknown knob / bad range -> UserError now
    return cfg, exp


def trial_exp(cfg: SweepConfig, exp: Experiment, params: dict[str, float]) -> Experiment:
    """The base experiment reduced to the swept variant with the trial's overrides."""
    base = next(v for v in exp.variants if v.name == cfg.variant)
    tag = "_".join(f"{k}{v:.4g}" for k, v in sorted(params.items()))
    raw = exp.model_dump(exclude={"verl"} if exp.backend == "local" else set())  # `verl:` only on verl experiments
    raw.update(name=f"{exp.name}_sweep_{cfg.variant}", seeds=list(cfg.seeds),
               variants=[{"name": f"{cfg.variant}__{tag}", "preset": base.preset, "overrides": {**base.overrides, **params}}])
    try:
        out = Experiment.model_validate(raw)
        expand(out)
    except (ValidationError, UserError) as e:
        raise UserError(f"sweep params {params}: {e}") from None
    return out


def run_trial(trial, cfg: SweepConfig, exp: Experiment, results_dir: Path, cache_dir: Path,
              stop: threading.Event | None = None, current: dict | None = None) -> float:
    """Train the trial's runs one after another; report intermediate AUCs; return the mean final AUC.

    Once `stop` is set, the running run checkpoints its current step and StopRequested propagates;
    `current` records the trial's number, params and run folder so the caller can re-queue it."""
    import optuna

    from harness.backends import get_backend

    stop = stop or threading.Event()

    def check_stop(*_args) -> None:
        if stop.is_set():
            raise StopRequested()

    check_stop()
    params = {k: trial.suggest_float(k, r.low, r.high, log=r.log) for k, r in cfg.params.items()}
    texp = trial_exp(cfg, exp, params)
    finals = []
    for i, spec in enumerate(expand(texp)):
        rd = results_dir / texp.name / spec["run_id"]
        if current is not None:
            current.update(number=trial.number, params=params, run_dir=rd)
        rd.mkdir(parents=True, exist_ok=True)
        results.write_spec(rd, spec)
        backend = get_backend(spec["backend"])
        if backend.shared_key(spec, cache_dir) is not None:
            backend.prepare(spec, cache_dir, progress=check_stop)
        key = f"eval/{cfg.benchmark}/auc"

        def report(step: int, total: int, rec: dict, _i: int = i, _rd: Path = rd) -> None:
            check_stop()
            if step % spec["eval"]["every"] == 0 and _i == 0:
                evals = [r for r in results.read_metrics_records(_rd) if r.get("kind") == "eval" and key in r]
                trial.report(evals[-1][key], step)
                if trial.should_prune():
                    results.write_status(_rd, "failed", step=step, error="pruned by the Optuna sweep")
                    raise optuna.TrialPruned()

        if results.read_status(rd).get("state") != "done":
            backend.train(spec, rd, cache_dir, progress=report)
        last = [r for r in results.read_metrics_records(rd) if r.get("kind") == "eval" and key in r][-1]
        finals.append(last[key])
    trial.set_user_attr("run_ids", [s["run_id"] for s in expand(texp)])
    return float(sum(finals) / len(finals))


def _quiet_stop(record: logging.LogRecord) -> bool:
    """Logging filter: drop Optuna's "Trial N failed" record (and traceback) for a stop request."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, (StopRequested, KeyboardInterrupt)) and "StopRequested()" not in record.getMessage()


def _requeue_interrupted(study, current: dict) -> None:
    """Queue the interrupted trial's params again (same run ids: its runs resume from their checkpoints)."""
    if not current:
        print("stopped before a trial started; rerun the same command to continue the sweep", file=sys.stderr)
        return
    study.enqueue_trial(current["params"], user_attrs={"resumes_trial": current["number"]})
    rd = current["run_dir"]
    st = results.read_status(rd)
    if st.get("state") != "done":
        results.write_status(rd, "pending", step=st.get("step", 0), total_steps=st.get("total_steps"),
                             error="interrupted; run `harness sweep` again to resume this trial from its checkpoint")
    print(f"stopped: trial {current['number']} checkpointed at step {st.get('step', 0)} ({rd.name}); "
          f"rerun the same command to resume it", file=sys.stderr)


def sweep_command(
    file: Path = typer.Argument(..., help="Sweep YAML (see experiments/eps_sweep.yaml)."),
    results_dir: Path = typer.Option(Path("results"), "--results", help="Results root; trials go to <results>/<experiment>_sweep_<variant>/."),
    trials: int = typer.Option(0, "--trials", help="Override the file's number of trials (0 = use the file)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Warm-start cache (default $NGRPO_HARNESS_CACHE or ~/.cache/ngrpo-harness)."),
) -> None:
    """Search a variant's knobs with Optuna (TPE + median pruning), maximising final Pass@k AUC.

    Resumable: the study is stored in <results>/<experiment>_sweep_<variant>/optuna.journal and
    every trial is a normal run folder, so `harness report` shows the trials as variants.
    Ctrl-C or SIGTERM: the running trial saves a checkpoint of its current step and is queued
    again, exit 130 (143); rerunning the same command resumes it (a second Ctrl-C quits at once).
    """
    import optuna

    from harness.runner import DEFAULT_CACHE

    from harness.backends import get_backend

    cfg, exp = load_sweep(file)
    get_backend(exp.backend).check(exp)
    if trials < 0:
        raise UserError("--trials: must be >= 0")
    out = results_dir / f"{exp.name}_sweep_{cfg.variant}"
    out.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    sampler = optuna.samplers.TPESampler(seed=cfg.seed) if cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=cfg.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3) if cfg.pruner == "median" else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=out.name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    if study.trials:  # a continued study: a sampler re-seeded with cfg.seed would repeat the first trials' params
        seed = cfg.seed + len(study.trials)
        study.sampler = optuna.samplers.TPESampler(seed=seed) if cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # an interrupted (FAIL) trial is re-queued
    todo = (trials or cfg.trials) - len([t for t in study.trials if t.state in ended])
    current: dict = {}
    logging.getLogger("optuna.study._optimize").addFilter(_quiet_stop)  # an interrupted trial: no traceback
    with StopSignals() as sig:
        try:
            if todo > 0:
                study.optimize(lambda t: run_trial(t, cfg, exp, results_dir, cache_dir or DEFAULT_CACHE, sig.stop, current),
                               n_trials=todo, show_progress_bar=True, catch=())
        except (StopRequested, KeyboardInterrupt) as e:
            _requeue_interrupted(study, current)
            raise Interrupted(getattr(e, "signum", None) or sig.signum or signal.SIGINT) from None
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for t in sorted(done, key=lambda t: -t.value):
        print(f"trial {t.number:3d}  AUC({cfg.benchmark}) {t.value:7.2f}  " + "  ".join(f"{k}={v:.4g}" for k, v in t.params.items()))
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    if done:
        best = study.best_trial
        print(f"best: trial {best.number}, AUC {best.value:.2f}, {best.params} ({len(done)} complete, {pruned} pruned); "
              f"`harness report {out}` for curves")
    else:
        print(f"no complete trial yet ({pruned} pruned)")
