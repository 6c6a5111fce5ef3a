"""Live learning curves in Jupyter: a Trainer sink (``Trainer(..., live=True)``).

A notebook progress bar (tqdm's widget) over the whole run, and the loss/accuracy curves
redrawn in place after every evaluation (one output area, updated through an IPython display
handle, so the notebook does not fill with figures). Outside Jupyter it writes the figure to
``path`` if one is given, and otherwise falls back to the console lines. Figures are rendered
to PNG and shown as images, so nothing depends on the notebook's matplotlib backend.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from trainlab._html import figure_png
from trainlab.train._console import ConsoleSink, format_duration, in_notebook
from trainlab.train._callback import Callback

__all__ = ["LiveCurves"]


class LiveCurves(Callback):
    """Redraw the curves in place in Jupyter while training (a Trainer sink; never changes training).

    Parameters
    ----------
    every:
        Redraw after every ``every``-th evaluation (default each one).
    path:
        Outside Jupyter: rewrite this PNG after each redraw (open it in an image viewer
        that reloads). Without ``path``, outside Jupyter the console lines are printed instead.
    """

    def __init__(self, *, every: int = 1, path: str | Path | None = None, dpi: int = 72) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"LiveCurves every must be an integer >= 1, got {every!r}")
        self.every, self.path, self.dpi = every, Path(path) if path is not None else None, dpi
        self._handle: Any = None
        self._text: Any = None
        self._bar: Any = None
        self._fallback: ConsoleSink | None = None
        self._count = 0
        #: how many times the figure was drawn (tests, and a user wondering whether it ran)
        self.redraws = 0

    def on_train_begin(self, trainer: Any) -> None:
        self._count = 0
        if not in_notebook():
            if self.path is None:
                self._fallback = ConsoleSink()
                self._fallback.on_train_begin(trainer)
            return
        from IPython.display import HTML, display
        from tqdm.notebook import tqdm

        info = trainer.history.info
        self._total = int(info["total_steps"])
        self._t0, self._step0 = time.perf_counter(), trainer.step
        self._bar = tqdm(total=self._total, initial=trainer.step, unit="step", desc="training")
        self._text = display(HTML(""), display_id=True)
        self._handle = display(HTML("<i>the curves appear after the first evaluation</i>"), display_id=True)

    def on_step_end(self, trainer: Any, loss: Any) -> None:
        if self._fallback is not None:
            self._fallback.on_step_end(trainer, loss)
        elif self._bar is not None:
            self._bar.update(1)

    def on_diverged(self, trainer: Any, members: list[int]) -> None:
        if self._fallback is not None:
            self._fallback.on_diverged(trainer, members)

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        if self._fallback is not None:
            self._fallback.on_evaluate(trainer, record)
            return
        self._count += 1
        if self._count % self.every and trainer.step < trainer.history.info.get("total_steps", 0):
            return
        self.redraw(trainer)

    def redraw(self, trainer: Any) -> None:
        history = trainer.history
        fig = history.plot(title=f"step {trainer.step} of {history.info.get('total_steps', '?')}")
        png = figure_png(fig, dpi=self.dpi)
        self.redraws += 1
        if self._handle is not None:
            from IPython.display import HTML, Image

            done, took = trainer.step - self._step0, time.perf_counter() - self._t0
            left = took / done * (self._total - trainer.step) if done else float("nan")
            self._text.update(HTML(
                f"epoch {_epoch(history)}/{_epochs(history)}; time left ~{format_duration(left)}"
                if trainer.step < self._total else
                f"done: epoch {_epoch(history)}/{_epochs(history)}, {done} steps in {format_duration(took)}"))
            self._handle.update(Image(data=png))
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(png)
            tmp.replace(self.path)

    def on_interrupt(self, trainer: Any) -> None:
        self.on_train_end(trainer)

    def on_train_end(self, trainer: Any) -> None:
        if self._fallback is not None:
            self._fallback.on_train_end(trainer)
            self._fallback = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _epoch(history: Any) -> str:
    e = history.records[-1]["epoch"] if history.records else 0
    return str(int(e)) if float(e).is_integer() else f"{e:.2f}"


def _epochs(history: Any) -> str:
    info = history.info
    e = info["total_steps"] / info["steps_per_epoch"]
    return str(int(e)) if float(e).is_integer() else f"{e:.2f}"
