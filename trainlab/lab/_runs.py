"""The lab's runs: what the server knows of each run under its root, the queue, and the workers.

:class:`Lab` lives in the server's event loop. Every run is a directory directly under the root
(an ordinary run directory). A run the lab starts is *queued* until fewer than ``max_parallel``
trainings run, then trains in a worker process (:mod:`trainlab.lab._worker`). The lab keeps every
event of a run in memory (with a sequence number), so a page that connects late, reloads or
reconnects gets everything from the start (or from the last event it saw) and then the live ones.

At start-up the lab reads the runs already under the root: a finished run (``summary.json``) and
an unfinished one (a checkpoint, no summary: *interrupted*, resumable) are shown from their
``history.json`` / checkpoint. A run whose directory another process has locked (``trainlab
train`` running there) is shown as *running elsewhere* and cannot be resumed from here.
Queued runs that never started are kept only in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import datetime as _dt
import json
import multiprocessing as mp
import os
import queue as _queue
import re
import threading
import time
from pathlib import Path
from typing import Any

from trainlab.config import RunConfig
from trainlab.lab._worker import clean, read_probes, worker_main

__all__ = ["Lab", "RunState", "NAME_RE"]

#: a run's name: a directory directly under the root
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ACTIVE = ("starting", "running", "paused", "stopping")
#: probe records kept in memory per run (older ones thinned; see RunState._thin_probes)
MAX_PROBES = 400


class RunState:
    """One run as the server sees it: its directory, status, and every event so far."""

    def __init__(self, name: str, directory: Path, status: str, cfg: Any = None) -> None:
        self.name, self.dir, self.status = name, directory, status
        self.cfg = cfg
        self.message = ""
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.waiters: set[asyncio.Event] = set()
        self.process: Any = None
        self.control: Any = None
        self.labels: list[str] = []
        self.size = 0
        self.step = 0
        self.total_steps: int | None = None
        self.created = time.time()
        self.forked_from: dict[str, Any] | None = None
        self._probes = 0

    def publish(self, ev: dict[str, Any]) -> None:
        self.seq += 1
        ev = {"seq": self.seq, **ev}
        self.events.append(ev)
        t = ev.get("type")
        if t == "begin":
            self.labels, self.size = list(ev.get("labels") or []), int(ev.get("size") or 0)
            self.step, self.total_steps = int(ev.get("step") or 0), ev.get("total_steps")
        elif t in ("progress", "eval"):
            self.step = int(ev.get("step") or (ev.get("record") or {}).get("step") or self.step)
        elif t == "state":
            self.status = ev["state"]
            self.message = ev.get("message", "")
            if ev.get("step") is not None:  # pause/resume/stop: the exact step
                self.step = int(ev["step"])
        if t == "probe":
            self._probes += 1
            if self._probes > MAX_PROBES:
                self._thin_probes()
        for w in list(self.waiters):
            w.set()

    def reset_log(self) -> None:
        """A resumed run starts its log again: its "begin" event carries the whole history so far."""
        self.events.clear()
        self._probes = 0

    def _thin_probes(self) -> None:
        """Keep every other probe record of the older half: a long run's replay stays bounded (a record of 32
        members is ~100 kB) and still spans the whole run; the file probes.jsonl keeps them all."""
        probes = [i for i, e in enumerate(self.events) if e.get("type") == "probe"]
        drop = set(probes[: len(probes) // 2][1::2])
        self.events = [e for i, e in enumerate(self.events) if i not in drop]
        self._probes -= len(drop)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "labels": self.labels,
                "size": self.size, "step": self.step, "total_steps": self.total_steps, "created": self.created,
                "forked_from": self.forked_from,
                "resumable": self.status in ("interrupted", "failed") and (self.dir / "config.toml").exists()}


class Lab:
    """The runs under ``root``, at most ``max_parallel`` training at once (see the module docstring)."""

    def __init__(self, root: str | Path, *, max_parallel: int = 2, threads: int | None = None,
                 probe_every: int = 20, interval: float = 0.2) -> None:
        if not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be an integer >= 1, got {max_parallel!r}")
        self.root = Path(root)
        self.max_parallel = max_parallel
        self.options = {"threads": threads, "probe_every": probe_every, "interval": interval}
        self.runs: dict[str, RunState] = {}
        self.queue: list[tuple[RunState, bool]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        # forkserver: a clean single-threaded process that imported torch and trainlab once; each worker
        # is a fork of it (a fraction of a second instead of seconds to import torch in a fresh interpreter),
        # never of the server with its threads and event loop
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["trainlab.lab._worker", "trainlab.run", "trainlab.data"])
        self._lock = threading.Lock()

    # ---- start-up: the runs already on disk ------------------------------------------
    def scan(self) -> None:
        """Read the runs under the root (finished, interrupted, running elsewhere)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.root.iterdir()):
            if d.name in self.runs or not NAME_RE.match(d.name) or d.is_symlink() or not d.is_dir():
                continue
            if not (d / "config.toml").exists():
                continue
            self.runs[d.name] = self._from_disk(d)

    def refresh(self, name: str) -> RunState:
        st = self._from_disk(self.root / name)
        self.runs[name] = st
        return st

    def _from_disk(self, d: Path) -> RunState:
        from trainlab._rundir import RunLock
        from trainlab.errors import ConfigError

        finished = (d / "summary.json").exists()
        st = RunState(d.name, d, "finished" if finished else "interrupted")
        try:
            lock = RunLock(d).acquire()
            lock.release()
        except ConfigError as e:
            st.status, st.message = "running elsewhere", str(e)
        except OSError:
            pass
        history = _read_history(d, finished)
        if history is not None:
            info = history.get("info", {})
            labels = info.get("member_labels") or [f"member {i}" for i in range(int(history.get("size", 0)))]
            st.publish({"type": "begin", "step": history["records"][-1]["step"] if history.get("records") else 0,
                        "total_steps": info.get("total_steps"), "steps_per_epoch": info.get("steps_per_epoch"),
                        "labels": labels, "size": int(history.get("size", len(labels))),
                        "records": clean(history.get("records", [])), "diverged": clean(history.get("diverged", {})),
                        "steering": clean(info.get("steering", [])), "steerable": [], "lr": None,
                        "probes": read_probes(d / "probes.jsonl"), "from_disk": True})
            st.forked_from = info.get("forked_from")
        st.publish({"type": "state", "state": st.status, "message": st.message})
        return st

    # ---- new runs, the queue, workers ----------------------------------------------------
    def new_name(self, hint: str) -> str:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", hint).strip("-.")[:40] or "run"
        base = f"{stamp}-{slug}"
        name, i = base, 2
        while name in self.runs or (self.root / name).exists():
            name, i = f"{base}-{i}", i + 1
        return name

    def submit(self, name: str, cfg: RunConfig) -> RunState:
        st = RunState(name, self.root / name, "queued", cfg)
        self.runs[name] = st
        st.publish({"type": "state", "state": "queued"})
        self.queue.append((st, False))
        self._start_queued()
        return st

    def fork(self, parent: RunState, member: int, name: str) -> None:
        """Ask ``parent``'s worker to write member ``member`` as the new run ``name``. The name is held as a
        ``forking`` run until the worker has written it (its ``forked`` event then reads it from disk and
        queues it): a look at the run in between -- the page polls it -- must not read the directory the
        worker is writing as an interrupted run of its own, which the event would then leave alone, and the
        fork would never start (a CI run caught it). Raises as :meth:`command` when the parent is not
        training; then nothing is held."""
        with self._lock:
            st = RunState(name, self.root / name, "forking")
            st.forked_from = {"run": parent.name, "member": member}
            self.runs[name] = st
            st.publish({"type": "state", "state": "forking", "message": f"member {member} of {parent.name}"})
        try:
            self.command(parent, {"cmd": "fork", "member": member, "dest": str(st.dir), "request": {"fork": name}})
        except Exception:
            with self._lock:
                self.runs.pop(name, None)
            raise

    def _fork_ended(self, name: str) -> None:
        """A fork that is still ``forking`` when its parent reports an error or ends: what the worker wrote,
        if it wrote the run (then interrupted: resumable), else nothing."""
        other = self.runs.get(name)
        if other is None or other.status != "forking":
            return
        if (other.dir / "config.toml").exists():
            self.refresh(name)
        else:
            del self.runs[name]

    def resume(self, st: RunState) -> None:
        st.reset_log()
        st.publish({"type": "state", "state": "queued"})
        self.queue.append((st, True))
        self._start_queued()

    def active(self) -> int:
        return sum(1 for r in self.runs.values() if r.process is not None)

    def _start_queued(self) -> None:
        while self.queue and self.active() < self.max_parallel:
            st, resume = self.queue.pop(0)
            self._spawn(st, resume)

    def _spawn(self, st: RunState, resume: bool) -> None:
        events, control = self._ctx.Queue(), self._ctx.Queue()
        cfg = None if resume else st.cfg
        p = self._ctx.Process(target=worker_main, args=(str(st.dir), cfg, resume, events, control, os.getpid(),
                                                        self.options), daemon=False, name=f"trainlab-lab-{st.name}")
        st.control, st.process = control, p
        st.publish({"type": "state", "state": "starting"})
        p.start()
        threading.Thread(target=self._pump, args=(st, p, events), daemon=True,
                         name=f"trainlab-lab-events-{st.name}").start()

    def _pump(self, st: RunState, p: Any, events: Any) -> None:
        """Reader thread: worker events -> the event loop, until the worker's end-of-stream or death."""
        ended = False
        while True:
            try:
                ev = events.get(timeout=0.5)
            except _queue.Empty:
                if not p.is_alive():
                    try:
                        ev = events.get(timeout=0.5)
                    except (_queue.Empty, EOFError, OSError):
                        break
                else:
                    continue
            except (EOFError, OSError):
                break
            if ev is None:
                ended = True
                break
            self._deliver(st, ev)
        p.join(timeout=30)
        self._deliver(st, {"type": "_exit", "ended": ended, "exitcode": p.exitcode})

    def _deliver(self, st: RunState, ev: dict[str, Any]) -> None:
        if self.loop is not None and self.loop.is_running():
            try:
                self.loop.call_soon_threadsafe(self._on_event, st, ev)
                return
            except RuntimeError:
                pass
        self._on_event(st, ev)

    def _on_event(self, st: RunState, ev: dict[str, Any]) -> None:
        with self._lock:
            if ev.get("type") == "_exit":
                st.process, st.control = None, None
                for name, other in list(self.runs.items()):  # forks the worker never got to
                    if other.status == "forking" and (other.forked_from or {}).get("run") == st.name:
                        self._fork_ended(name)
                if st.status in ACTIVE or st.status == "queued":
                    st.publish({"type": "state", "state": "interrupted" if (st.dir / "config.toml").exists()
                                else "failed", "message": f"the worker ended unexpectedly (exit code "
                                f"{ev.get('exitcode')})"})
                self._start_queued()
                return
            request = ev.get("request")
            if ev.get("type") == "error" and isinstance(request, dict) and "fork" in request:
                self._fork_ended(str(request["fork"]))  # the fork command failed in the worker
            if ev.get("type") == "forked":
                dest = Path(ev["dest"])
                if dest.name not in self.runs or self.runs[dest.name].status == "forking":
                    fork = self.refresh(dest.name)
                    fork.forked_from = {"run": st.name, "member": ev["member"], "step": ev["step"]}
                    self.resume(fork)
            st.publish(ev)

    def command(self, st: RunState, msg: dict[str, Any]) -> None:
        if st.control is None or st.status not in ACTIVE:
            from trainlab.lab._form import LabInputError

            raise LabInputError(f"run {st.name} is {st.status}, not training; nothing to {msg.get('cmd')}")
        st.control.put(msg)

    def cancel(self, st: RunState) -> bool:
        for i, (q, _) in enumerate(self.queue):
            if q is st:
                del self.queue[i]
                st.publish({"type": "state", "state": "cancelled"})
                if not (st.dir / "config.toml").exists():
                    self.runs.pop(st.name, None)
                return True
        return False

    def shutdown(self, timeout: float = 60.0) -> None:
        """Every training checkpoints and stops (resumable); waits for the workers."""
        self.queue.clear()
        procs = []
        for st in self.runs.values():
            if st.process is not None:
                try:
                    st.control.put({"cmd": "interrupt"})
                except (OSError, ValueError):
                    pass
                procs.append(st.process)
        t0 = time.monotonic()
        for p in procs:
            p.join(timeout=max(0.1, timeout - (time.monotonic() - t0)))
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def _read_history(d: Path, finished: bool) -> dict[str, Any] | None:
    """The run's history: history.json when finished, else the checkpoint's (the newest good one)."""
    try:
        if finished and (d / "history.json").exists():
            return json.loads((d / "history.json").read_text())
        for name in ("checkpoint.json", "checkpoint.prev.json"):
            p = d / name
            if p.exists() and not p.is_symlink():
                return json.loads(p.read_text())["state"]["history"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None
