"""Per-member learning curves."""

from __future__ import annotations

from collections.abc import Sequence
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from trainlab.errors import CheckpointError

__all__ = ["History"]


def _clean(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


class History:
    """What happened during training, per member.

    ``records`` holds one dict per evaluation: ``step``, ``epoch`` (float: steps /
    steps-per-epoch), and for each metric (``train_loss``, ``train_acc``,
    ``batch_loss`` -- the mean training-batch loss since the previous evaluation,
    with dropout etc. active -- ``val_loss``, ``val_acc``, ``test_loss``,
    ``test_acc``) a list with one value per member. ``history["val_acc"]`` is an
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
        for r in self.records[start:]:
            for m in range(self.size):
                row: dict[str, Any] = {"member": m, "step": r["step"], "epoch": r["epoch"]}
                for k, v in r.items():
                    if isinstance(v, list):
                        row[k] = _clean(v[m])
                row["diverged"] = m in self.diverged and self.diverged[m]["step"] <= r["step"]
                lines.append(json.dumps(row))
        return lines

    # ---- plotting -----------------------------------------------------------------------
    def plot(self, members: Sequence[int] | None = None, *, title: str = ""):
        """Loss and accuracy curves (train solid, validation dashed), one colour per member."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        members = list(range(self.size)) if members is None else list(members)
        fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
        x = self["epoch"]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        have = self.metrics
        for j, m in enumerate(members):
            c = colors[j % len(colors)]
            lab = f"member {m}" if len(members) > 1 else ""
            for metric, ax, style, what in (("train_loss", ax_l, "-", "train"), ("val_loss", ax_l, "--", "val"),
                                            ("train_acc", ax_a, "-", "train"), ("val_acc", ax_a, "--", "val")):
                if metric in have:
                    ax.plot(x, self[metric][:, m], style, color=c, label=f"{lab} {what}".strip())
        # a diverged member (NaN, or a finite loss exploding to 1e16) must not squash the others: limits from
        # the healthy curves, an x where each diverged (trainlab.plotting)
        from trainlab.plotting import keep_healthy_readable, mark_diverged

        div = {m: float(self.diverged[m]["epoch"]) for m in members if m in self.diverged}
        cols = {m: colors[j % len(colors)] for j, m in enumerate(members)}
        loss_curves = [(m, self[k][:, m]) for k in ("train_loss", "val_loss") if k in have for m in members]
        keep_healthy_readable(ax_l, x, loss_curves, div, cols)
        mark_diverged(ax_a, div, cols)
        ax_l.set_xlabel("epoch"), ax_l.set_ylabel("loss"), ax_l.set_title("loss")
        ax_a.set_xlabel("epoch"), ax_a.set_ylabel("accuracy"), ax_a.set_title("accuracy")
        if len(members) <= 8 and ax_a.get_legend_handles_labels()[0]:
            ax_a.legend(fontsize=8)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig
