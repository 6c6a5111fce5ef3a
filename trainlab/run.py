"""``trainlab train``'s job as an API: config in, a finished run directory out.

A run directory holds:

``config.toml``          the resolved config (every default filled in)
``metrics.jsonl``        one JSON line per evaluation per member, appended as training goes
``history.json``         the full :class:`~trainlab.train.History`
``model.safetensors``    weights of every member (and preprocessing statistics)
``model.json``           architecture and metadata for loading
``curves.png``           loss and accuracy curves
``summary.json``         final and best numbers per member, diverged members, timings,
                         versions, device and seed; ``"finished": true`` marks a complete run
                         (it is written last: a directory without it is unfinished)
``checkpoint.json`` +    the latest complete checkpoint (after every evaluation and on Ctrl-C /
``checkpoint-*.safetensors``  SIGTERM); ``trainlab train --resume DIR`` continues from it
"""

from __future__ import annotations

from collections.abc import Mapping
import contextlib
import json
import os
import platform
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Sequence

import numpy as np
import torch

from trainlab.build import Run, as_run_config, build_run
from trainlab.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from trainlab.config import RunConfig
from trainlab.errors import CheckpointError, ConfigError, Interrupted, WriteError, describe_oserror
from trainlab.io import atomic_write_text, save_model
from trainlab.train import Callback, ConsoleSink, History, Trainer, summarize

__all__ = ["train_run", "environment", "summarize"]


def environment(device: torch.device | str) -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    from trainlab import __version__

    return {"trainlab": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "torch_threads": torch.get_num_threads()}


class _MetricsWriter(Callback):
    """Appends each evaluation to metrics.jsonl as it happens (nothing computed is lost)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0

    def start(self) -> None:
        self.path.write_text("")

    def flush_all(self, history: History) -> None:
        self.path.write_text("")
        self.written = 0
        self.flush(history)

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.flush(trainer.history)

    def flush(self, history: History) -> None:
        lines = history.jsonl_lines(self.written)
        if lines:
            with self.path.open("a") as f:
                f.write("\n".join(lines) + "\n")
        self.written = len(history.records)


class _Snapshots(Callback):
    """Saves the model every ``every`` epochs under ``snapshots/epoch-NNNNN/`` (snapshot ensembles)."""

    def __init__(self, directory: Path, every: int, preprocessor: Any, num_classes: int) -> None:
        self.directory, self.every = directory, every
        self.preprocessor, self.num_classes = preprocessor, num_classes

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        if float(epoch).is_integer() and int(epoch) % self.every == 0:
            save_model(self.directory / "snapshots" / f"epoch-{int(epoch):05d}", trainer.model,
                       preprocessor=self.preprocessor, num_classes=self.num_classes, extra={"epoch": int(epoch)})


class _Checkpointer(Callback):
    """Writes a complete checkpoint after every evaluation and when interrupted."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seconds_before = 0.0
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.t0

    def save(self, trainer: Trainer) -> None:
        save_checkpoint(self.directory, trainer, extra={"seconds": self.elapsed()})

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.save(trainer)

    def on_interrupt(self, trainer: Trainer) -> None:
        self.save(trainer)


class _Promote(Callback):
    """``--overwrite``: once the new run's first checkpoint is in the staging directory, exchange it with
    the old run's directory (one rename), delete the old run, and point the writers at the final place."""

    def __init__(self, staging: Path, final: Path, movers: list[Any], old_lock: Any) -> None:
        self.staging, self.final, self.movers, self.old_lock = staging, final, movers, old_lock
        self.done = False

    def promote(self) -> None:
        if self.done:
            return
        from trainlab._rundir import exchange_dirs, remove_tree

        exchange_dirs(self.staging, self.final)
        self.done = True
        for m in self.movers:
            for attr in ("path", "directory"):
                v = getattr(m, attr, None)
                if isinstance(v, Path) and (v == self.staging or self.staging in v.parents):
                    setattr(m, attr, self.final / v.relative_to(self.staging))
        self.old_lock.release()
        remove_tree(self.staging)  # now the old run

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.promote()

    def on_interrupt(self, trainer: Trainer) -> None:
        self.promote()


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """Ctrl-C / SIGTERM ask the trainer to stop at the next step boundary (a second one stops at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if trainer.interrupt_requested:
            raise KeyboardInterrupt
        trainer.interrupt_requested = True

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _show_members(trainer: Trainer, members: str) -> None:
    """Which members the console lines list (``--members``): auto, all or summary."""
    for sink in trainer.sinks:
        if isinstance(sink, ConsoleSink):
            sink.members = members


def _config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _config_differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]} ({b!r} in the run, {a!r} now)"]


def _release_all(locks: list[Any]) -> None:
    for lk in locks:
        lk.release()


def train_run(cfg: RunConfig | Mapping[str, Any] | None, out: str | Path, *, progress: bool = False,
              resume: bool = False, overwrite: bool = False,
              on_start: Callable[[Path], None] | None = None, members: str = "auto",
              tensorboard: str | Path | None = None, probe_every: int = 50,
              callbacks: Sequence[Callback] = ()) -> tuple[Run, dict[str, Any]]:
    """Build everything ``cfg`` describes, train, and write the run directory ``out``.

    With ``resume=True``, ``out`` must hold a run started earlier: its checkpoint is
    loaded and training continues exactly where it stopped (on the CPU, the final
    weights and metrics equal an uninterrupted run's bit for bit). ``cfg`` may then be
    ``None`` (the run's own config is used); a different config is an error naming
    the keys that differ.

    ``progress``: print a line per epoch (and a live bar on a terminal) through
    :class:`~trainlab.train.ConsoleSink`; ``members`` ("auto", "all", "summary") says which
    members of a population it lists.
    A new run needs a missing or empty ``out``; ``overwrite=True`` replaces what is
    there, but only once the new run's first checkpoint exists (see
    :mod:`trainlab._rundir`). The process holds a lock on ``out`` while it runs: a
    second one is refused with a line naming the holder. ``on_start(out)`` is called once
    everything is built and training is about to start (the CLI prints the directory).
    ``tensorboard``: also write TensorBoard event files into this folder, with the layers'
    histograms from a :class:`~trainlab.train.LayerProbe` every ``probe_every`` steps
    (:mod:`trainlab.train._tensorboard`).
    ``callbacks``: extra *stateless* callbacks (``state_dict`` empty), called before the metrics writer
    on each evaluation, so what they add to a record reaches ``metrics.jsonl`` (the lab's stream and
    steering, :mod:`trainlab.lab`). Stateless, so ``trainlab train --resume`` without them resumes the run.
    """
    from trainlab._rundir import RunLock

    if tensorboard is not None:
        from trainlab.train import check_logdir

        check_logdir(tensorboard)  # no package, or DIR is a file: one line, before anything is written
    config = None if cfg is None else as_run_config(cfg)  # a plain dict is validated once, here
    out = Path(out)
    resume_cmd = f"trainlab train --resume {out}"
    created = not out.exists()
    if resume and not out.is_dir():
        raise CheckpointError(f"{out}: nothing to resume (no such run directory)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output directory {out}: {e.strerror}") from None
    try:
        lock = RunLock(out).acquire()
    except OSError as e:
        raise WriteError(describe_oserror(e, then=f"cannot lock the run directory {out}")) from None
    locks = [lock]
    try:
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(_release_all, locks)  # at exit: also the staging lock _train_run may add
            return _train_run(config, out, progress=progress, resume=resume, overwrite=overwrite,
                              created=created, locks=locks, resume_cmd=resume_cmd, on_start=on_start,
                              members=members, tensorboard=tensorboard, probe_every=probe_every,
                              callbacks=callbacks)
    except Interrupted:
        raise
    except KeyboardInterrupt as e:  # outside training (building, the final writes): the run is as it was
        if (out / "config.toml").exists() and not (out / "summary.json").exists():
            raise Interrupted(str(e) or "interrupted", resume_cmd) from None
        raise Interrupted(str(e) or "interrupted", "the same command again") from None
    except OSError as e:
        then = (f"the last complete checkpoint in {out} is kept; fix this, then: {resume_cmd}"
                if has_checkpoint(out) else "nothing of the run is lost")
        if not has_checkpoint(out) and (out / "config.toml").exists() and not (out / "summary.json").exists():
            then = f"no checkpoint was written yet; fix this, then: {resume_cmd}"  # same command: refused
        raise WriteError(describe_oserror(e, then=then)) from None


def _train_run(cfg: RunConfig | None, out: Path, *, progress: bool, resume: bool, overwrite: bool,
               created: bool, locks: list[Any], resume_cmd: str,
               on_start: Callable[[Path], None] | None, members: str = "auto",
               tensorboard: str | Path | None = None, probe_every: int = 50,
               callbacks: Sequence[Callback] = ()) -> tuple[Run, dict[str, Any]]:
    from trainlab._rundir import RunLock, check_new_run, classify, remove_tree, staging_dir

    summary_path = out / "summary.json"
    where = out  # where the files go until the first checkpoint (a staging directory with --overwrite)
    for tmp in out.glob(".*.tmp"):  # a kill -9 inside an atomic write leaves its temp file; we hold the lock
        tmp.unlink(missing_ok=True)
    if resume:
        if not (out / "config.toml").exists():
            raise CheckpointError(f"{out}: nothing to resume (no config.toml; is this a trainlab run directory?)")
        saved = RunConfig.load(out / "config.toml")
        if cfg is not None and cfg != saved:
            diff = _config_differences(cfg.to_dict(), saved.to_dict())
            raise ConfigError(f"cannot resume {out} with a different config: {'; '.join(diff)}")
        cfg = saved
        if summary_path.exists():
            raise ConfigError(f"{out} is a finished run (summary.json says so); nothing to resume")
        kind = "unfinished"
    else:
        if cfg is None:
            raise ConfigError("a config is needed to start a new run")
        kind = check_new_run(out, overwrite=overwrite)
    try:
        writer = _MetricsWriter(out / "metrics.jsonl")
        checkpointer = _Checkpointer(out)
        run = build_run(cfg, progress=progress, callbacks=[*callbacks, writer])  # a bad option fails here, before any write
        _show_members(run.trainer, members)
        labels = run.trainer.labels
    except BaseException:
        if created and classify(out) == "empty":
            remove_tree(out)
        raise
    promote = None
    if not resume:
        if kind not in ("absent", "empty"):  # --overwrite: the new run starts beside the old one
            where = staging_dir(out)
            remove_tree(where)
            where.mkdir()
            locks.append(RunLock(where).acquire())
            writer.path, checkpointer.directory = where / "metrics.jsonl", where
            promote = _Promote(where, out, [writer, checkpointer], locks[0])
        atomic_write_text(where / "config.toml", cfg.to_toml())
        writer.start()
    if cfg.train.snapshot_every:
        snaps = _Snapshots(where, cfg.train.snapshot_every, run.splits.preprocessor, run.splits.num_classes)
        run.trainer.callbacks.append(snaps)
        if promote is not None:
            promote.movers.append(snaps)
    run.trainer.callbacks.append(checkpointer)  # it saves what the other callbacks did
    if tensorboard is not None:
        from trainlab.train import tensorboard_sinks

        run.trainer.sinks.extend(tensorboard_sinks(tensorboard, cfg, every=probe_every))
    if promote is not None:
        run.trainer.callbacks.append(promote)  # last: the first checkpoint exists when it runs
    if resume and has_checkpoint(out):
        meta = load_checkpoint(out, run.trainer)
        run.trainer.history.info["member_labels"] = labels  # a checkpoint from before labels existed
        checkpointer.seconds_before = float(meta.get("seconds", 0.0))
        writer.flush_all(run.trainer.history)  # metrics.jsonl = exactly the checkpoint's evaluations
    elif resume:
        writer.start()
    if on_start is not None:
        on_start(out)
    try:
        with _stop_on_signals(run.trainer):
            history = run.trainer.fit(run.splits.train, run.splits.val, run.splits.test)
        if promote is not None:
            promote.promote()  # a run too short to evaluate still replaces the old one at its end
    except KeyboardInterrupt as e:
        if promote is not None and not promote.done:
            remove_tree(where)
            raise Interrupted("interrupted before the new run's first checkpoint; the old run is untouched",
                              "the same command again") from None
        raise Interrupted(str(e) or "interrupted", resume_cmd) from None
    except BaseException:
        if promote is not None and not promote.done:
            remove_tree(where)  # a failed start leaves the old run whole
        raise
    seconds = checkpointer.elapsed()
    writer.flush(history)
    history.save(out / "history.json")
    save_model(out, run.model, preprocessor=run.splits.preprocessor, num_classes=run.splits.num_classes,
               extra={"data": cfg.data.name, "seed": cfg.seed})
    fig = history.plot(title=f"{cfg.data.name}: {cfg.model.type} ({run.model.size} member(s))")
    tmp_png = out / ".curves.png.tmp"
    fig.savefig(tmp_png, dpi=100, format="png")
    os.replace(tmp_png, out / "curves.png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    summary = summarize(history, seconds=seconds)
    decayed = sorted({n for r in run.trainer.regularizers for n in r.parameter_names()} |
                     ({n for n, p in run.model.named_parameters().items() if p.decay}
                      if cfg.is_on("optim.weight_decay") else set()))
    summary.update(member_labels=labels, seed=cfg.seed, environment=environment(run.model.device),
                   regularized_parameters=decayed,
                   parameters_per_member=run.model.num_parameters(),
                   data={"name": cfg.data.name, "train": int(run.splits.train.x.shape[0]),
                         "val": int(run.splits.val.x.shape[0]) if run.splits.val is not None else 0,
                         "test": int(run.splits.test.x.shape[0]) if run.splits.test is not None else 0},
                   resumed=resume, finished=True)
    atomic_write_text(summary_path, json.dumps(summary, indent=1))
    return run, summary
