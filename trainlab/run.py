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

import contextlib
import json
import platform
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.build import Run, build_run
from trainlab.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from trainlab.config import dumps, load_config
from trainlab.errors import CheckpointError, ConfigError
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
        path.write_text("")

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


def _any_positive(v: Any) -> bool:
    return any(x > 0 for x in v) if isinstance(v, list) else v > 0


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


@contextlib.contextmanager
def _stop_on_signals(trainer: Trainer):
    """Ctrl-C / SIGTERM ask the trainer to stop at the next step boundary (a second one stops at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
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


def train_run(cfg: dict[str, Any] | None, out: str | Path, *, progress: bool = False,
              resume: bool = False, members: str = "auto") -> tuple[Run, dict[str, Any]]:
    """Build everything ``cfg`` describes, train, and write the run directory ``out``.

    With ``resume=True``, ``out`` must hold a run started earlier: its checkpoint is
    loaded and training continues exactly where it stopped (on the CPU, the final
    weights and metrics equal an uninterrupted run's bit for bit). ``cfg`` may then be
    ``None`` (the run's own config is used); a different config is an error naming
    the keys that differ.

    ``progress``: print a line per epoch (and a live bar on a terminal) through
    :class:`~trainlab.train.ConsoleSink`; ``members`` ("auto", "all", "summary") says which
    members of a population it lists.
    """
    out = Path(out)
    summary_path = out / "summary.json"
    if resume:
        if not (out / "config.toml").exists():
            raise CheckpointError(f"{out}: nothing to resume (no config.toml; is this a trainlab run directory?)")
        saved = load_config(out / "config.toml")
        if cfg is not None and cfg != saved:
            diff = _config_differences(cfg, saved)
            raise ConfigError(f"cannot resume {out} with a different config: {'; '.join(diff)}")
        cfg = saved
        if summary_path.exists():
            raise ConfigError(f"{out} is a finished run (summary.json says so); nothing to resume")
    else:
        if cfg is None:
            raise ConfigError("a config is needed to start a new run")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create output directory {out}: {e.strerror}") from None
        if summary_path.exists():
            summary_path.unlink()  # a stale summary must not mark this new run finished
        for stale in (*out.glob("checkpoint*.json"), *out.glob("checkpoint-*.safetensors")):
            stale.unlink()
        atomic_write_text(out / "config.toml", dumps(cfg))
    writer = _MetricsWriter(out / "metrics.jsonl")
    checkpointer = _Checkpointer(out)
    run = build_run(cfg, progress=progress, callbacks=[writer])
    _show_members(run.trainer, members)
    labels = run.trainer.labels
    if cfg["train"]["snapshot_every"]:
        run.trainer.callbacks.append(_Snapshots(out, cfg["train"]["snapshot_every"], run.splits.preprocessor,
                                                run.splits.num_classes))
    run.trainer.callbacks.append(checkpointer)  # last: it saves what the other callbacks did
    if resume and has_checkpoint(out):
        meta = load_checkpoint(out, run.trainer)
        run.trainer.history.info["member_labels"] = labels  # a checkpoint from before labels existed
        checkpointer.seconds_before = float(meta.get("seconds", 0.0))
        writer.flush_all(run.trainer.history)  # metrics.jsonl = exactly the checkpoint's evaluations
    with _stop_on_signals(run.trainer):
        history = run.trainer.fit(run.splits.train, run.splits.val, run.splits.test)
    seconds = checkpointer.elapsed()
    writer.flush(history)
    history.save(out / "history.json")
    save_model(out, run.model, preprocessor=run.splits.preprocessor, num_classes=run.splits.num_classes,
               extra={"data": cfg["data"]["name"], "seed": cfg["seed"]})
    fig = history.plot(title=f"{cfg['data']['name']}: {cfg['model']['type']} ({run.model.size} member(s))")
    fig.savefig(out / "curves.png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    summary = summarize(history, seconds=seconds)
    decayed = sorted({n for r in run.trainer.regularizers for n in r.parameter_names()} |
                     ({n for n, p in run.model.named_parameters().items() if p.decay}
                      if _any_positive(cfg["optim"]["weight_decay"]) else set()))
    summary.update(member_labels=labels, seed=cfg["seed"], environment=environment(run.model.device),
                   regularized_parameters=decayed,
                   parameters_per_member=run.model.num_parameters(),
                   data={"name": cfg["data"]["name"], "train": int(run.splits.train.x.shape[0]),
                         "val": int(run.splits.val.x.shape[0]) if run.splits.val is not None else 0,
                         "test": int(run.splits.test.x.shape[0]) if run.splits.test is not None else 0},
                   resumed=resume, finished=True)
    atomic_write_text(summary_path, json.dumps(summary, indent=1))
    return run, summary
