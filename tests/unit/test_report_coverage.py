"""The coverage proof: results simulated with a known truth, analysed by the report's own functions.

1. Statistics level (many replicates): the functions every table cell calls (compare.mean_of for a
   variant's mean, compare.comparison_row for a difference) on seed AUCs = truth + a seed effect shared
   by the variants of one seed (what pairs them) + noise. Intervals must cover the truth 93-97% of the
   time at 3, 5 and 10 seeds; under the null at most 8% of 3-seed comparisons may be called resolved.
2. Results layout (fewer replicates): run folders written with harness.core.results (spec, status, samples of
   binary correctness from a logistic model), read by load_results and tabulated by auc_table and
   comparison_table. The truth there is exact: pass@k is unbiased, so a run's expected AUC given its
   skill is 100 * sum_k w_k mean_p (1 - (1 - p_p)^k), integrated over the seed distribution.
3. The two-level bootstrap covers a truth over a population of problems.
The figures each test measures are printed (pytest -s) and quoted in docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.core.stats import two_level_interval
from harness.report.compare import comparison_row, mean_of
from harness.report.load import load_results, select_step
from harness.report.tables import auc_table, comparison_table
from harness.core.results import write_samples, write_spec, write_status

# --- 1. statistics level
REPLICATES = 3000  # per seed count: the standard error of a 95% coverage is 0.4 points
TRUTH = {"ref": 40.0, "twin": 40.0, "better": 43.0}  # AUC means; "twin" is the null
SEED_SD, NOISE_SD = 3.0, 2.0  # shared by the variants of one seed (pairing), and per run

# --- 2. results layout
LAYOUT_SEEDS, LAYOUT_BENCHMARKS, PROBLEMS, SAMPLES = 3, 120, 10, 8
SKILL = {"ref": 0.0, "twin": 0.0, "better": 0.4}  # logit scale
LAYOUT_SEED_SD, LAYOUT_NOISE_SD, DIFFICULTY_SD = 0.3, 0.2, 1.5


def _simulate(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """[REPLICATES, n] seed AUCs per variant."""
    u = rng.normal(0, SEED_SD, (REPLICATES, n))
    return {v: mu + u + rng.normal(0, NOISE_SD, (REPLICATES, n)) for v, mu in TRUTH.items()}


def _statistics_level(n: int) -> dict[str, float]:
    sims, seeds = _simulate(n, np.random.default_rng(n)), list(range(n))
    cover_mean = np.mean([[(iv := mean_of(sims[v][r], seeds)).low <= TRUTH[v] <= iv.high for v in TRUTH]
                          for r in range(REPLICATES)])
    rows = {v: [comparison_row(sims[v][r], seeds, sims["ref"][r], seeds) for r in range(REPLICATES)]
            for v in ("twin", "better")}
    truth = {v: TRUTH[v] - TRUTH["ref"] for v in rows}
    cover_diff = np.mean([row["ci_low"] <= truth[v] <= row["ci_high"] for v in rows for row in rows[v]])
    return {"mean": float(cover_mean), "diff": float(cover_diff),
            "null_resolved": float(np.mean([row["resolved"] for row in rows["twin"]])),
            "power": float(np.mean([row["resolved"] for row in rows["better"]])),
            "paired": all(row["interval"] == "paired t" for row in rows["twin"])}


@pytest.mark.parametrize("n", [3, 5, 10])
def test_intervals_cover_at_the_nominal_level(n):
    got = _statistics_level(n)
    print(f"\nstatistics level, n={n}: {got}")
    assert got["paired"]
    assert 0.93 <= got["mean"] <= 0.97, got
    assert 0.93 <= got["diff"] <= 0.97, got
    assert got["null_resolved"] <= (0.08 if n == 3 else 0.07), got
    assert got["power"] > got["null_resolved"] + 0.1, got  # the test can tell a real difference


# --- results layout
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _expected_auc(skill: np.ndarray, difficulty: np.ndarray) -> np.ndarray:
    """E[AUC | skill] for skills [m] on problems [P] with SAMPLES samples (k = 1, 2, 4, ..., SAMPLES)."""
    ks = 2 ** np.arange(int(np.log2(SAMPLES)) + 1)
    w = np.r_[0.5, np.ones(len(ks) - 2), 0.5] / (len(ks) - 1)
    p = _sigmoid(skill[:, None] - difficulty[None, :])  # [m, P]
    passk = 1 - (1 - p[None]) ** ks[:, None, None]  # [K, m, P]
    return 100 * np.einsum("k,kmp->m", w, passk) / difficulty.size


def _true_mean_auc(skill: float, difficulty: np.ndarray) -> float:
    """E over seeds: skill + N(0, seed_sd^2 + noise_sd^2), by 60-point Gauss-Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    sd = np.hypot(LAYOUT_SEED_SD, LAYOUT_NOISE_SD)
    return float(np.sum(w * _expected_auc(skill + sd * x, difficulty)) / np.sqrt(2 * np.pi))


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Run folders: 3 variants x LAYOUT_SEEDS seeds; each benchmark is an independent replicate."""
    root = tmp_path_factory.mktemp("coverage") / "results"
    rng = np.random.default_rng(7)
    benches = [f"b{i:03d}" for i in range(LAYOUT_BENCHMARKS)]
    difficulty = {b: rng.normal(0, DIFFICULTY_SD, PROBLEMS) for b in benches}
    seed_effect = rng.normal(0, LAYOUT_SEED_SD, (LAYOUT_SEEDS, LAYOUT_BENCHMARKS))
    for v, skill in SKILL.items():
        for s in range(LAYOUT_SEEDS):
            theta = skill + seed_effect[s] + rng.normal(0, LAYOUT_NOISE_SD, LAYOUT_BENCHMARKS)
            p = _sigmoid(theta[:, None] - np.stack([difficulty[b] for b in benches]))  # [B, P]
            correct = rng.random((LAYOUT_BENCHMARKS, PROBLEMS, SAMPLES)) < p[..., None]
            run = root / "cov" / f"{v}-s{s}"
            write_spec(run, {"experiment": "cov", "variant": v, "seed": s, "run_id": f"{v}-s{s}", "preset": "grpo",
                             "backend": "fake", "eval": {"benchmarks": benches}})
            write_samples(run, pd.DataFrame({
                "step": 10, "benchmark": np.repeat(benches, PROBLEMS * SAMPLES),
                "problem_id": [f"{b}-{i}" for b in benches for i in range(PROBLEMS) for _ in range(SAMPLES)],
                "sample_idx": np.tile(np.arange(SAMPLES, dtype=np.int32), LAYOUT_BENCHMARKS * PROBLEMS),
                "correct": correct.ravel(), "length": 10, "truncated": False}))
            write_status(run, "done", step=10, total_steps=10, error=None)
    truth = {(v, b): _true_mean_auc(skill, difficulty[b]) for v, skill in SKILL.items() for b in benches}
    return root, truth


def test_intervals_cover_through_the_results_layout(layout):
    root, truth = layout
    (data,), warnings = load_results(root)
    assert not warnings and data.runs["reported"].all()
    _, aucs, _ = select_step(data, None)
    table = auc_table(aucs, data.variants)
    comp = comparison_table(aucs, "ref", data.variants)
    assert len(table) == 3 * LAYOUT_BENCHMARKS and len(comp) == 2 * LAYOUT_BENCHMARKS
    assert set(comp["interval"]) == {"paired t"}
    cover_mean = np.mean([r.ci_low <= truth[(r.variant, r.benchmark)] <= r.ci_high for r in table.itertuples()])
    diff_truth = [truth[(r.variant, r.benchmark)] - truth[("ref", r.benchmark)] for r in comp.itertuples()]
    cover_diff = np.mean([lo <= t <= hi for lo, t, hi in zip(comp["ci_low"], diff_truth, comp["ci_high"])])
    null = comp[comp["variant"] == "twin"]["resolved"].mean()
    power = comp[comp["variant"] == "better"]["resolved"].mean()
    print(f"\nresults layout, n={LAYOUT_SEEDS}, {LAYOUT_BENCHMARKS} replicates: mean coverage {cover_mean:.3f}, "
          f"difference coverage {cover_diff:.3f}, null resolved {null:.3f}, resolved at +{SKILL['better']} logit {power:.3f}")
    # 360 and 240 intervals: the binomial standard error is about 1.2 and 1.4 points
    assert 0.91 <= cover_mean <= 0.99 and 0.91 <= cover_diff <= 0.99
    assert null <= 0.10 and power > null
    # the table's numbers are the statistics-level functions' numbers on the loaded AUCs
    r = comp.iloc[0]
    a = aucs[(aucs["variant"] == r.variant) & (aucs["benchmark"] == r.benchmark)].sort_values("seed")
    b = aucs[(aucs["variant"] == "ref") & (aucs["benchmark"] == r.benchmark)].sort_values("seed")
    direct = comparison_row(a["auc"].to_numpy(), a["seed"].tolist(), b["auc"].to_numpy(), b["seed"].tolist())
    assert (r.ci_low, r.ci_high) == pytest.approx((direct["ci_low"], direct["ci_high"]))


def test_two_level_bootstrap_covers_a_population_of_problems():
    """Problems drawn afresh per replicate: the truth is the population mean (0), which a seeds-only
    interval misses whenever the benchmark's problems happen to be hard or easy."""
    rng, reps, n, n_prob = np.random.default_rng(11), 500, 5, 40
    hits_two, hits_seeds = 0, 0
    for r in range(reps):
        x = rng.normal(0, 2.0, (1, n_prob)) + rng.normal(0, 0.5, (n, 1)) + rng.normal(0, 1.0, (n, n_prob))
        iv = two_level_interval(x, reps=2000, seed=r)
        hits_two += iv.low <= 0 <= iv.high
        seeds_only = mean_of(x.mean(axis=1), list(range(n)))
        hits_seeds += seeds_only.low <= 0 <= seeds_only.high
    print(f"\ntwo-level bootstrap, n={n}, {n_prob} problems: coverage {hits_two / reps:.3f} "
          f"(seeds-only t-interval: {hits_seeds / reps:.3f})")
    assert 0.92 <= hits_two / reps <= 0.98 and hits_seeds / reps < 0.85
