"""Which server stack for `trainlab lab`: candidate stacks side by side, on the same event stream, in a real browser.

Issue 16 asks to choose the lab's server stack by measurement: page load time, updates per second with 32
members, and CPU taken from training. This benchmark measures, on this machine:

* ``sse``     (A) the shipped lab: its real app (``trainlab.lab._app.create_app``) on uvicorn, its real page
  (``/#run=NAME``: the form, the run list, every chart of lab.js), events as server-sent events;
* ``sse-min`` (A') the same server and SSE route, read by a minimal page (three charts drawn by the lab's
  ``plot.js``: the training loss and validation loss of every member, and one layer's activation histogram
  of every member): it separates what the transport costs from what the full lab page draws;
* ``ws``      (B) the same events over a WebSocket (a Starlette ``WebSocketRoute`` added to the real app, on
  uvicorn with ``wsproto``), read by the same minimal page;
* ``bokeh``   (C) a Bokeh server app (``bokeh serve``'s machinery, in-process): the same three charts as
  ``ColumnDataSource``\\ s (curves ``.stream``-ed, the histogram's data replaced), drawn by BokehJS.

The workload is the same for every stack: the real event stream of one lab run (a population of
``--size`` members of the lab's default MLP, ``--steps`` steps, recorded once from a real ``trainlab lab``
server through its SSE route, with each event's arrival time), replayed into each candidate's server at
its real pace, looping with the steps shifted. A candidate's server publishes each replayed event the way
it would a live one: the lab's ``Lab._deliver`` (the path a worker's events take), or the Bokeh document's
``add_next_tick_callback``. Meanwhile, a separate ``trainlab train`` of the same population runs, so the
cost of the stack (server and browser) shows as training throughput lost.

For each candidate, in each round (candidates interleaved, the order rotated every round, plus a
``none`` row: the training with no server and a blank page), it measures in headless chromium (Selenium,
Debian's chromium + chromium-driver, a script injected before the page's own that counts stream messages
and the animation frames in which a canvas was drawn):

* page load: from navigation start to the first animation frame that draws a chart after the page has
  received its first stream message (the chart with the run's data, not an empty axis);
* updates/s at real pace: stream messages the page received per second (for Bokeh: ``PATCH-DOC``
  messages; one per event) and animation frames with canvas drawing per second ("drawn");
* capacity: the stream replayed ``--burst-speed`` times faster for ``--burst`` seconds (the sent rate is what
  the server's own replay managed: a saturated server process slows it), then the page is given time to
  catch up: the burst's events the page received per second (until the last of them arrived), frames drawn
  per second over that time, and how long after the burst ended its last event arrived (lag);
* server CPU and browser CPU (all of chromium's processes) in seconds per second of streaming (/proc), and
  their sum: what the stack takes from a training that shares the machine; the same two during the burst
  (from its start until the page had caught up), which show which side saturates;
* the concurrent training's steps/s, over that of the same training in the ``none`` rounds (on a shared,
  loaded machine this ratio is noisier than the CPU the stack took, which is measured directly).

Medians over the rounds. Usage:

    python benchmarks/bench_lab_stacks.py [--size 32] [--steps 300] [--train-steps 150] [--repeats 3]
    python benchmarks/bench_lab_stacks.py --quick          # a tiny run (tests/bench_tests)

The internal ``serve`` command runs one candidate server (``serve --stack ws --recording F``); it reads
commands on stdin (``play SPEED``, ``pause``, ``count``) and answers ``ok N`` (events published so far).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
from pathlib import Path
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from bench_lab import ENV, LabServer, cpu_seconds, fields  # the script's folder is on sys.path

STACKS = ("sse", "sse-min", "ws", "bokeh")
DESCRIBE = {"none": "no server (blank page)", "sse": "A: lab (Starlette+SSE), lab page",
            "sse-min": "A': lab server, SSE, minimal page", "ws": "B: Starlette WebSocket, minimal page",
            "bokeh": "C: Bokeh server"}
RUN = "bench"


# ---- the workload: one real lab run's event stream ---------------------------------------------------
def record(size: int, steps: int, path: Path, work: Path) -> None:
    """Train ``size`` members for ``steps`` steps in a real ``trainlab lab`` and write every event it streams,
    with its arrival time in seconds, to ``path`` (JSON lines ``{"t": ..., "ev": {...}}``)."""
    import http.client

    srv = LabServer(work / "record-lab")
    try:
        srv.post("/api/runs", {**fields(size, steps), "name": RUN})
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600)
        c.request("GET", f"/api/runs/{RUN}/events")
        r = c.getresponse()
        out, t0 = [], time.monotonic()
        while True:
            line = r.fp.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            ev = json.loads(line[6:])
            ev.pop("seq", None)
            out.append({"t": time.monotonic() - t0, "ev": ev})
            if ev["type"] == "state" and ev["state"] in ("finished", "failed", "interrupted"):
                break
        c.close()
    finally:
        srv.stop()
    if not any(e["ev"]["type"] == "progress" for e in out) or out[-1]["ev"].get("state") != "finished":
        raise SystemExit(f"the recorded lab run did not finish: {out[-1] if out else 'no events'}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in out))
    os.replace(tmp, path)


def load_recording(path: Path) -> tuple[list[dict[str, Any]], list[tuple[float, dict[str, Any]]]]:
    """The recording as (prefix, stream): the prefix is every event before the first progress event (the
    states, ``begin``, the first probe record), published at once when a server starts; the stream is the
    progress, evaluation, probe and divergence events after it, with times from the first progress event."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    first = next(i for i, r in enumerate(rows) if r["ev"]["type"] == "progress")
    prefix = [r["ev"] for r in rows[:first]]
    t0 = rows[first]["t"]
    stream = [(r["t"] - t0, r["ev"]) for r in rows[first:] if r["ev"]["type"] in ("progress", "eval", "probe", "diverged")]
    return prefix, stream


def shifted(ev: dict[str, Any], steps: int) -> dict[str, Any]:
    """``ev`` with its step moved on by ``steps`` (the replay loops: the curves go on to the right)."""
    if not steps:
        return ev
    ev = dict(ev)
    if "step" in ev:
        ev["step"] = ev["step"] + steps
    if isinstance(ev.get("record"), dict):
        ev["record"] = {**ev["record"], "step": ev["record"].get("step", 0) + steps}
    return ev


class Replay(threading.Thread):
    """Publishes the recorded stream through ``publish`` at ``speed`` times its real pace, looping. Virtual
    time advances only while playing; ``play(speed)`` and ``pause()`` may be called from any thread."""

    def __init__(self, stream: list[tuple[float, dict[str, Any]]], publish: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(daemon=True, name="replay")
        self.stream, self.publish = stream, publish
        gaps = [b[0] - a[0] for a, b in zip(stream, stream[1:])]
        self.period = stream[-1][0] + (statistics.median(gaps) if gaps else 0.2)
        self.loop_steps = max((_step_of(ev) for _, ev in stream), default=0)
        self.cond = threading.Condition()
        self.speed = 0.0
        self.v0, self.wall0 = 0.0, time.monotonic()
        self.published = 0

    def _vnow(self) -> float:
        return self.v0 + (time.monotonic() - self.wall0) * self.speed

    def play(self, speed: float) -> None:
        with self.cond:
            self.v0, self.wall0, self.speed = self._vnow(), time.monotonic(), speed
            self.cond.notify_all()

    def pause(self) -> None:
        self.play(0.0)

    def run(self) -> None:
        cycle = 0
        while True:
            for t, ev in self.stream:
                due = t + cycle * self.period
                with self.cond:
                    while True:
                        v = self._vnow()
                        if self.speed > 0 and v >= due:
                            break
                        self.cond.wait(timeout=(due - v) / self.speed if self.speed > 0 else None)
                self.publish(shifted(ev, cycle * self.loop_steps))
                self.published += 1
            cycle += 1


def _step_of(ev: dict[str, Any]) -> int:
    return int(ev.get("step") or (ev.get("record") or {}).get("step") or 0)


def commands(replay: Replay) -> None:
    """The server's stdin: ``play SPEED`` / ``pause`` / ``count``; each answered ``ok N`` on stdout."""
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "play":
            replay.play(float(parts[1]))
        elif parts[0] == "pause":
            replay.pause()
        print(f"ok {replay.published}", flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # stdin closed: the benchmark is gone


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


# ---- candidates A, A', B: the real lab app (plus a minimal page and a WebSocket route) ----------------
MIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>trainlab lab: stack benchmark</title><link rel="icon" href="data:,">
<style>body{font:13px sans-serif;margin:8px} canvas{width:900px;height:260px;display:block;margin-bottom:6px}</style>
</head><body>
<canvas id="batch"></canvas><canvas id="val"></canvas><canvas id="hist"></canvas>
<script src="/static/plot.js"></script>
<script>
"use strict";
const q = new URLSearchParams(location.search), run = q.get("run");
const batch = TLPlot.lineChart(document.getElementById("batch"), {title: "training loss", xLabel: "step"});
const val = TLPlot.lineChart(document.getElementById("val"), {title: "validation loss", xLabel: "step"});
const hist = TLPlot.histogram(document.getElementById("hist"), {title: "activations", xLabel: "value"});
let names = [], colors = [];
function addEval(r) {
  if (!Array.isArray(r.val_loss)) return;
  r.val_loss.forEach((y, i) => { if (val.series[i]) val.series[i].points.push([r.step, y]); });
  val.request();
}
function drawHist(rec) {
  const layer = (rec.layers || []).find(l => l.act && l.act.hist);
  if (!layer) return;
  hist.opts.title = `activations: ${layer.path} ${layer.type}, step ${rec.step}`;
  hist.setData(layer.act.hist.map((h, i) => ({name: names[i], color: colors[i], edges: layer.act.edges, counts: h})));
}
function onEvent(ev) {
  switch (ev.type) {
    case "begin":
      names = ev.labels || []; colors = TLPlot.colors(ev.size || names.length);
      batch.setSeries(names.map((n, i) => ({name: n, color: colors[i], points: []})));
      val.setSeries(names.map((n, i) => ({name: n, color: colors[i], points: []})));
      (ev.records || []).forEach(addEval);
      if ((ev.probes || []).length) drawHist(ev.probes[ev.probes.length - 1]);
      break;
    case "progress":
      ev.loss.forEach((y, i) => { if (batch.series[i]) batch.series[i].points.push([ev.step, y]); });
      batch.request();
      break;
    case "eval": addEval(ev.record); break;
    case "probe": drawHist(ev.record); break;
  }
}
if (q.get("transport") === "ws") {
  const ws = new WebSocket(`ws://${location.host}/bench/ws/${encodeURIComponent(run)}`);
  ws.onmessage = m => onEvent(JSON.parse(m.data));
} else {
  const es = new EventSource(`/api/runs/${encodeURIComponent(run)}/events`);
  es.onmessage = m => onEvent(JSON.parse(m.data));
}
</script></body></html>
"""


def serve_lab(prefix: list[dict[str, Any]], stream: list[tuple[float, dict[str, Any]]], root: Path) -> None:
    """Candidates A, A' and B in one process: the real lab app, with the run's events published by the replay
    through ``Lab._deliver`` (the way a worker's events arrive), plus the minimal page (``/bench``) and the
    WebSocket route (``/bench/ws/{name}``: the same events, one JSON text message each)."""
    import asyncio

    from starlette.responses import HTMLResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect
    import uvicorn

    from trainlab.lab._app import create_app
    from trainlab.lab._runs import Lab, RunState

    lab = Lab(root, max_parallel=1, threads=1)
    st = RunState(RUN, root / RUN, "running")
    for ev in prefix:
        st.publish(ev)
    lab.runs[RUN] = st
    app = create_app(root, lab=lab)

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse(MIN_PAGE)

    async def ws_events(websocket: WebSocket) -> None:
        run = lab.runs[websocket.path_params["name"]]
        await websocket.accept()
        wake, last, closed = asyncio.Event(), 0, False
        run.waiters.add(wake)

        async def until_closed() -> None:  # the client says nothing; a receive ends when it goes away
            nonlocal closed
            try:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            finally:
                closed = True
                wake.set()

        watcher = asyncio.create_task(until_closed())
        try:
            while not closed:  # the SSE route's loop (trainlab/lab/_app.py, events), one message per event
                for e in run.events[bisect.bisect_right(run.events, last, key=lambda e: e["seq"]):]:
                    await websocket.send_text(json.dumps(e, separators=(",", ":")))
                    last = e["seq"]
                wake.clear()
                await wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            run.waiters.discard(wake)
            watcher.cancel()

    app.router.routes.insert(0, Route("/bench", page))
    app.router.routes.insert(0, WebSocketRoute("/bench/ws/{name}", ws_events))
    replay = Replay(stream, lambda ev: lab._deliver(st, ev))
    replay.start()
    threading.Thread(target=commands, args=(replay,), daemon=True).start()
    sock = free_socket()
    print(f"serving http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="wsproto",
                                           timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass


# ---- candidate C: a Bokeh server -----------------------------------------------------------------------
def serve_bokeh(prefix: list[dict[str, Any]], stream: list[tuple[float, dict[str, Any]]]) -> None:
    """Candidate C: a Bokeh server app with the same three charts, fed by the same replay. Every session (an
    open page) has its own document; each event is applied to every live document on its own event-loop turn
    (``add_next_tick_callback``, Bokeh's way of updating documents from another thread), one ``PATCH-DOC``
    message per event."""
    from functools import partial

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource
    from bokeh.palettes import Category10, viridis
    from bokeh.plotting import figure
    from bokeh.server.server import Server
    from tornado.ioloop import IOLoop

    begin = next(e for e in prefix if e["type"] == "begin")
    size = int(begin["size"])
    cols = [f"m{i}" for i in range(size)]
    colors = list(Category10[10][:size]) if size <= 10 else list(viridis(size))
    lock = threading.Lock()
    history: dict[str, Any] = {"batch": [], "val": [], "probe": None}
    docs: dict[Any, dict[str, Any]] = {}

    def hist_data(rec: dict[str, Any] | None) -> dict[str, list[Any]]:
        layer = next((l for l in (rec or {}).get("layers", []) if (l.get("act") or {}).get("hist")), None)
        xs, ys = [], []
        if layer is not None:
            edges = layer["act"]["edges"]
            for h in layer["act"]["hist"]:  # an outline per member, normalised like plot.js's histogram
                total = sum(h) or 1
                xs.append([x for e0, e1 in zip(edges, edges[1:]) for x in (e0, e1)])
                ys.append([c / total for c in h for _ in (0, 1)])
        return {"xs": xs, "ys": ys, "color": colors[:len(xs)]}

    def rows(points: list[tuple[int, list[Any]]]) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = {"step": [s for s, _ in points]}
        for i, c in enumerate(cols):
            data[c] = [v[i] if v[i] is not None else math.nan for _, v in points]
        return data

    def apply(state: dict[str, Any], ev: dict[str, Any]) -> None:
        if ev["type"] == "progress":
            state["batch"].stream(rows([(ev["step"], ev["loss"])]))
        elif ev["type"] == "eval" and isinstance(ev["record"].get("val_loss"), list):
            state["val"].stream(rows([(ev["record"]["step"], ev["record"]["val_loss"])]))
        elif ev["type"] == "probe":
            state["hist"].data = hist_data(ev["record"])

    def on_event(ev: dict[str, Any]) -> None:
        with lock:
            if ev["type"] == "progress":
                history["batch"].append((ev["step"], ev["loss"]))
            elif ev["type"] == "eval" and isinstance(ev["record"].get("val_loss"), list):
                history["val"].append((ev["record"]["step"], ev["record"]["val_loss"]))
            elif ev["type"] == "probe":
                history["probe"] = ev["record"]
            for doc, state in list(docs.items()):
                doc.add_next_tick_callback(partial(apply, state, ev))

    for ev in prefix:
        if ev["type"] == "begin":
            for r in ev.get("records") or []:
                if isinstance(r.get("val_loss"), list):
                    history["val"].append((r["step"], r["val_loss"]))
            if ev.get("probes"):
                history["probe"] = ev["probes"][-1]
        elif ev["type"] == "probe":
            history["probe"] = ev["record"]

    def make_doc(doc: Any) -> None:
        with lock:
            state = {"batch": ColumnDataSource(rows(history["batch"]), name="batch"),
                     "val": ColumnDataSource(rows(history["val"]), name="val"),
                     "hist": ColumnDataSource(hist_data(history["probe"]), name="hist")}
            charts = []
            for key, title in (("batch", "training loss"), ("val", "validation loss")):
                f = figure(title=title, width=900, height=260, x_axis_label="step", tools="")
                for c, color in zip(cols, colors):
                    f.line("step", c, source=state[key], color=color, line_width=1.2)
                charts.append(f)
            f = figure(title="activations", width=900, height=260, x_axis_label="value", tools="")
            f.multi_line("xs", "ys", source=state["hist"], color="color")
            charts.append(f)
            doc.add_root(column(*charts))
            docs[doc] = state

        def gone(ctx: Any) -> None:
            with lock:
                docs.pop(doc, None)
        doc.on_session_destroyed(gone)

    replay = Replay(stream, on_event)
    replay.start()
    threading.Thread(target=commands, args=(replay,), daemon=True).start()
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # Bokeh binds its own; the port was free a moment ago
    server = Server({"/": Application(FunctionHandler(make_doc))}, io_loop=IOLoop.current(), port=port,
                    address="127.0.0.1", allow_websocket_origin=[f"127.0.0.1:{port}"])
    server.start()
    print(f"serving http://127.0.0.1:{port}/", flush=True)
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass


class Candidate:
    """One candidate's server process (``serve`` below), driven through its stdin."""

    def __init__(self, stack: str, recording: Path, root: Path) -> None:
        self.stack = stack
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve", "--stack", stack,
                                      "--recording", str(recording), "--root", str(root)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"the {stack} server did not start: {line!r}")
        self.base = f"http://127.0.0.1:{m.group(1)}"
        self.url = {"sse": f"{self.base}/#run={RUN}", "sse-min": f"{self.base}/bench?run={RUN}&transport=sse",
                    "ws": f"{self.base}/bench?run={RUN}&transport=ws", "bokeh": f"{self.base}/"}[stack]

    def send(self, cmd: str) -> int:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline().split()[1])

    def stop(self) -> None:
        # Killed, not Ctrl-C: it has nothing to keep (no worker, a temporary root), and uvicorn's graceful
        # shutdown would wait for a stream still open and log its cancellation.
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


# ---- the browser -----------------------------------------------------------------------------------------
#: injected before any script of the page: counts stream messages (SSE, WebSocket; for Bokeh its PATCH-DOC
#: messages) and the animation frames in which some canvas was drawn, with their times (performance.now())
INSTRUMENT = r"""
(() => {
  const B = window.__bench = {msgs: [], frames: [], firstMsg: null, firstDataFrame: null, bokeh: false};
  let dirty = false;
  const note = (data) => {
    const t = performance.now();
    if (B.firstMsg === null) B.firstMsg = t;
    if (typeof data !== "string") return;  // Bokeh's binary buffers: part of the message before
    if (data.includes('"msgtype"')) {  // a Bokeh message's header: ACK, PULL-DOC, ... or an update
      B.bokeh = true;
      if (/"msgtype":\s*"PATCH-DOC"/.test(data)) B.msgs.push(t);
      return;
    }
    if (!B.bokeh) B.msgs.push(t);  // an SSE or WebSocket event (Bokeh: a message's metadata or content)
  };
  const ES = window.EventSource;
  window.EventSource = class extends ES {
    constructor(...a) { super(...a); this.addEventListener("message", m => note(m.data)); }
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...a) { super(...a); this.addEventListener("message", m => note(m.data)); }
  };
  const P = CanvasRenderingContext2D.prototype;
  for (const name of ["stroke", "fill", "fillRect", "strokeRect", "fillText", "drawImage", "putImageData"]) {
    const f = P[name];
    P[name] = function (...a) { dirty = true; return f.apply(this, a); };
  }
  const tick = () => {
    if (dirty) {
      const t = performance.now();
      B.frames.push(t);
      if (B.firstDataFrame === null && B.firstMsg !== null) B.firstDataFrame = t;
      dirty = false;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
"""


def require_browser() -> tuple[str, str]:
    """chromium and chromedriver (Debian's) and selenium, or SystemExit naming what is missing."""
    from trainlab.lab.testing import browser_paths

    paths = browser_paths()
    if paths is None:
        raise SystemExit("bench_lab_stacks: chromium, chromium-driver (apt) and selenium (pip) are needed")
    return paths


class Browser:
    """Headless chromium through Selenium (the flags of tests/lab_tests/test_lab_browser.py, and no
    back-forward cache: each trial's page must be gone when the next starts)."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        chromium, driver = require_browser()
        opts = Options()
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1500", "--disable-background-networking", "--no-first-run",
                     "--disable-features=BackForwardCache"):  # a page left is closed, its stream with it
            opts.add_argument(flag)
        opts.binary_location = chromium
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.d = webdriver.Chrome(service=Service(driver), options=opts)
        self.d.set_page_load_timeout(120)
        self.d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": INSTRUMENT})
        self.root_pid = self.d.service.process.pid

    def now(self) -> float:
        """The page's clock (ms since its navigation started). Late when the page's main thread is busy."""
        return float(self.d.execute_script("return performance.now()"))

    def offset(self) -> float:
        """The page's clock minus ours (ms), read while the page is idle (the best of 5 round trips): a time
        of ours maps to the page's without asking a page that may be busy drawing a backlog."""
        best = (math.inf, 0.0)
        for _ in range(5):
            t0 = time.monotonic()
            page = self.now()
            t1 = time.monotonic()
            best = min(best, (t1 - t0, page - (t0 + t1) / 2 * 1000))
        return best[1]

    def bench(self) -> dict[str, Any]:
        return self.d.execute_script("return window.__bench")

    def cpu(self) -> dict[int, float]:
        """CPU seconds of every process under chromedriver (the browser, its renderers, GPU and utility ones)."""
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(d))
        out, todo = {}, list(children.get(self.root_pid, []))
        while todo:
            pid = todo.pop()
            try:
                out[pid] = cpu_seconds(pid)
            except (OSError, ValueError, IndexError):
                continue
            todo += children.get(pid, [])
        return out

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.d.get_log("browser") if e["level"] == "SEVERE"]

    def quit(self) -> None:
        self.d.quit()


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def in_window(times: list[float], lo: float, hi: float) -> int:
    return bisect.bisect_right(times, hi) - bisect.bisect_left(times, lo)


# ---- one trial -------------------------------------------------------------------------------------------
def train_config(size: int, steps: int, work: Path) -> Path:
    from trainlab.lab._form import compose, given_to_toml

    given, _ = compose(**fields(size, steps))
    cfg = work / f"train-{size}-{steps}.toml"
    cfg.write_text(given_to_toml(given))
    return cfg


def train(cfg: Path, work: Path) -> float:
    """``trainlab train`` of the config; its steps per second of training (summary.json)."""
    out = work / f"train-{time.monotonic_ns()}"
    subprocess.run([sys.executable, "-m", "trainlab.cli", "train", str(cfg), "--out", str(out), "--quiet"],
                   env=ENV, check=True)
    summary = json.loads((out / "summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return summary["steps"] / summary["seconds"]


def trial(stack: str, browser: Browser, recording: Path, cfg: Path | None, work: Path,
          args: argparse.Namespace) -> dict[str, Any]:
    """One candidate (or ``none``: the training alone, a blank page) once: page load, the real pace with the
    training beside it, the burst. The keys are those of COLUMNS (and ``errors``: the console's)."""
    if stack == "none":
        assert cfg is not None, "the none row is the training alone"
        browser.d.get("about:blank")
        return {"train_steps_per_s": train(cfg, work)}
    cand = Candidate(stack, recording, work / f"root-{stack}-{time.monotonic_ns()}")
    browser.errors()  # the console log so far (read and cleared): this trial's errors only
    try:
        browser.d.get(cand.url)
        deadline = time.monotonic() + 60
        while (b := browser.bench()) is None or b["firstDataFrame"] is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stack}: the page drew no data within 60 s ({b})")
            time.sleep(0.05)
        load_ms = b["firstDataFrame"]
        time.sleep(0.5)  # let the page settle (the lab page's first run-list request, fonts)
        off = browser.offset()
        # real pace, with the training running beside it
        sent0 = cand.send("play 1")
        srv0, br0, w0 = cpu_seconds(cand.proc.pid), browser.cpu(), time.monotonic()
        trained: dict[str, float] = {}
        if cfg is not None:
            trained["train_steps_per_s"] = train(cfg, work)
        else:  # no concurrent training (--train-steps 0): a fixed window
            time.sleep(args.window)
        srv1, br1, w1 = cpu_seconds(cand.proc.pid), browser.cpu(), time.monotonic()
        sent1 = cand.send("count")
        b = browser.bench()
        p0, p1, span = w0 * 1000 + off, w1 * 1000 + off, w1 - w0
        res = {"load_ms": load_ms, **trained, "sent_per_s": (sent1 - sent0) / (w1 - w0),
               "recv_per_s": in_window(b["msgs"], p0, p1) / span, "drawn_per_s": in_window(b["frames"], p0, p1) / span,
               "server_cpu": (srv1 - srv0) / (w1 - w0), "browser_cpu": cpu_delta(br0, br1) / (w1 - w0)}
        res["stack_cpu"] = res["server_cpu"] + res["browser_cpu"]
        # capacity: the same stream, --burst-speed times faster; then wait until the page has every event
        # of the burst (or 10 s more): how long it took is the stack's throughput, what came after the lag.
        # A quiet gap first (paused): what was sent before it has arrived by its middle, and the burst starts
        # 0.2 s after that, so every message the page gets after the middle is the burst's -- no boundary to
        # place across the page's clock and this one (their offset is an estimate, a message at the burst's
        # very start could fall on either side of it)
        cand.send("pause")
        time.sleep(0.5)
        qc = time.monotonic() * 1000 + off
        time.sleep(0.2)
        c0, bc0, v0 = cpu_seconds(cand.proc.pid), browser.cpu(), time.monotonic()
        s0 = cand.send(f"play {args.burst_speed}")
        time.sleep(args.burst)
        s1 = cand.send("pause")
        v_end = time.monotonic()
        q0, q1 = v0 * 1000 + off, v_end * 1000 + off
        deadline = time.monotonic() + max(10.0, 3 * args.burst)
        while True:
            b = browser.bench()
            got = b["msgs"][bisect.bisect_left(b["msgs"], qc):]
            if len(got) >= s1 - s0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        c1, bc1, v1 = cpu_seconds(cand.proc.pid), browser.cpu(), time.monotonic()
        end = max(got[-1] if got else q1, q1)
        res.update({"burst_sent_per_s": (s1 - s0) / (v_end - v0),
                    "burst_recv_per_s": len(got) / ((end - q0) / 1000),
                    "burst_drawn_per_s": in_window(b["frames"], q0, end) / ((end - q0) / 1000),
                    "burst_lag_s": (end - q1) / 1000, "burst_missing": s1 - s0 - len(got),
                    "burst_server_cpu": (c1 - c0) / (v1 - v0), "burst_browser_cpu": cpu_delta(bc0, bc1) / (v1 - v0),
                    "errors": [e["message"][:200] for e in browser.errors()]})
        return res
    finally:
        browser.d.get("about:blank")  # the page goes first: the server then stops with no stream open
        cand.stop()


COLUMNS = [("load_ms", "page load ms", "{:.0f}"), ("recv_per_s", "updates/s recv", "{:.1f}"),
           ("drawn_per_s", "frames drawn/s", "{:.1f}"), ("burst_sent_per_s", "burst sent/s", "{:.0f}"),
           ("burst_recv_per_s", "burst recv/s", "{:.0f}"),
           ("burst_drawn_per_s", "burst drawn/s", "{:.0f}"), ("burst_lag_s", "burst lag s", "{:.2f}"),
           ("server_cpu", "server CPU s/s", "{:.3f}"), ("browser_cpu", "browser CPU s/s", "{:.3f}"),
           ("stack_cpu", "server+browser", "{:.3f}"), ("burst_server_cpu", "burst server CPU", "{:.2f}"),
           ("burst_browser_cpu", "burst browser CPU", "{:.2f}"),
           ("train_steps_per_s", "train steps/s", "{:.1f}"), ("train_rel", "train vs none", "{:.2f}")]


def table(summary: dict[str, dict[str, float]]) -> str:
    head = ["stack"] + [c[1] for c in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stack, row in summary.items():
        cells = [DESCRIBE.get(stack, stack)]
        for key, _, f in COLUMNS:
            v = row.get(key)
            cells.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else f.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    sv = sub.add_parser("serve", help="(internal) run one candidate server on a recording")
    sv.add_argument("--stack", choices=STACKS, required=True)
    sv.add_argument("--recording", type=Path, required=True)
    sv.add_argument("--root", type=Path, required=True)
    ap.add_argument("--size", type=int, default=32, help="members of the population (default 32)")
    ap.add_argument("--steps", type=int, default=300, help="steps of the recorded lab run (default 300)")
    ap.add_argument("--train-steps", type=int, default=150,
                    help="steps of the concurrent training (default 150; 0: none, the stream runs for --window s)")
    ap.add_argument("--window", type=float, default=5.0,
                    help="seconds of streaming at the real pace without a concurrent training (default 5)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds, candidates interleaved (default 3)")
    ap.add_argument("--burst", type=float, default=3.0, help="seconds of the capacity burst (default 3)")
    ap.add_argument("--burst-speed", type=float, default=20.0, help="the burst's speed-up of the stream (default 20)")
    ap.add_argument("--stacks", default=",".join(STACKS), help=f"candidates (default {','.join(STACKS)})")
    ap.add_argument("--recording", type=Path, default=None,
                    help="reuse this recording (made by an earlier run) instead of recording a new one")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    ap.add_argument("--quick", action="store_true",
                    help="a tiny run for tests: 8 members, 30 recorded steps, no concurrent training (2 s of streaming), "
                         "1 round, 1 s bursts")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        prefix, stream = load_recording(args.recording)
        if args.stack == "bokeh":
            serve_bokeh(prefix, stream)
        else:
            serve_lab(prefix, stream, args.root)
        return
    if args.quick:
        args.size, args.steps, args.train_steps, args.repeats, args.burst, args.window = 8, 30, 0, 1, 1.0, 2.0
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    bad = [s for s in stacks if s not in STACKS]
    if bad:
        raise SystemExit(f"--stacks: unknown {', '.join(bad)}; choose from {', '.join(STACKS)}")
    if "bokeh" in stacks:
        try:
            import bokeh  # noqa: F401
        except ImportError:
            raise SystemExit("bench_lab_stacks: the bokeh candidate needs bokeh (pip install bokeh)") from None
    require_browser()
    work = Path(tempfile.mkdtemp(prefix="bench-lab-stacks-"))
    rec = args.recording
    if rec is None or not rec.exists():
        rec = rec or work / "recording.jsonl"
        t = time.monotonic()
        record(args.size, args.steps, rec, work)
        print(f"recorded {sum(1 for _ in rec.open())} events of a {args.size}-member lab run "
              f"({args.steps} steps) in {time.monotonic() - t:.0f} s: {rec}", flush=True)
    _, stream = load_recording(rec)
    size = next(e for e in load_recording(rec)[0] if e["type"] == "begin")["size"]
    kinds = [e["type"] for _, e in stream]
    print(f"the stream: {len(stream)} events over {stream[-1][0]:.1f} s ({len(stream) / stream[-1][0]:.1f}/s; "
          + ", ".join(f"{k} {kinds.count(k)}" for k in ("progress", "eval", "probe")) + f"), {size} members", flush=True)
    cfg = train_config(size, args.train_steps, work) if args.train_steps > 0 else None
    order = (["none"] if cfg is not None else []) + stacks
    rows: dict[str, list[dict]] = {k: [] for k in order}
    browser = Browser()
    t_start, load_start = time.monotonic(), os.getloadavg()
    try:
        for rep in range(args.repeats):
            for k in order[rep % len(order):] + order[:rep % len(order)]:
                r = trial(k, browser, rec, cfg, work, args)
                rows[k].append(r)
                print(json.dumps({"round": rep, "stack": k, **{a: round(b, 4) if isinstance(b, float) else b
                                                               for a, b in r.items()}}), flush=True)
    finally:
        browser.quit()
    base = statistics.median(r["train_steps_per_s"] for r in rows["none"]) if cfg is not None else math.nan
    summary: dict[str, dict[str, float]] = {}
    for k in order:
        summary[k] = {key: statistics.median(r[key] for r in rows[k]) for key in rows[k][0] if key != "errors"}
        if cfg is not None:
            summary[k]["train_rel"] = statistics.median(r["train_steps_per_s"] / base for r in rows[k])
    load_end = os.getloadavg()
    print(f"\n{len(order) - 1} stacks x {args.repeats} round(s), {size} members, medians; "
          f"{time.monotonic() - t_start:.0f} s; load average {load_start[0]:.2f} -> {load_end[0]:.2f} "
          f"on {os.cpu_count()} CPUs; burst x{args.burst_speed:g} for {args.burst:g} s")
    print(table(summary), flush=True)
    errors = {k: [e for r in rows[k] for e in r.get("errors", [])] for k in stacks}
    if any(errors.values()):
        print(f"console errors: {json.dumps({k: v[:3] for k, v in errors.items() if v})}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows, "load": [load_start, load_end],
                                         "size": size, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    shutil.rmtree(work, ignore_errors=True)  # a recording asked for with --recording lies outside it


if __name__ == "__main__":
    main()
