"""index.html: one self-contained page (PNG figures embedded as base64) with every table and figure."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

import pandas as pd
import yaml

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:0.88em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr:nth-child(even) td{background:#fafafa}
td.best{font-weight:bold;background:#e6f4ea!important}
td.resolved-up{background:#dafbe1!important} td.resolved-down{background:#ffebe9!important}
td.unresolved{color:#666} p.summary{background:#f6f8fa;padding:8px 12px;border-left:4px solid #999;max-width:1000px}
.state-done{color:#1a7f37}.state-running,.state-pending{color:#9a6700}.state-failed,.state-unreadable{color:#cf222e;font-weight:bold}
.caption{color:#555;font-size:0.9em;max-width:1000px} .warn{color:#9a6700}
img{max-width:100%;border:1px solid #eee;margin:4px 0}
.figs{display:flex;flex-wrap:wrap;gap:12px} .figs figure{margin:0}
pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:0.85em}
figcaption{font-size:0.85em;color:#555}
"""


def _e(x) -> str:
    return html.escape("" if x is None or (isinstance(x, float) and pd.isna(x)) else str(x))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def html_table(df: pd.DataFrame, classes: pd.DataFrame | None = None, index: bool = True) -> str:
    """A plain HTML table; `classes` (same shape) gives a CSS class per cell."""
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    out = ["<table><thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
    for i, (idx, row) in enumerate(df.iterrows()):
        cells = [f"<th>{_e(idx)}</th>"] if index else []
        for j, v in enumerate(row.tolist()):
            cls = classes.iat[i, j] if classes is not None else ""
            cells.append(f'<td class="{_e(cls)}">{_e(v)}</td>' if cls else f"<td>{_e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</tbody></table>"


def runs_table(runs: pd.DataFrame) -> str:
    df = runs[["run_id", "variant", "seed", "state", "step", "total_steps", "note"]].copy()
    df["step"] = [
        f"{'' if pd.isna(s) else int(s)}/{'' if pd.isna(t) else int(t)}"
        for s, t in zip(df["step"], df["total_steps"])
    ]
    df = df.drop(columns="total_steps").rename(columns={"step": "step/total"})
    classes = pd.DataFrame("", index=df.index, columns=df.columns)
    classes["state"] = [f"state-{s}" for s in df["state"]]
    return html_table(df.reset_index(drop=True), classes.reset_index(drop=True), index=False)


def auc_html(table: pd.DataFrame, benchmarks=None) -> str:
    from harness.report.tables import auc_wide

    wide = auc_wide(table, bold=("", ""), benchmarks=benchmarks)
    best = table.pivot(index="variant", columns="benchmark", values="best").reindex(
        index=wide.index, columns=wide.columns
    )
    classes = best.apply(lambda col: col.map(lambda b: "best" if b is True else ""))
    wide.index.name = "variant"
    return html_table(wide, classes)


def comparison_html(comp: pd.DataFrame, benchmarks=None) -> str:
    """A comparison table: the words say resolved / not resolved, the colour repeats it (green: resolved
    above the reference, red: resolved below, grey text: not resolved)."""
    from harness.report.tables import comparison_wide

    wide = comparison_wide(comp, benchmarks)
    wide.index.name = "variant"
    cls = comp.assign(c=["" if pd.isna(r.ci_low) else ("unresolved" if not r.resolved else
                         "resolved-up" if r.diff > 0 else "resolved-down") for r in comp.itertuples()])
    classes = cls.pivot(index="variant", columns="benchmark", values="c").reindex(
        index=wide.index, columns=wide.columns
    )
    return html_table(wide, classes.fillna(""))


def summary_html(
    comp: pd.DataFrame | None, reference: str | None, vs_start: pd.DataFrame | None, interval: str
) -> str:
    """The page's one-paragraph summary: only resolved differences are named (compare.summary_sentences)."""
    from harness.report.compare import INTERVAL_WORDS, summary_sentences
    from harness.report.tables import START

    sections = []
    if comp is not None and len(comp):  # the pre-RL row against the reference is said once, below
        named = summary_sentences(
            comp[comp["variant"] != START], reference, f"comparisons against {reference}"
        )
        sections.append(f"Against {reference}: " + _sentence(named))
    if vs_start is not None and len(vs_start):
        sections.append(f"From '{START}': " + _sentence(summary_sentences(vs_start, START, "changes")))
    if not sections:
        return ""
    text = " ".join(sections) + f" Intervals: {INTERVAL_WORDS[interval]}."
    return f"<p class='summary'><b>Resolved differences.</b> {_e(text)}</p>"


def _sentence(lines: list[str]) -> str:
    """'a; b (2 of 6 resolved; ...).' from summary_sentences' lines (the last one counts them)."""
    if not lines:
        return "nothing to compare."
    named, tail = lines[:-1], lines[-1]
    return ("; ".join(named) if named else "no difference resolved") + f" ({tail})."


def across_html(across: pd.DataFrame | None, reference: str | None) -> list[str]:
    """rliable's aggregates over benchmarks (IQM, average probability of improvement), when there are >= 2."""
    if across is None or not len(across):
        return []
    df = pd.DataFrame({
        "IQM of AUC": [f"{r.iqm:.2f} [{r.iqm_low:.2f}, {r.iqm_high:.2f}]" for r in across.itertuples()],
        f"P(better than {reference})": ["–" if pd.isna(r.p_improve) else
                                       f"{r.p_improve:.2f} [{r.p_improve_low:.2f}, {r.p_improve_high:.2f}]"
                                       for r in across.itertuples()]}, index=across["variant"])
    df.index.name = "variant"
    return [
        "<h2>Across benchmarks (rliable)</h2>",
        f"<p class='caption'>IQM = mean of the middle 50% of every (seed, benchmark) AUC; P(better) = "
        f"probability that a seed beats a seed of {_e(reference)} on a benchmark, averaged over the "
        f"{int(across['n_benchmarks'].iloc[0])} benchmarks. [95% stratified percentile bootstrap, seeds "
        "resampled within each benchmark, as rliable does; with few seeds it is narrower than its nominal "
        "level, so it is shown for orientation and never called resolved.]</p>",
        html_table(df),
    ]


def _flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; None values are kept (a setting set to null), lists are values."""
    out: dict = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def settings_html(specs: dict[str, dict]) -> str:
    """Settings shared by every reported run (present and equal in all of them), then the rest per
    variant, with "–" where a run does not have the setting (e.g. a knob of a piece it does not use)."""
    if not specs:
        return "<p>No finished runs.</p>"
    flat = [_flatten(s) for s in specs.values()]
    keys = [k for k in dict.fromkeys(k for f in flat for k in f) if k not in ("run_id", "seed")]
    canon = lambda v: json.dumps(v, sort_keys=True, default=str)  # noqa: E731
    same = {
        k: flat[0][k] for k in keys if all(k in f for f in flat) and len({canon(f[k]) for f in flat}) == 1
    }
    differ = [k for k in keys if k not in same]
    shared = yaml.safe_dump(_unflatten(same), sort_keys=False, default_flow_style=False)
    out = [f"<h3>Shared by all {len(specs)} finished runs</h3><pre>{_e(shared)}</pre>"]
    if differ:
        per = pd.DataFrame(
            [{k: (str(f[k]) if k in f else "–") for k in differ} for f in flat]
        ).drop_duplicates()
        if "variant" in per.columns:
            per = per.set_index("variant")
        out.append(
            "<h3>Per variant</h3><p class='caption'>– = the setting does not exist for that variant "
            "(e.g. a knob of a piece it does not use).</p>" + html_table(per, index="variant" in differ)
        )
    return "\n".join(out)


def _unflatten(d: dict) -> dict:
    out: dict = {}
    for key, v in d.items():
        cur = out
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {}) if isinstance(cur.get(p, {}), dict) else cur
        cur[parts[-1]] = v.item() if hasattr(v, "item") else v
    return out


def write_index(out: Path, *, experiment: str, source: str, step_label: str, grid: str, runs: pd.DataFrame,
                table: pd.DataFrame, comp: pd.DataFrame | None, reference: str | None, figures: dict,
                specs: dict[str, dict], notes: list[str], vs_start: pd.DataFrame | None = None,
                benchmarks=None, passk: pd.DataFrame | None = None, interval: str = "seeds",
                across: pd.DataFrame | None = None, code: str = "", at_budget: dict | None = None) -> Path:
    from harness.report.compare import INTERVAL_WORDS
    from harness.report.tables import CONFIDENCE, START, passk_wide

    ci = f"{int(CONFIDENCE * 100)}%"
    iv = INTERVAL_WORDS[interval]
    n_rep, n_all = int(runs["reported"].sum()), len(runs)
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(experiment)} — harness report</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Experiment report: {_e(experiment)}</h1>",
        f"<p class='caption'>Source: <code>{_e(source)}</code> · generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} · "
        f"{n_rep} of {n_all} runs reported (finished) · curves and AUCs at {_e(step_label)} · {_e(grid)}. "
        f"Every number is recomputed from samples.parquet (Pass@k, AUC) and metrics.jsonl (training); "
        f"intervals: {_e(iv)} (docs/statistics.md).</p>",
        f"<p class='caption'><b>Code:</b> {_e(code)}</p>" if code else "",
    ]
    summary = summary_html(comp, reference, vs_start, interval)
    if summary:
        parts.append(summary)
    if notes:
        parts.append("<ul>" + "".join(f"<li class='warn'>{_e(n)}</li>" for n in notes) + "</ul>")
    parts += [
        "<h2>Pass@k AUC</h2>",
        f"<p class='caption'>Mean Pass@k AUC (0-100) over seeds [{_e(iv)}] (n = number of seeds; one seed has "
        f"no CI; two seeds: very wide); highlighted = best per benchmark: the highest mean and every row not "
        f"resolved below it (Holm-corrected). Row '{START}': the policy's first evaluation, before any RL step "
        f"(once per seed). {_e(grid)}. {_e(code)}</p>",
        auc_html(table, benchmarks),
    ]
    if passk is not None and len(passk):
        pw = passk_wide(passk, benchmarks)
        pw.index.name = "variant"
        parts += [
            "<h2>pass@1 and pass@k before and after RL</h2>",
            f"<p class='caption'>mean ± sd over seeds [min, max] (n = seeds); row '{START}': the first evaluation.</p>",
            html_table(pw),
        ]
    if vs_start is not None and len(vs_start):
        parts += [
            "<h2>Change from the policy before RL</h2>",
            f"<p class='caption'>AUC(variant) − AUC({START}): mean difference [{_e(iv)}]; resolved = the "
            f"interval excludes 0; negative = RL lowered the Pass@k AUC.</p>",
            comparison_html(vs_start, benchmarks),
        ]
    if comp is not None and len(comp):
        parts += [
            f"<h2>Comparison against {_e(reference)}</h2>",
            f"<p class='caption'>AUC(variant) − AUC({_e(reference)}): mean difference [{_e(iv)}]; resolved = "
            f"the interval excludes 0 (green: above, red: below, grey: not resolved); P(better) = probability "
            f"that a seed of the variant beats a seed of {_e(reference)} [{ci} Newcombe interval]; p = exact "
            f"permutation p-value. {_e(code)}</p>",
            comparison_html(comp, benchmarks),
        ]
    else:
        parts.append("<h2>Comparison</h2><p>No reference variant (pass --reference VARIANT).</p>")
    parts += across_html(across, reference)
    parts.append(f"<h2>Pass@k curves ({_e(step_label)})</h2><div class='figs'>")
    for bench, paths in figures.get("passk", {}).items():
        parts.append(f"<figure>{_img(paths['png'], 'pass@k ' + bench)}<figcaption>{_e(bench)}: pass@k vs k "
                     f"(log2 axis); band = {ci} t-interval over seeds.</figcaption></figure>")
    parts.append("</div>")
    if figures.get("auc_vs_step"):
        parts += [
            "<h2>Sample efficiency: Pass@k AUC vs step</h2>",
            _img(figures["auc_vs_step"]["png"], "AUC vs step"),
        ]
    for unit in ("rollouts", "tokens"):
        if figures.get(f"auc_vs_{unit}"):
            parts += [f"<h2>Against compute: Pass@k AUC vs {unit} generated</h2>",
                      _img(figures[f"auc_vs_{unit}"]["png"], f"AUC vs {unit}")]
    if at_budget:
        parts += ["<h2>At a common budget</h2>",
                  f"<p class='caption'>Pass@k AUC at {_e(at_budget['caption'])}: mean [{ci} t-interval over seeds]. {_e(code)}</p>",
                  auc_html(at_budget["table"], benchmarks)]
        if at_budget["comparison"] is not None and len(at_budget["comparison"]):
            parts += [f"<p class='caption'>Difference vs {_e(reference)} at that budget; resolved = the interval "
                      f"excludes 0.</p>", comparison_html(at_budget["comparison"], benchmarks)]
    if figures.get("diagnostics"):
        parts += [
            "<h2>Training diagnostics</h2>",
            _img(figures["diagnostics"]["png"], "training diagnostics"),
        ]
    else:
        parts.append("<h2>Training diagnostics</h2><p>No training lines in metrics.jsonl.</p>")
    parts += ["<h2>Runs</h2>", runs_table(runs), "<h2>Settings</h2>", settings_html(specs), "</body></html>"]
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def write_root_index(out_root: Path, built: list) -> Path:
    """OUT/index.html: a link to every report folder under OUT (each holds an index.html).

    Reports rendered by this command get a one-line summary (runs, benchmarks, best row per
    benchmark); folders rendered earlier are listed with their date, so reporting one experiment
    never drops the others from the index.
    """
    out_root = Path(out_root)
    by_dir = {Path(r.out).resolve(): r for r in built}
    rows = []
    for index in sorted(out_root.glob("*/index.html")):
        folder = index.parent
        rep = by_dir.get(folder.resolve())
        if rep is not None and getattr(rep, "table", None) is not None and len(rep.table):
            best = rep.table[rep.table["best"]]
            summary = "; ".join(
                f"{b}: {', '.join(best[best['benchmark'] == b]['variant'])}" for b in rep.benchmarks
            )
            what = (f"{rep.table['variant'].nunique()} rows · best AUC per benchmark (and rows not resolved "
                    f"below it) — {summary}")
        elif rep is not None:
            what = getattr(rep, "summary", "") or "rendered now"
        else:
            what = (
                "rendered earlier ("
                + time.strftime("%Y-%m-%d %H:%M", time.localtime(index.stat().st_mtime))
                + ")"
            )
        rows.append(
            f"<tr><td><a href='{_e(folder.name)}/index.html'>{_e(folder.name)}</a></td><td>{_e(what)}</td></tr>"
        )
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>harness reports</title><style>{CSS}</style>"
        f"</head><body><h1>Reports</h1><p class='caption'>generated {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} · "
        f"{len(rows)} report(s) under <code>{_e(str(out_root))}</code></p>"
        "<table><thead><tr><th>report</th><th>summary</th></tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table></body></html>"
    )
    path = out_root / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
