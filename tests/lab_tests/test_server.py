"""`trainlab lab` as a real server process: the live stream (updates at least twice a second, a reconnect picks
up after the last event it saw), a server killed mid-run (kill -9) and restarted resumes the run, Ctrl-C stops
the server cleanly with the training checkpointed (also with a page's stream open), and the run then finishes with `trainlab train --resume`."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[2]
# 1,000 steps of 784-256-10 (a few ms each): long enough to outlast the test's waits on a fast, quiet machine
# (with 784-16-10 the run could end before the test saw it running), few enough checkpoints to stay quick
RUN = {"fields": {"data.train": "300", "data.val": "100", "data.test": "100", "model.hidden": "[256]",
                  "train.eval_every": "50", "train.steps": "1000"},
       "compare": [{"key": "model.init_scale", "values": "1, 0.1, 0.01"}], "name": "long"}


class Server:
    def __init__(self, root: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "lab", "--root", str(root), "--port", "0",
                                      "--threads", "1", "--probe-every", "10"],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        self.port = int(m.group(1))

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        data = json.loads(r.read() or b"{}")
        c.close()
        return r.status, data

    def wait(self, name: str, pred, timeout: float = 60.0) -> dict:
        t0 = time.monotonic()
        s: dict = {}
        while time.monotonic() - t0 < timeout:
            status, s = self.request("GET", f"/api/runs/{name}")
            if status == 200 and pred(s):
                return s
            time.sleep(0.1)
        raise AssertionError(f"timed out; last {s}")

    def events(self, name: str, *, last_id: int | None = None, seconds: float = 2.0) -> list[dict]:
        """The events the stream sends in ``seconds`` (after ``last_id``, as a reconnecting browser asks)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=seconds)
        c.request("GET", f"/api/runs/{name}/events", headers={} if last_id is None else {"Last-Event-ID": str(last_id)})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
        out, t0 = [], time.monotonic()
        while time.monotonic() - t0 < seconds:
            try:
                line = r.fp.readline().decode()
            except TimeoutError:  # nothing more within the window (a paused run sends nothing)
                break
            if line.startswith("data: "):
                out.append({**json.loads(line[6:]), "_t": time.monotonic() - t0})
        c.close()
        return out

    def kill(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_stream_kill_restart_resume_and_ctrl_c(tmp_path):
    root = tmp_path / "lab"
    srv = Server(root)
    try:
        status, r = srv.request("POST", "/api/runs", RUN)
        assert status == 201, r
        srv.wait("long", lambda s: s["status"] == "running" and s["step"] >= 60)  # past the first evaluation
        srv.request("POST", "/api/runs/long/pause", {})  # paused (so the test does not race the run's end) ...
        srv.wait("long", lambda s: s["status"] == "paused")
        # a page that reconnects gets only what it missed
        first = srv.events("long", seconds=0.5)
        assert first[0]["type"] == "state" and "begin" in [e["type"] for e in first]
        pid = next(e["pid"] for e in first if e["type"] == "state" and e.get("pid"))
        srv.request("POST", "/api/runs/long/resume", {})
        again = srv.events("long", last_id=first[-1]["seq"], seconds=0.5)
        assert again and again[0]["seq"] == first[-1]["seq"] + 1
        srv.request("POST", "/api/runs/long/pause", {})
        srv.wait("long", lambda s: s["status"] == "paused")
    finally:
        srv.kill(signal.SIGKILL)  # ... and the server dies: its worker checkpoints and leaves
    t0 = time.monotonic()
    while _alive(pid) and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    assert not _alive(pid), "the training worker outlived its server"
    run = root / "long"
    assert (run / "checkpoint.json").exists() and not (run / "summary.json").exists()
    ckpt_step = json.loads((run / "checkpoint.json").read_text())["state"]["step"]

    srv = Server(root)  # restarted: the run is there, interrupted, with its curves; it resumes
    try:
        s = srv.wait("long", lambda s: True)
        assert s["status"] == "interrupted" and s["resumable"] and s["step"] >= 10
        status, _ = srv.request("POST", "/api/runs/long/restart", {})
        assert status == 200
        s = srv.wait("long", lambda s: s["status"] == "running" and s["step"] >= ckpt_step + 5)
        # the live stream: every event from the start, then at least two updates a second while training
        events = srv.events("long", seconds=2.5)
        begin = [e for e in events if e["type"] == "begin"][-1]
        assert begin["step"] == ckpt_step and begin["records"][-1]["step"] <= ckpt_step
        assert begin["labels"] == ["init_scale=1", "init_scale=0.1", "init_scale=0.01"]
        live = [e for e in events if e["type"] == "progress" and e["_t"] > 0.5]
        span = live[-1]["_t"] - live[0]["_t"]
        assert (len(live) - 1) / span >= 2.0, f"{len(live)} progress events in {span:.2f} s"
        srv.request("POST", "/api/runs/long/pause", {})
        srv.wait("long", lambda s: s["status"] == "paused")
        # Ctrl-C while a page is open: the server ends the page's stream and stops cleanly, the training
        # checkpoints. (An open stream used to hold it for uvicorn's whole graceful-shutdown timeout, then
        # print a cancelled-task traceback.)
        page = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        page.request("GET", "/api/runs/long/events")
        stream = page.getresponse()
        assert stream.status == 200 and stream.readline()  # the stream is open and sending
        assert srv.kill(signal.SIGINT) == 0
        err = srv.proc.stderr.read()
        assert "stopped" in err and "Traceback" not in err and "graceful shutdown exceeded" not in err, err
        assert stream.read() is not None  # the page's stream was ended by the server (EOF), not left hanging
        page.close()
    finally:
        if srv.proc.poll() is None:
            srv.kill(signal.SIGKILL)
    after = json.loads((run / "checkpoint.json").read_text())["state"]["step"]
    assert after > ckpt_step and not (run / "summary.json").exists()
    # an ordinary run directory: the command line finishes it
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "trainlab.cli", "train", "--resume", str(run), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 1000
