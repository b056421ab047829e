"""Screenshots of a finished flow run's pages in the Prefect UI, taken by headless Chromium.

    python bench/ui_screenshots.py --api-url http://127.0.0.1:4201/api [--flow-run ID] \
        [--out docs/images] [--prefix sample]

Saves three PNGs: the flow run page (graph and task runs), its Artifacts tab, and one chart
artifact (the last training-curves artifact when the run has one). Without --flow-run it takes
the latest completed run. Needs a `chromium` on PATH (Debian: `apt-get install chromium`).

The UI draws its pages with scripts and opens the Artifacts tab only on a click (a `?tab=`
link is reset while the run loads), so the browser is driven through its DevTools protocol:
open the page, wait for what it should show, click, then capture (docs/ui.md).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

CHART = "data:image/svg+xml;base64,"


def latest_completed_run(api: str) -> str:
    """The id of the newest completed flow run."""
    found = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "sort": "END_TIME_DESC",
              "limit": 1},
        timeout=30,
    )  # fmt: skip
    found.raise_for_status()
    if not found.json():
        raise SystemExit(f"error: {api} has no completed flow run; give --flow-run")
    return found.json()[0]["id"]


def chart_artifact(api: str, run_id: str) -> dict:
    """A markdown artifact of the run that carries a chart: the last training curves if any."""
    found = httpx.post(
        f"{api}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run_id]}}, "sort": "KEY_ASC"},
        timeout=30,
    )
    found.raise_for_status()
    charts = [a for a in found.json() if CHART in str(a.get("data"))]
    if not charts:
        raise SystemExit(f"error: flow run {run_id} has no artifact with a chart")
    curves = [a for a in charts if str(a.get("key")).endswith("-curves")]
    return (curves or charts)[-1]


class Browser:
    """Headless Chromium driven through the DevTools protocol: one page, one window size."""

    def __init__(self, binary: str, size: tuple[int, int]):
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--remote-debugging-port={port}", f"--user-data-dir={self.profile.name}",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        pages = self._wait(lambda: _page_targets(port), 60, "Chromium's DevTools endpoint")
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.ids = itertools.count(1)
        self.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)  # fmt: skip

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result (events in between are skipped)."""
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, what: str, timeout_s: float = 60) -> None:
        """Wait until a script expression is true on the page, then let it settle."""
        self._wait(lambda: self.evaluate(expression), timeout_s, what)
        time.sleep(1.5)  # transitions, lazy images

    def open(self, url: str, ready: str, what: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(ready, what)

    def click_tab(self, label: str) -> None:
        """Click the page's tab whose label is `label`."""
        tabs = "document.querySelectorAll('[role=tablist] > *, [role=tab]')"
        tab = f"[...{tabs}].find(t => t.innerText.trim() === '{label}')"
        self.wait_for(f"!!{tab}", f"the {label} tab")
        self.evaluate(f"{tab}.click()")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Stop the browser and its helper processes (its own process group)."""
        self.ws.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        self.profile.cleanup()

    @staticmethod
    def _wait(probe, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                value = probe()
            except (OSError, httpx.HTTPError):
                value = None
            if value:
                return value
            time.sleep(0.3)
        raise SystemExit(f"error: timed out waiting for {what}")


def _page_targets(port: int) -> list[dict]:
    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
    return [t for t in targets if t.get("type") == "page"]


def text_shown(text: str) -> str:
    return f"document.body && document.body.innerText.includes({json.dumps(text)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", default="http://127.0.0.1:4200/api", help="Prefect API")
    parser.add_argument("--flow-run", default="", help="flow run id; default: latest completed")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--prefix", default="ui", help="file names: PREFIX-run.png, ...")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)

    api = args.api_url.rstrip("/")
    ui = api.removesuffix("/api")
    run_id = args.flow_run or latest_completed_run(api)
    run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
    artifact = chart_artifact(api, run_id)
    args.out.mkdir(parents=True, exist_ok=True)
    browser = Browser(args.browser, (args.width, args.height))
    try:
        shots = []
        run_page = f"{ui}/runs/flow-run/{run_id}"
        browser.open(run_page, text_shown("Task Runs"), "the flow run page")
        browser.click_tab("Task Runs")  # the stages by name, rather than the log
        browser.wait_for(text_shown("Completed"), "the task runs")
        shots.append(("run", run_page))
        browser.screenshot(args.out / f"{args.prefix}-run.png")
        browser.click_tab("Artifacts")
        tab = "document.getElementById('artifacts-content')"
        browser.wait_for(f"!!{tab} && {tab}.innerText.includes('Created')", "the artifact cards")
        browser.evaluate("document.querySelector('[role=tablist]').scrollIntoView()")
        time.sleep(1.0)
        shots.append(("artifacts", f"{run_page} (Artifacts tab)"))
        browser.screenshot(args.out / f"{args.prefix}-artifacts.png")
        chart_page = f"{ui}/artifacts/artifact/{artifact['id']}"
        images = "[...document.images].filter(i => i.src.startsWith('data:image/svg'))"
        browser.open(
            chart_page, f"{images}.length > 0 && {images}.every(i => i.complete)", "the chart"
        )
        shots.append(("chart", chart_page))
        browser.screenshot(args.out / f"{args.prefix}-chart.png")
    finally:
        browser.close()
    print(f"flow run {run['name']} ({run_id})")
    for name, url in shots:
        path = args.out / f"{args.prefix}-{name}.png"
        print(f"{path} ({path.stat().st_size // 1024} KB): {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
