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


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian chromium at /usr/bin/chromium")
def test_index_renders_in_headless_chromium(rendered, tmp_path):
    root, _, _ = rendered
    spec = importlib.util.spec_from_file_location("screenshot_report", REPO / "benchmarks" / "screenshot_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    png = mod.screenshot(root / "reports" / "fake" / "index.html", tmp_path / "shot.png", width=1200, height=2400)
    from PIL import Image

    img = Image.open(png).convert("RGB")
    assert img.size == (1200, 2400)
    colors = img.resize((60, 120)).getcolors(maxcolors=60 * 120)
    assert colors is not None and len(colors) > 50  # figures and tables drew, not a blank page
