"""Figures of probes, the range test, the grids and the curves (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from trainlab.diagnose._findings import CurveSource

__all__ = ["plot_activation_grid", "plot_probe_series", "plot_weight_histograms", "plot_lr_range", "plot_grid",
           "plot_curves", "plot_overfit"]


def _plt() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _layer_name(table: Sequence[Mapping[str, Any]], index: int) -> str:
    for r in table:
        if r["index"] == index:
            return r["name"]
    return str(index)


def plot_activation_grid(probe_data: Mapping[str, Any], *, member: int = 0, records: Sequence[int] | None = None,
                         layers: str = "activation", title: str = "") -> Figure:
    """The per-layer activation histogram grid: one row per snapshot, one column per layer.

    ``probe_data`` is a Probe's data (``history.info["probes"]``) or ``{"layers": table,
    "records": [record, ...]}``; only records with histograms are drawn (by default the
    first, the middle and the last of them). ``layers="activation"`` draws the
    nonlinearities' outputs (the course's figure); ``"all"`` every layer measured.
    """
    plt = _plt()
    table = probe_data["layers"]
    with_hist = [r for r in probe_data["records"] if any("hist" in v.get("act", {}) for v in r["layers"].values())]
    if not with_hist:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, "no histograms recorded", ha="center", va="center")
        ax.axis("off")
        return fig
    if records is None:
        picks = sorted({0, len(with_hist) // 2, len(with_hist) - 1})
    else:
        picks = [i for i in records if 0 <= i < len(with_hist)]
    rows = [with_hist[i] for i in picks]
    want = [r["index"] for r in table if (r["role"] == "activation" and r["family"] != "identity")
            or (layers == "all" and r["role"] in ("weight", "norm", "other"))]
    cols = [i for i in want if any("hist" in rec["layers"].get(str(i), {}).get("act", {}) for rec in rows)]
    if not cols:
        cols = sorted({int(k) for rec in rows for k, v in rec["layers"].items() if "hist" in v.get("act", {})})
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.3 * len(cols) + 0.6, 1.9 * len(rows) + 0.6),
                             squeeze=False)
    for a, rec in enumerate(rows):
        for b, idx in enumerate(cols):
            ax = axes[a][b]
            act = rec["layers"].get(str(idx), {}).get("act", {})
            if "hist" not in act:
                ax.axis("off")
                continue
            counts = np.asarray(act["hist"][member], dtype=float)
            lo, hi = act["range"]
            edges = np.linspace(lo, hi, len(counts) + 1)
            total = counts.sum()
            ax.bar(edges[:-1], counts / max(total, 1), width=edges[1] - edges[0], align="edge", color="C0")
            extra = []
            for key, label in (("saturated", "sat"), ("dead", "dead")):
                v = act.get(key, [None] * (member + 1))[member]
                if v is not None:
                    extra.append(f"{label} {v:.0%}")
            std = act["std"][member]
            ax.set_title(f"{_layer_name(table, idx)}\nstd {std:.2g}" + (" | " + ", ".join(extra) if extra else "")
                         if std is not None else _layer_name(table, idx), fontsize=7)
            ax.tick_params(labelsize=6)
            if b == 0:
                ax.set_ylabel(f"step {rec['step']}", fontsize=8)
    fig.suptitle(title or "activation histograms per layer (rows: training steps)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_weight_histograms(record: Mapping[str, Any], table: Sequence[Mapping[str, Any]], *, member: int = 0,
                           title: str = "") -> Figure:
    """One histogram per weight layer, from one probe record."""
    plt = _plt()
    cols = [int(k) for k, v in sorted(record["layers"].items(), key=lambda kv: int(kv[0]))
            if "hist" in v.get("weight", {})]
    fig, axes = plt.subplots(1, max(len(cols), 1), figsize=(2.4 * max(len(cols), 1) + 0.6, 2.4), squeeze=False)
    for b, idx in enumerate(cols):
        w = record["layers"][str(idx)]["weight"]
        counts = np.asarray(w["hist"][member], dtype=float)
        lo, hi = w["range"]
        edges = np.linspace(lo, hi, len(counts) + 1)
        ax = axes[0][b]
        ax.bar(edges[:-1], counts / max(counts.sum(), 1), width=edges[1] - edges[0], align="edge", color="C2")
        ax.set_title(f"{_layer_name(table, idx)}\nrms {w['rms'][member]:.2g}" if w["rms"][member] is not None
                     else _layer_name(table, idx), fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or f"weight histograms at step {record['step']}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_probe_series(probe_data: Mapping[str, Any], *, member: int = 0, title: str = "") -> Figure:
    """Over training: each weight layer's RMS gradient and update/weight ratio; dead and saturated fractions."""
    plt = _plt()
    table = probe_data["layers"]
    recs = probe_data["records"]
    weights = [r["index"] for r in table if r["role"] == "weight"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for j, idx in enumerate(weights):
        for ax, key in ((axes[0], ("grad", "rms")), (axes[1], ("update_ratio",))):
            xs, ys = [], []
            for rec in recs:
                node: Any = rec["layers"].get(str(idx), {})
                for k in key:
                    node = node.get(k) if isinstance(node, dict) else None
                if node is not None and node[member] is not None and node[member] > 0:
                    xs.append(rec["step"])
                    ys.append(node[member])
            if xs:
                ax.semilogy(xs, ys, "o-", ms=2, color=f"C{j % 10}", label=_layer_name(table, idx))
    axes[0].set_title("RMS gradient per weight layer", fontsize=9)
    axes[1].set_title("update / weight ratio per step", fontsize=9)
    axes[1].axhline(1e-3, color="gray", ls=":", lw=1)
    for name, label, c in (("dead", "dead ReLU units", "C3"), ("saturated", "saturated outputs", "C1")):
        xs, ys = [], []
        for rec in recs:
            v = rec["summary"].get(name)
            if v is not None and v[member] is not None:
                xs.append(rec["step"])
                ys.append(v[member])
        if xs:
            axes[2].plot(xs, ys, "o-", ms=2, color=c, label=label)
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title("dead / saturated fraction", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class RangeCurves(Protocol):
    """What the range test's figure reads of a :class:`~trainlab.diagnose.LRRangeResult` (a protocol: the
    result's ``plot`` method calls this module, so this module does not import the result's)."""

    lrs: list[float]
    losses: np.ndarray
    smoothed: np.ndarray
    status: list[str]
    suggestion: float | None


def plot_lr_range(result: RangeCurves, ax_curves: Axes | None = None, ax_final: Axes | None = None
                  ) -> Figure:
    """The range test: loss per iteration at each rate (left), final loss vs rate (right); on the given axes
    (then the figure they belong to is returned) or a new figure."""
    plt = _plt()
    new = ax_curves is None or ax_final is None
    if ax_curves is None or ax_final is None:
        fig, (ax_curves, ax_final) = plt.subplots(1, 2, figsize=(12, 4))
    else:
        fig = ax_final.get_figure()
    lrs = np.asarray(result.lrs)
    cmap = plt.get_cmap("viridis")
    S = result.smoothed
    T = S.shape[0]
    for m, lr in enumerate(lrs):
        c = cmap(m / max(len(lrs) - 1, 1))
        ax_curves.plot(np.arange(1, T + 1), S[:, m], color=c, lw=1.2 if result.status[m] == "steady" else 0.7,
                       ls="-" if result.status[m] == "steady" else "--", label=f"{lr:.3g}")
    l0 = np.nanmax(result.losses[0]) if T else 1.0
    if np.isfinite(l0):
        ax_curves.set_ylim(0, 1.6 * l0)
    ax_curves.set_xlabel("iteration")
    ax_curves.set_ylabel("training loss (smoothed)")
    ax_curves.set_title("loss at each learning rate (solid: falls steadily)", fontsize=9)
    if len(lrs) <= 24:
        ax_curves.legend(fontsize=6, ncol=2, title="lr", title_fontsize=7)
    elif len(lrs) > 1:  # too many rates for a legend: a colour bar is the key
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm

        ax_curves.figure.colorbar(ScalarMappable(norm=LogNorm(lrs.min(), lrs.max()), cmap=cmap), ax=ax_curves,
                                  label="learning rate")
    finals = np.array([np.nan if st == "diverged" else (S[-1, m] if T else np.nan)
                       for m, st in enumerate(result.status)])
    colors = {"steady": "C2", "flat": "C7", "unstable": "C1", "diverged": "C3"}
    for st, c in colors.items():
        sel = [m for m, s in enumerate(result.status) if s == st]
        if sel:
            y = [finals[m] if np.isfinite(finals[m]) else (1.5 * l0 if np.isfinite(l0) else 1.0) for m in sel]
            ax_final.semilogx(lrs[sel], y, "o" if st != "diverged" else "x", color=c, label=st)
    ax_final.semilogx(lrs, finals, "-", color="gray", lw=0.8)
    if result.suggestion is not None:
        ax_final.axvline(result.suggestion, color="C2", ls="--", label=f"suggestion {result.suggestion:.3g}")
    ax_final.set_xlabel("learning rate")
    ax_final.set_ylabel(f"loss after {T} iterations")
    ax_final.set_title("LR range test" + ("" if result.suggestion is not None else " -- no suggestion"), fontsize=9)
    ax_final.legend(fontsize=7)
    if new:
        fig.tight_layout()
    return fig


def plot_grid(lrs: Sequence[float], wds: Sequence[float], score: np.ndarray, *, metric: str, best: tuple[int, int],
              title: str = "") -> Figure:
    """A learning rate x weight decay heat map of ``score`` ``(len(wds), len(lrs))``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.1 * len(lrs) + 2.5, 0.7 * len(wds) + 1.8))
    im = ax.imshow(score, cmap="viridis", aspect="auto", origin="lower")
    for i in range(len(wds)):
        for j in range(len(lrs)):
            v = score[i, j]
            ax.text(j, i, "-" if not np.isfinite(v) else f"{v:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if not np.isfinite(v) or v < np.nanmean(score) else "black",
                    fontweight="bold" if (i, j) == best else "normal")
    ax.set_xticks(range(len(lrs)), [f"{v:.3g}" for v in lrs], fontsize=8)
    ax.set_yticks(range(len(wds)), [f"{v:.3g}" for v in wds], fontsize=8)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("weight decay")
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(history: CurveSource, *, member: int = 0, early_stop_epoch: float | None = None,
                title: str = "") -> Figure:
    """Loss and accuracy curves of one member, the early-stopping epoch marked."""
    plt = _plt()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = history["epoch"]
    have = history.metrics
    for metric, ax, style in (("train_loss", ax_l, "-"), ("val_loss", ax_l, "--"), ("train_acc", ax_a, "-"),
                              ("val_acc", ax_a, "--")):
        if metric in have:
            ax.plot(x, history[metric][:, member], style, marker="o", ms=2, label=metric.replace("_", " "))
    for ax in (ax_l, ax_a):
        if early_stop_epoch is not None:
            ax.axvline(early_stop_epoch, color="C3", ls=":", label=f"best val (epoch {early_stop_epoch:g})")
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    ax_l.set_ylabel("loss")
    ax_a.set_ylabel("accuracy")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_overfit(step_losses: np.ndarray, lrs: Sequence[float], *, member: int = 0, title: str = "") -> Figure:
    """Training loss per step while overfitting the sample, one line per rate (the config's bold)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    T = step_losses.shape[0]
    order = np.argsort(lrs)
    for k, m in enumerate(order):
        y = np.where(np.isfinite(step_losses[:, m]) & (step_losses[:, m] > 0), step_losses[:, m], np.nan)
        ax.semilogy(np.arange(1, T + 1), y, lw=2.2 if m == member else 0.9, color=f"C{k % 10}",
                    label=f"lr {lrs[m]:.3g}" + (" (config)" if m == member else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss on the sample")
    ax.legend(fontsize=7)
    ax.set_title(title or "overfitting a small sample", fontsize=9)
    fig.tight_layout()
    return fig
