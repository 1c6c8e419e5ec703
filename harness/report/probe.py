"""Report of a gradient-dynamics probe folder (harness probe): figures, tables, index.html.

Reads results/<name>/{probe.yaml, probe.jsonl, probe_samples.parquet} (harness/probe/probe.py); pass@k
curves come from the stored samples through harness.core.metrics only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from harness.core import results  # noqa: E402
from harness.core.metrics import curves_from_samples  # noqa: E402
from harness.probe.probe import PROBE_FILE, PROBE_METRICS, PROBE_SAMPLES  # noqa: E402
from harness.report import html as html_mod  # noqa: E402
from harness.report.plots import _save, palette, slug  # noqa: E402

TYPES = ("all_wrong", "mixed", "all_correct")
PANELS = [
    ("d_logp_wrong", "Δ log-prob of the sampled wrong answers"),
    ("d_logp_correct", "Δ log-prob of the correct answer"),
    ("d_entropy", "Δ entropy (token mean)"),
    ("grad_norm", "gradient norm before the update"),
]


@dataclass
class ProbeReport:
    name: str
    out: Path
    files: list[Path] = field(default_factory=list)
    summary: str = ""


def find_probe_dirs(root: Path) -> list[Path]:
    """Probe folders (holding probe.yaml) at or under root."""
    root = Path(root)
    if (root / PROBE_FILE).is_file():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{PROBE_FILE}")) if root.is_dir() else []


def load_probe_results(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """-> (settings, update rows with deltas from update 0, cosine rows, pass@k curves). ValueError if unfinished/corrupt."""
    status = results.read_status(folder)
    if status.get("state") != "done":
        raise ValueError(f"probe not finished (status {status.get('state', 'missing')})")
    settings = yaml.safe_load((folder / PROBE_FILE).read_text())
    recs = [json.loads(line) for line in (folder / PROBE_METRICS).read_text().splitlines() if line.strip()]
    upd = pd.DataFrame([r for r in recs if r["kind"] == "update"]).drop(columns="kind")
    cos = pd.DataFrame([r for r in recs if r["kind"] == "cosine"]).drop(columns="kind")
    base = upd[upd["update"] == 0].set_index(["group_type", "algorithm"])
    for key in ("logp_wrong", "logp_correct", "entropy"):
        upd[f"d_{key}"] = (
            upd[key] - upd.set_index(["group_type", "algorithm"]).index.map(base[key]).to_numpy()
        )
    samples = pd.read_parquet(folder / PROBE_SAMPLES)
    curves = curves_from_samples(samples, by=("group_type", "algorithm", "step"))
    return settings, upd, cos, curves


def _dynamics_figure(upd: pd.DataFrame, algos: list[str], out: Path, name: str, k: int) -> dict[str, Path]:
    colors = palette(algos)
    types = [t for t in TYPES if t in set(upd["group_type"])]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(
            len(PANELS), len(types), figsize=(4.3 * len(types), 2.7 * len(PANELS)), squeeze=False
        )
        for j, t in enumerate(types):
            for i, (key, title) in enumerate(PANELS):
                ax = axes[i][j]
                for a in algos:
                    d = upd[(upd["group_type"] == t) & (upd["algorithm"] == a)].sort_values("update")
                    d = d[d["update"] >= 1] if key == "grad_norm" else d
                    ax.plot(d["update"], d[key], marker="o", ms=3, color=colors[a], label=a)
                ax.axhline(0, color="0.6", lw=0.8)
                ax.xaxis.get_major_locator().set_params(integer=True)
                if upd.loc[upd["group_type"] == t, key].isna().all():
                    ax.text(
                        0.5,
                        0.5,
                        "no wrong answers in these groups",
                        ha="center",
                        va="center",
                        transform=ax.transAxes,
                        fontsize=8,
                    )
                ax.set_title(f"{t}: {title}", fontsize=8.5)
                ax.tick_params(labelsize=7)
                if i == len(PANELS) - 1:
                    ax.set_xlabel("update", fontsize=8)
        axes[0][0].legend(fontsize=8)
        what = f"from one identical state, {k} updates on each fixed batch (policy-gradient term only)"
        fig.suptitle(f"{name} — {what}", fontsize=10)
        fig.tight_layout()
        return _save(fig, out, "probe_dynamics")


def _passk_figure(curves: pd.DataFrame, algos: list[str], out: Path, name: str, k: int) -> dict[str, Path]:
    colors = palette(algos)
    types = [t for t in TYPES if t in set(curves["group_type"])]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(types), figsize=(4.6 * len(types), 3.6), squeeze=False)
        for ax, t in zip(axes[0], types):
            d = curves[curves["group_type"] == t]
            s = d[d["algorithm"] == "start"].sort_values("k")
            ax.plot(s["k"], s["pass_at_k"], color="0.35", ls="--", label="before (step 0)")
            for a in algos:
                c = d[d["algorithm"] == a].sort_values("k")
                ax.plot(c["k"], c["pass_at_k"], marker="o", ms=3, color=colors[a], label=f"{a} after {k}")
            ks = sorted(d["k"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(x) for x in ks])
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{t} prompts: pass@k", fontsize=9)
            ax.set_xlabel("k (log2 scale)")
        axes[0][0].set_ylabel("pass@k")
        axes[0][0].legend(fontsize=7)
        what = f"pass@k on the probe prompts before and after {k} updates (eval temperature)"
        fig.suptitle(f"{name} — {what}", fontsize=10)
        fig.tight_layout()
        return _save(fig, out, "probe_passk")


def summary_table(upd: pd.DataFrame, curves: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per (group type, algorithm): grad norm and deltas after 1 and K updates, pass@1 / pass@k_max after K."""
    kmax = int(curves["k"].max())
    rows = []
    for (t, a), d in upd.groupby(["group_type", "algorithm"], sort=False):
        d = d.set_index("update")
        c = curves[(curves["group_type"] == t) & (curves["algorithm"] == a)].set_index("k")["pass_at_k"]
        s = curves[(curves["group_type"] == t) & (curves["algorithm"] == "start")].set_index("k")["pass_at_k"]
        rows.append(
            {
                "group_type": t,
                "algorithm": a,
                "grad_norm_1": d.loc[1, "grad_norm"],
                "update_norm_K": d.loc[k, "update_norm"],
                "d_logp_wrong_1": d.loc[1, "d_logp_wrong"],
                "d_logp_wrong_K": d.loc[k, "d_logp_wrong"],
                "d_logp_correct_1": d.loc[1, "d_logp_correct"],
                "d_logp_correct_K": d.loc[k, "d_logp_correct"],
                "d_entropy_K": d.loc[k, "d_entropy"],
                "pass@1_before": s.loc[1],
                "pass@1_K": c.loc[1],
                f"pass@{kmax}_before": s.loc[kmax],
                f"pass@{kmax}_K": c.loc[kmax],
            }
        )
    return pd.DataFrame(rows)


def build_probe_report(folder: Path, out: Path) -> ProbeReport:
    settings, upd, cos, curves = load_probe_results(folder)
    name, k = folder.name, int(settings["updates"])
    algos = list(settings["algorithms"])
    rep = ProbeReport(name, out)
    figs = {
        "dynamics": _dynamics_figure(upd, algos, out, name, k),
        "passk": _passk_figure(curves, algos, out, name, k),
    }
    table = summary_table(upd, curves, k)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "probe_summary.csv", index=False, float_format="%.6g")
    cos.to_csv(out / "probe_cosines.csv", index=False, float_format="%.4f")
    upd.to_csv(out / "probe_updates.csv", index=False, float_format="%.6g")
    fmt = table.copy()
    for c in fmt.columns[2:]:
        fmt[c] = fmt[c].map(lambda v: "–" if pd.isna(v) else f"{v:.4g}")
    cfmt = cos.copy()
    for c in ("cos_first_grad", "cos_displacement"):
        cfmt[c] = cfmt[c].map(lambda v: "undefined (a zero update)" if pd.isna(v) else f"{v:+.3f}")
    e = html_mod._e
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(name)} — probe</title>"
        f"<style>{html_mod.CSS}</style></head><body><h1>Gradient-dynamics probe: {e(name)}</h1>",
        f"<p class='caption'>Base experiment {e(settings['experiment_name'])}; starting state: "
        f"{e(settings['checkpoint'] or 'its warm start')}; {settings['groups_per_type']} groups of G = {settings['group_size']} "
        f"per type, sampled at temperature {settings['temperature']}; {k} updates ({e(settings['optimizer'])}, lr {settings['lr']}) "
        f"on each fixed batch from the identical state, policy-gradient term only (no entropy bonus, KL or weight decay). "
        f"Log-probs are sequence sums; pass@k from {settings['eval_n']} samples per prompt at temperature "
        f"{settings['eval_temperature']} / top-p {settings['eval_top_p']}.</p>",
        "<h2>Summary</h2>",
        html_mod.html_table(fmt, index=False),
        "<h2>Cosine between the algorithms' updates</h2><p class='caption'>cos_first_grad: between the gradients of the "
        "first update; cos_displacement: between the parameter changes after K updates.</p>",
        html_mod.html_table(cfmt, index=False),
        "<h2>Dynamics</h2>",
        html_mod._img(figs["dynamics"]["png"], "probe dynamics"),
        "<h2>Pass@k on the probe prompts</h2>",
        html_mod._img(figs["passk"]["png"], "probe pass@k"),
        f"<h2>Settings</h2><pre>{e(yaml.safe_dump(settings, sort_keys=False))}</pre></body></html>",
    ]
    (out / "index.html").write_text("\n".join(parts), encoding="utf-8")
    rep.files = [
        out / "index.html",
        out / "probe_summary.csv",
        out / "probe_cosines.csv",
        out / "probe_updates.csv",
        *[p for f in figs.values() for p in f.values()],
    ]
    aw = table[table["group_type"] == "all_wrong"].set_index("algorithm")["d_logp_wrong_1"]
    rep.summary = "probe · Δ logp(wrong) after one update on all-wrong groups: " + ", ".join(
        f"{a} {v:+.3g}" for a, v in aw.items()
    )
    return rep


def render_probes(root: Path, out_root: Path, console) -> list[ProbeReport]:
    """Render every finished probe folder at or under root into out_root/<name>/; report the others."""
    reps = []
    for folder in find_probe_dirs(root):
        try:
            rep = build_probe_report(folder, out_root / slug(folder.name))
        except (ValueError, OSError, KeyError) as e:
            console.print(f"[yellow]probe {folder.name} not reported:[/] {e}", highlight=False)
            continue
        console.print(f"[green]wrote[/] {rep.out}/index.html (probe: {rep.summary})", highlight=False)
        reps.append(rep)
    return reps
