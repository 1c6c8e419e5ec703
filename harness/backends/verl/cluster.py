"""`verl: {mode: cluster}`: one `python -m verl.trainer.main_ppo` subprocess per run, on GPUs.

The composed overrides and the exact command are written into the run folder
(`verl/overrides.txt`, `verl/command.sh`), the subprocess logs to `verl/attempt-*.log`, and the
run folder is refreshed from verl's dumps and file logger while it runs (harness.backends.verl.ingest).
A killed run resumes from verl's own checkpoint (`trainer.resume_mode=auto` in `checkpoints/`) when
`harness run` starts it again. Ctrl-C or SIGTERM stops the subprocess group first.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.config.runspec import RunSpec
from harness.core import results
from harness.backends.verl import ingest
from harness.backends.verl.plugin import PLUGINS_ENV

POLL_S = 10.0


def command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "verl.trainer.main_ppo", *overrides]


def environment(spec: RunSpec, metrics_file: Path | None) -> dict[str, str]:
    """Variables the launch adds: the file logger's path and the user plugins for every verl process."""
    env = {"RAY_DEDUP_LOGS": "0", PLUGINS_ENV: os.pathsep.join(spec.plugins or [])}
    if spec.verl.device == "cpu":  # the CPU workarounds in every verl process (harness.backends.verl.compat)
        from harness.backends.verl.compat import cpu_cluster_environment

        env.update(cpu_cluster_environment())
    if metrics_file is not None:
        env["VERL_FILE_LOGGER_PATH"] = str(metrics_file)
    return env


def shell_line(overrides: list[str], env: dict[str, str]) -> str:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if v)
    cmd = command(overrides)
    head = " ".join(shlex.quote(a) for a in cmd[:3])
    return (exports + " " if exports else "") + " \\\n    ".join([head] + [shlex.quote(a) for a in cmd[3:]])


def latest_step(run_dir: Path) -> int:
    p = Path(run_dir) / results.CKPT_DIR / "latest_checkpointed_iteration.txt"
    return int(p.read_text().strip()) if p.exists() else 0


def resume_step(run_dir: Path) -> int:
    """The checkpoint a relaunch resumes from (0: the start), made the one `trainer.resume_mode=auto` reads.

    verl's fit loop saves a step's checkpoint before its logger writes the step's metrics
    (verl/trainer/ppo/ray_trainer.py, fit: `_save_checkpoint` comes before `logger.log`), so a launch killed
    between the two leaves a checkpoint whose step was never logged, and resuming from it would lose that
    step's train metrics for good. Then the newest earlier checkpoint is used (the step is trained again and
    logged): latest_checkpointed_iteration.txt is rewritten to it, or removed when there is none.
    """
    step = latest_step(run_dir)
    if step == 0 or step in ingest.metric_records(run_dir):
        return step
    ckpt = Path(run_dir) / results.CKPT_DIR
    earlier = [int(p.name.removeprefix("global_step_")) for p in ckpt.glob("global_step_*")
               if p.is_dir() and p.name.removeprefix("global_step_").isdigit()]
    back = max((s for s in earlier if s < step), default=0)
    latest = ckpt / "latest_checkpointed_iteration.txt"
    if back:
        results.atomic_write_text(latest, str(back))
    else:
        latest.unlink()
    return back


def _progress_step(metrics_file: Path) -> int:
    try:
        last = metrics_file.read_bytes().rstrip().rsplit(b"\n", 1)[-1]
        return int(json.loads(last)["step"]) if last else 0
    except (OSError, ValueError, KeyError):
        return 0


def run(
    spec: RunSpec,
    run_dir: Path,
    overrides: list[str],
    token_count,
    progress=None,
    extra_env: dict | None = None,
) -> None:
    """Launch (or resume) main_ppo for one run and ingest its outputs; raises on a non-zero exit."""
    run_dir = Path(run_dir)
    start = resume_step(run_dir)
    metrics_file = ingest.new_metrics_file(run_dir, start)
    env = {**environment(spec, metrics_file), **(extra_env or {})}
    vd = ingest.verl_dir(run_dir)
    results.atomic_write_text(vd / "command.sh", "#!/usr/bin/env bash\n" + shell_line(overrides, env) + "\n")
    log_path = metrics_file.with_suffix(".log")
    steps = spec.train.steps
    results.write_status(run_dir, "running", step=start, total_steps=steps, log=str(log_path))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command(overrides), stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                                env={**os.environ, **env}, start_new_session=True)
        try:
            last_sync = time.monotonic()
            while proc.poll() is None:
                time.sleep(1.0)
                if progress is not None:  # raises StopRequested on Ctrl-C / SIGTERM: stop main_ppo (below)
                    progress(_progress_step(metrics_file), steps, {})
                if time.monotonic() - last_sync > POLL_S * 6:
                    ingest.sync(run_dir, spec, token_count)
                    last_sync = time.monotonic()
        except BaseException:
            _stop(proc)
            ingest.sync(run_dir, spec, token_count)
            raise
    ingest.sync(run_dir, spec, token_count)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(
            f"verl main_ppo exited with code {proc.returncode}; log {log_path}: {' | '.join(tail)}"
        )
    if spec.train.max_epochs is not None:  # main_ppo may have stopped at total_epochs, before train.steps
        steps = max((r["step"] for r in results.read_metrics_records(run_dir) if r.get("kind") == "train"),
                    default=steps)
    results.write_status(run_dir, "done", step=steps, total_steps=steps, log=str(log_path))


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGINT the process group (Ray and verl shut down cleanly), then SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
