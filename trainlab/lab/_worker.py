"""Training in a worker process the lab server owns.

Each run trains in its own process (``multiprocessing``'s *forkserver* start: a fork of a clean
process that imported torch and trainlab once, never of the server with its threads and event loop), through :func:`trainlab.run.train_run` -- the same
code as ``trainlab train`` -- so the run directory is an ordinary one. Two queues connect it to
the server: events out (:class:`LabStream`: progress at most every ``interval`` seconds, every
evaluation, divergence, probes, steering), commands in (:class:`~trainlab.lab._steer.Steering`).
The server never waits on a worker: a thread of the server reads the event queue and hands each
event to the event loop.

A worker must not outlive its server: every ``interval`` seconds of training (and while paused) it checks
that the server's process still runs, and asks the kernel for SIGTERM should its parent (the fork server)
die (``prctl(PR_SET_PDEATHSIG)``); either way it checkpoints at the next step boundary and exits, so a server killed mid-run leaves a run that the
restarted server (or ``trainlab train --resume``) resumes. Ctrl-C reaches the workers too (same
process group): each checkpoints and exits the way ``trainlab train`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import ctypes
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from trainlab.lab._steer import server_alive
from trainlab.train import Callback

__all__ = ["LabStream", "worker_main", "clean", "BudgetedProbe", "ProbeLog", "read_probes"]


def clean(v: Any) -> Any:
    """JSON-safe: NaN/inf become None, tensors lists, tuples lists (nested)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, torch.Tensor):
        return clean(v.tolist())
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


class LabStream(Callback):
    """Sends the training events to the server (stateless; it never changes training).

    ``progress``: at most every ``interval`` seconds, the step, each member's mean training
    objective over the steps since the last one, its learning rate and whether it is alive.
    ``eval``: every evaluation record, with ``history.diverged`` (the NaN rule and the exploding-loss
    rule of :class:`~trainlab.train.Trainer` both end there, with their step). ``begin`` carries the
    history so far (a resumed run's records), the labels and what can be steered.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None], *, interval: float = 0.2,
                 server_pid: int | None = None, on_begin: Callable[[int], None] | None = None,
                 probes: Path | None = None) -> None:
        self.emit, self.interval, self.server_pid = emit, interval, server_pid
        self.on_begin, self.probes = on_begin, probes
        self._sum: torch.Tensor | None = None
        self._n = 0
        self._last = 0.0

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def on_train_begin(self, trainer: Any) -> None:
        from trainlab.lab._steer import steerable_keys

        h = trainer.history
        if self.on_begin is not None:
            self.on_begin(trainer.step)
        probes = read_probes(self.probes) if self.probes is not None else []
        self.emit({"type": "begin", "step": trainer.step, "total_steps": h.info.get("total_steps"),
                   "steps_per_epoch": h.info.get("steps_per_epoch"), "labels": h.labels, "size": trainer.size,
                   "records": clean(h.records), "diverged": clean(h.diverged),
                   "steering": clean(h.info.get("steering", [])), "steerable": steerable_keys(trainer),
                   "lr": clean(trainer.optimizer.lr), "probes": probes})
        self._last = time.perf_counter()

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None:
        l = loss.detach().double()
        self._sum = l.clone() if self._sum is None else self._sum + l
        self._n += 1
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._flush(trainer)
            self._last = now
            if self.server_pid is not None and not server_alive(self.server_pid):
                trainer.interrupt_requested = True  # the server is gone: checkpoint and leave

    def _flush(self, trainer: Any) -> None:
        if not self._n or self._sum is None:
            return
        self.emit({"type": "progress", "step": trainer.step, "loss": clean(self._sum / self._n),
                   "lr": clean(trainer.optimizer.lr), "alive": trainer.alive.tolist(), "time": time.time()})
        self._sum, self._n = None, 0

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        self.emit({"type": "eval", "record": clean(record), "diverged": clean(trainer.history.diverged)})

    def on_diverged(self, trainer: Any, members: list[int]) -> None:
        self.emit({"type": "diverged", "diverged": clean(trainer.history.diverged)})

    def on_train_end(self, trainer: Any) -> None:
        self._flush(trainer)


def _die_with_parent() -> None:
    """Linux: SIGTERM to this process when its parent dies (the trainer checkpoints on it)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # elsewhere: the parent-pid check of LabStream does it


def worker_main(run_dir: str, cfg: Any, resume: bool, events: Any, control: Any,
                server_pid: int, options: Mapping[str, Any]) -> None:
    """The worker process: train ``cfg`` (a :class:`~trainlab.config.RunConfig`) into ``run_dir``, or resume
    the run there (``cfg`` None: its own config.toml), streaming events."""
    _die_with_parent()
    if not server_alive(server_pid):  # the server died before we got here
        return
    threads = options.get("threads")
    if threads:
        torch.set_num_threads(int(threads))

    def emit(ev: dict[str, Any]) -> None:
        events.put(ev)

    from trainlab.errors import Interrupted, TrainlabError
    from trainlab.lab._steer import Steering
    from trainlab.run import train_run
    from trainlab.runtime import keep_freed_memory

    keep_freed_memory()  # like the CLI (docs/benchmarks.md)
    out = Path(run_dir)
    from trainlab.config import RunConfig

    if cfg is None:
        cfg = RunConfig.load(out / "config.toml")
    callbacks: list[Callback] = [Steering(control, emit, out, cfg, server_pid=server_pid)]
    log = ProbeLog(out / "probes.jsonl", emit)
    stream = LabStream(emit, interval=float(options.get("interval", 0.2)), server_pid=server_pid,
                       on_begin=log.truncate_after if resume else None, probes=log.path)
    callbacks.append(stream)  # before the probe: its "begin" goes out before the first probe record
    probe = _make_probe(options, log)
    if probe is not None:
        callbacks.append(probe)
    emit({"type": "state", "state": "running", "pid": os.getpid(), "server": server_pid})
    try:
        _, summary = train_run(cfg if not resume else None, out, resume=resume, callbacks=callbacks)
        emit({"type": "state", "state": "finished",
              "summary": clean({k: summary.get(k) for k in ("members", "steps", "seconds", "diverged")})})
    except Interrupted as e:
        emit({"type": "state", "state": "interrupted", "message": str(e)})
    except KeyboardInterrupt:
        emit({"type": "state", "state": "interrupted", "message": "interrupted before training started"})
    except TrainlabError as e:
        emit({"type": "state", "state": "failed", "message": str(e)})
    except Exception as e:  # a bug: the message, not a silent death
        import traceback

        emit({"type": "state", "state": "failed", "message": f"{type(e).__name__}: {e}",
              "traceback": traceback.format_exc()[-4000:]})
    finally:
        events.put(None)  # end of stream
        events.close()
        events.join_thread()


class ProbeLog:
    """The probe records of a run: streamed to the server and appended to ``RUN/probes.jsonl`` (so a
    restarted server shows them again). On a resume, records after the checkpoint's step are dropped
    from the file first: training replays those steps."""

    def __init__(self, path: Path, emit: Callable[[dict[str, Any]], None]) -> None:
        self.path, self.emit = path, emit

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
        from trainlab.io import atomic_write_text

        atomic_write_text(self.path, "".join(line + "\n" for line in keep))

    def __call__(self, record: dict[str, Any]) -> None:
        import json

        with self.path.open("a") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.emit({"type": "probe", "record": record})


def _step_of(line: str) -> float:
    import json

    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def read_probes(path: Path, limit: int = 2000) -> list[dict[str, Any]]:
    """The last ``limit`` probe records of ``RUN/probes.jsonl`` (a torn last line is skipped)."""
    import json

    out: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()[-limit:]
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


_NEVER = 2**62


class BudgetedProbe(Callback):
    """A :class:`~trainlab.train.LayerProbe` on a time budget: after each probe record it waits as many steps
    as keep the probes' share of training time at most ``budget`` (measured: the record's own cost over the
    mean step time since the last one), and at least ``min_every`` steps. A probe of 32 members costs about
    as much as a few training steps (a forward pass over its batch, with histograms), so a fixed "every 20
    steps" took 18% of training time with 32 members here; the budget keeps the lab within a few percent of
    ``trainlab train`` on any model and population size (docs/lab.md, "Cost")."""

    def __init__(self, probe: Any, *, budget: float = 0.03, min_every: int = 5) -> None:
        self.probe, self.budget, self.min_every = probe, budget, min_every
        self.probe.every = _NEVER  # it measures only at the steps we choose (every = 1 for that step)
        self._next = min_every
        self._t_last = 0.0
        self._step_last = 0

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def _measured(self, trainer: Any, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        steps = trainer.step - self._step_last
        step_time = (t0 - self._t_last) / steps if steps > 0 and self._t_last else None
        fn()
        t1 = time.perf_counter()
        cost = t1 - t0
        gap = self.min_every
        if step_time:
            gap = max(gap, math.ceil(cost / (self.budget * step_time)))
        self._next = trainer.step + gap
        self._t_last, self._step_last = t1, trainer.step

    def on_train_begin(self, trainer: Any) -> None:
        self.probe.on_train_begin(trainer)  # the record at the first step (0, or where a resume starts)
        self._next = trainer.step + self.min_every
        self._t_last, self._step_last = time.perf_counter(), trainer.step

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None:
        if trainer.step >= self._next:
            def measure() -> None:
                self.probe.every = 1
                try:
                    self.probe.on_step_end(trainer, loss)
                finally:
                    self.probe.every = _NEVER
            self._measured(trainer, measure)
        else:
            self.probe.on_step_end(trainer, loss)  # no record (every = _NEVER); it notes that gradients exist

    def on_train_end(self, trainer: Any) -> None:
        self.probe.on_train_end(trainer)


def _make_probe(options: Mapping[str, Any], log: ProbeLog) -> Callback | None:
    """The per-layer probe of the run (:class:`trainlab.train.LayerProbe`) on a time budget, at most every
    ``probe_every`` steps."""
    from trainlab.train import LayerProbe

    every = options.get("probe_every")
    if not every:
        return None
    probe = LayerProbe(every=int(every), batch=int(options.get("probe_batch", 256)), sinks=[log], keep=0)
    return BudgetedProbe(probe, budget=float(options.get("probe_budget", 0.03)), min_every=int(every))
