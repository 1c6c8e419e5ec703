"""Report tables: an AUC cell recomputed by hand from samples.parquet, comparisons, renderings."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.core.errors import UserError
from harness.cli.report import run_report
from harness.report.fake import make_fake_results
from harness.report.load import load_results, select_step
from harness.report.tables import auc_table, comparison_table, default_reference, resolve_reference


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    make_fake_results(root / "results", variants=("grpo", "ngrpo"), seeds=3, steps=4, eval_every=2,
                      benchmarks=("math500", "aime25"), n_problems=12, n_samples=8, running=1, failed=1)
    reports = run_report(root / "results", out=root / "reports")
    return root, reports


def _hand_auc(samples: pd.DataFrame) -> float:
    """ALGORITHMS.md written out: pass@k = 1 - C(n-c, k)/C(n, k) per problem, mean over problems,
    AUC = 100 * (p_0 + 2*(p_1 + ... + p_{m-1}) + p_m) / (2m) over k = 1, 2, 4, ..., 2^m <= n."""
    per_problem = [(len(g), int(g["correct"].sum())) for _, g in samples.groupby("problem_id")]
    n_min = min(n for n, _ in per_problem)
    ks = [2**i for i in range(int(math.log2(n_min)) + 1)]
    p = [sum(1.0 - math.comb(n - c, k) / math.comb(n, k) for n, c in per_problem) / len(per_problem) for k in ks]
    m = len(ks) - 1
    return 100.0 * p[0] if m == 0 else 100.0 * (p[0] + 2.0 * sum(p[1:-1]) + p[-1]) / (2 * m)


def test_auc_cell_matches_hand_formula(report):
    root, _ = report
    csv = pd.read_csv(root / "reports" / "fake" / "auc_table.csv")
    for variant, bench in [("ngrpo", "aime25"), ("grpo", "math500")]:
        per_seed = []
        for run in sorted((root / "results" / "fake").glob(f"{variant}-s*")):
            if '"done"' not in (run / "status.json").read_text():
                continue
            s = pd.read_parquet(run / "samples.parquet")
            s = s[(s["benchmark"] == bench) & (s["step"] == s["step"].max())]
            per_seed.append(_hand_auc(s))
        assert len(per_seed) == 3  # running/failed ngrpo seeds are not in the table
        row = csv[(csv["variant"] == variant) & (csv["benchmark"] == bench)].iloc[0]
        assert row["auc_mean"] == pytest.approx(sum(per_seed) / len(per_seed), abs=1e-4)
        assert row["n_seeds"] == 3 and row["k_max"] == 8
        assert row["ci_low"] <= row["auc_mean"] <= row["ci_high"]


def test_table_files_and_markup(report):
    root, reports = report
    out = root / "reports" / "fake"
    md = (out / "auc_table.md").read_text()
    assert "AUC over k in [1, 8], log2-uniform" in md and "**" in md and "(n=3)" in md
    tex = (out / "auc_table.tex").read_text()
    assert r"\textbf{" in tex and r"\begin{tabular}" in tex
    best = reports[0].table.groupby("benchmark")["best"].sum()
    assert (best >= 1).all()
    cmp = pd.read_csv(out / "comparison.csv")
    assert set(cmp["variant"]) == {"before RL", "ngrpo"} and set(cmp["reference"]) == {"grpo"}
    assert cmp["p_improve"].between(0, 1).all() and (cmp["ci_low"] <= cmp["ci_high"]).all()


def test_reference_resolution(report):
    root, _ = report
    (data,), _ = load_results(root / "results")
    assert default_reference(data.runs, data.variants) == "grpo"
    with pytest.raises(UserError, match="--reference 'nope'.*grpo"):
        resolve_reference("nope", data.runs, data.variants)
    runs = data.runs.assign(variant=data.runs["variant"].replace({"grpo": "baseline"}))
    assert default_reference(runs, ["baseline", "ngrpo"]) == "baseline"  # preset grpo


def test_step_selection(report):
    root, _ = report
    (data,), _ = load_results(root / "results")
    curves, aucs, notes = select_step(data, 2)
    assert set(aucs["step"]) == {2} and set(curves["step"]) == {2} and not notes
    _, final, _ = select_step(data, None)
    assert set(final["step"]) == {4}
    with pytest.raises(UserError, match=r"--step 3.*\[0, 2, 4\]"):
        select_step(data, 3)
    table = auc_table(aucs, data.variants)
    assert list(dict.fromkeys(table["variant"])) == data.variants
    comp = comparison_table(aucs, "grpo", data.variants)
    assert len(comp) == 2


def test_family_wise_intervals_are_bonferroni_over_the_tables_cells():
    from scipy import stats

    # paired differences 1.0, 1.2, 0.8 (sd 0.2): per cell t_{0.975,2} = 4.30 -> [+0.50, +1.50], resolved;
    # family of 6 cells: t_{1-0.025/6,2} = 10.89 -> [-0.26, +2.26], not resolved family-wise
    rows = [{"variant": v, "benchmark": b, "seed": s, "auc": base + (d if v == "new" else 0.0)}
            for b in ("easy", "medium", "hard") for s, (base, d) in enumerate([(50, 1.0), (60, 1.2), (55, 0.8)])
            for v in ("ref", "new", "other")]
    comp = comparison_table(pd.DataFrame(rows), "ref", ["ref", "new", "other"])
    new = next(comp[(comp["variant"] == "new") & (comp["benchmark"] == "easy")].itertuples())
    half = stats.t.ppf(0.975, 2) * 0.2 / math.sqrt(3)
    assert (new.ci_low, new.ci_high) == pytest.approx((1.0 - half, 1.0 + half)) and bool(new.resolved)
    fw = stats.t.ppf(1 - 0.025 / 6, 2) * 0.2 / math.sqrt(3)
    assert (new.fw_low, new.fw_high) == pytest.approx((1.0 - fw, 1.0 + fw)) and not bool(new.resolved_fw)
    assert set(comp["family"]) == {6}
    from harness.report.tables import diff_cell

    assert "family-wise [-0.26, +2.26] not resolved" in diff_cell(new)
