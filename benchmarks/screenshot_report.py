"""Render a report's index.html in headless Chromium and save a PNG screenshot.

    python benchmarks/screenshot_report.py reports/fake/index.html --png /tmp/report.png
    python benchmarks/screenshot_report.py --fake --png /tmp/report.png   # fake results -> report -> PNG

Needs Debian chromium (`apt-get install -y chromium`). Exit code 0 and the PNG path on success.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def find_chromium() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        p = c if Path(c).is_absolute() and Path(c).exists() else shutil.which(c)
        if p:
            return p
    return None


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 4000, timeout: float = 90.0) -> Path:
    """Screenshot `html` (a file) to `png` with a fresh profile dir; raises RuntimeError on failure."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("chromium not found (apt-get install -y chromium)")
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", Path(html).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html", nargs="?", type=Path, help="index.html to render")
    ap.add_argument("--fake", action="store_true", help="generate fake results and a report first")
    ap.add_argument("--png", type=Path, default=Path("report_screenshot.png"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=4000)
    args = ap.parse_args()
    html = args.html
    if args.fake:
        from harness.report.cli import run_report
        from harness.report.fake import make_fake_results

        tmp = Path(tempfile.mkdtemp(prefix="report-shot-"))
        make_fake_results(tmp / "results", running=1, failed=1, n_samples=32)
        run_report(tmp / "results", out=tmp / "reports")
        html = tmp / "reports" / "fake" / "index.html"
    if html is None:
        ap.error("give an index.html or --fake")
    print(screenshot(html, args.png, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
