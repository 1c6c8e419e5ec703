"""The lines `harness sweep` ends with: failed trials and why, the best trial, the counts, where to look."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console

from harness.sweep.config import SweepConfig
from harness.sweep.optuna_glue import Storage, dashboard_command, fail_kind


FAIL_KINDS = ("error", "killed", "interrupted", "surplus")


def summarize(cfg: SweepConfig, study: optuna.Study, out: Path, store: Storage, console: Console,
              gave_up: bool, aborted: str | None = None) -> bool:
    """Print the sweep's closing lines; -> False when it stopped on too many failures or a failed build."""
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    fails = {k: [t for t in trials if t.state == TrialState.FAIL and fail_kind(t) == k] for k in FAIL_KINDS}
    for t in fails["error"] + fails["killed"]:
        console.print(f"[red]trial {t.number} failed[/] ({fail_kind(t)}): "
                      f"{t.user_attrs.get('fail_reason', '?')}", highlight=False)
    if done:
        best = study.best_trial
        console.print(f"best: trial {best.number}, {cfg.metric}({cfg.benchmark}) {best.value:.2f}, "
                      f"{best.params}")
    others = "".join(f", {len(fails[k])} {k} ({what})"
                     for k, what in (("interrupted", "enqueued again"), ("surplus", "never run")) if fails[k])
    console.print(f"{len(done)} complete, {sum(t.state == TrialState.PRUNED for t in trials)} pruned, "
                  f"{len(fails['error']) + len(fails['killed'])} failed{others}; "
                  f"`harness report {out}` for the heatmap, importances and best trials; study in a browser: "
                  f"`{dashboard_command(store.url)}` (pip install optuna-dashboard)",
                  highlight=False)
    if gave_up:
        limit = cfg.max_failed if cfg.max_failed is not None else cfg.target
        console.print(f"[red]stopped asking for trials: {limit} failed (max_failed)[/]")
    if aborted:
        console.print(f"[red]stopped: {aborted}[/]", highlight=False)
    return not (gave_up or aborted)
