"""AUC tables, reference comparisons and seed aggregation (statistics from harness.metrics only)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.metrics import bootstrap_ci, bootstrap_diff_ci

CONFIDENCE = 0.95


def aggregate(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean over seeds with a bootstrap CI per group: columns [*by, mean, low, high, n]."""
    rows = []
    for key, grp in df.groupby(list(by), sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        vals = grp[value].dropna().to_numpy(dtype=float)
        if vals.size == 0:
            continue
        ci = bootstrap_ci(vals, confidence=CONFIDENCE)
        rows.append((*key, ci.mean, ci.low, ci.high, ci.n))
    return pd.DataFrame(rows, columns=[*by, "mean", "low", "high", "n"])


def order_variants(df: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    rank = {v: i for i, v in enumerate(variants)}
    return df.assign(_r=df["variant"].map(rank)).sort_values(["_r"] + [c for c in ("benchmark", "step", "k") if c in df]).drop(columns="_r")


# ------------------------------------------------------------------------------------------- AUC
def auc_table(aucs: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Long table: variant, benchmark, auc_mean, ci_low, ci_high, n_seeds, k_max, steps, best."""
    agg = aggregate(aucs, ["variant", "benchmark"], "auc").rename(
        columns={"mean": "auc_mean", "low": "ci_low", "high": "ci_high", "n": "n_seeds"})
    meta = aucs.groupby(["variant", "benchmark"]).agg(
        k_max=("k_max", "min"), steps=("step", lambda s: "/".join(map(str, sorted(set(s))))))
    agg = agg.merge(meta.reset_index(), on=["variant", "benchmark"])
    agg["best"] = agg["auc_mean"] == agg.groupby("benchmark")["auc_mean"].transform("max")
    return order_variants(agg, variants).reset_index(drop=True)


def default_reference(runs: pd.DataFrame, variants: Sequence[str]) -> str | None:
    """The variant named "grpo", else the first variant whose preset is grpo, else None."""
    if "grpo" in variants:
        return "grpo"
    rep = runs[runs["reported"]]
    for v in variants:
        if (rep.loc[rep["variant"] == v, "preset"].str.lower() == "grpo").any():
            return v
    return None


def resolve_reference(requested: str | None, runs: pd.DataFrame, variants: Sequence[str]) -> str | None:
    if requested is None:
        return default_reference(runs, variants)
    if requested not in variants:
        raise UserError(f"--reference {requested!r}: no finished run of that variant "
                        f"(variants with finished runs: {', '.join(variants) or 'none'})")
    return requested


def comparison_table(aucs: pd.DataFrame, reference: str, variants: Sequence[str]) -> pd.DataFrame:
    """Per (variant != reference, benchmark): AUC difference with CI and probability of improvement."""
    rows = []
    for (variant, bench), grp in aucs.groupby(["variant", "benchmark"], sort=True):
        if variant == reference:
            continue
        ref = aucs[(aucs["variant"] == reference) & (aucs["benchmark"] == bench)]["auc"].to_numpy()
        if ref.size == 0:
            continue
        ci, p_imp = bootstrap_diff_ci(grp["auc"].to_numpy(), ref, confidence=CONFIDENCE)
        rows.append((variant, bench, reference, ci.mean, ci.low, ci.high, p_imp, len(grp), ref.size))
    cols = ["variant", "benchmark", "reference", "diff", "ci_low", "ci_high", "p_improve", "n_seeds", "n_ref_seeds"]
    return order_variants(pd.DataFrame(rows, columns=cols), variants).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- rendering
def _cell(mean: float, lo: float, hi: float, n: int, digits: int = 2) -> str:
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] (n={n})"


def grid_label(table: pd.DataFrame) -> str:
    ks = sorted(set(int(k) for k in table["k_max"])) if len(table) else []
    if len(ks) == 1:
        return f"AUC over k in [1, {ks[0]}], log2-uniform (k = 1, 2, 4, ..., {ks[0]})"
    per = ", ".join(f"{b}: [1, {int(k)}]" for b, k in table.groupby("benchmark")["k_max"].min().items())
    return f"AUC over k log2-uniform from 1 to k_max per benchmark ({per})"


def auc_wide(table: pd.DataFrame, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """variant x benchmark of formatted cells, best per column wrapped in `bold`."""
    cells = table.assign(cell=[
        (bold[0] + _cell(r.auc_mean, r.ci_low, r.ci_high, r.n_seeds) + bold[1]) if r.best
        else _cell(r.auc_mean, r.ci_low, r.ci_high, r.n_seeds) for r in table.itertuples()])
    wide = cells.pivot(index="variant", columns="benchmark", values="cell").fillna("–")
    return wide.reindex(list(dict.fromkeys(table["variant"])))


def to_markdown(wide: pd.DataFrame, index_name: str = "variant") -> str:
    head = [index_name, *map(str, wide.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for idx, row in wide.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("–", "--")):
        s = s.replace(a, b)
    return s


def to_latex(wide: pd.DataFrame, caption: str, label: str, index_name: str = "Variant") -> str:
    cols = "l" + "c" * len(wide.columns)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(caption)}}}", rf"\label{{{label}}}",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
           " & ".join([index_name, *(_tex(str(c)) for c in wide.columns)]) + r" \\", r"\midrule"]
    for idx, row in wide.iterrows():
        cells = []
        for v in row.tolist():
            v = str(v)
            cells.append(r"\textbf{" + _tex(v[2:-2]) + "}" if v.startswith("**") else _tex(v))
        out.append(" & ".join([_tex(str(idx)), *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def comparison_wide(comp: pd.DataFrame) -> pd.DataFrame:
    cells = comp.assign(cell=[
        f"{r.diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}], P(better)={r.p_improve:.2f} (n={r.n_seeds} vs {r.n_ref_seeds})"
        for r in comp.itertuples()])
    wide = cells.pivot(index="variant", columns="benchmark", values="cell").fillna("–")
    return wide.reindex(list(dict.fromkeys(comp["variant"])))


def write_tables(out: Path, table: pd.DataFrame, comp: pd.DataFrame | None, reference: str | None,
                 experiment: str, step_label: str) -> dict[str, Path]:
    """Write auc_table.{md,csv,tex} and comparison.{md,csv,tex}; returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    grid = grid_label(table)
    paths = {"auc_csv": out / "auc_table.csv", "auc_md": out / "auc_table.md", "auc_tex": out / "auc_table.tex"}
    table.to_csv(paths["auc_csv"], index=False, float_format="%.4f")
    caption = (f"Pass@k AUC (0-100) on {experiment}, {step_label}: mean over seeds "
               f"[{int(CONFIDENCE * 100)}% bootstrap CI] (n = seeds); best per benchmark in bold. {grid}.")
    paths["auc_md"].write_text(f"### Pass@k AUC — {experiment}\n\n{caption}\n\n" + to_markdown(auc_wide(table)))
    paths["auc_tex"].write_text(to_latex(auc_wide(table), caption, f"tab:auc-{experiment}"))
    if comp is not None and reference is not None:
        paths.update({"cmp_csv": out / "comparison.csv", "cmp_md": out / "comparison.md", "cmp_tex": out / "comparison.tex"})
        comp.to_csv(paths["cmp_csv"], index=False, float_format="%.4f")
        ccap = (f"Pass@k AUC difference vs {reference} on {experiment}, {step_label}: mean difference "
                f"[{int(CONFIDENCE * 100)}% bootstrap CI over seeds], P(better) = probability that a seed of the "
                f"variant beats a seed of {reference} (Mann-Whitney U / n1 n2). {grid}.")
        paths["cmp_md"].write_text(f"### AUC vs {reference} — {experiment}\n\n{ccap}\n\n" + to_markdown(comparison_wide(comp)))
        paths["cmp_tex"].write_text(to_latex(comparison_wide(comp), ccap, f"tab:cmp-{experiment}"))
    return paths


def bin_steps(df: pd.DataFrame, max_points: int = 100) -> pd.DataFrame:
    """Coarsen the step axis to at most max_points bins (mean within a run and bin) for long runs."""
    steps = np.sort(df["step"].dropna().unique())
    if steps.size <= max_points:
        return df
    edges = np.linspace(steps[0], steps[-1], max_points + 1)
    idx = np.clip(np.searchsorted(edges, df["step"].to_numpy(), side="right") - 1, 0, max_points - 1)
    centers = ((edges[:-1] + edges[1:]) / 2).round().astype(int)
    return df.assign(step=centers[idx]).groupby(["run_id", "variant", "seed", "step"], as_index=False).mean(numeric_only=True)
