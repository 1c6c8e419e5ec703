"""The sweep part of `harness report`: written next to the experiment's report when a results folder is a
sweep (it holds sweep.json and trials.json).

    sweep_heatmap.png|svg   objective over the two most important parameters: a heatmap when the trials
                            sit on a grid (cells annotated; best cell starred; best region outlined;
                            the base variant's setting marked), else a filled contour through the trials
    sweep_params.png|svg    objective against each parameter: every complete trial's seed mean with its
                            95% t-interval over seeds, and the mean over trials at each grid value
    sweep_importance.png|svg  Optuna's parameter importances
    sweep_trials.csv        every trial: state, params, objective mean [CI] over seeds, failure/prune reason,
                            difference to the best [CI], Holm-adjusted p (p_holm), in best region, and the
                            mean fraction of tokens the clip bounds cut per update (clip_frac)
    sweep_best.md           the best trials table, the best region and the optuna-dashboard command
    sweep.html              all of it on one self-contained page
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.report import html as html_mod  # noqa: E402
from harness.report.plots import _save  # noqa: E402
from harness.report.sweep_data import SweepData, is_sweep_folder, load_sweep_data  # noqa: E402
from harness.report.tables import CONFIDENCE, to_markdown  # noqa: E402

MAX_GRID_VALUES = 15  # per axis; more distinct values (continuous samplers) -> contour instead of heatmap
TOP = 10


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _axis_params(data: SweepData) -> list[str]:
    """The two most important parameters (file order when importances are missing)."""
    order = sorted(data.params, key=lambda p: -data.importances.get(p, 0.0)) if data.importances else list(data.params)
    return order[:2]


def _numeric(data: SweepData, p: str) -> bool:
    return pd.api.types.is_numeric_dtype(data.trials[p]) and not pd.api.types.is_bool_dtype(data.trials[p])


def _pos(values: list, v, log: bool) -> float | None:
    """Position of v on a categorical axis of sorted numeric values (interpolated, log-aware)."""
    if v is None or not values or not isinstance(v, (int, float)) or not values[0] <= v <= values[-1]:
        return None
    f = np.log if log else (lambda x: np.asarray(x, dtype=float))
    return float(np.interp(f(v), f(np.asarray(values, dtype=float)), np.arange(len(values))))


def plot_heatmap(data: SweepData, out: Path) -> dict[str, Path] | None:
    c = data.complete
    if c.empty:
        return None
    axes = _axis_params(data)
    title = f"{data.folder.name}: {data.objective}, mean over seeds"
    with sns.axes_style("white"):
        if len(axes) == 1:
            return None  # one parameter: the per-parameter figure says it all
        px, py = axes
        gx, gy = _grid_values(data, px), _grid_values(data, py)
        if gx and gy:  # a grid study: its full grid, cells not run (yet) left grey
            xs, ys, grid = gx, gy, True
        else:
            xs, ys = sorted(c[px].unique()), sorted(c[py].unique())
            grid = len(xs) <= MAX_GRID_VALUES and len(ys) <= MAX_GRID_VALUES and len(c) >= 0.5 * len(xs) * len(ys)
        fig, ax = plt.subplots(figsize=(1.1 * len(xs) + 2.6 if grid else 6.4, 0.8 * len(ys) + 1.8 if grid else 5.0))
        best = data.best
        if grid:
            mat = c.pivot_table(index=py, columns=px, values="mean", aggfunc="mean").reindex(index=ys, columns=xs)
            region = c.pivot_table(index=py, columns=px, values="in_best_region", aggfunc="max").reindex(
                index=ys, columns=xs
            )
            cmap = "viridis" if data.maximize else "viridis_r"
            ax.set_facecolor("0.88")  # cells without a complete trial
            sns.heatmap(mat, annot=True, fmt=".1f", cmap=cmap, ax=ax, cbar_kws={"label": data.objective},
                        linewidths=0.5, linecolor="white", annot_kws={"fontsize": 8})
            ax.invert_yaxis()
            ax.set_xticks(np.arange(len(xs)) + 0.5, [_fmt(v) for v in xs])
            ax.set_yticks(np.arange(len(ys)) + 0.5, [_fmt(v) for v in ys], rotation=0)
            for (i, j), inside in np.ndenumerate(region.fillna(False).to_numpy(dtype=bool)):
                if inside:
                    ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="red", lw=1.8))
            if best is not None:
                ax.plot(xs.index(best[px]) + 0.5, ys.index(best[py]) + 0.15, marker="*", color="red", ms=10, ls="")
            dx = _pos(xs, data.defaults.get(px), data.log_scale.get(px, False)) if _numeric(data, px) else None
            dy = _pos(ys, data.defaults.get(py), data.log_scale.get(py, False)) if _numeric(data, py) else None
            if dx is not None and dy is not None:
                ax.plot(dx + 0.5, dy + 0.5, marker="X", color="white", mec="black", ms=11, ls="",
                        label=f"base setting ({px} {_fmt(data.defaults[px])}, {py} {_fmt(data.defaults[py])})")
                ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
            done = f"{len(c)} of {len(xs) * len(ys)} cells" + (
                " (grey: not run or not complete)" if len(c) < len(xs) * len(ys) else ""
            )
            others = " averaged over the other parameters" if len(data.params) > 2 else ""
            ax.set_title(
                f"{title}{others}; {done}\nred outline: not resolved below the best (red star), Holm 5% family-wise",
                fontsize=9,
            )
        else:
            x, y, z = c[px].astype(float), c[py].astype(float), c["mean"].astype(float)
            if len(c) >= 4 and x.nunique() > 1 and y.nunique() > 1:
                cf = ax.tricontourf(x, y, z, levels=12, cmap="viridis" if data.maximize else "viridis_r")
                fig.colorbar(cf, ax=ax, label=data.objective)
            ax.scatter(x, y, c="k", s=12, label="trials")
            ax.scatter(c.loc[c["in_best_region"].astype(bool), px], c.loc[c["in_best_region"].astype(bool), py],
                       facecolors="none", edgecolors="red", s=60, label="best region (Holm, 5% family-wise)")
            if best is not None:
                ax.plot(
                    best[px],
                    best[py],
                    marker="*",
                    color="red",
                    ms=12,
                    ls="",
                    label=f"best (trial {int(best['number'])})",
                )
            if px in data.defaults and py in data.defaults:
                ax.plot(
                    data.defaults[px],
                    data.defaults[py],
                    marker="X",
                    color="white",
                    mec="black",
                    ms=11,
                    ls="",
                    label="base setting",
                )
            for p, setter in ((px, ax.set_xscale), (py, ax.set_yscale)):
                if data.log_scale.get(p):
                    setter("log")
            ax.legend(fontsize=8)
            ax.set_title(title, fontsize=9)
        ax.set_xlabel(px)
        ax.set_ylabel(py)
        return _save(fig, out, "sweep_heatmap")


def plot_params(data: SweepData, out: Path) -> dict[str, Path] | None:
    c = data.complete
    if c.empty:
        return None
    n = len(data.params)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
        for ax, p in zip(axes[0], data.params):
            numeric = _numeric(data, p)
            cats = sorted(c[p].unique(), key=str) if not numeric else None
            x = c[p].astype(float) if numeric else c[p].map({v: i for i, v in enumerate(cats)})
            err = np.vstack([c["mean"] - c["low"], c["high"] - c["mean"]])
            ax.errorbar(x, c["mean"], yerr=err, fmt="o", ms=4, color="tab:blue", alpha=0.55, capsize=2,
                        label=f"trial: seed mean, {int(CONFIDENCE * 100)}% CI")
            by = c.groupby(p)["mean"].mean()
            if len(by) < len(c):  # several trials per value (a grid): their mean
                bx = by.index.astype(float) if numeric else [cats.index(v) for v in by.index]
                ax.plot(
                    bx,
                    by.to_numpy(),
                    color="tab:orange",
                    lw=1.8,
                    marker="s",
                    ms=4,
                    label="mean over other parameters",
                )
            if numeric and data.log_scale.get(p):
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if numeric and _grid_values(data, p):
                ax.set_xticks(_grid_values(data, p), [_fmt(v) for v in _grid_values(data, p)])
            if not numeric:
                ax.set_xticks(range(len(cats)), [str(v) for v in cats])
            if p in data.defaults and numeric:
                ax.axvline(
                    float(data.defaults[p]),
                    color="0.4",
                    ls="--",
                    lw=1,
                    label=f"base setting {_fmt(data.defaults[p])}",
                )
            ax.set_xlabel(p)
            ax.set_ylabel(data.objective)
            ax.legend(fontsize=7)
        fig.suptitle(f"{data.folder.name}: {data.objective} against each parameter", fontsize=10)
        fig.tight_layout()
        return _save(fig, out, "sweep_params")


def plot_importance(data: SweepData, out: Path) -> dict[str, Path] | None:
    if not data.importances:
        return None
    imp = pd.Series(data.importances).sort_values()
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(5.0, 0.5 * len(imp) + 1.4))
        ax.barh(imp.index, imp.to_numpy(), color="tab:blue")
        ax.set_xlabel("importance (Optuna, default evaluator)")
        ax.set_title(f"{data.folder.name}: parameter importances for {data.objective}", fontsize=9)
        return _save(fig, out, "sweep_importance")


def trials_table(data: SweepData) -> pd.DataFrame:
    t = data.trials.copy()
    cols = ["number", "state", *data.params, "mean", "low", "high", "n", "diff", "diff_low", "diff_high",
            "p_holm", "in_best_region", "clip_frac", "fail_kind", "reason", "run_ids"]
    t["run_ids"] = [" ".join(r) for r in t["run_ids"]]
    return t[cols].sort_values("number").reset_index(drop=True)


def best_table(data: SweepData) -> pd.DataFrame:
    c = data.complete.sort_values("mean", ascending=not data.maximize).head(TOP)
    rows = {
        f"trial {int(r['number'])}": {
            **{p: _fmt(r[p]) for p in data.params},
            data.objective: (
                f"{r['mean']:.2f} (n=1: one seed, no CI)"
                if pd.isna(r["low"])
                else f"{r['mean']:.2f} [{r['low']:.2f}, {r['high']:.2f}] (n={int(r['n'])})"
            ),
            "vs best": (
                "—"
                if pd.isna(r["diff"]) or r["diff"] == 0
                else (
                    f"{r['diff']:+.2f}"
                    if pd.isna(r["diff_low"])
                    else f"{r['diff']:+.2f} [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
                )
            ),
            "best region": "yes" if r["in_best_region"] else "no",
            "clipped": "—" if pd.isna(r["clip_frac"]) else f"{100 * r['clip_frac']:.2f}%",
        }
        for _, r in c.iterrows()
    }
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "trial"
    return df


def dashboard_line(data: SweepData) -> str:
    from harness.sweep.optuna_glue import dashboard_command

    store = data.meta["storage"]
    if "://" not in store and (data.folder / Path(store).name).exists():  # a journal file: the copy beside the trials
        store = str(data.folder / Path(store).name)                       # (the folder may have moved, e.g. published)
    return dashboard_command(store)


def build_sweep_report(folder: Path, out: Path) -> tuple[list[Path], list[str]]:
    """Write the sweep files into `out`; returns (files, summary lines)."""
    data = load_sweep_data(folder)
    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "heatmap": plot_heatmap(data, out),
        "params": plot_params(data, out),
        "importance": plot_importance(data, out),
    }
    table = trials_table(data)
    table.to_csv(out / "sweep_trials.csv", index=False, float_format="%.4f")
    best = best_table(data)
    counts = data.trials["state"].value_counts().to_dict()
    region = data.trials[data.trials["in_best_region"].astype(bool)]
    b = data.best
    lines = [f"{data.folder.name}: {data.meta['sampler']} sampler, {len(data.trials)} trials "
             f"({', '.join(f'{v} {k.lower()}' for k, v in counts.items())}); objective {data.objective}, "
             f"{data.meta['objective']['direction']}, mean over seeds {data.meta['seeds']}"]
    if b is not None:
        lines.append(
            f"best: trial {int(b['number'])} ("
            + ", ".join(f"{p} {_fmt(b[p])}" for p in data.params)
            + f"): {b['mean']:.2f} [{b['low']:.2f}, {b['high']:.2f}] (n={int(b['n'])} seeds, {int(CONFIDENCE * 100)}% t-interval)"
        )
        lines.append(f"best region (not resolved below the best after Holm's correction over the "
                     f"{len(data.complete) - 1} comparisons with it, 5% family-wise): "
                     f"{len(region)} of {len(data.complete)} complete trials")
        if data.defaults:
            lines.append(
                "base setting: "
                + ", ".join(f"{k} {_fmt(v)}" for k, v in data.defaults.items())
                + "; "
                + _base_in_region(data)
            )
    if data.importances:
        lines.append("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in data.importances.items()))
    lines.append(f"open the study: {dashboard_line(data)}   (pip install optuna-dashboard)")
    (out / "sweep_best.md").write_text(f"### Best trials — {data.folder.name}\n\n" + "\n\n".join(lines) + "\n\n"
                                       + (to_markdown(best, "trial") if len(best) else "no complete trial\n"))
    page = _html(data, out, figs, best, table, lines)
    files = [out / "sweep_trials.csv", out / "sweep_best.md", page]
    files += [p for f in figs.values() if f for p in f.values()]
    return files, lines + data.notes


def _grid_values(data: SweepData, p: str) -> list | None:
    """The grid a grid-sampler study visits along p (from sweep.json), else None."""
    if data.meta.get("sampler") != "grid":
        return None
    from harness.sweep.config import Param

    return Param(**data.meta["params"][p]).grid_values()


def _base_in_region(data: SweepData) -> str:
    """Whether the base setting lies in the best region: the grid cells at or around it (every cell of the
    bracketing grid values), or for other samplers the complete trial nearest to it."""
    c = data.complete
    params = [p for p in data.params if p in data.defaults and _numeric(data, p)]
    if len(params) != len(data.params) or c.empty:
        return "not comparable (a swept parameter has no numeric base value)"
    grids = {p: _grid_values(data, p) for p in params}
    if all(grids.values()):
        axes = []
        for p in params:
            v = float(data.defaults[p])
            lo, hi = [x for x in grids[p] if x <= v], [x for x in grids[p] if x >= v]
            axes.append(sorted({lo[-1] if lo else hi[0], hi[0] if hi else lo[-1]}))
        import itertools

        cells, states = [], []
        for combo in itertools.product(*axes):
            hit = c
            for p, v in zip(params, combo):
                hit = hit[np.isclose(hit[p].astype(float), v)]
            state = "not run" if hit.empty else ("in" if bool(hit["in_best_region"].iloc[0]) else "out")
            states.append(state)
            cells.append("(" + ", ".join(f"{p} {_fmt(v)}" for p, v in zip(params, combo)) + f": {state})")
        run = [s for s in states if s != "not run"]
        if not run:
            return "unknown: no grid cell at or around it has finished (" + ", ".join(cells) + ")"
        verdict = ("inside the best region" if all(s == "in" for s in run) else
                   "outside the best region" if not any(s == "in" for s in run) else "on the edge of the best region")
        return f"{verdict} (grid cells at or around it: {', '.join(cells)})"
    logs = {p: data.log_scale.get(p, False) for p in params}
    dist = sum(((np.log(c[p].astype(float)) - np.log(float(data.defaults[p]))) if logs[p] else
                (c[p].astype(float) - float(data.defaults[p])) / max(1e-12, float(c[p].astype(float).std() or 1))) ** 2
               for p in params)
    r = c.loc[dist.idxmin()]
    where = "inside" if r["in_best_region"] else "outside"
    return (
        f"nearest complete trial {int(r['number'])} ("
        + ", ".join(f"{p} {_fmt(r[p])}" for p in params)
        + f") is {where} the best region"
    )


def _html(data: SweepData, out: Path, figs: dict, best: pd.DataFrame, table: pd.DataFrame, lines: list[str]) -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html_mod._e(data.folder.name)} — sweep</title>"
             f"<style>{html_mod.CSS}</style></head><body><h1>Sweep: {html_mod._e(data.folder.name)}</h1>",
             "<ul>" + "".join(f"<li>{html_mod._e(x)}</li>" for x in lines) + "</ul>"]
    for key, caption in (("heatmap", "Objective over the two most important parameters"),
                         ("params", "Objective against each parameter (seed CIs)"),
                         ("importance", "Parameter importances (Optuna)")):
        if figs.get(key):
            parts.append(f"<h2>{caption}</h2>" + html_mod._img(figs[key]["png"], caption))
    parts.append("<h2>Best trials</h2>" + (html_mod.html_table(best) if len(best) else "<p>no complete trial</p>"))
    shown = table.drop(columns=["run_ids"]).assign(
        **{
            k: table[k].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
            for k in ("mean", "low", "high", "diff", "diff_low", "diff_high", "p_holm")
        }
    )
    parts.append("<h2>All trials</h2>" + html_mod.html_table(shown, index=False))
    if data.notes:
        parts.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li class='warn'>{html_mod._e(n)}</li>" for n in data.notes)
            + "</ul>"
        )
    parts.append("</body></html>")
    path = out / "sweep.html"
    path.write_text("\n".join(parts))
    return path


def sweep_folders(runs: pd.DataFrame) -> list[Path]:
    """Sweep folders among the parents of an experiment's run folders."""
    return sorted({Path(p).parent for p in runs["path"] if is_sweep_folder(Path(p).parent)})


def report_sweeps(exp, dest: Path, console) -> list[Path]:
    """For `harness report`: the sweep files of every sweep folder among an experiment's runs."""
    files = []
    for folder in sweep_folders(exp.runs):
        new, lines = build_sweep_report(folder, dest)
        files += new
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)
        console.print(
            f"[green]wrote[/] {dest}/sweep.html (heatmap, parameter effects, importances, best trials)",
            highlight=False,
        )
    return files
