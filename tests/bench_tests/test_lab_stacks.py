"""benchmarks/bench_lab_stacks.py: the replay loops the recorded stream at the asked pace, and a tiny run of the
whole benchmark (a real lab run recorded, four candidate servers, headless chromium; --quick: without the
concurrent training) prints a row per candidate with plausible values. The browser run is skipped without chromium/chromium-driver/selenium or bokeh, unless
TRAINLAB_REQUIRE_BROWSER=1 (CI), where that fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_lab_stacks as bench  # noqa: E402


def _recording(tmp_path: Path) -> Path:
    rows = [{"t": 0.0, "ev": {"type": "state", "state": "running"}},
            {"t": 0.1, "ev": {"type": "begin", "size": 2, "labels": ["a", "b"], "records": [], "probes": []}},
            {"t": 0.2, "ev": {"type": "progress", "step": 5, "loss": [1.0, 2.0]}},
            {"t": 0.3, "ev": {"type": "eval", "record": {"step": 10, "val_loss": [0.5, 0.6]}}},
            {"t": 0.4, "ev": {"type": "progress", "step": 10, "loss": [0.9, 1.9]}},
            {"t": 0.5, "ev": {"type": "state", "state": "finished"}}]
    p = tmp_path / "rec.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_recording_splits_into_prefix_and_stream(tmp_path):
    prefix, stream = bench.load_recording(_recording(tmp_path))
    assert [e["type"] for e in prefix] == ["state", "begin"]
    assert [(round(t, 6), e["type"]) for t, e in stream] == [(0.0, "progress"), (0.1, "eval"), (0.2, "progress")]


def test_replay_paces_and_loops_with_steps_shifted(tmp_path):
    _, stream = bench.load_recording(_recording(tmp_path))
    got: list[tuple[float, dict]] = []
    r = bench.Replay(stream, lambda ev: got.append((time.monotonic(), ev)))
    r.start()
    time.sleep(0.1)
    assert got == []  # nothing before play
    t0 = time.monotonic()
    r.play(1.0)
    time.sleep(0.5)  # one loop is 0.3 s of stream (0.2 s, plus the median gap 0.1 s)
    r.pause()
    n = len(got)
    time.sleep(0.2)
    assert len(got) == n and r.published == n  # paused: nothing more
    steps = [bench._step_of(ev) for _, ev in got]
    assert steps[:6] == [5, 10, 10, 15, 20, 20], steps  # the second loop goes on from step 10
    # the real pace: the fourth event (the second loop's first) is due 0.3 s after play
    assert 0.25 <= got[3][0] - t0 <= 0.45


@pytest.mark.slow
def test_quick_run_prints_a_row_per_candidate(tmp_path):
    missing = [n for n, ok in (("chromium", shutil.which("chromium") or os.path.exists("/usr/bin/chromium")),
                               ("chromedriver", shutil.which("chromedriver") or os.path.exists("/usr/bin/chromedriver")))
               if not ok]
    for mod in ("selenium", "bokeh", "starlette", "uvicorn", "wsproto"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        msg = f"the lab stacks benchmark needs {', '.join(missing)} (chromium, chromium-driver: apt; the rest: pip)"
        if os.environ.get("TRAINLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " and TRAINLAB_REQUIRE_BROWSER=1")
        pytest.skip(msg)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = tmp_path / "result.json"
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_lab_stacks.py"), "--quick", "--json", str(out)],
                       capture_output=True, text=True, timeout=400, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| stack | page load ms | updates/s recv | frames drawn/s |")
    rows = {ln.split(" | ")[0][2:]: ln for ln in lines[1:]}
    assert set(rows) == {bench.DESCRIBE[k] for k in bench.STACKS}, rows  # --quick: no concurrent training, no "none"
    summary = json.loads(out.read_text())["summary"]
    for stack in bench.STACKS:
        s = summary[stack]
        assert 0 < s["load_ms"] < 60_000, (stack, s)
        # the page received and drew the stream at about the pace it was sent (a loaded machine: half of it)
        assert s["sent_per_s"] > 0 and s["recv_per_s"] > 0.5 * s["sent_per_s"], (stack, s)
        assert s["drawn_per_s"] > 0 and s["burst_drawn_per_s"] > 0, (stack, s)
        assert s["burst_recv_per_s"] > s["recv_per_s"], (stack, s)  # 20 times the pace: more per second
        if stack != "bokeh":
            assert s["burst_missing"] <= 0, (stack, s)  # SSE and WebSocket: every event of the burst arrived
        assert s["server_cpu"] > 0 and s["browser_cpu"] > 0, (stack, s)
        assert "train_steps_per_s" not in s and "train_rel" not in s
    errors = {k: r["errors"] for k, rs in json.loads(out.read_text())["rows"].items() for r in rs if r.get("errors")}
    assert not errors, errors  # every page ran without a console error
