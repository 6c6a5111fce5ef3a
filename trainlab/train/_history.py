"""Per-member learning curves."""

from __future__ import annotations

from collections.abc import Sequence
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from trainlab._html import table

from trainlab.errors import CheckpointError

__all__ = ["History", "summarize", "history_html"]


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class History:
    """What happened during training, per member.

    ``records`` holds one dict per evaluation: ``step``, ``epoch`` (float: steps /
    steps-per-epoch), and for each metric (``train_loss``, ``train_acc``,
    ``batch_loss`` -- the mean training-batch loss since the previous evaluation,
    with dropout etc. active -- ``val_loss``, ``val_acc``, ``test_loss``,
    ``test_acc``; with a learning-rate schedule ``lr`` -- the rate of the steps that led to
    the evaluation; with gradient clipping ``grad_norm``, ``grad_norm_max`` and ``clipped``)
    a list with one value per member. ``history["val_acc"]`` is an
    array ``(evaluations, P)``. ``diverged`` maps a member to the step and epoch at
    which its loss became NaN/inf (it was frozen there); ``stopped`` maps a member
    to the epoch where early stopping ended it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.records: list[dict[str, Any]] = []
        self.diverged: dict[int, dict[str, Any]] = {}
        self.stopped: dict[int, dict[str, Any]] = {}
        self.info: dict[str, Any] = {}
        #: metrics of the model as training left it (after e.g. early stopping restored weights)
        self.final: dict[str, Any] = {}

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    @property
    def labels(self) -> list[str]:
        """Each member's name (``info["member_labels"]``, set from the config by
        :func:`trainlab.labels.member_labels`; ``member i`` when nobody set them)."""
        labels = self.info.get("member_labels")
        if isinstance(labels, list) and len(labels) == self.size:
            return [str(x) for x in labels]
        return [f"member {m}" for m in range(self.size)]

    @property
    def metrics(self) -> list[str]:
        names: list[str] = []
        for r in self.records:
            for k, v in r.items():
                if isinstance(v, list) and k not in names:
                    names.append(k)
        return names

    def __getitem__(self, metric: str) -> np.ndarray:
        if metric in ("step", "epoch"):
            return np.array([r[metric] for r in self.records], dtype=float)
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r} in this history (has: {', '.join(self.metrics)})")
        return np.array([[np.nan if x is None else x for x in r.get(metric, [None] * self.size)]
                         for r in self.records], dtype=float)

    def last(self, metric: str) -> np.ndarray:
        return self[metric][-1]

    def best(self, metric: str, mode: str = "max") -> np.ndarray:
        a = self[metric]
        return np.nanmax(a, axis=0) if mode == "max" else np.nanmin(a, axis=0)

    # ---- saving ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        recs = [{k: ([_clean(x) for x in v] if isinstance(v, list) else v) for k, v in r.items()}
                for r in self.records]
        return {"size": self.size, "records": recs, "diverged": {str(k): v for k, v in self.diverged.items()},
                "stopped": {str(k): v for k, v in self.stopped.items()}, "info": self.info,
                "final": {k: ([_clean(x) for x in v] if isinstance(v, list) else v) for k, v in self.final.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        try:
            h = cls(int(d["size"]))
            h.records = list(d["records"])
            h.diverged = {int(k): v for k, v in d.get("diverged", {}).items()}
            h.stopped = {int(k): v for k, v in d.get("stopped", {}).items()}
            h.info = dict(d.get("info", {}))
            h.final = dict(d.get("final", {}))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"not a trainlab history: {e}") from None
        return h

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "History":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise CheckpointError(f"history file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from None

    def jsonl_lines(self, start: int = 0) -> list[str]:
        """One JSON line per evaluation per member (``metrics.jsonl``), from record ``start`` on."""
        lines = []
        labels = self.labels
        for r in self.records[start:]:
            for m in range(self.size):
                row: dict[str, Any] = {"member": m, "member_label": labels[m], "step": r["step"],
                                       "epoch": r["epoch"]}
                for k, v in r.items():
                    if isinstance(v, list):
                        row[k] = _clean(v[m])
                row["diverged"] = m in self.diverged and self.diverged[m]["step"] <= r["step"]
                lines.append(json.dumps(row))
        return lines

    def _repr_html_(self) -> str:
        """A table in Jupyter (:func:`history_html`)."""
        
        return history_html(self)

    # ---- plotting -----------------------------------------------------------------------
    def plot(self, members: Sequence[int] | None = None, *, title: str = "") -> Figure:
        """Loss and accuracy curves (train solid, validation dashed), one colour per member.

        Members are named by :attr:`labels` and coloured by :func:`trainlab.labels.member_colors`
        (the same colour in every figure of a run); epoch ticks are integers. Returns the
        pyplot figure (close it with ``plt.close(fig)`` when drawing many).
        """
        import matplotlib

        from trainlab.train._console import in_notebook

        if not in_notebook():  # in Jupyter, keep the inline backend: the figure shows as the cell's result
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import MaxNLocator

        from trainlab.labels import member_colors

        members = list(range(self.size)) if members is None else list(members)
        fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
        x = self["epoch"]
        colors = member_colors(self.size)
        labels = self.labels
        have = self.metrics
        for m in members:
            for metric, ax, style in (("train_loss", ax_l, "-"), ("val_loss", ax_l, "--"),
                                      ("train_acc", ax_a, "-"), ("val_acc", ax_a, "--")):
                if metric in have:
                    ax.plot(x, self[metric][:, m], style, color=colors[m])
        # a diverged member (NaN, or a finite loss exploding to 1e16) must not squash the others: limits from
        # the healthy curves, an x where each diverged (trainlab.plotting)
        from trainlab.plotting import keep_healthy_readable, mark_diverged

        div = {m: float(self.diverged[m]["epoch"]) for m in members if m in self.diverged}
        cols = {m: colors[m] for m in members}
        loss_curves = [(m, self[k][:, m]) for k in ("train_loss", "val_loss") if k in have for m in members]
        keep_healthy_readable(ax_l, x, loss_curves, div, cols)
        mark_diverged(ax_a, div, cols)
        for ax, what in ((ax_l, "loss"), (ax_a, "accuracy")):
            ax.set_xlabel("epoch"), ax.set_ylabel(what), ax.set_title(what)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # The key: one entry per member (its colour), then the line styles (train solid, val dashed).
        shown = members if len(members) <= 16 else members[::-(-len(members) // 12)]
        handles = [Line2D([], [], color=colors[m], label=labels[m]) for m in shown] if len(members) > 1 else []
        if len(shown) < len(members):
            handles.append(Line2D([], [], color="none", label=f"({len(members) - len(shown)} more not listed)"))
        styles = [(s, w) for s, w, k in (("-", "train", "train_acc"), ("--", "val", "val_acc")) if k in have]
        handles += [Line2D([], [], color="0.3", ls=s, label=w) for s, w in styles]
        if div:
            handles.append(Line2D([], [], color="0.3", ls=":", label="diverged"))
        if handles:
            ax_a.legend(handles=handles, fontsize=7, ncol=2 if len(handles) > 10 else 1, loc="best")
        if len(members) == 1 and self.size > 1:
            title = f"{title}  ({labels[members[0]]})".strip()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig


def summarize(history: History, *, seconds: float) -> dict[str, Any]:
    """Final and best metrics per member."""
    members = []
    metrics = history.metrics
    final = history.final or (history.records[-1] if history.records else {})
    labels = history.labels
    for m in range(history.size):
        row: dict[str, Any] = {"member": m, "member_label": labels[m]}
        for k, v in final.items():
            if isinstance(v, list):
                row[f"final_{k}"] = v[m] if v[m] is None or np.isfinite(v[m]) else None
        if "val_acc" in metrics and np.isfinite(history["val_acc"][:, m]).any():
            i = int(np.nanargmax(history["val_acc"][:, m]))
            row["best_val_acc"] = float(history["val_acc"][i, m])
            epoch = float(history["epoch"][i])
            row["best_epoch"] = int(epoch) if epoch.is_integer() else epoch
        row["diverged"] = history.diverged.get(m)
        row["stopped"] = history.stopped.get(m)
        members.append(row)
    return {"members": members, "seconds": round(seconds, 3), "steps": int(history["step"][-1]) if history.records else 0}


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
        return table(rows, _EPOCH_KEYS, caption=cap)
    members = summarize(history, seconds=0.0)["members"]
    keys = ["member", "final_train_loss", "final_train_acc", "final_val_loss", "final_val_acc",
            "final_test_acc", "best_val_acc", "best_epoch", "diverged", "stopped"]
    rows = [{**r, "member": r["member_label"]} for r in members]
    return table(rows, keys, caption=f"History: {history.size} members, {len(history.records)} evaluations")
