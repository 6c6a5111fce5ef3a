"""Plot helpers shared by every figure that draws a population's curves.

A population trains members with very different settings side by side; one exploding member (loss 1e16)
must not squash the healthy ones into a flat line at the bottom of the axis. :func:`healthy_limits` picks
the y-range from the healthy members' curves (and the diverged ones' before they diverged), and
:func:`mark_diverged` marks each diverged member with an ``x`` at the epoch it diverged, pinned to the top of
the axis, so it stays visible while its off-scale values are clipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["healthy_limits", "mark_diverged", "keep_healthy_readable"]

#: a curve's values: a list or a NumPy row (History's columns are arrays)
Values = Sequence[float] | np.ndarray
#: a matplotlib colour: a name or an RGB(A) tuple (:func:`trainlab.labels.member_colors` gives RGBA)
Color = str | tuple[float, ...]


def healthy_limits(x: Values, curves: Sequence[tuple[int, Values]],
                   diverged: Mapping[int, float], *, log: bool) -> tuple[float, float] | None:
    """y-limits covering the healthy members' finite values and the diverged members' values before the x at
    which they diverged. ``curves``: (member, y over ``x``) pairs, several per member allowed; ``diverged``:
    member -> x. ``None`` if nothing finite is left."""
    xs = np.asarray(x, dtype=float)
    vals = []
    for m, ys in curves:
        y = np.asarray(ys, dtype=float)
        keep = np.isfinite(y) & (y > 0 if log else True)
        if m in diverged:
            keep &= xs < diverged[m]
        vals.append(y[keep])
    v = np.concatenate(vals) if vals else np.array([])
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if log:
        return lo / 1.5, hi * 1.5
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    return lo - pad, hi + pad


def mark_diverged(ax: Axes, diverged: Mapping[int, float], colors: Mapping[int, Color] | None = None, *,
                  label: str = "diverged") -> None:
    """An ``x`` at the top of ``ax`` at each diverged member's x (member -> x), labelled with the member."""
    if not diverged:
        return
    trans = ax.get_xaxis_transform()  # x in data units, y in axes units: the top edge whatever the scale
    for j, (m, at) in enumerate(sorted(diverged.items())):
        c = (colors or {}).get(m, "red")
        ax.plot([at], [0.97], marker="x", markersize=9, mew=2.5, color=c, transform=trans, clip_on=False,
                linestyle="none", label=label if j == 0 else None)
        ax.annotate(f"m{m}", (at, 0.97), xycoords=trans, xytext=(4, -10), textcoords="offset points", fontsize=7,
                    color=c)
        ax.axvline(at, color=c, linestyle=":", linewidth=0.8)


def keep_healthy_readable(ax: Axes, x: Values, curves: Sequence[tuple[int, Values]],
                          diverged: Mapping[int, float], colors: Mapping[int, Color] | None = None) -> None:
    """The loss-axis treatment in one call: log scale when every healthy value is positive, limits from the
    healthy members (:func:`healthy_limits`), diverged members marked (:func:`mark_diverged`)."""
    healthy = [np.asarray(v, dtype=float) for m, v in curves if m not in diverged]
    finite = np.concatenate([h[np.isfinite(h)] for h in healthy]) if healthy else np.array([])
    log = bool(finite.size) and bool((finite > 0).all()) and float(finite.max()) / max(float(finite.min()),
                                                                                        1e-300) > 30
    lim = healthy_limits(x, curves, diverged, log=log)
    if diverged and lim is not None and all(math.isfinite(v) for v in lim):
        if log:
            ax.set_yscale("log")
        ax.set_ylim(*lim)
    mark_diverged(ax, diverged, colors)
