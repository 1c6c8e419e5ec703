"""Figures (matplotlib Agg + seaborn): Pass@k curves, AUC vs step, training diagnostics.

Every band is a t-interval over seeds from harness.core.stats.mean_interval (via
tables.aggregate). Each figure is written as PNG and SVG.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.report.tables import CONFIDENCE, aggregate, bin_steps, ordered_benchmarks  # noqa: E402

# (metric key in metrics.jsonl, panel title); optional keys are drawn only when present
DIAGNOSTICS: list[tuple[str, str]] = [
    ("train/reward", "reward"),
    ("train/acc", "accuracy"),
    ("groups/all_wrong_frac", "groups all wrong (fraction)"),
    ("groups/all_correct_frac", "groups all correct (fraction)"),
    ("groups/mixed_frac", "groups mixed (fraction)"),
    ("actor/clipfrac_low", "clip fraction, low bound"),
    ("actor/clipfrac_high", "clip fraction, high bound"),
    ("actor/entropy", "entropy"),
    ("actor/ppo_kl", "KL(old || new), k1 (verl ppo_kl)"),
    ("train/response_length", "response length (tokens)"),
    ("actor/kl_ref", "KL to reference"),
    ("critic/value_loss", "critic value loss"),
]
REQUIRED_DIAGNOSTICS = 10  # the first ten panels are always drawn (empty with a note if missing)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "x"


def palette(variants: Sequence[str]) -> dict[str, tuple]:
    """One distinct colour per variant: tab10 up to 10 variants, tab20 up to 20, evenly spaced hues beyond
    (tab10 itself cycles, so the 11th variant would share the 1st one's colour)."""
    n = len(variants)
    colors = sns.color_palette("tab10" if n <= 10 else "tab20" if n <= 20 else "husl", n_colors=max(n, 1))
    return {v: colors[i] for i, v in enumerate(variants)}


def _save(fig, out: Path, stem: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": out / f"{stem}.png", "svg": out / f"{stem}.svg"}
    fig.savefig(paths["png"], dpi=110, bbox_inches="tight")
    fig.savefig(paths["svg"], bbox_inches="tight")
    plt.close(fig)
    return paths


def _band(
    ax, agg: pd.DataFrame, x: str, variants: Sequence[str], colors: dict, marker: str | None = None
) -> None:
    for v in variants:
        d = agg[agg["variant"] == v].sort_values(x)
        if d.empty:
            continue
        n = int(d["n"].max())
        ax.plot(d[x], d["mean"], color=colors[v], marker=marker, ms=3, lw=1.6, label=f"{v} (n={n})")
        ax.fill_between(d[x], d["low"], d["high"], color=colors[v], alpha=0.18, lw=0)


def plot_passk(curves: pd.DataFrame, variants: Sequence[str], out: Path, experiment: str,
               step_label: str, start: pd.DataFrame | None = None,
               benchmarks: Sequence[str] | None = None) -> dict[str, dict[str, Path]]:
    """One figure per benchmark: pass@k vs k (log2 axis), a line per variant, CI band over seeds.

    `start`: curves of the first evaluation (before RL), drawn dashed, pooled over all runs.
    """
    agg = aggregate(curves, ["variant", "benchmark", "k"], "pass_at_k")
    start_agg = (
        aggregate(start.assign(variant="start"), ["variant", "benchmark", "k"], "pass_at_k")
        if start is not None and len(start)
        else None
    )
    colors, files = palette(variants), {}
    with sns.axes_style("whitegrid"):
        for bench in ordered_benchmarks(agg["benchmark"], benchmarks):
            d = agg[agg["benchmark"] == bench]
            fig, ax = plt.subplots(figsize=(5.6, 4.0))
            _band(ax, d, "k", variants, colors, marker="o")
            if start_agg is not None:
                b = start_agg[start_agg["benchmark"] == bench].sort_values("k")
                ax.plot(
                    b["k"],
                    b["mean"],
                    color="0.35",
                    ls="--",
                    lw=1.2,
                    label=f"before RL (step {start['step'].min()})",
                )
            ks = sorted(d["k"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.set_xlabel("k (log2 scale)")
            ax.set_ylabel("pass@k")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{experiment} — {bench} — {step_label}", fontsize=10)
            ax.legend(fontsize=8, title=f"variant ({int(CONFIDENCE * 100)}% CI over seeds)", title_fontsize=8)
            files[bench] = _save(fig, out, f"passk_{slug(bench)}")
    return files


def plot_auc_vs_step(aucs_all: pd.DataFrame, variants: Sequence[str], out: Path, experiment: str,
                     benchmarks: Sequence[str] | None = None) -> dict[str, Path] | None:
    """AUC vs training step (sample efficiency), a panel per benchmark (in the experiment file's order)."""
    if aucs_all.empty:
        return None
    agg = aggregate(aucs_all, ["variant", "benchmark", "step"], "auc").rename(columns={"step": "x"})
    band = f"band: {int(CONFIDENCE * 100)}% t-interval over seeds"
    return _auc_panels(agg, variants, benchmarks, "step", "training step",
                       f"{experiment} — sample efficiency ({band})", out, "auc_vs_step")


def _auc_panels(agg: pd.DataFrame, variants: Sequence[str], benchmarks: Sequence[str] | None, what: str,
                xlabel: str, title: str, out: Path, stem: str) -> dict[str, Path]:
    """A panel per benchmark of mean AUC (bands: low/high) against agg's column x, a line per variant."""
    benches = ordered_benchmarks(agg["benchmark"], benchmarks)
    colors = palette(variants)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(benches), figsize=(5.0 * len(benches), 3.8), squeeze=False)
        for ax, bench in zip(axes[0], benches):
            _band(ax, agg[agg["benchmark"] == bench], "x", variants, colors, marker="o")
            ax.set_title(f"{bench}: Pass@k AUC vs {what}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("Pass@k AUC (0-100)")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return _save(fig, out, stem)


def plot_auc_vs_spend(rows: pd.DataFrame, unit: str, variants: Sequence[str], out: Path, experiment: str,
                      benchmarks: Sequence[str] | None = None) -> dict[str, Path] | None:
    """AUC vs cumulative rollouts or tokens (report.budget.aucs_with_spend rows), a panel per benchmark.

    The seeds of a variant spend differently by the same evaluation, so points are the runs' n-th
    evaluations: x = their mean spend, y = mean AUC with the t-interval over seeds. None when the spend
    in `unit` is unknown for some run (runs made before budget/* was logged have no tokens)."""
    if rows.empty or rows[unit].isna().any():
        return None
    rows = rows.assign(_i=rows.groupby(["run_id", "benchmark"])["step"].rank(method="dense"))
    agg = aggregate(rows, ["variant", "benchmark", "_i"], "auc")
    agg = agg.merge(rows.groupby(["variant", "benchmark", "_i"])[unit].mean().rename("x").reset_index(),
                    on=["variant", "benchmark", "_i"])
    band = f"band: {int(CONFIDENCE * 100)}% t-interval over seeds at each evaluation"
    return _auc_panels(agg, variants, benchmarks, unit, f"{unit} generated (every sampling round)",
                       f"{experiment} — AUC against compute ({band})", out, f"auc_vs_{unit}")


def plot_diagnostics(
    train: pd.DataFrame, variants: Sequence[str], out: Path, experiment: str
) -> dict[str, Path] | None:
    """Training diagnostics vs step: a panel per metric, a line per variant, CI band over seeds."""
    if train.empty or "step" not in train.columns:
        return None
    panels = [
        (k, t) for i, (k, t) in enumerate(DIAGNOSTICS) if i < REQUIRED_DIAGNOSTICS or k in train.columns
    ]
    train = bin_steps(
        train[["run_id", "variant", "seed", "step"] + [k for k, _ in panels if k in train.columns]]
    )
    colors = palette(variants)
    ncol = 4
    nrow = -(-len(panels) // ncol)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.9 * nrow), squeeze=False)
        flat = axes.ravel()
        for ax, (key, title) in zip(flat, panels):
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=7)
            if key not in train.columns or train[key].isna().all():
                ax.text(
                    0.5,
                    0.5,
                    f"{key}\nnot logged",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    fontsize=8,
                )
                continue
            _band(ax, aggregate(train, ["variant", "step"], key), "step", variants, colors)
            ax.set_xlabel("step", fontsize=8)
        for ax in flat[len(panels):]:
            ax.axis("off")
        handles, labels = flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8,
                       bbox_to_anchor=(0.5, 1.0))
        fig.suptitle(
            f"{experiment} — training diagnostics (band: {int(CONFIDENCE * 100)}% t-interval over seeds)",
            fontsize=10,
            y=1.04,
        )
        fig.tight_layout()
        return _save(fig, out, "diagnostics")
