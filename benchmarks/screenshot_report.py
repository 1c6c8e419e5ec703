"""Render a report's index.html in headless Chromium and save a PNG screenshot.

    python benchmarks/screenshot_report.py reports/fake/index.html --png /tmp/report.png
    python benchmarks/screenshot_report.py --fake --png /tmp/report.png   # fake results -> report -> PNG

Needs Debian chromium (`apt-get install -y chromium`). Exit code 0 and the PNG path on success.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
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


def _launch_cdp(exe: str, profile: str) -> tuple[subprocess.Popen, int, int]:
    """Chromium with the DevTools protocol on a pipe (fd 3: commands in, fd 4: replies out), no port."""
    cmd_r, cmd_w = os.pipe()
    out_r, out_w = os.pipe()
    # move the child's ends above 4 so dup2 onto 3 and 4 cannot clobber one with the other
    hi_cmd_r, hi_out_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)

    def child_fds() -> None:
        os.dup2(hi_cmd_r, 3)
        os.dup2(hi_out_w, 4)

    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(3, 4), preexec_fn=child_fds)
    for fd in (cmd_r, out_w, hi_cmd_r, hi_out_w):
        os.close(fd)
    return proc, cmd_w, out_r


class _Cdp:
    """Minimal DevTools-protocol client over the pipe: NUL-separated JSON messages."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float) -> None:
        self.w, self.r, self.deadline = write_fd, read_fd, deadline
        self.buf, self.next_id, self.events = b"", 0, []

    def _read_message(self) -> dict:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise RuntimeError("chromium: no answer from the DevTools pipe in time")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"chromium: {method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str) -> dict:
        for i, m in enumerate(self.events):
            if m.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read_message()
            if m.get("method") == method:
                return m
            self.events.append(m)


_READER_VIEW = """(async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return JSON.stringify({
    title: document.title,
    headings: [...document.querySelectorAll('h1, h2, h3')].map(h => h.innerText.trim()),
    tables: [...document.querySelectorAll('table')].map(t => ({rows: t.rows.length, cols: t.rows[0] ? t.rows[0].cells.length : 0,
                                                              header: t.rows[0] ? t.rows[0].innerText.trim() : ''})),
    images: imgs.map(i => ({alt: i.alt, complete: i.complete, natural_width: i.naturalWidth, natural_height: i.naturalHeight,
                            shown_width: i.getBoundingClientRect().width, shown_height: i.getBoundingClientRect().height})),
    text_chars: document.body ? document.body.innerText.length : 0,
  });
})()"""


def inspect_page(html: Path, width: int = 1280, height: int = 2400, timeout: float = 90.0, png: Path | None = None) -> dict:
    """What a reader sees in `html`, loaded in headless Chromium: headings, tables (rows, header), every
    image (decoded size, displayed size), console errors and uncaught exceptions; optionally a screenshot.

    -> {"title", "headings", "tables", "images", "text_chars", "errors": [str], "png": path or None}"""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("chromium not found (apt-get install -y chromium)")
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        proc, w, r = _launch_cdp(exe, profile)
        try:
            cdp = _Cdp(w, r, deadline)
            target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
            sid = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                cdp.call(f"{domain}.enable", sid)
            cdp.call("Emulation.setDeviceMetricsOverride", sid, width=width, height=height, deviceScaleFactor=1, mobile=False)
            cdp.call("Page.navigate", sid, url=Path(html).resolve().as_uri())
            cdp.wait_event("Page.loadEventFired")
            res = cdp.call("Runtime.evaluate", sid, expression=_READER_VIEW, awaitPromise=True, returnByValue=True)
            if "exceptionDetails" in res:
                raise RuntimeError(f"chromium: page inspection failed: {res['exceptionDetails']}")
            page = json.loads(res["result"]["value"])
            if png is not None:
                shot = cdp.call("Page.captureScreenshot", sid, format="png")
                Path(png).write_bytes(base64.b64decode(shot["data"]))
            page["png"] = png
            page["errors"] = _errors(cdp.events)
            try:
                cdp.call("Browser.close")
            except RuntimeError:
                pass
        finally:
            os.close(w)
            os.close(r)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return page


def _errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and error log entries (failed loads, CSP, ...) among CDP events."""
    out = []
    for m in events:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description", d.get("text", ""))))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
    return out


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
        from harness.cli.report import run_report
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
