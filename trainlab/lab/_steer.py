"""Steering a running population from the lab: pause, resume, stop, change a member's optimizer
setting, fork a member into a new run.

:class:`Steering` is a stateless trainer callback that runs in the worker process. At every step
boundary it reads the commands the server put on its control queue (never blocking while running);
while paused it waits on the queue, so the trainer stops between two steps with every piece of
state consistent, exactly where a checkpoint would be taken.

* **stop** ends training now as a finished run (``trainer.should_stop``: the last evaluation is
  recorded and every file of ``trainlab train`` is written, so ``trainlab evaluate`` opens it);
* **interrupt** (the server shutting down, Ctrl-C) checkpoints and leaves the run resumable;
* **set** changes one member's (or every member's) per-member optimizer setting through
  :meth:`trainlab.optim.Optimizer.set_hparam` (the optimizer's own validation). The change is
  recorded in ``history.info["steering"]`` as ``{"step", "member", "key", "old", "new"}`` (saved in
  checkpoints and ``history.json``), and from then on every evaluation record carries the setting per
  member (``lr`` etc.), so ``metrics.jsonl`` shows each member's value at each evaluation. The new
  value lives in the optimizer's state, so a resumed run (lab or ``trainlab train --resume``) keeps it;
* **fork** writes a new run directory: the member's config alone (population of one, its seed, its
  steered values) and a checkpoint holding the member's slice of the whole training state --
  weights, optimizer state, random generators, step, history -- so the fork, resumed, continues
  exactly as that member would have (the population invariant), and can then be steered apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import copy
import os
import queue as _queue
from pathlib import Path
from typing import Any

import torch

from trainlab.config import RunConfig
from trainlab.train import Callback

__all__ = ["Steering", "write_fork", "slice_state", "steerable_keys", "server_alive"]


def steerable_keys(trainer: Any) -> list[str]:
    """The config keys of per-member optimizer settings this run's optimizer takes (``optim.lr``, ...)."""
    from trainlab.lab._form import per_member_keys

    pm = set(per_member_keys())
    return [f"optim.{n}" for n in trainer.optimizer.hparams if f"optim.{n}" in pm]


def server_alive(pid: int) -> bool:
    """Whether process ``pid`` (the lab server) still runs (a zombie -- dead, not yet reaped -- does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _has_schedule(trainer: Any) -> bool:
    from trainlab.schedule import Schedule

    return any(isinstance(h, Schedule) for h in getattr(trainer.optimizer, "hooks", ()))


class Steering(Callback):
    """Applies the server's commands at step boundaries (see the module docstring)."""

    def __init__(self, control: Any, emit: Callable[[dict[str, Any]], None], run_dir: Path,
                 cfg: RunConfig, *, server_pid: int | None = None) -> None:
        self.control, self.emit, self.run_dir, self.cfg = control, emit, Path(run_dir), cfg
        self.server_pid = server_pid
        self.paused = False
        self.steered: list[str] = []  # hyperparameter names changed at least once (their values go in records)

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    # ---- hooks ---------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        self.steered = sorted({s["key"].split(".", 1)[1] for s in trainer.history.info.get("steering", [])})
        self.poll(trainer)

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None:
        self.poll(trainer)

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        for name in self.steered:  # before the metrics writer: the values reach metrics.jsonl
            record.setdefault(name, trainer.optimizer.hparams[name].tolist())

    def on_train_end(self, trainer: Any) -> None:
        # the record of a run stopped between evaluations is appended without on_evaluate; it is written after
        records = trainer.history.records
        if records:
            self.on_evaluate(trainer, records[-1])

    # ---- commands ------------------------------------------------------------------
    def poll(self, trainer: Any) -> None:
        while True:
            try:
                msg = self.control.get_nowait()
            except _queue.Empty:
                break
            self.apply(trainer, msg)
        while self.paused and not trainer.should_stop and not trainer.interrupt_requested:
            try:
                msg = self.control.get(timeout=0.25)
            except _queue.Empty:
                if self.server_pid is not None and not server_alive(self.server_pid):
                    trainer.interrupt_requested = True  # the server is gone: checkpoint and leave
                continue
            self.apply(trainer, msg)

    def apply(self, trainer: Any, msg: Mapping[str, Any]) -> None:
        cmd = msg.get("cmd")
        try:
            if cmd == "pause":
                self.paused = True
                self.emit({"type": "state", "state": "paused", "step": trainer.step})
            elif cmd == "resume":
                self.paused = False
                self.emit({"type": "state", "state": "running", "step": trainer.step})
            elif cmd == "stop":
                self.paused = False
                trainer.should_stop = True
                self.emit({"type": "state", "state": "stopping", "step": trainer.step})
            elif cmd == "interrupt":
                self.paused = False
                trainer.interrupt_requested = True
            elif cmd == "set":
                self.set(trainer, msg["key"], msg.get("member"), msg["value"])
            elif cmd == "fork":
                dest = write_fork(trainer, int(msg["member"]), Path(msg["dest"]), self.cfg, origin=self.run_dir.name)
                self.emit({"type": "forked", "member": int(msg["member"]), "dest": str(dest), "step": trainer.step,
                           "request": msg.get("request")})
        except Exception as e:  # a command that cannot be applied is reported; training goes on
            self.emit({"type": "error", "message": f"{cmd}: {e}", "request": msg.get("request")})

    def set(self, trainer: Any, key: str, member: int | None, value: float) -> None:
        if key not in steerable_keys(trainer):
            raise ValueError(f"{key} cannot be changed during training; this run's optimizer takes: "
                             f"{', '.join(steerable_keys(trainer))}")
        name = key.split(".", 1)[1]
        if name == "lr" and _has_schedule(trainer):
            raise ValueError("optim.lr follows the run's learning-rate schedule; it cannot be set by hand "
                             "(use schedule.name = 'constant' to steer it)")
        opt = trainer.optimizer
        old = opt.hparams[name].tolist()
        new = list(old)
        members = range(trainer.size) if member is None else [int(member)]
        for m in members:
            if not 0 <= m < trainer.size:
                raise ValueError(f"member must be 0 to {trainer.size - 1}, got {m}")
            new[m] = float(value)
        opt.set_hparam(name, new)  # validates like the constructor (e.g. lr > 0)
        if name not in self.steered:
            self.steered.append(name)
        log = trainer.history.info.setdefault("steering", [])
        for m in members:
            entry = {"step": trainer.step, "member": m, "key": key, "old": old[m], "new": new[m]}
            log.append(entry)
            self.emit({"type": "steer", **entry})


def _slice_list(v: Any, member: int, size: int) -> Any:
    return [v[member]] if isinstance(v, list) and len(v) == size else v


def slice_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], member: int, size: int
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Member ``member``'s part of a trainer's :meth:`~trainlab.train.Trainer.state_dict`: every
    per-member tensor (leading dimension P) cut to ``[member:member+1]``, the member's random
    generator renamed to member 0, the shared shuffle kept, and the history cut to the member."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if k.startswith("rng.member."):
            dev, i = k[len("rng.member."):].rsplit(".", 1)
            if int(i) == member:
                out[f"rng.member.{dev}.0"] = v.clone()
        elif k in ("rng.shuffle", "trainer.perm") or k.startswith("augment."):
            out[k] = v.clone()
        elif v.ndim >= 1 and v.shape[0] == size:
            out[k] = v[member:member + 1].clone()
        else:
            out[k] = v.clone()
    m = copy.deepcopy(dict(meta))
    h = m["history"]
    h["size"] = 1
    h["records"] = [{k: _slice_list(v, member, size) for k, v in r.items()} for r in h["records"]]
    h["final"] = {k: _slice_list(v, member, size) for k, v in h.get("final", {}).items()}
    h["diverged"] = {"0": v for k, v in h.get("diverged", {}).items() if int(k) == member}
    h["stopped"] = {"0": v for k, v in h.get("stopped", {}).items() if int(k) == member}
    info = h.get("info", {})
    keep = {k: info[k] for k in ("steps_per_epoch", "total_steps", "batch_size", "train_size") if k in info}
    keep["steering"] = [{**s, "member": 0} for s in info.get("steering", []) if s.get("member") == member]
    h["info"] = keep
    m["callbacks"] = {i: {k: _slice_list(v, member, size) for k, v in cm.items()} if isinstance(cm, dict) else cm
                      for i, cm in m.get("callbacks", {}).items()}
    return out, m


class _Frozen:
    """What :func:`trainlab.checkpoint.save_checkpoint` needs of a trainer: a fixed state."""

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], step: int) -> None:
        self._t, self._m, self.step, self.size = tensors, meta, step, 1

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self._t, self._m


def write_fork(trainer: Any, member: int, dest: Path, cfg: RunConfig, *, origin: str = "") -> Path:
    """A new run directory at ``dest`` continuing member ``member`` alone (see the module docstring);
    ``trainlab train --resume DEST`` (or the lab) trains it on."""
    from trainlab.checkpoint import save_checkpoint
    from trainlab.io import atomic_write_text
    from trainlab.lab._form import member_cfg

    if not 0 <= member < trainer.size:
        raise ValueError(f"member must be 0 to {trainer.size - 1}, got {member}")
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"{dest.name} already exists")
    # the fork's config says how it trains from now on: the member's steered optimizer values
    now = {f"optim.{n}": float(v[member]) for n, v in trainer.optimizer.hparams.items()
           if f"optim.{n}" in steerable_keys(trainer) and not (n == "lr" and _has_schedule(trainer))}
    steered = {s["key"] for s in trainer.history.info.get("steering", []) if s.get("member") == member}
    fork_cfg = member_cfg(cfg, member, {k: v for k, v in now.items() if k in steered})
    tensors, meta = trainer.state_dict()
    t1, m1 = slice_state(tensors, meta, member, trainer.size)
    m1["history"]["info"]["forked_from"] = {"run": origin, "member": member, "step": trainer.step}
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "config.toml", fork_cfg.to_toml())
    save_checkpoint(dest, _Frozen(t1, m1, trainer.step), extra={"seconds": 0.0})
    (dest / "metrics.jsonl").write_text("")
    return dest
