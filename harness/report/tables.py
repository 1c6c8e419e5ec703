"""AUC tables, reference comparisons and seed aggregation (statistics from harness.core.stats only,
row by row through harness.report.compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness.core.errors import UserError
from harness.core.stats import CONFIDENCE, mean_interval
from harness.report.compare import (
    ALPHA,
    INTERVAL_WORDS,
    diff_of,
    signed,
    COMPARISON_COLUMNS,
    best_flags,
    comparison_row,
    mean_of,
)

START = "before RL"  # the row of the policy before RL (its first evaluation); not a valid variant name, so no clash


def aggregate(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Mean over seeds with a t-interval per group: columns [*by, mean, low, high, n] (one seed: NaN bounds)."""
    rows = []
    for key, grp in df.groupby(list(by), sort=True, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        vals = grp[value].dropna().to_numpy(dtype=float)
        if vals.size == 0:
            continue
        ci = mean_interval(vals, CONFIDENCE)
        rows.append((*key, ci.estimate, ci.low, ci.high, ci.n))
    return pd.DataFrame(rows, columns=[*by, "mean", "low", "high", "n"])


def order_variants(
    df: pd.DataFrame, variants: Sequence[str], benchmarks: Sequence[str] | None = None
) -> pd.DataFrame:
    """Rows in the given variant order, then benchmark order (as the experiment file lists them; else by name)."""
    rank = {v: i for i, v in enumerate(variants)}
    df = df.assign(_r=df["variant"].map(rank))
    keys = ["_r"]
    if "benchmark" in df and benchmarks is not None:
        brank = {b: i for i, b in enumerate(benchmarks)}
        df = df.assign(_b=df["benchmark"].map(lambda b: brank.get(b, len(brank))))
        keys.append("_b")
    keys += [c for c in ("benchmark", "step", "k") if c in df]
    return df.sort_values(keys, kind="stable").drop(columns=[c for c in ("_r", "_b") if c in df])


def ordered_benchmarks(present, benchmarks: Sequence[str] | None = None) -> list[str]:
    """The distinct benchmarks in `present`, in the given order (the experiment file's; others after, by name)."""
    present = set(present)
    order = [b for b in (benchmarks or []) if b in present]
    return order + sorted(present - set(order))


def before_rl(
    frame: pd.DataFrame, selected: pd.DataFrame, by: Sequence[str] = ("benchmark",)
) -> pd.DataFrame:
    """Rows of the policy before RL: each run's first evaluation, when it precedes the run's selected step.

    frame: per-run rows with run_id, seed, step and `by` (AUCs or pass@k curves, every evaluated step);
    selected: the rows reported (their step per run). One row per (seed, *by), the mean over runs:
    runs that share a warm start and a seed evaluate the identical policy with identical draws (the
    embedded backend), so the mean is that value and n is the number of seeds, as for the variants.
    variant = START.
    """
    if frame.empty or selected.empty:
        return frame.iloc[:0]
    first = frame[frame["step"] == frame.groupby("run_id")["step"].transform("min")]
    chosen = selected.groupby("run_id")["step"].first()
    first = first[first["step"] < first["run_id"].map(chosen)]
    if first.empty:
        return frame.iloc[:0]
    per_seed = (
        first.drop(columns=["run_id", "variant"])
        .groupby(["seed", *by], as_index=False)
        .mean(numeric_only=True)
    )
    return per_seed.assign(variant=START, run_id=[f"{START}-s{s}" for s in per_seed["seed"]])


def start_aucs(aucs_all: pd.DataFrame, selected: pd.DataFrame) -> pd.DataFrame:
    """AUCs of the policy before RL (see before_rl); columns as aucs_all."""
    return before_rl(aucs_all, selected, ("benchmark",))


def passk_table(
    curves: pd.DataFrame, variants: Sequence[str], benchmarks: Sequence[str] | None = None
) -> pd.DataFrame:
    """pass@1 and pass@k_max per variant x benchmark: mean over seeds, CI, sd, min, max, n (long form).

    curves: the selected step's curves (plus `before_rl` rows); k_max = the largest k of each benchmark.
    """
    kmax = curves.groupby("benchmark")["k"].transform("max")
    sel = curves[(curves["k"] == 1) | (curves["k"] == kmax)]
    agg = aggregate(sel, ["variant", "benchmark", "k"], "pass_at_k").rename(
        columns={"low": "ci_low", "high": "ci_high", "n": "n_seeds"})
    spread = (
        sel.groupby(["variant", "benchmark", "k"])["pass_at_k"]
        .agg(sd="std", min="min", max="max")
        .reset_index()
    )
    agg = agg.merge(spread, on=["variant", "benchmark", "k"])
    agg.loc[agg["n_seeds"] < 2, ["ci_low", "ci_high"]] = float("nan")
    return order_variants(agg, variants, benchmarks).reset_index(drop=True)


def passk_wide(table: pd.DataFrame, benchmarks: Sequence[str] | None = None) -> pd.DataFrame:
    """variant x "benchmark pass@k" cells: mean ± sd over seeds [min, max] (n)."""
    def cell(r) -> str:
        if r.n_seeds < 2:
            return f"{r.mean:.3f} (n=1)"
        return f"{r.mean:.3f} ± {r.sd:.3f} [{r.min:.3f}, {r.max:.3f}] (n={r.n_seeds})"

    cells = table.assign(col=[f"{b} pass@{k}" for b, k in zip(table["benchmark"], table["k"])],
                         cell=[cell(r) for r in table.itertuples()])
    cols = [f"{b} pass@{k}" for b in ordered_benchmarks(table["benchmark"], benchmarks)
            for k in sorted(table.loc[table["benchmark"] == b, "k"].unique())]
    return cells.pivot(index="variant", columns="col", values="cell").reindex(
        index=list(dict.fromkeys(table["variant"])), columns=cols).fillna("–")


# ------------------------------------------------------------------------------------------- AUC
def auc_table(aucs: pd.DataFrame, variants: Sequence[str], benchmarks: Sequence[str] | None = None,
              problems: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table: variant, benchmark, auc_mean, ci_low, ci_high, n_seeds, k_max, steps, best.

    One seed has no interval: ci_low and ci_high are NaN there (never a zero-width "CI"). `best`: the
    highest mean per benchmark and every row not resolved below it (Holm over the benchmark's rows,
    compare.best_flags). The row `START` (if in aucs) competes too. problems: per-problem AUCs
    (core.metrics.problem_aucs, with variant and seed) for the two-level interval; None: t over seeds.
    """
    rows = []
    for (variant, bench), grp in aucs.groupby(["variant", "benchmark"], sort=True, observed=True):
        iv = mean_of(grp["auc"].to_numpy(dtype=float), grp["seed"].tolist(), problems, variant, bench)
        rows.append((variant, bench, iv.estimate, iv.low, iv.high, iv.n))
    agg = pd.DataFrame(rows, columns=["variant", "benchmark", "auc_mean", "ci_low", "ci_high", "n_seeds"])
    meta = aucs.groupby(["variant", "benchmark"]).agg(
        k_max=("k_max", "min"), steps=("step", lambda s: "/".join(map(str, sorted(set(s))))))
    agg = agg.merge(meta.reset_index(), on=["variant", "benchmark"])
    agg.loc[agg["n_seeds"] < 2, ["ci_low", "ci_high"]] = float("nan")
    agg["best"] = best_flags(aucs, agg, problems)
    return order_variants(agg, variants, benchmarks).reset_index(drop=True)


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


def comparison_table(
    aucs: pd.DataFrame,
    reference: str,
    variants: Sequence[str],
    benchmarks: Sequence[str] | None = None,
    problems: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per (variant != reference, benchmark): AUC difference with its interval (paired by seed where both
    sides share seeds, else Welch; two-level with `problems`), resolved, P(better) with its interval and
    the permutation p-value (compare.comparison_row). One seed on a side: those columns are NaN.
    """
    cells = []
    for (variant, bench), grp in aucs.groupby(["variant", "benchmark"], sort=True):
        if variant == reference or variant not in variants:
            continue
        ref = aucs[(aucs["variant"] == reference) & (aucs["benchmark"] == bench)]
        if not ref.empty:
            cells.append((variant, bench, grp["auc"].to_numpy(dtype=float), grp["seed"].tolist(),
                          ref["auc"].to_numpy(dtype=float), ref["seed"].tolist()))
    rows = []
    for variant, bench, a, sa, b, sb in cells:
        stat = comparison_row(a, sa, b, sb, problems, variant, reference, bench)
        rows.append({"variant": variant, "benchmark": bench, "reference": reference, **stat,
                     "n_seeds": len(a), "n_ref_seeds": len(b)})
    family = sum(not np.isnan(r["ci_low"]) for r in rows)
    for r, (variant, bench, a, sa, b, sb) in zip(rows, cells):  # Bonferroni: every cell at ALPHA / family
        fw = diff_of(a, sa, b, sb, problems, variant, reference, bench, confidence=1 - ALPHA / max(family, 1))
        r.update(fw_low=fw.low, fw_high=fw.high, resolved_fw=fw.resolved, family=family)
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    return order_variants(frame, variants, benchmarks).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- rendering
def _cell(mean: float, lo: float, hi: float, n: int, digits: int = 2) -> str:
    if n < 2 or pd.isna(lo):
        return f"{mean:.{digits}f} (n={n}: one seed, no CI)"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] (n={n}{', very wide' if n == 2 else ''})"


def resolved_word(r) -> str:
    """"resolved" when the difference's interval excludes 0, else "not resolved"."""
    return "resolved" if bool(r.resolved) else "not resolved"


def diff_cell(r) -> str:
    """One comparison cell: difference [CI] resolved or not, P(better) [CI], permutation p (n vs n_ref,
    design); one seed on a side has none of them."""
    if pd.isna(r.ci_low):
        return f"{signed(r.diff)} (n={r.n_seeds} vs {r.n_ref_seeds}: one seed, no CI or P(better))"
    design = (
        "paired"
        if str(r.interval).startswith("paired") or r.interval == "two-level bootstrap"
        else "unpaired"
    )
    wide = ", very wide" if min(r.n_seeds, r.n_ref_seeds) == 2 else ""
    fw = "" if r.family < 2 else (f" (family-wise [{signed(r.fw_low)}, {signed(r.fw_high)}] "
                                  f"{'resolved' if bool(r.resolved_fw) else 'not resolved'})")
    return (f"{signed(r.diff)} [{signed(r.ci_low)}, {signed(r.ci_high)}] {resolved_word(r)}{fw}, "
            f"P(better)={r.p_improve:.2f} [{r.p_improve_low:.2f}, {r.p_improve_high:.2f}], p={r.p_perm:.2g} "
            f"(n={r.n_seeds} vs {r.n_ref_seeds}, {design}{wide})")


def grid_label(table: pd.DataFrame) -> str:
    ks = sorted(set(int(k) for k in table["k_max"])) if len(table) else []
    if len(ks) == 1:
        return f"AUC over k in [1, {ks[0]}], log2-uniform (k = 1, 2, 4, ..., {ks[0]})"
    per = ", ".join(f"{b}: [1, {int(k)}]" for b, k in table.groupby("benchmark")["k_max"].min().items())
    return f"AUC over k log2-uniform from 1 to k_max per benchmark ({per})"


def auc_wide(
    table: pd.DataFrame, bold: tuple[str, str] = ("**", "**"), benchmarks: Sequence[str] | None = None
) -> pd.DataFrame:
    """variant x benchmark of formatted cells, best per column wrapped in `bold`; columns in benchmark order."""
    cells = table.assign(cell=[
        (bold[0] + _cell(r.auc_mean, r.ci_low, r.ci_high, r.n_seeds) + bold[1]) if r.best
        else _cell(r.auc_mean, r.ci_low, r.ci_high, r.n_seeds) for r in table.itertuples()])
    wide = cells.pivot(index="variant", columns="benchmark", values="cell").fillna("–")
    return wide.reindex(
        index=list(dict.fromkeys(table["variant"])),
        columns=ordered_benchmarks(table["benchmark"], benchmarks),
    )


def to_markdown(wide: pd.DataFrame, index_name: str = "variant") -> str:
    head = [index_name, *map(str, wide.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for idx, row in wide.iterrows():
        lines.append("| " + " | ".join([str(idx), *map(str, row.tolist())]) + " |")
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("–", "--"),
    ):
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


def comparison_wide(comp: pd.DataFrame, benchmarks: Sequence[str] | None = None) -> pd.DataFrame:
    cells = comp.assign(cell=[diff_cell(r) for r in comp.itertuples()])
    wide = cells.pivot(index="variant", columns="benchmark", values="cell").fillna("–")
    return wide.reindex(
        index=list(dict.fromkeys(comp["variant"])), columns=ordered_benchmarks(comp["benchmark"], benchmarks)
    )


def write_tables(out: Path, table: pd.DataFrame, comp: pd.DataFrame | None, reference: str | None,
                 experiment: str, step_label: str, vs_start: pd.DataFrame | None = None,
                 benchmarks: Sequence[str] | None = None, interval: str = "seeds", code: str = "") -> dict[str, Path]:
    """Write auc_table.{md,csv,tex}, comparison.{md,csv,tex} and vs_before_rl.{md,csv,tex}; returns name -> path.

    interval: which interval the tables show (compare.INTERVALS); every caption names it.
    code: the code and library versions behind the numbers (report.codes.code_caption), in every caption.
    """
    out.mkdir(parents=True, exist_ok=True)
    grid = grid_label(table)
    ci = INTERVAL_WORDS[interval]
    paths = {
        "auc_csv": out / "auc_table.csv",
        "auc_md": out / "auc_table.md",
        "auc_tex": out / "auc_table.tex",
    }
    table.to_csv(paths["auc_csv"], index=False, float_format="%.4f")
    start_note = (
        f" Row '{START}': the policy's first evaluation (before any RL step), once per seed."
        if (table["variant"] == START).any()
        else ""
    )
    caption = (
        f"Pass@k AUC (0-100) on {experiment}, {step_label}: mean over seeds "
        f"[{ci}] (n = seeds; one seed has no CI; two seeds: very wide); bold = best per benchmark: the "
        f"highest mean and every row not resolved below it (Holm-corrected over the benchmark's rows)."
        f"{start_note} {grid}. {code}"
    ).rstrip()
    wide = auc_wide(table, benchmarks=benchmarks)
    paths["auc_md"].write_text(f"### Pass@k AUC — {experiment}\n\n{caption}\n\n" + to_markdown(wide))
    paths["auc_tex"].write_text(to_latex(wide, caption, f"tab:auc-{experiment}"))
    sections = [("cmp", "comparison", comp, reference)]
    if vs_start is not None and len(vs_start):
        sections.append(("start", "vs_before_rl", vs_start, START))
    for key, stem, frame, ref in sections:
        if frame is None or ref is None:
            continue
        paths.update(
            {
                f"{key}_csv": out / f"{stem}.csv",
                f"{key}_md": out / f"{stem}.md",
                f"{key}_tex": out / f"{stem}.tex",
            }
        )
        frame.to_csv(paths[f"{key}_csv"], index=False, float_format="%.4f")
        ccap = (
            f"Pass@k AUC difference vs {ref} on {experiment}, {step_label}: mean difference [{ci}]; "
            f"resolved = the interval excludes 0, each cell on its own; family-wise = the same interval at "
            f"{int(ALPHA * 100)}% / {int(frame['family'].max()) if len(frame) else 0} (Bonferroni over the "
            f"table's cells with an interval), a claim about the table as a whole; P(better) = probability that a seed of the variant beats a seed of {ref} "
            f"(Mann-Whitney U / n1 n2) [95% Newcombe interval]; p = exact permutation p-value (sign flips "
            f"when paired, else relabelling); one seed on a side has none of them. {grid}. {code}"
        ).rstrip()
        w = comparison_wide(frame, benchmarks)
        paths[f"{key}_md"].write_text(f"### AUC vs {ref} — {experiment}\n\n{ccap}\n\n" + to_markdown(w))
        paths[f"{key}_tex"].write_text(to_latex(w, ccap, f"tab:{key}-{experiment}"))
    return paths


def write_passk(out: Path, table: pd.DataFrame, experiment: str, step_label: str,
                benchmarks: Sequence[str] | None = None, code: str = "") -> dict[str, Path]:
    """passk_table.{md,csv}: pass@1 and pass@k_max before RL and after, per variant and benchmark."""
    paths = {"passk_csv": out / "passk_table.csv", "passk_md": out / "passk_table.md"}
    table.to_csv(paths["passk_csv"], index=False, float_format="%.4f")
    caption = (
        f"pass@1 and pass@k at the largest k on {experiment}, {step_label}, and for the policy '{START}': "
        f"mean ± sd over seeds [min, max] (n = seeds). {code}"
    ).rstrip()
    paths["passk_md"].write_text(f"### pass@k before and after RL — {experiment}\n\n{caption}\n\n"
                                 + to_markdown(passk_wide(table, benchmarks)))
    return paths


def bin_steps(df: pd.DataFrame, max_points: int = 100) -> pd.DataFrame:
    """Coarsen the step axis to at most max_points bins (mean within a run and bin) for long runs."""
    steps = np.sort(df["step"].dropna().unique())
    if steps.size <= max_points:
        return df
    edges = np.linspace(steps[0], steps[-1], max_points + 1)
    idx = np.clip(np.searchsorted(edges, df["step"].to_numpy(), side="right") - 1, 0, max_points - 1)
    centers = ((edges[:-1] + edges[1:]) / 2).round().astype(int)
    return (
        df.assign(step=centers[idx])
        .groupby(["run_id", "variant", "seed", "step"], as_index=False)
        .mean(numeric_only=True)
    )
