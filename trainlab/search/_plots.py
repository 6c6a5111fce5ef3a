"""Figures of a study (matplotlib, Agg): scatter, learning curves, optimization history, importance."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from trainlab.search import _stop
from trainlab.search._results import value_of
from trainlab.search._space import SearchSpace, _Numeric
from trainlab.search._vocab import IMPUTE, SLOT

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainlab.search._results import StudySnapshot

__all__ = ["scatter", "curves", "optimization_history", "importance", "draw_all"]

log = logging.getLogger("trainlab.search")


def _plt() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (imported when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _short(name: str) -> str:
    return name.split(".")[-1]


def _label(space: SearchSpace, t: FrozenTrial, names: list[str]) -> str:
    parts = []
    for n in names:
        if n in t.params:
            v = space[n].decode(t.params[n]) if n in space else t.params[n]
            parts.append(f"{_short(n)}={v:.2g}" if isinstance(v, float) else f"{_short(n)}={json.dumps(v)}")
    return ", ".join(parts)


def scatter(trials: list[FrozenTrial], space: SearchSpace, x: str, y: str | None, *, metric: str,
            maximize: bool, title: str = "") -> Figure:
    """Each trial at (x, y) coloured by its validation value (log axes for log parameters); failed
    trials as grey crosses, pruned ones hollow, the best as a star. With ``y=None``: value against x."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and x in t.params
            and (y is None or y in t.params)]
    px = space[x] if x in space else None
    py = space[y] if y is not None and y in space else None

    def val(t: FrozenTrial, n: str) -> Any:
        return space[n].decode(t.params[n]) if n in space else t.params[n]

    if y is None:
        ax.scatter([val(t, x) for t in done], [t.value for t in done], c="tab:blue", s=22)
        ax.set_ylabel(metric)
    else:
        sc = ax.scatter([val(t, x) for t in done], [val(t, y) for t in done], c=[t.value for t in done],
                        cmap="viridis", s=30, edgecolors="none")
        fig.colorbar(sc, ax=ax, label=f"{metric} (validation)")
        pruned = [t for t in trials if t.state == TrialState.PRUNED and x in t.params and y in t.params]
        if pruned:
            ax.scatter([val(t, x) for t in pruned], [val(t, y) for t in pruned], facecolors="none",
                       edgecolors="tab:gray", s=30, label=f"pruned ({len(pruned)})")
        failed = [t for t in trials if t.state == TrialState.FAIL and x in t.params and y in t.params
                  and t.system_attrs.get(IMPUTE)]
        if failed:
            ax.scatter([val(t, x) for t in failed], [val(t, y) for t in failed], marker="x", c="tab:red", s=30,
                       label=f"failed: diverged etc. ({len(failed)})")
        if done:
            b = (max if maximize else min)(done, key=value_of)
            ax.scatter([val(b, x)], [val(b, y)], marker="*", s=260, c="tab:orange", edgecolors="k",
                       label=f"best {metric}={b.value:.4f}")
        ax.set_ylabel(y)
        if isinstance(py, _Numeric) and py.log:
            ax.set_yscale("log")
        if pruned or failed or done:
            ax.legend(fontsize=8, loc="upper left", framealpha=0.85)
    ax.set_xlabel(x)
    if isinstance(px, _Numeric) and px.log:
        ax.set_xscale("log")
    ax.set_title(title or f"{len(done)} completed trials")
    fig.tight_layout()
    return fig


def curves(trials: list[FrozenTrial], space: SearchSpace, *, metric: str, maximize: bool, n: int = 10) -> Figure:
    """Learning curves (train solid, validation dashed) of the ``n`` best completed trials."""
    plt = _plt()
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                   and t.user_attrs.get("curves")), key=lambda t: -value_of(t) if maximize else value_of(t))[:n]
    what = "acc" if metric.endswith("acc") else "loss"
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [p.name for p in space.sampled]
    for i, t in enumerate(done):
        c = t.user_attrs["curves"]
        col = colors[i % len(colors)]
        e = np.array(c["epoch"], dtype=float)
        for k, style in ((f"train_{what}", "-"), (f"val_{what}", "--")):
            if k in c:
                ax.plot(e, np.array([np.nan if v is None else v for v in c[k]], dtype=float), style, color=col,
                        lw=1.2, label=f"#{t.number} {_label(space, t, names)}" if style == "--" else None)
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel(what)
    ax.set_title(f"best {len(done)} trials: train (solid) and validation (dashed) {what}", fontsize=10)
    if done:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def optimization_history(trials: list[FrozenTrial], *, metric: str, maximize: bool) -> Figure:
    """Each result by slot (its place in the study), and the best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                  key=lambda t: int(t.system_attrs.get(SLOT, t.number)))
    xs = [int(t.system_attrs.get(SLOT, t.number)) for t in done]
    vs = [value_of(t) for t in done]
    ax.scatter(xs, vs, s=14, c="tab:blue", label="trial")
    if vs:
        best = np.maximum.accumulate(vs) if maximize else np.minimum.accumulate(vs)
        ax.step(xs, best, where="post", c="tab:red", label="best so far")
    failed = [int(t.system_attrs.get(SLOT, t.number)) for t in trials if t.state == TrialState.FAIL
              and t.system_attrs.get(IMPUTE)]
    if failed and vs:
        ax.scatter(failed, [min(vs) if maximize else max(vs)] * len(failed), marker="x", c="tab:gray",
                   label="failed (diverged etc.)")
    ax.set_xlabel("trial (slot)")
    ax.set_ylabel(f"{metric} (validation)")
    ax.set_title("optimization history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance(imp: dict[str, Any]) -> Figure:
    plt = _plt()
    items = sorted(imp["importance"].items(), key=lambda kv: kv[1])
    # Wide enough for the longest parameter name; the title is the figure's (centred on the whole
    # width, not on the axes that long names push right, where it was cut off).
    longest = max((len(k) for k, _ in items), default=0)
    fig, ax = plt.subplots(figsize=(max(6.4, 3.2 + 0.085 * longest), 0.5 * len(items) + 1.6))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("importance")
    fig.suptitle(f"parameter importance ({imp['method']}, {imp['trials']} trials)", fontsize=11)
    fig.tight_layout()
    return fig


def draw_all(snap: StudySnapshot, summary: dict[str, Any], out: Path) -> dict[str, str]:
    """Write every figure that the study's trials allow; returns name -> path."""
    plt = _plt()
    spec, space, trials = snap.spec, snap.space, snap.trials
    files: dict[str, str] = {}

    def save(fig: Figure, name: str) -> None:
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files[name] = str(path)
        _stop.check()  # Ctrl-C while the figures are drawn stops after this one

    try:
        names = spec.scatter or [p.name for p in space.numeric][:2]
        if not names:
            names = [p.name for p in space.sampled][:2]
        if names:
            save(scatter(trials, space, names[0], names[1] if len(names) > 1 else None, metric=spec.metric,
                         maximize=spec.maximize,
                         title=f"{snap.study}: {summary['trials']['complete']} trials ({spec.strategy.name})"),
                 "scatter")
        if spec.curves:
            save(curves(trials, space, metric=spec.metric, maximize=spec.maximize, n=spec.curves), "curves")
        save(optimization_history(trials, metric=spec.metric, maximize=spec.maximize), "history")
        if summary.get("importance"):
            save(importance(summary["importance"]), "importance")
    except Exception as e:  # noqa: BLE001 - a figure must never lose a finished study's numbers
        log.warning("a figure could not be drawn: %s: %s", type(e).__name__, e)
    return files
