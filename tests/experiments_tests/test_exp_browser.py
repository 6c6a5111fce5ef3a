"""report.html in a real browser: headless Chromium, driven over the DevTools protocol.

The browser is Debian's ``chromium`` (no download). It is driven through
``--remote-debugging-pipe`` (JSON messages separated by NUL bytes on file
descriptors 3 and 4), so the test needs nothing beyond the standard library. Skipped
when chromium is absent, unless ``TRAINLAB_REQUIRE_BROWSER=1`` (CI), where that fails.

For a laptop (1366 x 900) and a phone (390 x 844, 2x, mobile) viewport it loads the
page, waits for the load event, and asserts: every ``<img>`` decoded (natural size >
0), no console error or exception or failed load, and no horizontal overflow (the
page fits the screen's width; wide tables scroll inside their own box). A screenshot
of each viewport goes to ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from pathlib import Path
import shutil
import subprocess
import tempfile
import time

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]
VIEWPORTS = {
    "laptop": {"width": 1366, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    "phone": {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def require_chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("TRAINLAB_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (apt-get install -y chromium) and TRAINLAB_REQUIRE_BROWSER=1")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


class Browser:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="trainlab-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()

        def wire_fds() -> None:  # the child reads commands on fd 3 and writes replies on fd 4
            # Move both ends above 4 first: a pipe end that already is fd 3 or 4 would be
            # overwritten (or, dup2'ed onto itself, keep its close-on-exec flag).
            r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=False,
            preexec_fn=wire_fds)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def _send(self, msg: dict) -> None:
        os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_child_r, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"chromium closed the DevTools pipe: {err[-2000:]}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def page(self, method: str, params: dict | None = None) -> dict:
        return self.call(method, params, session=True)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def errors(self) -> list[str]:
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
            elif m == "Network.loadingFailed":
                out.append("load failed: " + p.get("errorText", ""))
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child_w, self._from_child_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


_PROBE = """JSON.stringify({
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth,
                                                   h: i.naturalHeight, shown: i.getBoundingClientRect().width})),
  scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
  title: document.title, sections: document.querySelectorAll('section.exp').length,
  summaryRows: document.querySelectorAll('table.summary tbody tr').length,
  external: Array.from(document.querySelectorAll('[src],link[href]')).map(e => e.getAttribute('src') ||
            e.getAttribute('href')).filter(u => !u.startsWith('data:'))
})"""


def inspect_report(html: Path, label: str) -> dict[str, dict]:
    """Load ``html`` in each viewport; return what the page reports, after saving screenshots.

    Raises AssertionError on console errors or images that did not decode.
    """
    browser = Browser(require_chromium())
    found: dict[str, dict] = {}
    try:
        for name in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            browser.page(name)
        ARTIFACTS.mkdir(exist_ok=True)
        for view, metrics in VIEWPORTS.items():
            browser.page("Emulation.setDeviceMetricsOverride", metrics)
            browser.events.clear()
            browser.page("Page.navigate", {"url": html.resolve().as_uri()})
            browser.wait_for("Page.loadEventFired")
            info = json.loads(browser.page("Runtime.evaluate", {"expression": _PROBE, "returnByValue": True})
                              ["result"]["value"])
            shot = browser.page("Page.captureScreenshot", {"format": "png"})["data"]
            (ARTIFACTS / f"{label}-{view}.png").write_bytes(base64.b64decode(shot))
            info["errors"] = browser.errors()
            found[view] = info
    finally:
        browser.close()
    return found


def assert_renders(found: dict[str, dict], *, figures: int) -> None:
    for view, info in found.items():
        assert not info["errors"], f"{view}: {info['errors']}"
        assert len(info["images"]) == figures, f"{view}: {len(info['images'])} images, expected {figures}"
        bad = [i for i in info["images"] if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
        assert not bad, f"{view}: images that did not render: {bad}"
        assert all(i["shown"] > 0 for i in info["images"])
        assert not info["external"], f"{view}: external resources {info['external']}"
        # readable on the device: nothing wider than the screen (wide tables scroll in their own box)
        assert info["scrollWidth"] <= info["innerWidth"] + 1, f"{view}: page is {info['scrollWidth']}px wide " \
                                                              f"on a {info['innerWidth']}px screen"


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    import torch

    from trainlab.report import reproduce

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("report")
        report = reproduce(["activations", "zero-init", "l1-vs-l2", "augmentation"], preset="smoke", out=out)
    finally:
        torch.set_num_threads(threads)
    return report


def test_report_renders_in_chromium(small_report):
    require_chromium()
    n_figures = sum(len(e["figures"]) for e in small_report.results["experiments"])
    assert n_figures >= 5
    found = inspect_report(small_report.html_path, "report-smoke")
    assert_renders(found, figures=n_figures)
    for info in found.values():
        assert info["sections"] == 4 and info["summaryRows"] == 4
    assert (ARTIFACTS / "report-smoke-laptop.png").stat().st_size > 1000
    assert (ARTIFACTS / "report-smoke-phone.png").stat().st_size > 1000


def test_browser_driver_reports_console_errors(tmp_path):
    """The check that the report has no console errors can fail: a page with one is caught."""
    require_chromium()
    page = tmp_path / "bad.html"
    page.write_text('<!doctype html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="data:image/png;base64,AAAA" alt="broken"><script>console.error("boom")</script>'
                    "</body></html>")
    found = inspect_report(page, "driver-selftest")
    for info in found.values():
        assert any("boom" in e for e in info["errors"])
        assert info["images"][0]["w"] == 0
    with pytest.raises(AssertionError):
        assert_renders(found, figures=1)
