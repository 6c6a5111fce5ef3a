"""The console sink: what a Keras ``verbose=1`` or Lightning user expects to see while training.

On a terminal, one line per evaluation (by default one per epoch) that stays, with the
epoch counter, the time it took, the time left, and train/val loss and accuracy; a live
bar (tqdm) runs within the epoch and is cleared before each line. Off a terminal (CI
logs, pipes, files) the same lines are printed plainly, with no bar and no control
characters. A population prints one line per member (named by
:func:`trainlab.labels.member_labels`) when it has at most ``MAX_LISTED`` members or
``members="all"``; otherwise the best, median and worst member by the validation metric.

The sink only reads the trainer: it never changes training (DESIGN.md section 7).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import numpy as np

from trainlab.train._callback import Callback

__all__ = ["ConsoleSink", "format_duration", "format_number", "in_notebook", "MAX_LISTED"]

#: populations up to this size list every member by default
MAX_LISTED = 4

_METRICS = (("train_loss", "train_loss"), ("train_acc", "train_acc"), ("val_loss", "val_loss"), ("val_acc", "val_acc"))


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``1h02m``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_number(v: Any) -> str:
    """Integers as integers (an epoch is ``8``, not ``8.0000``), other numbers with 4 decimals."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 2):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return str(v)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tqdm draws a notebook widget bar)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _epoch_text(epoch: float) -> str:
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:.2f}"


class ConsoleSink(Callback):
    """Prints training progress; see the module docstring.

    Parameters
    ----------
    members:
        ``"auto"`` (every member up to :data:`MAX_LISTED`, else best/median/worst),
        ``"all"`` or ``"summary"`` (best/median/worst whatever the size).
    stream:
        Where lines go (default ``sys.stdout``, looked up when training begins).
    tty:
        Force terminal (bar) or plain mode; default: ``stream.isatty()``.
    """

    def __init__(self, *, members: str = "auto", stream: TextIO | None = None, tty: bool | None = None) -> None:
        if members not in ("auto", "all", "summary"):
            raise ValueError(f"ConsoleSink members must be 'auto', 'all' or 'summary', got {members!r}")
        self.members, self._stream, self._tty = members, stream, tty
        self._bar: Any = None

    # ---- helpers ----------------------------------------------------------------------
    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty()) or (self._stream is None and in_notebook())

    def write(self, line: str) -> None:
        """A line that stays (printed above the live bar, if any)."""
        if self._bar is not None:
            self._bar.clear()
        self.stream.write(line + "\n")
        self.stream.flush()
        if self._bar is not None:
            self._bar.refresh()

    def _new_bar(self, trainer: Any) -> None:
        from tqdm.auto import tqdm

        spe = trainer.steps_per_epoch
        done = trainer.step - (trainer.step // spe) * spe
        epoch = trainer.step // spe + 1
        self._bar = tqdm(total=min(spe, self._total - trainer.step + done), initial=done, unit="step", leave=False,
                         desc=f"epoch {epoch}/{self._epochs_text}", dynamic_ncols=True, file=self.stream)

    # ---- events ----------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        info = trainer.history.info
        self._total = int(info["total_steps"])
        spe = int(info["steps_per_epoch"])
        self._epochs_text = _epoch_text(self._total / spe)
        self._t0 = self._t_last = time.perf_counter()
        self._step0 = trainer.step
        self._diverged_seen = set(trainer.history.diverged)
        if trainer.step > 0:
            self.write(f"Resuming from step {trainer.step} of {self._total} "
                       f"(epoch {_epoch_text(round(trainer.step / spe, 2))})")
        if self.tty and trainer.step < self._total:
            self._new_bar(trainer)

    def on_step_end(self, trainer: Any, loss: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        if self._bar.n >= self._bar.total and trainer.step < self._total:
            self._bar.close()
            self._new_bar(trainer)

    def on_diverged(self, trainer: Any, members: list[int]) -> None:
        labels = trainer.history.labels
        for m in members:
            if m in self._diverged_seen:
                continue
            self._diverged_seen.add(m)
            d = trainer.history.diverged[m]
            where = f"loss became {d['loss']} at step {d['step']} (epoch {_epoch_text(round(d['epoch'], 2))})"
            if trainer.size > 1:
                self.write(f"  {labels[m]}: {where}; frozen there, the other members go on")
            else:
                self.write(f"  {where}; the model is frozen there")

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        now = time.perf_counter()
        took, self._t_last = now - self._t_last, now
        done = trainer.step - self._step0
        left = (now - self._t0) / done * (self._total - trainer.step) if done else float("nan")
        epoch = record["epoch"]
        head = f"epoch {_epoch_text(epoch)}/{self._epochs_text}"
        if not float(epoch).is_integer():
            head = f"step {trainer.step}/{self._total} ({head})"
        timing = format_duration(took) + (f"  left ~{format_duration(left)}" if trainer.step < self._total else "")
        rows = self._rows(trainer, record)
        if trainer.size == 1:
            self.write(f"{head}  {timing}  {rows[0][1]}".rstrip())
        else:
            self.write(f"{head}  {timing}")
            width = max(len(name) for name, _ in rows)
            for name, text in rows:
                self.write(f"  {name.ljust(width)}  {text}".rstrip())

    def on_interrupt(self, trainer: Any) -> None:
        self._close()

    def on_train_end(self, trainer: Any) -> None:
        self._close()
        stopped = trainer.history.stopped
        if stopped and trainer.size == 1:
            self.write(f"early stopping: stopped at epoch {_epoch_text(stopped[0].get('epoch', 0))}")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ---- the lines --------------------------------------------------------------------
    def _member_text(self, trainer: Any, record: dict[str, Any], m: int) -> str:
        d = trainer.history.diverged.get(m)
        if d is not None:
            return f"diverged at step {d['step']} (loss {d['loss']})"
        parts = []
        for key, name in _METRICS:
            v = record.get(key)
            if isinstance(v, list) and v[m] is not None and math.isfinite(v[m]):
                parts.append(f"{name} {v[m]:.4f}")
        if m in trainer.history.stopped:
            parts.append("(stopped early)")
        return "  ".join(parts)

    def _rows(self, trainer: Any, record: dict[str, Any]) -> list[tuple[str, str]]:
        labels = trainer.history.labels
        size = trainer.size
        if size == 1 or self.members == "all" or (self.members == "auto" and size <= MAX_LISTED):
            return [(labels[m], self._member_text(trainer, record, m)) for m in range(size)]
        # Best / median / worst by the validation metric (accuracy if there is one, else loss).
        for key, higher in (("val_acc", True), ("val_loss", False), ("train_acc", True), ("train_loss", False)):
            if isinstance(record.get(key), list):
                break
        else:
            return [(labels[m], self._member_text(trainer, record, m)) for m in range(size)]
        vals = np.array([np.nan if v is None else v for v in record[key]], dtype=float)
        vals[[m for m in trainer.history.diverged]] = np.nan
        ok = [int(i) for i in np.argsort(-vals if higher else vals, kind="stable") if np.isfinite(vals[i])]
        rows = []
        if ok:
            for what, m in (("best", ok[0]), ("median", ok[len(ok) // 2]), ("worst", ok[-1])):
                rows.append((f"{what} ({labels[m]})", self._member_text(trainer, record, m)))
        n_div = len(trainer.history.diverged)
        if n_div:
            rows.append((f"diverged", f"{n_div} of {size} members"))
        return rows
