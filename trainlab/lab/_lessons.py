"""Live lessons: every experiment of ``trainlab reproduce`` run from the lab, its checks shown as they are
measured.

A lesson is one run of one experiment (:data:`trainlab.experiments.REGISTRY`) at its own settings
(preset ``quick``, the report's; ``smoke`` for a fast look), in a worker process the server starts
and never waits on. The worker writes everything into its lesson directory under the lab root,
``ROOT/lessons/<experiment>/<YYYYmmdd-HHMMSS>/``, and nowhere else:

* ``lesson.json``: what was started (experiment, title, claim, source, docs page, preset, time);
* ``events.jsonl``: one JSON object per line, in order (the page's feed; see below);
* ``result.json``: the experiment's entry as ``trainlab reproduce`` writes it in results.json
  (:func:`trainlab.report.experiment_entry`: settings, numbers, checks, status);
* ``figures/fig-NN.png``: its figures, drawn by the experiment's own ``plot``;
* ``.trainlab.lock``: held by the worker while it runs (the same ``flock`` a training holds), so a
  lesson is known to be running -- or to have died -- after the page or the server restarts.

The checks come from :func:`trainlab.experiments.observe_checks`: each :class:`Check` is
reported the moment it is made, i.e. once its measurement exists, before the experiment returns.
An experiment of several phases makes each check right after the phase that measures it, so its
checks arrive between its trainings (e.g. ``early-stopping``: the rise of the validation loss after
the full run, before the early-stopped one trains; ``relu``, ``vanishing-gradient`` and
``optimizers`` show their first checks before any training). Where every check needs everything
the experiment trains, they arrive together at the end, by nature: one population or one
measurement (``activations``, ``zero-init``, ``init-compare``, ``bn-inference``, ``overfitting``,
``schedules``), or checks that compare every training (``model-size``, ``width``, ``small-data``,
``whitening``, ``covariate-shift``). The ``check`` events come in the order the checks were
measured; the ``result`` event's list is in the report's order.
The trainings that lead to them come from :func:`trainlab.train.watch_training`: every Trainer the
experiment builds also reports to the lesson (a report-only callback), so the page shows each
training's curves while it runs. Observing changes nothing the experiment computes
(tests/lab_tests/test_lessons.py compares the verdicts with and without it).

Events (every one has ``event`` and ``t``, seconds since the lesson started):

=================  ===============================================================================
``start``          ``experiment``, ``preset``, ``pid``, ``expected_seconds`` (run_times.json, quick)
``train``          ``phase`` (begin / end), ``index`` (the experiment's n-th training), ``members``,
                   ``labels``, ``total_steps``, ``steps_per_epoch`` (begin) or ``step`` (end)
``progress``       ``index``, ``step``, ``epoch``, ``total_steps``, and one value per member of
                   ``batch_loss`` (the last batch's loss: at most four a second while it trains) or,
                   at an evaluation, also ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``
``diverged``       ``index``, ``step``, ``members``
``check``          ``check``: ``{name, claim, op, threshold, measured, passed, explanation, unit}``
``result``         ``status`` (held / did not hold), ``passed``, ``checks`` (the final list: an
                   experiment may remake a check, and this is the word that stands), ``summary``,
                   ``seconds``, ``notes``
``figure``         ``index``, ``file`` (relative to the lesson directory), ``title``, ``caption``
``done``           ``status``, ``seconds`` (the last event of a lesson that ran through)
``failed``         ``error`` (one line) -- or ``interrupted`` (stopped by the user or the server)
=================  ===============================================================================

Routes (:func:`routes`, mounted by the lab app, which sets ``app.state.root``):

=====================================  ================================================================
``GET /lessons``                       the page (static/page.html around static/lessons_main.html)
``GET /api/lessons``                   ``{"lessons": [catalog entry...], "runs": [lesson run...]}``
``POST /api/lessons/start``            body ``{"name", "preset"?}`` -> 202 ``{"path", ...lesson run}``;
                                       404 unknown experiment, 409 not available, 429 too many running,
                                       400 bad body
``POST /api/lessons/stop``             body ``{"path"}``: stops a running lesson (``interrupted``)
``GET /api/lessons/run?path=P``        one lesson run: lesson.json, ``status``, ``events`` so far
``GET /api/lessons/stream?path=P``     SSE: each line of events.jsonl as an event named by its
                                       ``event``, then ``end`` once the lesson is over
``GET /api/lessons/note?name=N``       the experiment's section of docs/experiments.md (the claim,
                                       the course note it comes from, the measured table): markdown
``GET /api/docs?page=P``               docs/<P>.md of this checkout (markdown as text)
=====================================  ================================================================
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from trainlab.lab._paths import PathMissing, PathRefused, safe_path
from trainlab.lab._tail import client_gone, with_root, follow, jsonable, read_records, sse

__all__ = ["LESSONS_DIR", "LESSON_PRESETS", "catalog", "start_lesson", "stop_lesson", "lesson_status",
           "lesson_info", "list_lesson_runs", "run_lesson", "routes", "note_section", "docs_dir"]

#: where lesson runs live under the lab root
LESSONS_DIR = "lessons"
#: the presets a lesson may run at: quick (the report's own settings) and smoke (seconds, for a first look);
#: textbook needs full MNIST and many minutes, which is `trainlab reproduce`'s job
LESSON_PRESETS = ("quick", "smoke")
#: lessons that may run at once (each takes a core and its memory); app.state.max_lessons overrides it
MAX_LESSONS = 1
_TERMINAL = ("done", "failed", "interrupted")


# ---- the catalog -----------------------------------------------------------------------------------
def _run_times() -> dict[str, float]:
    from importlib.resources import files

    try:
        return dict(json.loads(files("trainlab.experiments").joinpath("run_times.json").read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return {}


def docs_dir() -> Path | None:
    """This checkout's docs/ folder (None where trainlab is installed without it)."""
    d = Path(__file__).resolve().parents[2] / "docs"
    return d if d.is_dir() else None


def catalog() -> list[dict[str, Any]]:
    """Every registered experiment as a lesson: name, title, claim, source (the course note), docs page,
    links, availability and the measured quick-preset seconds, in report order."""
    from trainlab.experiments import REGISTRY

    times = _run_times()
    out = []
    for name in REGISTRY:
        exp = REGISTRY[name]
        ok, why = exp.available()
        out.append({"name": name, "title": exp.title, "claim": exp.claim, "source": exp.source,
                    "docs": exp.docs, "docs_url": f"/api/docs?page={exp.docs}" if exp.docs else None,
                    "note_url": f"/api/lessons/note?name={name}", "available": ok, "reason": why or None,
                    "expected_seconds": times.get(name)})
    return out


def note_section(name: str) -> str | None:
    """The ``### <name> -- ...`` section of docs/experiments.md: the claim with the course note it is from,
    and the checks as measured."""
    d = docs_dir()
    if d is None or not (d / "experiments.md").is_file():
        return None
    text = (d / "experiments.md").read_text()
    m = re.search(rf"^### {re.escape(name)} -- .*?(?=^### |^## |\Z)", text, flags=re.M | re.S)
    return m.group(0).rstrip() + "\n" if m else None


# ---- lesson directories ----------------------------------------------------------------------------
def _new_dir(root: Path, name: str) -> Path:
    # through safe_path: a ROOT/lessons that is a symbolic link out of the root is refused, not written into
    parent = safe_path(root, f"{LESSONS_DIR}/{name}")
    parent.mkdir(parents=True, exist_ok=True)
    parent = safe_path(root, f"{LESSONS_DIR}/{name}")  # and again once it exists (a link made meanwhile)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        d = parent / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            d.mkdir()  # exclusive: two starts in one second get two directories
            return d
        except FileExistsError:
            continue
    raise RuntimeError(f"no free lesson directory under {parent}")


def _events(d: Path) -> list[dict[str, Any]]:
    records, _, _ = read_records(d / "events.jsonl", 0)
    return records


def lesson_status(d: Path, proc: Any = None) -> str:
    """``running`` (its worker holds the lock), ``done``, ``failed``, ``interrupted`` (the last event says
    so, or the worker is gone without saying: killed), or ``starting`` (the worker process exists but has
    not taken its lock yet: it is importing torch). ``proc``: the worker's Process, when this server
    started it (without it, a lesson younger than two minutes with no event counts as starting)."""
    from trainlab.lab._viewer import lock_held

    held, _ = lock_held(d)
    if held:
        return "running"
    events = _events(d)
    last = events[-1]["event"] if events else None
    if last in _TERMINAL:
        return str(last)
    if not events:
        if proc is not None:
            return "starting" if proc.is_alive() else "failed"
        if (d / "lesson.json").is_file() and time.time() - (d / "lesson.json").stat().st_mtime < 120:
            return "starting"
    return "interrupted"


def lesson_info(root: Path, d: Path, *, events: bool = False) -> dict[str, Any]:
    try:
        meta = json.loads((d / "lesson.json").read_text())
    except (OSError, ValueError):
        meta = {}
    evs = _events(d)
    info = {**meta, "path": d.resolve().relative_to(Path(root).resolve()).as_posix(), "status": lesson_status(d)}
    result = next((e for e in reversed(evs) if e.get("event") == "result"), None)
    info["passed"] = result.get("passed") if result else None
    info["checks_measured"] = sum(1 for e in evs if e.get("event") == "check")
    if events:
        info["events"] = evs
    return jsonable(info)


def list_lesson_runs(root: Path, *, limit: int = 50) -> list[dict[str, Any]]:
    base = Path(root) / LESSONS_DIR
    if not base.is_dir():
        return []
    dirs = [p for p in base.glob("*/*") if p.is_dir() and not p.is_symlink() and (p / "lesson.json").is_file()]
    dirs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [lesson_info(root, p) for p in dirs[:limit]]


# ---- the worker ------------------------------------------------------------------------------------
class _Feed:
    """Appends events to events.jsonl: whole lines, flushed one by one (a reader tails the file)."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "a", encoding="utf-8")
        self.t0 = time.perf_counter()

    def __call__(self, event: str, **data: Any) -> None:
        rec = {"event": event, "t": round(time.perf_counter() - self.t0, 3), **data}
        self.f.write(json.dumps(jsonable(rec), allow_nan=False) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _training_feed(feed: "_Feed") -> Any:
    """A report-only :class:`~trainlab.train.Callback` that tells the feed about every training the experiment
    runs: ``train`` (begin / end), ``progress`` (each member's last batch loss at most four times a second,
    the last step always, and every evaluation) and ``diverged``. A failure here is logged, never raised into
    the experiment."""
    from trainlab.train import Callback

    class TrainingFeed(Callback):
        def __init__(self) -> None:
            self.index = 0
            self.last = 0.0
            self.evaluated_at = -1

        def _send(self, event: str, **data: Any) -> None:
            try:
                feed(event, **data)
            except Exception:
                import logging

                logging.getLogger("trainlab.lab").warning("a lesson's training event was lost", exc_info=True)

        def on_train_begin(self, trainer: Any) -> None:
            self.index += 1
            self.last = 0.0
            self.evaluated_at = -1
            info = trainer.history.info
            self._send("train", phase="begin", index=self.index, members=int(trainer.model.size),
                       labels=list(trainer.labels) if trainer.labels is not None else None,
                       total_steps=info.get("total_steps"), steps_per_epoch=info.get("steps_per_epoch"))

        def _due(self, trainer: Any, step: int) -> bool:
            now = time.perf_counter()
            if now - self.last < 0.25 and step != trainer.history.info.get("total_steps"):
                return False
            self.last = now
            return True

        def on_step_end(self, trainer: Any, loss: Any) -> None:
            # the loss of each member's last batch, four times a second: live curves for every experiment,
            # also those that evaluate only at the end
            step = int(trainer.step)
            if step == self.evaluated_at or not self._due(trainer, step):
                return  # (an evaluation at this step was just sent, with its own batch_loss)
            try:
                values = [float(v) for v in loss.detach().reshape(-1).tolist()]
            except (AttributeError, TypeError, ValueError):
                return
            per_epoch = trainer.history.info.get("steps_per_epoch") or 0
            self._send("progress", index=self.index, total_steps=trainer.history.info.get("total_steps"),
                       step=step, epoch=step / per_epoch if per_epoch else None, batch_loss=values)

        def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
            self.last = time.perf_counter()  # an evaluation is always sent; the next batch loss waits its turn
            self.evaluated_at = int(record.get("step", -1))
            self._send("progress", index=self.index, total_steps=trainer.history.info.get("total_steps"),
                       **{k: v for k, v in record.items() if k in _PROGRESS_KEYS})

        def on_diverged(self, trainer: Any, members: list[int]) -> None:
            self._send("diverged", index=self.index, step=int(trainer.step), members=list(members))

        def on_train_end(self, trainer: Any) -> None:
            self._send("train", phase="end", index=self.index, step=int(trainer.step))

    return TrainingFeed()


#: what a progress event carries of an evaluation record (one value per member for the losses/accuracies)
_PROGRESS_KEYS = ("step", "epoch", "batch_loss", "train_loss", "train_acc", "val_loss", "val_acc")


def run_lesson(directory: str | Path, name: str, preset: str = "quick") -> str:
    """Run experiment ``name`` at ``preset`` into the lesson ``directory`` (the worker's body; also callable
    in-process). Returns the final status (done / failed / interrupted); never raises for the
    experiment's own errors, which become a ``failed`` event."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainlab._rundir import RunLock
    from trainlab.experiments import REGISTRY, Preset, observe_checks
    from trainlab.report import experiment_entry
    from trainlab.train import watch_training

    d = Path(directory)
    lock = RunLock(d).acquire()
    feed = _Feed(d / "events.jsonl")
    status = "failed"
    try:
        exp = REGISTRY.get_experiment(name)
        feed("start", experiment=name, preset=preset, pid=os.getpid(),
             expected_seconds=_run_times().get(name) if preset == "quick" else None)
        with observe_checks(lambda c: feed("check", check=c)), watch_training(_training_feed(feed)):
            result = exp.run(Preset(name=preset))
        verdict = "held" if result.passed else "did not hold"
        feed("result", status=verdict, passed=result.passed, checks=[c.to_dict() for c in result.checks],
             summary=result.summary, seconds=round(result.seconds, 3), notes=list(result.notes))
        figures = exp.plot(result)
        (d / "figures").mkdir(exist_ok=True)
        for i, fig in enumerate(figures, 1):
            file = d / "figures" / f"fig-{i:02d}.png"
            tmp = file.with_name(f".{file.name}.tmp")
            fig.figure.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
            os.replace(tmp, file)  # a reader never sees half a picture
            plt.close(fig.figure)
            feed("figure", index=i, file=f"figures/{file.name}", title=fig.title, caption=fig.caption)
        entry = experiment_entry(exp, status=verdict, docs=exp.docs, result=result, figures=figures)
        from trainlab.io import atomic_write_text

        atomic_write_text(d / "result.json", json.dumps(jsonable(entry), indent=1, allow_nan=False))
        status = "done"
        feed("done", status=verdict, seconds=round(result.seconds, 3))
    except KeyboardInterrupt:
        status = "interrupted"
        feed("interrupted", error="stopped before the experiment finished")
    except Exception as e:
        status = "failed"
        line = traceback.format_exception_only(type(e), e)[-1].strip()
        feed("failed", error=line)
    finally:
        feed.close()
        lock.release()
    return status


def _worker_main(directory: str, name: str, preset: str) -> None:
    # stopping a lesson (the stop button, the server going down) is SIGTERM: end like Ctrl-C, with an event
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    run_lesson(directory, name, preset)


# ---- starting and stopping (the server side) --------------------------------------------------------
class LessonError(ValueError):
    """A lesson that cannot start; ``status`` is the HTTP status the route answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _procs(state: Any) -> dict[str, Any]:
    """The lesson processes this server started, by lesson path (ended ones are reaped here, and kept: their
    exit tells a worker that died while importing from one still starting)."""
    procs = getattr(state, "lesson_processes", None)
    if procs is None:
        procs = {}
        state.lesson_processes = procs
    for p in procs.values():
        if not p.is_alive():
            p.join(timeout=0)
    return procs


def _shown(v: object) -> str:
    # a hostile request may send a megabyte as a name: echo at most 80 characters of it
    text = repr(v)
    return text if len(text) <= 80 else f"{text[:60]}...[{len(text) - 70} characters]...{text[-10:]}"


def start_lesson(root: Path, name: object, preset: object = "quick", *, state: Any = None,
                 max_running: int = MAX_LESSONS) -> dict[str, Any]:
    """Start experiment ``name`` as a lesson in a new worker process; returns its lesson info at once."""
    import multiprocessing

    from trainlab.experiments import REGISTRY

    if not isinstance(name, str) or name not in REGISTRY:
        known = ", ".join(REGISTRY)
        raise LessonError(f"unknown experiment {_shown(name)} (known: {known})", 404)
    if not isinstance(preset, str) or preset not in LESSON_PRESETS:
        raise LessonError(f"preset must be one of {', '.join(LESSON_PRESETS)}, got {_shown(preset)}", 400)
    exp = REGISTRY[name]
    ok, why = exp.available()
    if not ok:
        raise LessonError(f"experiment {name!r} is not available: {why}", 409)
    procs = _procs(state) if state is not None else {}
    alive = sorted(k for k, p in procs.items() if p.is_alive())
    if len(alive) >= max_running:
        raise LessonError(f"{len(alive)} lesson(s) already running ({', '.join(alive)}); at most {max_running} at "
                          "once: wait for it or stop it", 429)
    d = _new_dir(root, name)
    meta = {"experiment": name, "title": exp.title, "claim": exp.claim, "source": exp.source, "docs": exp.docs,
            "preset": preset, "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "expected_seconds": _run_times().get(name) if preset == "quick" else None}
    from trainlab.io import atomic_write_text

    atomic_write_text(d / "lesson.json", json.dumps(meta, indent=1))
    # spawn, not fork: the server has threads (uvicorn, the thread pool), and a forked copy of a threaded
    # process may hold their locks; daemon: a server that exits takes its lessons with it (SIGTERM ->
    # an "interrupted" event), and never waits for them
    proc = multiprocessing.get_context("spawn").Process(target=_worker_main, args=(str(d), name, preset),
                                                        name=f"trainlab-lesson-{name}", daemon=True)
    proc.start()
    rel = d.resolve().relative_to(Path(root).resolve()).as_posix()
    if state is not None:
        procs[rel] = proc
    return {**lesson_info(root, d), "pid": proc.pid}


def stop_lesson(root: Path, d: Path, *, state: Any = None) -> dict[str, Any]:
    """Stop the lesson in ``d``: SIGTERM to its worker (it writes ``interrupted`` and exits)."""
    rel = d.resolve().relative_to(Path(root).resolve()).as_posix()
    procs = _procs(state) if state is not None else {}
    proc = procs.get(rel)
    if proc is not None and proc.is_alive():
        proc.terminate()
        proc.join(timeout=10)
    elif lesson_status(d) == "running":
        # a worker of an earlier server (the page survived a restart): its pid is in the start event
        start = next((e for e in _events(d) if e.get("event") == "start"), None)
        pid = start.get("pid") if start else None
        from trainlab.lab._viewer import lock_held

        held, holder = lock_held(d)
        if held and pid and holder and f"pid {pid} " in holder + " ":
            os.kill(int(pid), signal.SIGTERM)
            for _ in range(100):
                if not lock_held(d)[0]:
                    break
                time.sleep(0.1)
    return lesson_info(root, d)


# ---- routes ----------------------------------------------------------------------------------------
def _root(request: Any) -> Path:
    # the root bound by routes(root), else the app's state.root (the lab's --root)
    bound = request.scope.get("trainlab_lab_root")
    return Path(bound if bound is not None else request.app.state.root)


def _json_error(message: str, status: int) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status)


def _lesson_dir(root: Path, rel: Any) -> Path:
    if not isinstance(rel, str):
        raise PathMissing("the path of a lesson is missing (lessons/<experiment>/<time>)")
    d = safe_path(root, rel, must_exist=True)
    base = (root / LESSONS_DIR).resolve()
    if d.parent.parent != base or not (d / "lesson.json").is_file():
        raise PathMissing(f"{rel!r} is not a lesson run (lessons/<experiment>/<time> under the lab root)")
    return d


async def _body(request: Any) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise LessonError("the request body must be a JSON object", 400) from None
    if not isinstance(body, dict):
        raise LessonError("the request body must be a JSON object", 400)
    return body


async def get_lessons(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    root = _root(request)
    lessons, runs = await run_in_threadpool(lambda: (catalog(), list_lesson_runs(root)))
    return JSONResponse({"lessons": lessons, "runs": runs, "presets": list(LESSON_PRESETS)})


async def post_start(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    try:
        body = await _body(request)
        name, preset = body.get("name"), body.get("preset", "quick")
        max_running = int(getattr(request.app.state, "max_lessons", MAX_LESSONS))
        info = await run_in_threadpool(lambda: start_lesson(_root(request), name, preset, state=request.app.state,
                                                            max_running=max_running))
    except LessonError as e:
        return _json_error(str(e), e.status)
    except PathRefused as e:
        return _json_error(str(e), e.status)
    return JSONResponse(info, status_code=202)


async def post_stop(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    try:
        body = await _body(request)
        d = _lesson_dir(_root(request), body.get("path"))
    except LessonError as e:
        return _json_error(str(e), e.status)
    except (PathRefused, PathMissing) as e:
        return _json_error(str(e), e.status)
    return JSONResponse(await run_in_threadpool(stop_lesson, _root(request), d, state=request.app.state))


async def get_run(request: Any) -> Any:
    from starlette.responses import JSONResponse

    try:
        d = _lesson_dir(_root(request), request.query_params.get("path"))
    except (PathRefused, PathMissing) as e:
        return _json_error(str(e), e.status)
    return JSONResponse(lesson_info(_root(request), d, events=True))


async def stream(request: Any) -> Any:
    from starlette.responses import StreamingResponse

    try:
        d = _lesson_dir(_root(request), request.query_params.get("path"))
    except (PathRefused, PathMissing) as e:
        return _json_error(str(e), e.status)
    # a browser's EventSource that reconnects sends the id of the last event it got: the offset to go on from
    raw = request.headers.get("last-event-id") or request.query_params.get("offset", "0")
    if not raw.isdigit():
        return _json_error(f"offset must be a byte offset >= 0, got {raw[:40]!r}", 400)
    state = {"offset": int(raw)}
    rel = d.resolve().relative_to(_root(request).resolve()).as_posix()
    procs = _procs(request.app.state)

    async def poll() -> tuple[list[bytes], bool]:
        status = lesson_status(d, procs.get(rel))  # first, then the lines: a lesson seen ended has written its last line
        records, new, _ = read_records(d / "events.jsonl", state["offset"])
        state["offset"] = new
        out = [sse(r, event=str(r.get("event", "message")), id=str(new)) for r in records]
        return out, status not in ("running", "starting")

    return StreamingResponse(follow(poll, disconnected=client_gone(request)), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def get_note(request: Any) -> Any:
    from starlette.responses import PlainTextResponse

    from trainlab.experiments import REGISTRY

    name = request.query_params.get("name", "")
    if name not in REGISTRY:
        return _json_error(f"unknown experiment {_shown(name)}", 404)
    text = note_section(name)
    if text is None:
        return _json_error("docs/experiments.md is not installed with this copy of trainlab", 404)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


async def get_docs(request: Any) -> Any:
    from starlette.responses import PlainTextResponse

    page = request.query_params.get("page", "")
    d = docs_dir()
    if d is None:
        return _json_error("docs/ is not installed with this copy of trainlab", 404)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", page):
        return _json_error(f"page must be a docs page name such as 'normalization', got {page[:80]!r}", 400)
    try:
        p = safe_path(d, f"{page}.md", must_exist=True)
    except (PathRefused, PathMissing) as e:
        return _json_error(str(e).replace("lab root", "docs folder"), e.status)
    return PlainTextResponse(p.read_text(), media_type="text/markdown; charset=utf-8")


async def page(request: Any) -> Any:
    from starlette.responses import HTMLResponse

    from trainlab.lab._pages import page_html

    return HTMLResponse(page_html("lessons", "lessons", "lessons.js"))


def routes(root: str | Path | None = None) -> list[Any]:
    """The lessons' Starlette routes (see the module docstring). ``root``: the lab root; without it they
    read ``request.app.state.root`` at each request. The worker processes are kept in
    ``request.app.state.lesson_processes``; ``app.state.max_lessons`` (default 1) caps how many run at once."""
    from starlette.routing import Route

    return [
        Route("/lessons", with_root(page, root), methods=["GET"]),
        Route("/api/lessons", with_root(get_lessons, root), methods=["GET"]),
        Route("/api/lessons/start", with_root(post_start, root), methods=["POST"]),
        Route("/api/lessons/stop", with_root(post_stop, root), methods=["POST"]),
        Route("/api/lessons/run", with_root(get_run, root), methods=["GET"]),
        Route("/api/lessons/stream", with_root(stream, root), methods=["GET"]),
        Route("/api/lessons/note", with_root(get_note, root), methods=["GET"]),
        Route("/api/docs", with_root(get_docs, root), methods=["GET"]),
    ]


if __name__ == "__main__":  # pragma: no cover - a worker started by hand: python -m trainlab.lab._lessons DIR NAME
    _worker_main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "quick")
