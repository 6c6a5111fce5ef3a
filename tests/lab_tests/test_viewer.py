"""The lab's viewer (trainlab.lab._viewer) on a real `trainlab train` run and a real `trainlab tune` study,
both written by the CLI into a temporary lab root."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from trainlab._rundir import RunLock  # noqa: E402
from trainlab.lab import _viewer  # noqa: E402
from trainlab.lab.testing import parse_sse  # noqa: E402
from trainlab.lab._tail import read_lines, read_records  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["--quiet", "--set", "train.epochs=2", "--set", "model.hidden=[16]", "--set", "population.size=2",
         "--set", "optim.lr=[0.05, 0.1]", "--set", "data.train=500"]
STUDY = """seed = 0
[data]
name = "mnist-5k"
train = 300
val = 200
test = 200
[model]
type = "mlp"
hidden = [16]
[optim]
name = "sgd"
[train]
epochs = 1
batch_size = 100
[search]
strategy = "random"
trials = 5
population = 5
metric = "val_acc"
[search.space."optim.lr"]
type = "float"
low = 1e-3
high = 0.5
log = true
[search.space."optim.momentum"]
type = "float"
low = 0.0
high = 0.95
"""


def cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.Popen([sys.executable, "-m", "trainlab.cli", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """A lab root with runs/mlp (a finished 2-member run) and studies/lr (a finished 5-trial study)."""
    root = tmp_path_factory.mktemp("lab")
    (root / "studies").mkdir()
    cfg = root.parent / "study.toml"
    cfg.write_text(STUDY)
    from trainlab.cli import main  # the CLI itself, in this process (no second start-up of torch)

    assert main(["train", str(REPO / "examples/mlp.toml"), "--out", str(root / "runs" / "mlp"), *TRAIN]) == 0
    assert main(["tune", str(cfg), "--out", str(root / "studies" / "lr"), "--quiet"]) == 0
    return root


def make_app(root: Path) -> Starlette:
    app = Starlette(routes=_viewer.routes())
    app.state.root = root  # what the lab app sets (its --root)
    return app


# ---- the tail reader ------------------------------------------------------------------------------
def test_read_lines_never_returns_a_partial_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    assert read_lines(p, 0).lines == []  # not there yet
    p.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": ')
    c = read_lines(p, 0)
    assert c.lines == ['{"a": 1}', '{"a": 2}'] and c.offset == 18 and not c.reset
    assert read_lines(p, c.offset).lines == []  # the half line waits
    with p.open("ab") as f:
        f.write(b'3}\n{"a": 4}\n')
    c2 = read_lines(p, c.offset)
    assert c2.lines == ['{"a": 3}', '{"a": 4}'] and c2.offset == p.stat().st_size
    # rewritten shorter (trainlab train --resume rewrites metrics.jsonl): the reader starts over
    p.write_bytes(b'{"a": 1}\n')
    c3 = read_lines(p, c2.offset)
    assert c3.reset and c3.lines == ['{"a": 1}']
    # rewritten so that the old offset falls inside a line: also detected
    p.write_bytes(b'{"b": 100000}\n{"b": 2}\n{"b": 3}\n')
    c4 = read_lines(p, c.offset)
    assert c4.reset and c4.lines[0] == '{"b": 100000}'
    # multi-byte text split by the read limit is never cut inside a line
    p.write_text('{"label": "größe"}\n' * 3)
    recs, off, _ = read_records(p, 0, max_bytes=30)
    assert recs == [{"label": "größe"}] and read_records(p, off)[0] == [{"label": "größe"}] * 2


# ---- listing and one run -------------------------------------------------------------------------
def test_list_finds_the_run_and_the_study_with_labels(lab):
    client = TestClient(make_app(lab))
    r = client.get("/api/viewer/list")
    assert r.status_code == 200
    body = r.json()
    [run] = body["runs"]
    assert run["path"] == "runs/mlp" and run["status"] == "finished" and not run["resumable"]
    assert run["members"] == ["lr=0.05", "lr=0.1"] and run["size"] == 2  # trainlab.labels, not indices
    assert run["data"] == "mnist-5k" and run["model"] == "mlp" and run["epoch"] == 2 and "curves.png" in run["figures"]
    [study] = body["studies"]
    assert study["path"] == "studies/lr" and study["status"] == "finished" and study["counts"]["complete"] == 5
    assert "trials" not in study  # the listing stays small


def test_run_metrics_by_offset(lab):
    client = TestClient(make_app(lab))
    info = client.get("/api/viewer/run", params={"path": "runs/mlp"}).json()
    assert info["summary"]["member_labels"] == ["lr=0.05", "lr=0.1"] and info["config"]["optim"]["name"]
    m = client.get("/api/viewer/metrics", params={"path": "runs/mlp"}).json()
    assert len(m["records"]) == 4 and m["status"] == "finished" and not m["reset"]  # 2 evaluations x 2 members
    assert {r["member_label"] for r in m["records"]} == {"lr=0.05", "lr=0.1"}
    assert m["offset"] == (lab / "runs/mlp/metrics.jsonl").stat().st_size
    again = client.get("/api/viewer/metrics", params={"path": "runs/mlp", "offset": m["offset"]}).json()
    assert again["records"] == [] and again["offset"] == m["offset"]
    assert client.get("/api/viewer/metrics", params={"path": "runs/mlp", "offset": "-3"}).status_code == 400
    png = client.get("/api/viewer/file", params={"path": "runs/mlp/curves.png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_stream_of_a_finished_run_sends_everything_then_ends(lab):
    client = TestClient(make_app(lab))
    with client.stream("GET", "/api/viewer/stream", params={"path": "runs/mlp"}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = parse_sse("".join(s.iter_text()))
    kinds = [k for k, _ in events]
    assert kinds == ["run", "metrics", "end"]
    assert events[0][1]["status"] == "finished" and len(events[1][1]["records"]) == 4


def test_study_trials_scatter_and_importance(lab):
    client = TestClient(make_app(lab))
    s = client.get("/api/viewer/study", params={"path": "studies/lr"}).json()
    assert s["status"] == "finished" and s["metric"] == "val_acc" and s["direction"] == "maximize"
    assert len(s["trials"]) == 5 and all(t["state"] == "COMPLETE" for t in s["trials"])
    assert all(set(t["params"]) == {"optim.lr", "optim.momentum"} for t in s["trials"])
    assert s["space"]["optim.lr"]["log"] is True
    best = max(s["trials"], key=lambda t: t["value"])
    assert s["best"]["number"] == best["number"] and s["best"]["value"] == best["value"]
    # importance as the study's own report computed it (summary.json), from the same trials
    summary = json.loads((lab / "studies/lr/summary.json").read_text())
    assert s["importance"]["importance"] == summary["importance"]["importance"]
    assert s["importance"]["method"].startswith("fanova")
    assert isinstance(s["trials"][0]["seed"], str)  # 64-bit seeds travel as text
    with client.stream("GET", "/api/viewer/study/stream", params={"path": "studies/lr"}) as st:
        events = parse_sse("".join(st.iter_text()))
    assert [k for k, _ in events] == ["study", "end"] and len(events[0][1]["trials"]) == 5


# ---- statuses from the files ---------------------------------------------------------------------
def test_statuses_running_interrupted_failed(lab, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(lab / "runs" / "mlp", root / "a")
    (root / "a" / "summary.json").unlink()  # no summary, a checkpoint: stopped, resumable
    (root / "b").mkdir()
    shutil.copy(lab / "runs/mlp/config.toml", root / "b")  # no checkpoint: ended before its first evaluation
    shutil.copytree(lab / "runs" / "mlp", root / "c")
    (root / "c" / "summary.json").unlink()
    client = TestClient(make_app(root))
    with RunLock(root / "c"):  # a live holder of c's lock: running
        runs = {r["path"]: r for r in client.get("/api/viewer/list").json()["runs"]}
        assert runs["c"]["status"] == "running" and f"pid {os.getpid()} " in runs["c"]["holder"]
    assert runs["a"]["status"] == "interrupted" and runs["a"]["resumable"]
    assert runs["b"]["status"] == "failed" and runs["b"]["members"] == ["lr=0.05", "lr=0.1"]  # from config.toml
    assert client.get("/api/viewer/run", params={"path": "c"}).json()["status"] == "interrupted"  # lock released


# ---- path safety on the routes -------------------------------------------------------------------
def test_routes_refuse_paths_outside_the_root(lab, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(lab / "runs" / "mlp", outside)  # a real run, but not under the root
    os.symlink(outside, lab / "runs" / "link-out")
    try:
        client = TestClient(make_app(lab))
        for route in ("/api/viewer/run", "/api/viewer/metrics", "/api/viewer/stream", "/api/viewer/study",
                      "/api/viewer/file"):
            for bad in ("../outside", str(outside), "runs/link-out", "runs/../../outside", "runs/mlp\x00"):
                r = client.get(route, params={"path": bad})
                assert r.status_code == 403, (route, bad, r.status_code)
                assert "error" in r.json()
            assert client.get(route, params={"path": "runs/missing"}).status_code == 404
            assert client.get(route).status_code == 404
        # under the root but not what the route serves
        assert client.get("/api/viewer/run", params={"path": "studies/lr"}).status_code == 404
        assert client.get("/api/viewer/study", params={"path": "runs/mlp"}).status_code == 404
        r = client.get("/api/viewer/file", params={"path": "runs/mlp/model.safetensors"})
        assert r.status_code == 403 and "serves only" in r.json()["error"]
        # the listing does not follow the link out either
        assert [r["path"] for r in client.get("/api/viewer/list").json()["runs"]] == ["runs/mlp"]
    finally:
        (lab / "runs" / "link-out").unlink()


# ---- following a run live, over a real server ----------------------------------------------------
@pytest.fixture()
def server(tmp_path):
    """uvicorn serving the viewer on a free port of 127.0.0.1, in a thread: what the lab runs."""
    import uvicorn

    root = tmp_path / "root"
    root.mkdir()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(make_app(root), log_level="warning", lifespan="off"))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    while not srv.started:
        time.sleep(0.02)
    yield root, f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    th.join(timeout=10)
    sock.close()


@pytest.mark.slow
def test_follow_a_training_live(server):
    root, url = server
    epochs = 8
    proc = cli("train", "examples/mlp.toml", "--out", str(root / "live"), "--quiet",
               "--set", f"train.epochs={epochs}", "--set", "model.hidden=[256, 256]", "--set", "population.size=2",
               "--set", "optim.lr=[0.05, 0.1]", "--set", "data.train=3500")
    try:
        deadline = time.monotonic() + 120
        while not _viewer.is_run(root / "live"):  # config.toml is written once the run is built
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        arrivals: list[tuple[float, str, dict]] = []
        with httpx.stream("GET", f"{url}/api/viewer/stream", params={"path": "live"}, timeout=120) as s:
            buf = ""
            for chunk in s.iter_text():
                buf += chunk
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    for k, d in parse_sse(block + "\n\n"):
                        arrivals.append((time.monotonic(), k, d))
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    kinds = [k for _, k, _ in arrivals]
    assert kinds[0] == "run" and arrivals[0][2]["status"] == "running"
    assert kinds[-1] == "end" and kinds[-2] in ("run", "metrics")
    assert [d["status"] for _, k, d in arrivals if k == "run"][-1] == "finished"
    batches = [(t, d["records"]) for t, k, d in arrivals if k == "metrics"]
    records = [r for _, rs in batches for r in rs]
    assert len(records) == epochs * 2 and [r["epoch"] for r in records] == sorted(r["epoch"] for r in records)
    # live: the evaluations came in several pieces, spread over the run, and some while it was still running
    finished_at = [t for t, k, d in arrivals if k == "run" and d["status"] == "finished"][0]
    assert len(batches) >= 2 and batches[-1][0] - batches[0][0] > 0.3
    assert sum(len(rs) for t, rs in batches if t < finished_at) >= 2
    assert {r["member_label"] for r in records} == {"lr=0.05", "lr=0.1"}


def test_routes_bound_to_a_root_need_no_app_state(lab):
    app = Starlette(routes=_viewer.routes(lab))  # how the lab app mounts them: routes(root)
    client = TestClient(app)
    assert [r["path"] for r in client.get("/api/viewer/list").json()["runs"]] == ["runs/mlp"]
    assert client.get("/api/viewer/run", params={"path": "../x"}).status_code == 403


@pytest.mark.slow
def test_follow_a_study_live(server, tmp_path):
    root, url = server
    cfg = tmp_path / "live-study.toml"
    # slow enough (a second or more per batch of two trials) that the stream, which looks once a second,
    # sees it between batches
    cfg.write_text(STUDY.replace("trials = 5", "trials = 10").replace("population = 5", "population = 2")
                   .replace("epochs = 1", "epochs = 6").replace("train = 300", "train = 2000")
                   .replace("hidden = [16]", "hidden = [256, 256]"))
    proc = cli("tune", str(cfg), "--out", str(root / "study"), "--quiet")
    try:
        deadline = time.monotonic() + 120
        while not _viewer.is_study(root / "study"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        seen: list[dict] = []
        with httpx.stream("GET", f"{url}/api/viewer/study/stream", params={"path": "study"}, timeout=180) as s:
            buf = ""
            for chunk in s.iter_text():
                buf += chunk
                while "\n\n" in buf:
                    block, buf = buf.split("\n\n", 1)
                    seen += [d for k, d in parse_sse(block + "\n\n") if k == "study"]
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    states = [(d["status"], (d.get("counts") or {}).get("with_result")) for d in seen]
    done = [d["counts"].get("with_result", 0) for d in seen if d.get("counts")]
    assert done == sorted(done) and done[-1] == 10, states  # trials arrive, never go away
    assert any(d["status"] == "running" and 0 < d["counts"]["with_result"] < 10 for d in seen), states  # mid-study
    assert seen[-1]["status"] == "finished" and len(seen[-1]["trials"]) == 10
    assert seen[-1]["importance"] is not None and set(seen[-1]["importance"]["importance"]) <= {"optim.lr",
                                                                                              "optim.momentum"}


def test_a_study_in_a_database_server_is_looked_at_again_on_a_clock(tmp_path, monkeypatch):
    """A study kept in PostgreSQL has no file that changes with it (storage.json names the server): the
    listing's cache and the live stream read it again every SERVER_POLL_SECONDS; a study.db's stamp changes
    only with its files. (test_search_postgres.py lists and reads such a study on a real server.)"""
    d = tmp_path / "pg"
    d.mkdir()
    (d / "storage.json").write_text('{"storage": "postgresql://u@127.0.0.1:1/db", "study": "s"}')
    assert _viewer.is_study(d) and not _viewer.is_run(d)
    now = [1000.0]
    monkeypatch.setattr(_viewer.time, "time", lambda: now[0])
    first = _viewer._storage_stamp(d)
    assert _viewer._storage_stamp(d) == first
    now[0] += _viewer.SERVER_POLL_SECONDS
    assert _viewer._storage_stamp(d) != first
    s = tmp_path / "sqlite"
    s.mkdir()
    (s / "study.db").write_bytes(b"")
    before = _viewer._storage_stamp(s)
    now[0] += 10 * _viewer.SERVER_POLL_SECONDS
    assert _viewer._storage_stamp(s) == before
