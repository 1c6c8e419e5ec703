"""pass@k and Pass@k AUC (harness.core.metrics); intervals are tested in tests/unit/test_stats.py."""

import math

import numpy as np
import pandas as pd
import pytest

from harness.core.metrics import (
    aucs_from_curves,
    curves_from_samples,
    k_grid,
    pass_at_k,
    pass_at_k_auc,
    pass_at_k_curve,
)


def exact(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_matches_binomial_formula_on_random_triples():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 300, size=500)
    c = np.array([rng.integers(0, x + 1) for x in n])
    k = np.array([rng.integers(1, x + 1) for x in n])
    got = pass_at_k(n, c, k)
    want = np.array([exact(int(a), int(b), int(d)) for a, b, d in zip(n, c, k)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_scalars_and_edge_cases():
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(256, 0, 256) == 0.0
    assert pass_at_k(256, 256, 1) == 1.0
    assert isinstance(pass_at_k(10, 3, 2), float)


def test_only_k_le_n():
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 8)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="empty"):
        pass_at_k([], [], [])
    assert k_grid(40).tolist() == [1, 2, 4, 8, 16, 32]
    ks, _ = pass_at_k_curve([6, 6], [1, 2])
    assert ks.tolist() == [1, 2, 4]


def test_paper_k_grid():
    ks, vals = pass_at_k_curve(np.full(30, 256), np.arange(30))
    assert ks.tolist() == [2**i for i in range(9)]
    assert np.all(np.diff(vals) >= 0)
    res = pass_at_k_auc(ks, vals)
    assert res.ks == tuple(2**i for i in range(9)) and res.grid_label == "k in [1, 256], log2-uniform"


def test_auc_formula():
    assert pass_at_k_auc([1, 2, 4, 8], [0.3] * 4).auc == pytest.approx(30.0)
    assert pass_at_k_auc([1], [0.4]).auc == pytest.approx(40.0)
    # hand trapezoid: (0.1 + 2*(0.2 + 0.4) + 0.8) / (2*3) * 100
    assert pass_at_k_auc([1, 2, 4, 8], [0.1, 0.2, 0.4, 0.8]).auc == pytest.approx(100 * 2.1 / 6)
    with pytest.raises(ValueError, match="1, 2, 4"):
        pass_at_k_auc([1, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match="equal length"):
        pass_at_k_auc([1, 2], [0.1])


def test_curves_from_samples_and_auc():
    rows = []
    for pid, c in [("a", 1), ("b", 0), ("c", 4)]:
        for s in range(4):
            rows.append({"benchmark": "x", "problem_id": pid, "sample_idx": s, "correct": s < c})
    curves = curves_from_samples(pd.DataFrame(rows))
    assert curves["k"].tolist() == [1, 2, 4]
    p1 = (0.25 + 0 + 1) / 3
    p2 = (exact(4, 1, 2) + 0 + 1) / 3
    p4 = (1 + 0 + 1) / 3
    assert curves["pass_at_k"].tolist() == pytest.approx([p1, p2, p4])
    auc = aucs_from_curves(curves)
    assert auc["auc"].iloc[0] == pytest.approx(100 * (p1 + 2 * p2 + p4) / 4)


def test_problem_aucs_average_to_the_benchmark_auc():
    """The two-level interval resamples per-problem AUCs: their mean must be the benchmark's Pass@k AUC."""
    import numpy as np
    import pandas as pd

    from harness.core.metrics import aucs_from_curves, curves_from_samples, problem_aucs

    rng = np.random.default_rng(0)
    rows = [(b, p, s, bool(rng.random() < q)) for b, n in (("easy", 8), ("hard", 5))
            for p, q in enumerate(rng.random(20)) for s in range(n)]
    samples = pd.DataFrame(rows, columns=["benchmark", "problem_id", "sample_idx", "correct"]).assign(step=0)
    per = problem_aucs(samples).groupby("benchmark")["auc"].mean()
    whole = aucs_from_curves(curves_from_samples(samples)).set_index("benchmark")["auc"]
    assert per.to_dict() == pytest.approx(whole.to_dict(), abs=1e-9)
    assert per["easy"] != pytest.approx(per["hard"])  # the two grids differ (k <= 8 vs k <= 4)
