"""The lab's viewer for the command line: the runs (``trainlab train``) and studies (``trainlab tune``) under
the lab root, followed live while they run, by reading their files.

Nothing here writes into a run or a study, and nothing takes a run's lock: the viewer can watch a
training without ever being the reason it cannot start (see :func:`run_status`).

**Runs.** A directory is a run when :func:`trainlab._rundir.classify` calls it one (``config.toml`` or
``checkpoint.json``; ``summary.json`` once finished). Its status:

* ``running``: a process holds the run's lock (``.trainlab.lock``, an ``flock`` the kernel drops when
  its holder dies). The viewer looks the lock up in ``/proc/locks`` instead of trying to take it (a
  try would, for a moment, hold it, and a ``trainlab train --resume`` starting in that moment would
  be refused); where ``/proc/locks`` is not readable, the pid written in the lock file is checked.
* ``finished``: ``summary.json`` exists (written last, see docs/reliability.md).
* ``interrupted``: not running, not finished, and it has a checkpoint: ``trainlab train --resume DIR``
  continues it. (Its files cannot tell Ctrl-C from a crash or a kill -9: all three leave this.)
* ``failed``: not running, not finished, no checkpoint: it stopped before its first evaluation, so
  nothing it trained was kept (``--resume`` would start it over).

Members carry the labels of :mod:`trainlab.labels` (from the metrics lines, ``summary.json``, the
checkpoint, or computed from ``config.toml`` before the first evaluation).

**Studies.** A directory with ``study.db`` (the SQLite storage ``trainlab tune --out DIR`` keeps there), or
with ``storage.json``: a study whose trials live in a database server (``--storage postgresql://...``),
which ``trainlab tune`` records there without the password (``record_storage``);
the viewer opens that server with the driver's own password sources (``PGPASSWORD``, ``~/.pgpass``) and
only ``postgresql``/``mysql`` URLs, and looks at it again every :data:`SERVER_POLL_SECONDS` (a server has
no file whose change the viewer could watch). It is opened with the search's own
:func:`~trainlab.search.open_storage`, read with the search's ledger (:class:`~trainlab.search.Ledger`:
one status per slot), its best trial (:func:`~trainlab.search.best_trial`), the running-vs-dead test the tuner applies to its own
trials (``StudyStorage.stale_trials``), and parameter importance exactly as the study's report
computes it (:func:`~trainlab.search.param_importances`, fANOVA). ``Tuner.snapshot()`` itself
is not used: it needs the search config, which the study's directory does not hold; everything it
reads (trials, study attributes, the spec stored in them) is read here the same way.

**Routes** (:func:`routes`; the app mounts them and sets ``app.state.root``, the lab root, a
:class:`~pathlib.Path`). Every ``path`` parameter is relative to the root and goes through
:func:`~trainlab.lab._paths.safe_path` (403 outside the root, 404 missing):

=========================================  ==========================================================
``GET /runs``                                the page (static/page.html around static/runs_main.html)
``GET /api/viewer/list``                     ``{"runs": [run...], "studies": [study...]}``
``GET /api/viewer/run?path=P``               one run (below), with ``summary`` once finished
``GET /api/viewer/metrics?path=P&offset=N``  ``{"records": [...], "offset": N2, "reset": bool, "status"}``
``GET /api/viewer/stream?path=P&offset=N``   SSE: ``run`` (the run, on every status change),
                                             ``metrics`` (``{"records", "offset", "reset"}``), ``end``
``GET /api/viewer/study?path=P``             one study with its trials and importance (below)
``GET /api/viewer/study/stream?path=P``      SSE: ``study`` on every change of the storage, ``end``
``GET /api/viewer/file?path=P``              a figure (``.png``/``.svg``) or text/JSON file of a run or study
=========================================  ==========================================================

A run: ``{"kind": "run", "path", "name", "status", "resumable", "holder", "size", "members",
"data", "model", "optim", "epochs", "step", "epoch", "modified", "figures", "diverged"}``.
A study: ``{"kind": "study", "path", "name", "status", "study", "studies", "metric", "direction",
"budget", "counts", "best", "space", "trials": [{"number", "slot", "state", "value", "params",
"seed", "duration_s"}...], "importance": {"method", "trials", "importance": {name: share}} | null,
"modified"}``. Floats that are not finite are ``null``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
import tomllib
from pathlib import Path
from typing import Any

from trainlab.lab._paths import PathMissing, PathRefused, safe_path
from trainlab.lab._tail import client_gone, with_root, POLL_SECONDS, follow, jsonable, read_records, sse

__all__ = ["routes", "find_entries", "run_info", "run_status", "lock_held", "study_info", "is_run", "is_study"]

#: how deep under the root the viewer looks for runs and studies (root/a/b/c/run is depth 4)
MAX_DEPTH = 4
#: directories the listing does not enter: the lessons' own runs have their own page
SKIP = {"lessons"}
_LOCK = ".trainlab.lock"
_FILES = {".png": "image/png", ".svg": "image/svg+xml", ".json": "application/json",
          ".jsonl": "application/x-ndjson", ".csv": "text/csv; charset=utf-8", ".toml": "text/plain; charset=utf-8",
          ".txt": "text/plain; charset=utf-8"}


# ---- runs ------------------------------------------------------------------------------------------
def is_run(d: Path) -> bool:
    from trainlab._rundir import classify

    return classify(d) in ("finished", "unfinished")


def is_study(d: Path) -> bool:
    from trainlab.search import STORAGE_RECORD

    return (d / "study.db").is_file() or (d / STORAGE_RECORD).is_file()


def _proc_locks() -> list[tuple[int, int]] | None:
    """``(pid, inode)`` of every FLOCK WRITE lock on this machine, or None where /proc/locks is unreadable."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    out = []
    for line in text.splitlines():
        f = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:123456 0 EOF" (a "->" marks a waiter)
        if len(f) >= 6 and f[1] == "FLOCK" and f[3] == "WRITE":
            try:
                out.append((int(f[4]), int(f[5].rsplit(":", 1)[1])))
            except (ValueError, IndexError):
                continue
    return out


def _holder_pid(text: str) -> tuple[int | None, str | None]:
    # RunLock writes "pid N on host H, started T"
    parts = text.split()
    try:
        pid = int(parts[1]) if parts[:1] == ["pid"] else None
    except (IndexError, ValueError):
        pid = None
    host = parts[4].rstrip(",") if len(parts) > 4 and parts[2:4] == ["on", "host"] else None
    return pid, host


def lock_held(d: Path) -> tuple[bool, str | None]:
    """Whether a live process holds ``d/.trainlab.lock``, and the lock file's text (who), without locking."""
    lock = d / _LOCK
    try:
        st = lock.stat()
        text = lock.read_text(errors="replace").strip()[:400]
    except OSError:
        return False, None
    pid, host = _holder_pid(text)
    locks = _proc_locks()
    if locks is not None:
        held = any(ino == st.st_ino and (pid is None or p == pid) for p, ino in locks)
        return held, (text or None) if held else None
    if pid is None or host != socket.gethostname():
        return False, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass  # alive, owned by someone else
    return True, text or None


def run_status(d: Path) -> tuple[str, str | None]:
    """``(status, holder)``: running / finished / interrupted / failed (see the module docstring)."""
    held, holder = lock_held(d)
    if held:
        return "running", holder
    if (d / "summary.json").is_file():
        return "finished", None
    if (d / "checkpoint.json").is_file():
        return "interrupted", None
    return "failed", None


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _config(d: Path) -> dict[str, Any] | None:
    try:
        with open(d / "config.toml", "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _labels_from_config(cfg: dict[str, Any]) -> list[str] | None:
    from trainlab.labels import member_labels

    try:
        return member_labels(cfg)
    except Exception:  # an older or foreign config.toml: labels come from the metrics lines instead
        return None


def _last_records(path: Path, max_bytes: int = 1 << 16) -> list[dict[str, Any]]:
    """The records of the last ``max_bytes`` of a jsonl file (the latest step of every member)."""
    try:
        size = path.stat().st_size
    except OSError:
        return []
    start = max(0, size - max_bytes)
    if start:
        with open(path, "rb") as f:  # move to the first line boundary after start
            f.seek(start)
            skip = f.readline()
            start += len(skip)
    records, _, _ = read_records(path, start)
    return records


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _rel(root: Path, d: Path) -> str:
    return d.resolve().relative_to(root.resolve()).as_posix()


def _figures(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.suffix in (".png", ".svg") and p.is_file()
                  and not p.name.startswith("."))


def run_info(root: Path, d: Path, *, summary: bool = False) -> dict[str, Any]:
    """What the viewer shows of run directory ``d`` (see the module docstring)."""
    status, holder = run_status(d)
    cfg = _config(d) or {}
    last = _last_records(d / "metrics.jsonl")
    labels: list[str] | None = None
    summ = _read_json(d / "summary.json") if status == "finished" else None
    if isinstance(summ, dict) and summ.get("member_labels"):
        labels = list(summ["member_labels"])
    if labels is None and cfg:
        labels = _labels_from_config(cfg)
    size = cfg.get("population", {}).get("size") if isinstance(cfg.get("population"), dict) else None
    if labels is None and last:
        by_member = {int(r.get("member", 0)): r.get("member_label") for r in last}
        labels = [str(by_member.get(i, f"member {i}")) for i in range(max(by_member) + 1)]
    step = max((r.get("step", 0) for r in last), default=0)
    epoch = max((r.get("epoch", 0) for r in last), default=0)
    diverged = sorted({int(r["member"]) for r in last if r.get("diverged")})
    mtimes = [p.stat().st_mtime for p in (d / "metrics.jsonl", d / "config.toml", d / "summary.json") if p.exists()]
    info: dict[str, Any] = {
        "kind": "run", "path": _rel(root, d), "name": d.name, "status": status,
        "resumable": status in ("interrupted", "failed"), "holder": holder,
        "size": int(size) if size is not None else (len(labels) if labels else None), "members": labels or [],
        "data": cfg.get("data", {}).get("name"), "model": cfg.get("model", {}).get("type"),
        "optim": cfg.get("optim", {}).get("name"), "epochs": cfg.get("train", {}).get("epochs"),
        "step": step, "epoch": epoch, "diverged": diverged,
        "modified": _iso(max(mtimes)) if mtimes else None, "figures": _figures(d),
    }
    if summary:
        info["summary"] = summ
        info["config"] = cfg
    return jsonable(info)


# ---- studies ---------------------------------------------------------------------------------------
#: how often a study kept in a database server is read again (its files cannot tell the viewer it changed)
SERVER_POLL_SECONDS = 2.0


def _open_study_storage(d: Path) -> tuple[Any, str | None]:
    """The study storage of directory ``d`` and the study it names (None: the storage's last study)."""
    from trainlab.search import open_storage, recorded_storage

    db = d / "study.db"
    if db.is_file():
        return open_storage(str(db)), None
    url, study = recorded_storage(d)
    return open_storage(_with_connect_timeout(url)), study


def _with_connect_timeout(url: str) -> str:
    """A PostgreSQL URL that gives up connecting after 5 s unless it says otherwise: a server that does not
    answer makes the study "unreadable" in the listing instead of holding the listing up."""
    import sqlalchemy

    u = sqlalchemy.engine.make_url(url)
    if u.get_backend_name() != "postgresql" or "connect_timeout" in u.query:
        return url
    return u.update_query_dict({"connect_timeout": "5"}).render_as_string(hide_password=False)


#: parameter importance by (storage file, study, numbers of the completed trials)
_IMPORTANCE: dict[tuple[str, str, tuple[int, ...]], Any] = {}


def _study_payload(store: Any, study_name: str | None, *, importance: bool) -> dict[str, Any]:
    """One study of an open storage: trials, ledger counts, best, importance (see the module docstring)."""
    from optuna.trial import TrialState

    from trainlab.search import (BUDGET, FINAL, SEED, SLOT, SPEC, Ledger, SearchSpace, SlotState, best_trial,
                                 param_importances)

    st = store.storage
    studies = st.get_all_studies()
    names = [s.study_name for s in studies]
    if not studies:
        return {"studies": [], "study": None, "status": "empty", "trials": [], "counts": {}, "importance": None}
    chosen = next((s for s in studies if s.study_name == study_name), studies[-1])
    sid = chosen._study_id
    attrs = st.get_study_system_attrs(sid)
    spec = attrs.get(SPEC) or {}
    maximize = spec.get("direction", "maximize" if chosen.direction.name == "MAXIMIZE" else "minimize") == "maximize"
    try:
        space: SearchSpace | None = SearchSpace.from_table(spec.get("space")) if spec.get("space") else None
    except Exception:  # a space an older/newer trainlab wrote: show the raw parameter values
        space = None
    trials = st.get_all_trials(sid, deepcopy=False)
    ledger = Ledger(trials, max_retries=2)  # search.max_retries' default; it only splits RETRY from FAILED
    best = best_trial(trials, maximize)
    stale = store.stale_trials(sid, trials)
    live = [t for t in trials if t.state == TrialState.RUNNING and t._trial_id not in stale]
    budget = int(attrs[BUDGET]) if BUDGET in attrs else None

    def decode(t: Any) -> dict[str, Any]:
        if space is None:
            return dict(t.params)
        try:
            return space.decode(t.params)
        except Exception:
            return dict(t.params)

    rows = [{"number": t.number, "slot": t.system_attrs.get(SLOT), "state": t.state.name, "value": t.value,
             "params": decode(t), "seed": _text(t.user_attrs.get(SEED)),
             "duration_s": round(t.duration.total_seconds(), 3) if t.duration else None} for t in trials]
    if live:
        status = "running"
    elif budget is not None and ledger.decided >= budget:
        status = "finished"
    else:
        status = "interrupted"  # rerunning the same trainlab tune command resumes it
    imp = None
    if importance:
        # fANOVA costs up to seconds of CPU, taken from the trainings: computed again only when the set of
        # completed trials changed (not on every heartbeat a running study writes)
        done = tuple(sorted(t.number for t in trials if t.state == TrialState.COMPLETE and t.value is not None))
        key = (str(getattr(store, "path", None) or store.url), chosen.study_name, done)
        if key not in _IMPORTANCE:
            if len(_IMPORTANCE) > 64:
                _IMPORTANCE.clear()
            _IMPORTANCE[key] = param_importances(list(trials), maximize=maximize, limit=300,
                                                 seed=int(spec.get("seed", 0)))
        imp = _IMPORTANCE[key]
    counts = {"budget": budget, "with_result": ledger.decided, "complete": ledger.count(SlotState.COMPLETE),
              "pruned": ledger.count(SlotState.PRUNED), "failed": ledger.count(SlotState.FAILED),
              "running": len(live), "trial_records": len(trials)}
    best_row = None
    if best is not None:
        best_row = {"number": best.number, "slot": best.system_attrs.get(SLOT), "value": best.value,
                    "params": decode(best), "test": (attrs.get(FINAL) if (attrs.get(FINAL) or {}).get("trial")
                                                     == best.number else None)}
    return {"study": chosen.study_name, "studies": names, "status": status, "metric": spec.get("metric"),
            "direction": "maximize" if maximize else "minimize", "budget": budget, "counts": counts,
            "best": best_row, "space": spec.get("space") or {}, "strategy": spec.get("strategy"),
            "trials": rows, "importance": imp}


def _text(v: Any) -> Any:
    # member seeds are 64-bit: beyond a JavaScript number's 53 exact bits, so they travel as text
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


#: the listing's view of each study, by directory and the state of its files: a study that has not changed
#: since the last look is not opened again (opening a storage costs a database engine)
_LISTED: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}


def study_info(root: Path, d: Path, *, trials: bool = True, study: str | None = None) -> dict[str, Any]:
    """What the viewer shows of study directory ``d``; ``trials=False`` (the listing) leaves out the
    trial rows and importance, and answers from :data:`_LISTED` while the study's files are unchanged."""
    if trials or study is not None:
        return _read_study(root, d, trials=trials, study=study)
    key = (str(d.resolve()), _storage_stamp(d))
    hit = _LISTED.get(key)
    # a running study's status depends on the clock too (a worker whose heartbeat stops is dead): read it again
    if hit is not None and hit["status"] != "running":
        return {**hit, "path": _rel(root, d)}
    info = _read_study(root, d, trials=False, study=None)
    if len(_LISTED) > 256:
        _LISTED.clear()
    _LISTED[key] = info
    return info


def _read_study(root: Path, d: Path, *, trials: bool, study: str | None) -> dict[str, Any]:
    store, recorded = _open_study_storage(d)
    try:
        payload = _study_payload(store, study or recorded, importance=trials)
    finally:
        store.close()
    if not trials:
        payload.pop("trials", None)
        payload.pop("importance", None)
    mtimes = [p.stat().st_mtime for p in _study_files(d)]
    payload.update(kind="study", path=_rel(root, d), name=d.name, modified=_iso(max(mtimes)) if mtimes else None,
                   figures=_figures(d))
    return jsonable(payload)


def _study_files(d: Path) -> list[Path]:
    """The files of a study directory that change with its storage: ``study.db`` and its journal files, or
    ``storage.json`` (and ``summary.json``, rewritten when the study ends) for a database server's study."""
    from trainlab.search import STORAGE_RECORD

    files = sorted(p for p in d.glob("study.db*") if p.is_file())
    if not files:
        files = [p for p in (d / STORAGE_RECORD, d / "summary.json") if p.is_file()]
    return files


def _storage_stamp(d: Path) -> tuple[Any, ...]:
    """Changes whenever the study's SQLite files change (the WAL file grows with every write); for a study
    in a database server, every :data:`SERVER_POLL_SECONDS` as well."""
    out: list[Any] = []
    for p in _study_files(d):
        try:
            s = p.stat()
            out.append((p.name, s.st_size, s.st_mtime_ns))
        except OSError:
            continue
    if not (d / "study.db").is_file():
        out.append(int(time.time() // SERVER_POLL_SECONDS))
    return tuple(out)


# ---- discovery -------------------------------------------------------------------------------------
def find_entries(root: Path) -> tuple[list[Path], list[Path]]:
    """Run directories and study directories under ``root`` (up to :data:`MAX_DEPTH` levels, hidden
    directories and symbolic links skipped, a run's or a study's own sub-directories not entered)."""
    runs: list[Path] = []
    studies: list[Path] = []

    def walk(d: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            if e.name.startswith(".") or not e.is_dir(follow_symlinks=False):
                continue
            if depth == 1 and e.name in SKIP:
                continue
            p = Path(e.path)
            if is_study(p):
                studies.append(p)
            elif is_run(p):
                runs.append(p)
            elif depth < MAX_DEPTH:
                walk(p, depth + 1)

    if root.is_dir():
        walk(root, 1)
    return runs, studies


# ---- routes ----------------------------------------------------------------------------------------
def _root(request: Any) -> Path:
    # the root bound by routes(root), else the app's state.root (the lab's --root)
    bound = request.scope.get("trainlab_lab_root")
    return Path(bound if bound is not None else request.app.state.root)


def _error(e: Exception) -> Any:
    from starlette.responses import JSONResponse

    status = getattr(e, "status", 400)
    return JSONResponse({"error": str(e)}, status_code=status)


def _resolve(request: Any, *, what: str) -> Path:
    rel = request.query_params.get("path")
    if rel is None:
        raise PathMissing("the path parameter is missing (?path=DIR under the lab root)")
    d = safe_path(_root(request), rel, must_exist=True)
    if what == "run" and not (d.is_dir() and is_run(d) and not is_study(d)):
        raise PathMissing(f"{rel!r} is not a trainlab run directory under the lab root")
    if what == "study" and not (d.is_dir() and is_study(d)):
        raise PathMissing(f"{rel!r} is not a trainlab tune directory (with study.db or storage.json) under the "
                          "lab root")
    return d


def _offset(request: Any) -> int:
    # a browser's EventSource that reconnects sends the id of the last event it got: the offset to go on from
    raw = request.headers.get("last-event-id") or request.query_params.get("offset", "0")
    try:
        v = int(raw)
    except ValueError:
        v = -1
    if v < 0:
        raise ValueError(f"offset must be a byte offset >= 0 (one a previous answer gave), got {raw[:40]!r}")
    return v


async def list_entries(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    root = _root(request)

    def collect() -> dict[str, Any]:
        runs, studies = find_entries(root)
        out_runs = [run_info(root, d) for d in runs]
        out_studies = []
        for d in studies:
            try:
                out_studies.append(study_info(root, d, trials=False))
            except Exception as e:  # a study that cannot be opened is listed with why
                out_studies.append({"kind": "study", "path": _rel(root, d), "name": d.name, "status": "unreadable",
                                    "error": str(e).splitlines()[0] if str(e) else type(e).__name__})
        out_runs.sort(key=lambda r: r.get("modified") or "", reverse=True)
        out_studies.sort(key=lambda r: r.get("modified") or "", reverse=True)
        return {"root": str(root), "runs": out_runs, "studies": out_studies}

    return JSONResponse(await run_in_threadpool(collect))


async def get_run(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    try:
        d = _resolve(request, what="run")
    except (PathRefused, PathMissing) as e:
        return _error(e)
    return JSONResponse(await run_in_threadpool(run_info, _root(request), d, summary=True))


async def get_metrics(request: Any) -> Any:
    from starlette.responses import JSONResponse

    try:
        d = _resolve(request, what="run")
        offset = _offset(request)
    except (PathRefused, PathMissing, ValueError) as e:
        return _error(e)
    records, new, reset = read_records(d / "metrics.jsonl", offset)
    return JSONResponse({"records": jsonable(records), "offset": new, "reset": reset,
                         "status": run_status(d)[0]})


async def stream_run(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import StreamingResponse

    try:
        d = _resolve(request, what="run")
        offset = _offset(request)
    except (PathRefused, PathMissing, ValueError) as e:
        return _error(e)
    root = _root(request)
    state: dict[str, Any] = {"offset": offset, "status": None}

    async def poll() -> tuple[list[bytes], bool]:
        events = []
        # the status first, then the lines: a run seen ended has written its last line before, so this read
        # has it, and the stream can end after it
        status = run_status(d)[0]
        records, new, reset = read_records(d / "metrics.jsonl", state["offset"])
        if status != state["status"]:
            state["status"] = status
            events.append(sse(await run_in_threadpool(run_info, root, d), event="run"))
        if records or reset:
            events.append(sse({"records": records, "offset": new, "reset": reset}, event="metrics",
                              id=str(new)))
        state["offset"] = new
        return events, status != "running"

    return StreamingResponse(follow(poll, disconnected=client_gone(request)),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def get_study(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    try:
        d = _resolve(request, what="study")
    except (PathRefused, PathMissing) as e:
        return _error(e)
    name = request.query_params.get("study")
    try:
        info = await run_in_threadpool(study_info, _root(request), d, study=name)
    except Exception as e:
        return JSONResponse({"error": f"cannot read the study in {d.name}: {str(e).splitlines()[0] if str(e) else e}"},
                            status_code=500)
    return JSONResponse(info)


async def stream_study(request: Any) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import StreamingResponse

    try:
        d = _resolve(request, what="study")
    except (PathRefused, PathMissing) as e:
        return _error(e)
    root, name = _root(request), request.query_params.get("study")
    state: dict[str, Any] = {"stamp": None}

    async def poll() -> tuple[list[bytes], bool]:
        stamp = _storage_stamp(d)
        if stamp == state["stamp"]:
            return [], False
        state["stamp"] = stamp
        info = await run_in_threadpool(study_info, root, d, study=name)
        # between two batches of trials no trial runs for a moment: only a finished study ends the stream
        return [sse(info, event="study")], info["status"] == "finished"

    # a study changes at most once per trial: one look a second is enough, and opening it is not free
    return StreamingResponse(follow(poll, disconnected=client_gone(request), interval=max(1.0, POLL_SECONDS)),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def get_file(request: Any) -> Any:
    from starlette.responses import FileResponse

    rel = request.query_params.get("path")
    try:
        if rel is None:
            raise PathMissing("the path parameter is missing (?path=FILE under the lab root)")
        p = safe_path(_root(request), rel, must_exist=True)
        if not p.is_file():
            raise PathMissing(f"{rel!r} is not a file")
        kind = _FILES.get(p.suffix.lower())
        if kind is None:
            raise PathRefused(f"{rel!r}: the viewer serves only {', '.join(sorted(_FILES))} files")
    except (PathRefused, PathMissing) as e:
        return _error(e)
    return FileResponse(p, media_type=kind, headers={"Cache-Control": "no-cache"})


async def page(request: Any) -> Any:
    from starlette.responses import HTMLResponse

    from trainlab.lab._pages import page_html

    return HTMLResponse(page_html("runs", "runs and studies", "viewer.js"))


def routes(root: str | Path | None = None) -> list[Any]:
    """The viewer's Starlette routes (see the module docstring). ``root``: the lab root; without it they
    read ``request.app.state.root`` at each request."""
    from starlette.routing import Route

    return [
        Route("/runs", with_root(page, root), methods=["GET"]),
        Route("/api/viewer/list", with_root(list_entries, root), methods=["GET"]),
        Route("/api/viewer/run", with_root(get_run, root), methods=["GET"]),
        Route("/api/viewer/metrics", with_root(get_metrics, root), methods=["GET"]),
        Route("/api/viewer/stream", with_root(stream_run, root), methods=["GET"]),
        Route("/api/viewer/study", with_root(get_study, root), methods=["GET"]),
        Route("/api/viewer/study/stream", with_root(stream_study, root), methods=["GET"]),
        Route("/api/viewer/file", with_root(get_file, root), methods=["GET"]),
    ]
