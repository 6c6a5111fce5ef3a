"""Live lessons (trainlab.lab._lessons) and the check observer they stand on (trainlab.experiments._core).

The fastest experiment at the smoke preset (``zero-init``, well under a second of measuring) runs in a
real worker process started by the route, and its event stream is read back through the SSE route.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from trainlab.experiments import REGISTRY  # noqa: E402
from trainlab.experiments._core import Check, observe_checks  # noqa: E402
from trainlab.lab import _lessons, _viewer  # noqa: E402
from trainlab.lab.testing import parse_sse  # noqa: E402
from trainlab.train import Callback, watch_training  # noqa: E402

FAST = "zero-init"


def make_app(root: Path, **state) -> Starlette:
    app = Starlette(routes=[*_lessons.routes(), *_viewer.routes()])
    app.state.root = root
    for k, v in state.items():
        setattr(app.state, k, v)
    return app


# ---- the observer --------------------------------------------------------------------------------
class Recorder(Callback):
    """A watcher that only writes down what it is told."""

    def __init__(self, log: list) -> None:
        self.log = log

    def on_train_begin(self, trainer) -> None:
        self.log.append(("begin", trainer.model.size))

    def on_evaluate(self, trainer, record) -> None:
        self.log.append(("evaluate", record["step"]))

    def on_train_end(self, trainer) -> None:
        self.log.append(("end", trainer.step))


def test_observers_see_every_training_and_check_while_the_experiment_runs_and_change_no_verdict():
    exp = REGISTRY[FAST]
    plain = exp.run("smoke")
    seen: list[tuple[dict, bool]] = []
    log: list = []
    state = {"returned": False}
    with observe_checks(lambda c: seen.append((c, state["returned"]))), watch_training(Recorder(log)):
        watched = exp.run("smoke")
        state["returned"] = True
    assert [c.to_dict() for c in watched.checks] == [c.to_dict() for c in plain.checks]  # same measurements
    assert watched.passed == plain.passed and watched.numbers == plain.numbers
    assert [c for c, _ in seen] == [c.to_dict() for c in watched.checks]  # every check, in order
    assert not any(after for _, after in seen)  # all of them before run() returned
    json.dumps([c for c, _ in seen], allow_nan=False)  # JSON-safe
    # the experiment's trainings were reported: each begins, evaluates and ends
    assert log and log[0][0] == "begin" and log[-1][0] == "end" and any(k == "evaluate" for k, _ in log)
    # outside the block nothing is watched any more
    exp.run("smoke")
    assert log[-1][0] == "end" and len([k for k, _ in log if k == "begin"]) == len([k for k, _ in log if k == "end"])


class TrainingStarts(Callback):
    """A watcher that writes each training's start into the log the checks go to, so their order shows."""

    def __init__(self, log: list) -> None:
        self.log = log

    def on_train_begin(self, trainer) -> None:
        self.log.append(("train", trainer.model.size))


# multi-phase experiments, each well under a few seconds at the smoke preset: batchnorm (init scales, then the
# landscape probes), early-stopping (the full run, then the early-stopped one), dropout (rate sweep, the note's
# net, sizes, classic vs inverted)
@pytest.mark.parametrize("name", ["batchnorm", "early-stopping", "dropout"])
def test_checks_arrive_between_the_trainings_as_their_measurements_exist(name):
    log: list[tuple[str, object]] = []
    with observe_checks(lambda c: log.append(("check", c["name"]))), watch_training(TrainingStarts(log)):
        result = REGISTRY[name].run("smoke")
    kinds = [kind for kind, _ in log]
    assert kinds.count("train") >= 2
    last_start = len(kinds) - 1 - kinds[::-1].index("train")
    early = [what for kind, what in log[:last_start] if kind == "check"]
    # a check whose trainings are done is shown then, not held back until the experiment's last training ends
    assert early, f"{name}: no check was reported before its last training began: {kinds}"
    # each check of the result was reported, once (the report's order may differ from the order they were made)
    assert sorted(what for kind, what in log if kind == "check") == sorted(c.name for c in result.checks)


def test_observer_is_context_local_and_a_broken_listener_changes_nothing(caplog):
    seen = []
    Check("outside", "no observer", 1.0, 0.5)
    with observe_checks(seen.append):
        with observe_checks(lambda c: 1 / 0):  # raises inside: logged, not raised into the experiment
            c = Check("inside", "observed", 0.25, (0.0, 1.0), "between")
        Check("outer only", "observed once", float("nan"), 0.0)
    Check("after", "no observer", 1.0, 0.5)
    assert [s["name"] for s in seen] == ["inside", "outer only"]
    assert c.passed and seen[0]["threshold"] == [0.0, 1.0]
    assert seen[1]["measured"] is None and seen[1]["passed"] is False  # NaN travels as null
    assert "a check observer failed" in caplog.text


# ---- the catalog and the docs links -------------------------------------------------------------
def test_catalog_lists_every_experiment_with_its_links(tmp_path):
    client = TestClient(make_app(tmp_path))
    r = client.get("/api/lessons")
    assert r.status_code == 200
    lessons = r.json()["lessons"]
    assert [x["name"] for x in lessons] == list(REGISTRY)
    fast = next(x for x in lessons if x["name"] == FAST)
    assert fast["claim"] and "course note" in fast["source"] and fast["available"]
    assert fast["docs_url"] == f"/api/docs?page={REGISTRY[FAST].docs}"
    docs = client.get(fast["docs_url"])
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/markdown")
    assert docs.text.startswith("# ")
    note = client.get(fast["note_url"])
    assert note.status_code == 200 and note.text.startswith(f"### {FAST} -- ") and "note 000" in note.text
    assert "### " not in note.text[4:]  # the one section, not the rest of the page


@pytest.mark.parametrize("page, status", [("../README", 400), ("/etc/passwd", 400), ("nope", 404),
                                          ("init%00", 400)])
def test_docs_route_refuses_paths(tmp_path, page, status):
    client = TestClient(make_app(tmp_path))
    r = client.get("/api/docs", params={"page": page})
    assert r.status_code == status, r.text


def test_start_refuses_bad_requests(tmp_path):
    client = TestClient(make_app(tmp_path))
    r = client.post("/api/lessons/start", json={"name": "no-such-experiment"})
    assert r.status_code == 404 and "unknown experiment 'no-such-experiment'" in r.json()["error"]
    r = client.post("/api/lessons/start", json={"name": FAST, "preset": "textbook"})
    assert r.status_code == 400 and "preset must be one of quick, smoke" in r.json()["error"]
    r = client.post("/api/lessons/start", json={"name": "x" * 500_000, "preset": ["a"] * 10})
    assert r.status_code == 404 and len(r.json()["error"]) < 1000  # a hostile name is not echoed whole
    r = client.post("/api/lessons/start", json={"name": FAST, "preset": {"nested": "x" * 100_000}})
    assert r.status_code == 400 and len(r.json()["error"]) < 300
    r = client.post("/api/lessons/start", content=b"not json")
    assert r.status_code == 400
    r = client.post("/api/lessons/start", json=["a", "list"])
    assert r.status_code == 400
    assert not (tmp_path / "lessons").exists() or not any((tmp_path / "lessons").rglob("lesson.json"))
    for bad in ("../x", "/etc", "lessons/../../x", "runs"):
        r = client.get("/api/lessons/stream", params={"path": bad})
        assert r.status_code in (403, 404), (bad, r.status_code)


# ---- a real lesson in a worker process ------------------------------------------------------------
def test_lesson_runs_in_a_worker_and_streams_checks_then_result_then_figures(tmp_path):
    client = TestClient(make_app(tmp_path))
    r = client.post("/api/lessons/start", json={"name": FAST, "preset": "smoke"})
    assert r.status_code == 202, r.text
    info = r.json()
    path = info["path"]
    assert path.startswith(f"lessons/{FAST}/") and info["status"] in ("starting", "running")
    d = tmp_path / path
    assert d.is_dir() and d.resolve().parent.parent == (tmp_path / "lessons").resolve()

    # a second one while the first runs: refused (at most one lesson at once by default)
    r2 = client.post("/api/lessons/start", json={"name": FAST, "preset": "smoke"})
    assert r2.status_code == 429 and "at most 1 at once" in r2.json()["error"]

    t0 = time.monotonic()
    with client.stream("GET", "/api/lessons/stream", params={"path": path}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        text = "".join(s.iter_text())
    assert time.monotonic() - t0 < 120
    events = parse_sse(text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds[-2] == "done", kinds
    result_at = kinds.index("result")
    # the experiment's training is reported while it runs, before the checks it leads to
    assert kinds.index("train") < kinds.index("progress") < kinds.index("check")
    begin = next(data for k, data in events if k == "train")
    assert begin["phase"] == "begin" and begin["members"] >= 1 and begin["total_steps"] > 0
    progress = [data for k, data in events if k == "progress"]
    assert all(len(p["batch_loss"]) == begin["members"] and p["step"] <= begin["total_steps"] for p in progress)
    assert [p["step"] for p in progress] == sorted(p["step"] for p in progress)
    assert progress[-1]["step"] == begin["total_steps"]  # the last step is always sent
    checks = [data["check"] for k, data in events[:result_at] if k == "check"]
    final = events[result_at][1]
    assert len(checks) == len(final["checks"]) >= 2
    assert [c["name"] for c in checks] == [c["name"] for c in final["checks"]]
    # the stream's order is the order of measurement: every check before the result, figures after it
    assert all(k != "check" for k in kinds[result_at:])
    assert all(k == "figure" for k in kinds[result_at + 1:-2]) and "figure" in kinds
    assert [data["t"] for k, data in events if k != "end"] == sorted(data["t"] for k, data in events if k != "end")
    # the verdicts are those of the experiment run directly
    direct = REGISTRY[FAST].run("smoke")
    assert [(c["name"], c["passed"], c["measured"]) for c in final["checks"]] == \
        [(c.name, c.passed, pytest.approx(c.measured)) for c in direct.checks]

    # the figures exist and are served (through the viewer's file route), the result as reproduce writes it
    fig = next(data for k, data in events if k == "figure")
    png = client.get("/api/viewer/file", params={"path": f"{path}/{fig['file']}"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    entry = json.loads((d / "result.json").read_text())
    assert entry["name"] == FAST and entry["status"] in ("held", "did not hold") and entry["checks"]

    # a page that reloads gets it all again, and the listing shows the run
    again = client.get("/api/lessons/run", params={"path": path}).json()
    assert again["status"] == "done" and [e["event"] for e in again["events"]] == kinds[:-1]
    runs = client.get("/api/lessons").json()["runs"]
    assert runs[0]["path"] == path and runs[0]["status"] == "done" and runs[0]["passed"] == final["passed"]
    # nothing was written outside the lab root's lessons/ folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lessons"]


@pytest.mark.slow
def test_stopping_a_lesson_interrupts_it(tmp_path):
    client = TestClient(make_app(tmp_path))
    # a slower experiment (about 20 s at quick), so it is stopped while it trains
    r = client.post("/api/lessons/start", json={"name": "init-compare", "preset": "quick"})
    assert r.status_code == 202, r.text
    path = r.json()["path"]
    deadline = time.monotonic() + 60
    while client.get("/api/lessons/run", params={"path": path}).json()["status"] != "running":
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.1)
    stopped = client.post("/api/lessons/stop", json={"path": path}).json()
    assert stopped["status"] == "interrupted"
    events = _lessons._events(tmp_path / path)
    assert events[-1]["event"] == "interrupted" and "result" not in [e["event"] for e in events]
    # the stream of a stopped lesson ends
    with client.stream("GET", "/api/lessons/stream", params={"path": path}) as s:
        kinds = [k for k, _ in parse_sse("".join(s.iter_text()))]
    assert kinds[-2:] == ["interrupted", "end"]
    r = client.post("/api/lessons/stop", json={"path": "../../etc"})
    assert r.status_code == 403


def test_a_lessons_folder_that_links_out_of_the_root_is_refused(tmp_path):
    import os

    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "lessons")
    client = TestClient(make_app(root))
    r = client.post("/api/lessons/start", json={"name": FAST, "preset": "smoke"})
    assert r.status_code == 403 and "outside the lab root" in r.json()["error"]
    assert list(outside.iterdir()) == []  # nothing written there


def test_lesson_status_from_its_files(tmp_path):
    """After a restart the server has no process handle: the lock and the last event tell."""
    from trainlab._rundir import RunLock

    d = tmp_path / "lessons" / FAST / "20260101-000000"
    d.mkdir(parents=True)
    (d / "lesson.json").write_text(json.dumps({"experiment": FAST}))
    assert _lessons.lesson_status(d) == "starting"  # just made, no event yet
    (d / "events.jsonl").write_text(json.dumps({"event": "start", "t": 0}) + "\n")
    with RunLock(d):
        assert _lessons.lesson_status(d) == "running"  # its worker holds the lock
    assert _lessons.lesson_status(d) == "interrupted"  # gone without a last word: killed
    with (d / "events.jsonl").open("a") as f:
        f.write(json.dumps({"event": "done", "t": 1}) + "\n")
    assert _lessons.lesson_status(d) == "done"
    client = TestClient(make_app(tmp_path))
    assert client.get("/api/lessons").json()["runs"][0]["status"] == "done"
