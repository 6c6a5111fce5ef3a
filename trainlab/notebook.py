"""Jupyter views: live learning curves while training, and HTML tables for results.

- :class:`LiveCurves` is a Trainer sink (``Trainer(..., live=True)``): a notebook progress
  bar (tqdm's widget) over the whole run, and the loss/accuracy curves redrawn in place
  after every evaluation (one output area, updated through an IPython display handle,
  so the notebook does not fill with figures). Outside Jupyter it writes the figure to
  ``path`` if one is given, and otherwise falls back to the console lines.
- :func:`history_html` (``History._repr_html_``): a table per evaluation for one model,
  a table per member (final and best numbers) for a population.
- :func:`tune_result_html` (``TuneResult._repr_html_``): the top trials and the scatter.

Figures are rendered to PNG here and shown as images, so nothing depends on the
notebook's matplotlib backend.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.train._console import ConsoleSink, format_duration, in_notebook
from trainlab.train._trainer import Callback

__all__ = ["LiveCurves", "history_html", "tune_result_html", "figure_png"]


def figure_png(fig: Any, *, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (and closed, if pyplot knows it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    try:
        import matplotlib.pyplot as plt

        plt.close(fig)
    except Exception:  # noqa: BLE001 - a Figure not managed by pyplot needs no closing
        pass
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v.is_integer() and abs(v) >= 2:
            return str(int(v))
        return f"{v:.3g}" if v != 0 and abs(v) < 1e-3 else f"{v:.4f}"  # a weight decay of 1e-05 is not 0.0000
    if isinstance(v, dict):
        return html.escape(f"step {v.get('step', v.get('epoch'))}")
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], keys: list[str], *, caption: str = "") -> str:
    keys = [k for k in keys if any(k in r for r in rows)]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="trainlab">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_EPOCH_KEYS = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"]


def history_html(history: Any, *, max_rows: int = 30) -> str:
    """HTML for a :class:`~trainlab.train.History` (see the module docstring)."""
    if not history.records:
        return "<p>History: no evaluations yet</p>"
    if history.size == 1:
        recs = history.records
        rows = [{k: (v[0] if isinstance(v, list) else v) for k, v in r.items()} for r in recs]
        for r in rows:  # epoch 1, not 1.0000 (an accuracy of 1.0 keeps its decimals)
            if float(r["epoch"]).is_integer():
                r["epoch"] = int(r["epoch"])
        note = ""
        if len(rows) > max_rows:  # the first few and the last ones
            note = f" (showing {max_rows} of {len(rows)})"
            rows = rows[:5] + [{k: "…" for k in _EPOCH_KEYS}] + rows[-(max_rows - 5):]
        diverged = history.diverged.get(0)
        cap = f"History: {len(recs)} evaluations{note}" + (
            f"; diverged at step {diverged['step']}" if diverged else "")
        return _table(rows, _EPOCH_KEYS, caption=cap)
    from trainlab.run import summarize

    members = summarize(history, seconds=0.0)["members"]
    keys = ["member", "final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
            "final_test_acc", "best_val_acc", "best_epoch", "diverged", "stopped"]
    rows = [{**r, "member": r["member_label"]} for r in members]
    return _table(rows, keys, caption=f"History: {history.size} members, {len(history.records)} evaluations")


def _png_tag(data: bytes, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}"{w}/>'


def _scatter_from_rows(result: Any) -> bytes | None:
    """Metric vs the first one or two numeric parameters, from ``result.trials`` (no files needed)."""
    done = [r for r in result.trials if r.get("state") == "COMPLETE" and r.get("value") is not None]
    if not done:
        return None
    skip = {"number", "slot", "attempt", "state", "value", "seed", "population", "population_size",
            "train_seconds", "fail_reason", "retry_of", "counts", "started", "completed", "duration_s"}
    names = [k for k in done[0] if k not in skip and all(isinstance(r.get(k), (int, float)) and
                                                          not isinstance(r.get(k), bool) for r in done)][:2]
    if not names:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    x = np.array([r[names[0]] for r in done], dtype=float)
    v = np.array([r["value"] for r in done], dtype=float)
    if len(names) == 2:
        y = np.array([r[names[1]] for r in done], dtype=float)
        sc = ax.scatter(x, y, c=v, cmap="viridis")
        fig.colorbar(sc, ax=ax, label=result.summary.get("metric", "value"))
        ax.set_ylabel(names[1])
        if y.min() > 0 and y.max() / y.min() > 100:
            ax.set_yscale("log")
    else:
        ax.scatter(x, v)
        ax.set_ylabel(result.summary.get("metric", "value"))
    if x.min() > 0 and x.max() / x.min() > 100:
        ax.set_xscale("log")
    ax.set_xlabel(names[0])
    ax.set_title(f"{len(done)} completed trials", fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def tune_result_html(result: Any, *, k: int = 10) -> str:
    """HTML for a :class:`~trainlab.search.TuneResult`: the top-``k`` trials and the scatter."""
    s = result.summary
    top = s.get("top") or []
    rows = []
    names: list[str] = []
    for t in top[:k]:
        params = t.get("params") or {}
        names += [n for n in params if n not in names]
        rows.append({"number": t["number"], s.get("metric", "value"): t["value"],
                     **{n: (v if not isinstance(v, (list, dict)) else str(v)) for n, v in params.items()}})
    counts = s.get("trials", {})
    cap = (f"study {s.get('study', result.study)}: {counts.get('complete', len(result.trials))} complete trials; "
           f"top {len(rows)} by {s.get('metric', 'value')} ({s.get('direction', '')})")
    table = _table(rows, ["number", s.get("metric", "value"), *names], caption=cap)
    img = None
    path = (result.files or {}).get("scatter")
    if path and Path(path).exists():
        img = Path(path).read_bytes()
    else:
        img = _scatter_from_rows(result)
    fig = _png_tag(img, width=520) if img else ""
    return f'<div style="display:flex;gap:1.5em;align-items:flex-start">{table}{fig}</div>'


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
