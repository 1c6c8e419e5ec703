"""Report fixes found by trying the report as a new user: shared settings, one-seed intervals,
the pre-RL row, benchmark order, the top-level index."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.cli.report import run_report
from harness.report.fake import make_fake_results
from harness.report.html import settings_html
from harness.report.load import load_results
from harness.report.tables import START, auc_table, comparison_table, start_aucs


def test_settings_shared_means_equal_in_every_run():
    specs = {
        "a": {"variant": "grpo", "seed": 0, "train": {"lr": 1e-4}, "algorithm": {"knobs": {"eps_low": 0.2}}},
        "b": {"variant": "ngrpo", "seed": 0, "train": {"lr": 1e-4}, "algorithm": {"knobs": {"eps_low": 0.2, "r_max": 1.0}}},
    }
    html = settings_html(specs)
    shared, per_variant = html.split("<h3>Per variant</h3>")
    assert "eps_low: 0.2" in shared and "lr: 0.0001" in shared
    assert "r_max" not in shared and "nan" not in html.lower()
    assert "algorithm.knobs.r_max" in per_variant and "<td>–</td>" in per_variant and "<td>1.0</td>" in per_variant


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_seed")
    make_fake_results(root / "results", variants=("grpo", "ngrpo"), seeds=1, steps=4, eval_every=2,
                      benchmarks=("math500", "aime25"), n_problems=8, n_samples=8)
    run_report(root / "results", out=root / "reports")
    return root / "reports" / "fake"


def test_one_seed_has_no_interval(one_seed):
    md = (one_seed / "auc_table.md").read_text()
    assert "one seed, no CI" in md
    for line in md.splitlines()[4:]:  # no "x [x, x]" degenerate interval anywhere in the table body
        assert "[" not in line, line
    cmp_md = (one_seed / "comparison.md").read_text()
    assert "one seed, no CI or P(better)" in cmp_md and "P(better)=" not in cmp_md and "-0.00" not in cmp_md
    cmp = pd.read_csv(one_seed / "comparison.csv")
    assert cmp[["ci_low", "ci_high", "p_improve"]].isna().all().all()
    assert pd.read_csv(one_seed / "auc_table.csv")[["ci_low", "ci_high"]].isna().all().all()


def test_benchmarks_in_experiment_file_order(one_seed):
    """The fake experiment lists math500 then aime25: tables, figures and the page keep that order."""
    header = [ln for ln in (one_seed / "auc_table.md").read_text().splitlines() if ln.startswith("| variant")][0]
    assert header.index("math500") < header.index("aime25")
    csv = pd.read_csv(one_seed / "auc_table.csv")
    assert list(dict.fromkeys(csv["benchmark"])) == ["math500", "aime25"]
    html = (one_seed / "index.html").read_text()
    assert html.index("pass@k math500") < html.index("pass@k aime25")
    (data,), _ = load_results(one_seed.parents[1] / "results")
    assert data.benchmarks == ["math500", "aime25"]


def test_pre_rl_row_and_difference_to_it(one_seed):
    csv = pd.read_csv(one_seed / "auc_table.csv")
    assert csv["variant"].iloc[0] == START
    by_step = pd.read_csv(one_seed / "auc_by_run_step.csv")
    for bench in ("math500", "aime25"):
        start = by_step[(by_step["step"] == 0) & (by_step["benchmark"] == bench)]["auc"].mean()  # one seed: mean over runs
        row = csv[(csv["variant"] == START) & (csv["benchmark"] == bench)].iloc[0]
        assert row["auc_mean"] == pytest.approx(start, abs=1e-3) and row["n_seeds"] == 1
        final = by_step[(by_step["step"] == 4) & (by_step["benchmark"] == bench) & (by_step["variant"] == "ngrpo")]["auc"]
        vs = pd.read_csv(one_seed / "vs_before_rl.csv")
        d = vs[(vs["variant"] == "ngrpo") & (vs["benchmark"] == bench)].iloc[0]
        assert d["diff"] == pytest.approx(final.iloc[0] - start, abs=1e-3) and d["reference"] == START
    assert "Change from the policy before RL" in (one_seed / "index.html").read_text()


def test_best_is_the_start_when_rl_lowered_every_variant():
    """Hand-made AUCs: both variants end below the start, so the bold 'best' is the pre-RL row."""
    rows = []
    for seed in (0, 1):
        for v, final in (("grpo", 30.0 + seed), ("ngrpo", 32.0 + seed)):
            rows.append({"run_id": f"{v}-{seed}", "variant": v, "seed": seed, "step": 0, "benchmark": "hard", "auc": 40.0 + seed, "k_max": 32})
            rows.append({"run_id": f"{v}-{seed}", "variant": v, "seed": seed, "step": 60, "benchmark": "hard", "auc": final, "k_max": 32})
    aucs = pd.DataFrame(rows)
    final = aucs[aucs["step"] == 60]
    start = start_aucs(aucs, final)
    assert len(start) == 2 and set(start["auc"]) == {40.0, 41.0}  # one value per seed, not per run
    table = auc_table(pd.concat([start, final]), [START, "grpo", "ngrpo"])
    assert table.loc[table["best"], "variant"].tolist() == [START]
    comp = comparison_table(pd.concat([start, final]), START, ["grpo", "ngrpo"])
    assert comp.set_index("variant")["diff"].to_dict() == pytest.approx({"grpo": -10.0, "ngrpo": -8.0})


def test_root_index_links_every_report(tmp_path):
    make_fake_results(tmp_path / "results", experiment="exp_a", variants=("grpo",), seeds=2, steps=2, n_problems=4, n_samples=4)
    make_fake_results(tmp_path / "results", experiment="exp_b", variants=("grpo",), seeds=2, steps=2, n_problems=4, n_samples=4)
    run_report(tmp_path / "results", out=tmp_path / "reports")
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "href='exp_a/index.html'" in index and "href='exp_b/index.html'" in index
    run_report(tmp_path / "results" / "exp_a", out=tmp_path / "reports")  # one experiment: the other stays listed
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "href='exp_a/index.html'" in index and "href='exp_b/index.html'" in index and "rendered earlier" in index


def test_passk_table_before_and_after(one_seed):
    """pass@1 and pass@k_max per variant, and for the policy before RL, recomputed by hand from the samples."""
    tab = pd.read_csv(one_seed / "passk_table.csv")
    assert set(tab["k"]) == {1, 8} and tab["variant"].iloc[0] == START
    runs = sorted((one_seed.parents[1] / "results" / "fake").glob("*-s0"))
    samples = {r.name.split("-")[0]: pd.read_parquet(r / "samples.parquet") for r in runs}
    start = [s[(s["step"] == 0) & (s["benchmark"] == "aime25")]["correct"].mean() for s in samples.values()]
    row = tab[(tab["variant"] == START) & (tab["benchmark"] == "aime25") & (tab["k"] == 1)].iloc[0]
    assert row["mean"] == pytest.approx(sum(start) / len(start), abs=1e-4)
    s = samples["ngrpo"]
    final = s[(s["step"] == 4) & (s["benchmark"] == "math500")]
    p8 = final.groupby("problem_id")["correct"].any().mean()  # n = k = 8: pass@8 = any correct
    row = tab[(tab["variant"] == "ngrpo") & (tab["benchmark"] == "math500") & (tab["k"] == 8)].iloc[0]
    assert row["mean"] == pytest.approx(p8, abs=1e-4)
    md = (one_seed / "passk_table.md").read_text()
    assert "math500 pass@1" in md and md.index("math500 pass@1") < md.index("aime25 pass@1")


def test_settings_null_everywhere_is_shared_and_missing_is_not():
    specs = {
        "a": {"variant": "grpo", "seed": 0, "eval": {"k_max": None}, "algorithm": {"knobs": {"clip_c": None}}},
        "b": {"variant": "ngrpo", "seed": 1, "eval": {"k_max": None}, "algorithm": {"knobs": {"r_max": 1.0}}},
    }
    shared, per_variant = settings_html(specs).split("<h3>Per variant</h3>")
    assert "k_max: null" in shared and "seed" not in shared
    assert "clip_c" not in shared and "algorithm.knobs.clip_c" in per_variant and "<td>None</td>" in per_variant


@pytest.mark.parametrize("n", [1, 5, 10, 12, 20, 24])
def test_every_variant_gets_its_own_colour(n):
    """virtual_reward_value has 12 variants: tab10 alone gave the 11th and 12th the 1st and 2nd one's colour."""
    from harness.report.plots import palette

    colors = palette([f"v{i}" for i in range(n)])
    assert len(colors) == n and len(set(colors.values())) == n


def test_a_sweep_trial_reports_the_fraction_of_tokens_its_clip_bounds_cut(tmp_path):
    import json

    import numpy as np

    from harness.core import results
    from harness.report.sweep_data import clip_fraction

    recs = [{"kind": "train", "step": 1, "actor/clipfrac_low": 0.01, "actor/clipfrac_high": 0.03},
            {"kind": "eval", "step": 1, "hard/auc": 20.0},
            {"kind": "train", "step": 2, "actor/clipfrac_low": 0.02, "actor/clipfrac_high": 0.0}]
    (tmp_path / results.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert clip_fraction(tmp_path) == pytest.approx((0.04 + 0.02) / 2)
    (tmp_path / results.METRICS_FILE).write_text(json.dumps({"kind": "train", "step": 1, "actor/pg_loss": 0.1}) + "\n")
    assert np.isnan(clip_fraction(tmp_path))  # a loss without clip bounds: no fraction, not 0
