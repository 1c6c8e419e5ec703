"""Serve a results folder with TensorBoard on localhost and screenshot it in headless Chromium.

    python benchmarks/screenshot_tensorboard.py results/quickstart --png docs/img/tensorboard_quickstart.png

Runs are coloured by variant (TensorBoard's "group by regex" on the run name `<variant>-s<seed>-<hash>/...`,
so the seeds of one variant share a colour) and the charts are filtered to --tags. Chromium is driven
over its DevTools protocol: the dashboard's display settings (kept in the page's localStorage: settings
pane closed, no step-selector tables, smoothing --smoothing) are stored first, then the page is loaded
and captured once every chart has drawn its lines.

Needs Debian chromium (`apt-get install -y chromium`), tensorboard, and websocket-client (`pip install
websocket-client`; only this script uses it). Everything stays on 127.0.0.1; both servers are stopped on exit.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot_report import FLAGS, find_chromium  # noqa: E402

GROUP_BY_VARIANT = r"^(.*)-s\d+-"
TAGS = r"^(train/reward|eval/(easy|medium|hard)/auc|groups/all_wrong_frac|actor/entropy)$"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, deadline: float):
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


class Page:
    """The first tab of a Chromium started with --remote-debugging-port, over the DevTools protocol."""

    def __init__(self, port: int, deadline: float) -> None:
        import websocket

        tabs = get_json(f"http://127.0.0.1:{port}/json/list", deadline)
        url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        self.ws, self.ids = websocket.create_connection(url, timeout=120, suppress_origin=True), itertools.count(1)

    def call(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def wait(self, expr: str, timeout: float) -> bool:
        end = time.time() + timeout
        while time.time() < end:
            if self.js(expr):
                return True
            time.sleep(0.5)
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir", type=Path, help="e.g. results/quickstart (every run's tensorboard/ folder below it)")
    ap.add_argument("--png", type=Path, default=Path("docs/img/tensorboard_quickstart.png"))
    ap.add_argument("--tags", default=TAGS, help="regex of the charts to show")
    ap.add_argument("--smoothing", type=float, default=0.0)
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    args = ap.parse_args()
    exe, tb = find_chromium(), shutil.which("tensorboard", path=str(Path(sys.executable).parent)) or shutil.which("tensorboard")
    if exe is None or tb is None:
        sys.exit("needs chromium (apt-get install -y chromium) and tensorboard (pip install tensorboard)")
    tb_port, cdp_port, deadline = free_port(), free_port(), time.time() + 300
    profile = tempfile.mkdtemp(prefix="chromium-profile-")  # a fresh, empty profile
    procs = [subprocess.Popen([tb, "--logdir", str(args.logdir), "--host", "127.0.0.1", "--port", str(tb_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        origin = f"http://127.0.0.1:{tb_port}"
        runs = []
        while not runs:  # TensorBoard is up and has found the runs
            runs = get_json(f"{origin}/data/runs", deadline)
            time.sleep(0.5)
        procs.append(subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={cdp_port}",
                                       f"--window-size={args.width},{args.height}", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        page = Page(cdp_port, deadline)
        page.call("Emulation.setDeviceMetricsOverride", width=args.width, height=args.height, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=f"{origin}/__origin__")  # any page of the origin: localStorage is per origin
        page.wait("document.readyState === 'complete'", 60)
        settings = {"timeSeriesSettingsPaneOpened": False, "stepSelectorEnabled": False,
                    "scalarSmoothing": args.smoothing, "ignoreOutliers": False}
        page.js(f"localStorage.setItem('_tb_global_settings', {json.dumps(json.dumps(settings))})")
        query = urllib.parse.urlencode({"runColorGroup": f"regex:{GROUP_BY_VARIANT}", "tagFilter": args.tags})
        page.call("Page.navigate", url=f"{origin}/?{query}#timeseries")
        drawn = page.wait("(() => { const c = document.querySelectorAll('scalar-card');"
                          " return c.length > 0 && [...c].every(x => x.querySelector('line-chart') &&"
                          " !x.querySelector('mat-spinner, .loading, tb-loading-spinner')); })()", 180)
        time.sleep(3)  # the last lines are drawn a frame after their card stops loading
        png = args.png.resolve()
        png.parent.mkdir(parents=True, exist_ok=True)
        png.write_bytes(base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"]))
        print(f"{png} ({len(runs)} runs{'' if drawn else ', charts still loading at capture'}: {', '.join(sorted(runs))})")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
