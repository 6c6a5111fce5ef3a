"""Jupyter views: live learning curves while training, and HTML tables for results.

- :class:`LiveCurves` (:mod:`trainlab.train`) is a Trainer sink (``Trainer(..., live=True)``):
  tqdm's notebook bar and the curves redrawn in place after every evaluation.
- :func:`history_html` (``History._repr_html_``): a table per evaluation for one model,
  a table per member (final and best numbers) for a population.
- :func:`tune_result_html` (``TuneResult._repr_html_``): the top trials and the scatter.

Figures are rendered to PNG here and shown as images, so nothing depends on the
notebook's matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainlab._html import figure_png, png_tag, table
from trainlab.train import LiveCurves, history_html

__all__ = ["LiveCurves", "history_html", "tune_result_html", "figure_png"]


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
    top_table = table(rows, ["number", s.get("metric", "value"), *names], caption=cap)
    img = None
    path = (result.files or {}).get("scatter")
    if path and Path(path).exists():
        img = Path(path).read_bytes()
    else:
        img = _scatter_from_rows(result)
    fig = png_tag(img, width=520) if img else ""
    return f'<div style="display:flex;gap:1.5em;align-items:flex-start">{top_table}{fig}</div>'
