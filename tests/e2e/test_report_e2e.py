"""`harness report` end to end in a fresh process: files, partial results, exit codes, browser rendering."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report.fake import make_fake_results

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EXPECTED = [
    "index.html", "auc_table.md", "auc_table.csv", "auc_table.tex", "comparison.md", "comparison.csv",
    "comparison.tex", "auc_by_run_step.csv", "passk_math500.png", "passk_math500.svg", "passk_aime25.png",
    "passk_aime25.svg", "auc_vs_step.png", "auc_vs_step.svg", "diagnostics.png", "diagnostics.svg",
]


def _harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "harness", "report", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_fake_results(root / "results", experiment="fake", variants=("grpo", "dapo", "ngrpo"), seeds=2, steps=6,
                      eval_every=3, n_problems=10, n_samples=8, running=1, failed=1)
    make_fake_results(root / "results", experiment="other", variants=("ppo", "grpo"), seeds=2, steps=4,
                      eval_every=2, n_problems=6, n_samples=4)
    bad = root / "results" / "other" / "ppo-s1" / "samples.parquet"
    bad.write_bytes(b"garbage")
    proc = _harness("results", cwd=root)  # default output: ./reports/<experiment>/
    return root, proc, bad


def test_all_outputs_written(rendered):
    root, proc, _ = rendered
    assert proc.returncode == 0, proc.stderr
    for exp in ("fake", "other"):
        for name in EXPECTED:
            f = root / "reports" / exp / name
            assert f.exists() and f.stat().st_size > 0, f
    html = (root / "reports" / "fake" / "index.html").read_text()
    assert "data:image/png;base64," in html and "<h2>Runs</h2>" in html and "Settings" in html
    assert "running" in html and "failed" in html and "out of memory" in html
    assert 'src="http' not in html and "<link" not in html  # self-contained


def test_partial_and_bad_runs_reported_in_terminal(rendered):
    _, proc, bad = rendered
    out = proc.stdout
    assert "ngrpo-s2" in out and "running" in out and "failed" in out
    assert "unreadable" in out and "warning" in out and "samples.parquet" in out and "ppo-s1" in out
    assert "Pass@k AUC — fake" in out and "Pass@k AUC — other" in out


def test_step_and_reference_options(rendered, tmp_path):
    root, _, _ = rendered
    proc = _harness(str(root / "results" / "fake"), "--out", str(tmp_path), "--step", "3", "--reference", "dapo",
                    cwd=root)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "fake" / "comparison.md").read_text()
    assert "vs dapo" in md and "step 3" in md
    proc = _harness(str(root / "results" / "fake"), "--out", str(tmp_path), "--step", "5", cwd=root)
    assert proc.returncode == 2 and "--step 5" in proc.stderr and "[0, 3, 6]" in proc.stderr


def test_nothing_to_report_exits_2(tmp_path):
    proc = _harness(str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "no run folders found" in proc.stderr
    assert "Traceback" not in proc.stderr
    dirs = make_fake_results(tmp_path / "r", variants=("grpo",), seeds=1, steps=2, n_problems=4, n_samples=2)
    (dirs[0] / "samples.parquet").write_bytes(b"garbage")
    proc = _harness(str(tmp_path / "r"), cwd=tmp_path)
    assert proc.returncode == 2 and "nothing to report" in proc.stderr and "unreadable" in proc.stderr


def _browser():
    """benchmarks/screenshot_report.py (the Chromium helpers); skip without Chromium, except in CI
    (.ci/run installs Debian's chromium, so there a missing browser is a failure, not a skip)."""
    spec = importlib.util.spec_from_file_location("screenshot_report", REPO / "benchmarks" / "screenshot_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if mod.find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but no chromium: .ci/run must `apt-get install -y chromium`")
        pytest.skip("needs Chromium (Debian: apt-get install -y chromium)")
    return mod


def test_index_as_a_reader_sees_it_in_headless_chromium(rendered, tmp_path):
    root, _, _ = rendered
    html = root / "reports" / "fake" / "index.html"
    page = _browser().inspect_page(html, width=1200, height=2400, png=tmp_path / "shot.png")
    assert page["errors"] == []  # no console error, uncaught exception or failed load
    for h in ("Pass@k AUC", "Comparison against grpo", "Runs", "Settings"):
        assert any(x.startswith(h) for x in page["headings"]), (h, page["headings"])
    assert len(page["tables"]) >= 4 and all(t["rows"] >= 2 and t["cols"] >= 2 for t in page["tables"]), page["tables"]
    assert any("variant" in t["header"] for t in page["tables"])
    n_img = html.read_text().count("<img ")
    assert n_img == len(page["images"]) >= 4  # a Pass@k figure per benchmark, AUC vs step, diagnostics
    for img in page["images"]:  # every figure decoded and drawn at a readable size
        assert img["complete"] and img["natural_width"] > 300 and img["natural_height"] > 200, img
        assert img["shown_width"] > 200 and img["shown_height"] > 100, img
    from PIL import Image

    shot = Image.open(page["png"]).convert("RGB")
    assert shot.size == (1200, 2400)
    colors = shot.resize((60, 120)).getcolors(maxcolors=60 * 120)
    assert colors is not None and len(colors) > 50  # figures and tables drew, not a blank page


def test_browser_check_catches_broken_figures_and_script_errors(tmp_path):
    """The reader-view check can fail: a page with a broken figure and a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><h2>Runs</h2><img alt="fig" src="data:image/png;base64,AAAA">'
                   '<script>console.error("boom"); undefinedFunction();</script></body></html>')
    page = _browser().inspect_page(bad)
    assert page["images"][0]["natural_width"] == 0
    assert any("boom" in e for e in page["errors"]) and any("undefinedFunction" in e for e in page["errors"])
