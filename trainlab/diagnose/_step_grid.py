"""Steps 4 and 5: a coarse grid of learning rate x regularization around the range test's suggestion, a few
epochs, then a refined grid around the coarse grid's best, trained longer -- each grid one population.

The regularization the grids vary is the strongest one present in the config (:func:`reg_key`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainlab.config import RunConfig
from trainlab.diagnose._ablation import override_text
from trainlab.diagnose._findings import Finding
from trainlab.diagnose._plots import plot_curves, plot_grid
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._step import Context, Figures, HistoryArrays, Step, build

__all__ = ["GridData", "CoarseGrid", "RefinedGrid", "reg_key", "reg_values", "grid_scores"]


def reg_key(cfg: RunConfig) -> str:
    """The regularization the grids vary: the strongest one present in the config (issue 22, point 3).

    An L2 or L1 penalty, then dropout, then weight decay (also when nothing is on: the recipe's
    default). Varying weight decay while a strong L2 penalty stays fixed would search the wrong axis.
    """
    for key in ("regularize.l2", "regularize.l1", "model.dropout", "model.input_dropout"):
        if float(cfg.get(key) or 0.0) > 0:
            return key
    return "optim.weight_decay"


def reg_values(key: str, center: float, factors: Sequence[float], coarse: bool, budget: int) -> list[float]:
    """Values of ``key`` for a grid: the config's value, 1/10 of it and 0 (coarse), or ``center x factors``."""
    if key == "optim.weight_decay":
        return []  # the caller's weight-decay values
    top = 0.95 if "dropout" in key else 1e6
    if coarse:
        vals = {0.0, center, center / 10} if budget > 2 else {0.0, center}
        if "dropout" in key:
            vals = {0.0, center, center / 2} if budget > 2 else {0.0, center}
    elif center > 0:
        vals = {min(top, float(f"{center * f:.4g}")) for f in factors}
    else:
        vals = {0.0} | ({min(top, 0.1) if "dropout" in key else 1e-5} if len(factors) > 1 else set())
    return sorted(vals)


def grid_scores(history: HistoryArrays) -> tuple[str, np.ndarray]:
    """Each member's score and what it is: the best validation accuracy, else the (negated) best validation
    loss, else the training metrics; NaN for a diverged member."""
    have = history.metrics
    if "val_acc" in have:
        finite = np.where(np.isfinite(history["val_acc"]), history["val_acc"], np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():  # a member that diverged at once: all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            metric, score = "best val acc", np.nanmax(finite, axis=0)
    elif "val_loss" in have:
        metric, score = "best val loss (negated)", -np.nanmin(history["val_loss"], axis=0)
    elif "train_acc" in have:
        metric, score = "best train acc (no validation split)", np.nanmax(history["train_acc"], axis=0)
    else:
        metric, score = "best train loss (negated; no validation split)", -np.nanmin(history["train_loss"], axis=0)
    score = np.array(score, dtype=float)
    for m in history.diverged:
        score[m] = np.nan
    return metric, score


@dataclass(frozen=True)
class GridData:
    """One grid: member ``i * len(lrs) + j`` trained rate ``lrs[j]`` with ``reg_key = wds[i]``."""

    coarse: bool
    lrs: list[float]
    wds: list[float]
    reg_key: str
    epochs: int
    history: HistoryArrays
    what: str  # what was trained, around what (the summary's start)

    @property
    def metric_and_score(self) -> tuple[str, np.ndarray]:
        """The score's name and the ``(len(wds), len(lrs))`` grid of scores."""
        metric, score = grid_scores(self.history)
        return metric, score.reshape(len(self.wds), len(self.lrs))

    @property
    def best_index(self) -> tuple[int, int]:
        """``(row, column)`` of the best finite score; ``(-1, -1)`` when every member diverged."""
        grid = self.metric_and_score[1]
        if not np.isfinite(grid).any():
            return -1, -1
        bi, bj = divmod(int(np.nanargmax(grid)), len(self.lrs))
        return bi, bj

    @property
    def best(self) -> dict[str, Any] | None:
        """The best member: its rate, regularization, score, and when its validation loss was lowest."""
        bi, bj = self.best_index
        if bi < 0:
            return None
        grid = self.metric_and_score[1]
        m = bi * len(self.lrs) + bj
        h = self.history
        best: dict[str, Any] = {"lr": float(self.lrs[bj]), "weight_decay": float(self.wds[bi]),
                                "score": float(grid[bi, bj]), "member": m, "reg_key": self.reg_key}
        if "val_loss" in h.metrics:
            vl = h["val_loss"][:, m]
            best["best_val_loss"] = float(np.nanmin(vl))
            best["best_epoch"] = float(h["epoch"][int(np.nanargmin(vl))])
        if "val_acc" in h.metrics:
            best["best_val_acc"] = float(np.nanmax(h["val_acc"][:, m]))
        return best


def _edge_notes(lrs: Sequence[float], bj: int) -> list[Finding]:
    if len(lrs) < 2:
        return []
    if bj == len(lrs) - 1:
        return [Finding("best_at_edge", Severity.INFO, f"the best rate is the grid's largest ({lrs[-1]:.3g}); a larger "
                        "one might be better still")]
    if bj == 0:
        return [Finding("best_at_edge", Severity.INFO, f"the best rate is the grid's smallest ({lrs[0]:.3g}); a "
                        "smaller one might be better still")]
    return []


def train_grid(ctx: Context, lrs: Sequence[float], wds: Sequence[float], epochs: int, key: str, coarse: bool,
               what: str) -> GridData:
    """Train every (rate, value of ``key``) pair as one population for ``epochs``."""
    pairs = [(lr, wd) for wd in wds for lr in lrs]
    cfg = ctx.cfg.as_population({"optim.lr": [p[0] for p in pairs], key: [p[1] for p in pairs]})
    run = build(cfg, ctx.splits, epochs=epochs, steps=None)
    hist = run.trainer.fit(ctx.splits.train, ctx.splits.val)
    return GridData(coarse, [float(v) for v in lrs], [float(v) for v in wds], key, epochs,
                    HistoryArrays.from_history(hist), what)


class _Grid(Step[GridData]):
    def judge(self, data: GridData) -> list[Finding]:
        best = data.best
        if best is None:
            return [Finding("grid_failed", Severity.FAIL, "every member of the grid diverged",
                            "lower the learning rates (see the LR range test)")]
        findings = _edge_notes(data.lrs, data.best_index[1])
        if not data.coarse and "best_val_acc" in best:
            rk = data.reg_key
            findings.append(Finding("grid_best", Severity.INFO,
                                    f"the refined grid's best member: lr {best['lr']:.3g}, {rk} "
                                    f"{best['weight_decay']:g} (best val acc {best['best_val_acc']:.3f} in "
                                    f"{data.epochs} epochs)", "",
                                    {"best_val_acc": best["best_val_acc"]},
                                    fix={"overrides": [override_text("optim.lr", best["lr"]),
                                                       override_text(rk, best["weight_decay"])],
                                         "val_acc": best["best_val_acc"], "baseline_val_acc": None,
                                         "measured_by": "refined grid"}))
        return findings

    def summary(self, data: GridData, findings: Sequence[Finding]) -> str:
        best = data.best
        if best is None:
            return f"{data.what}: every member diverged"
        metric = data.metric_and_score[0]
        return (f"{data.what}: best lr {best['lr']:.3g}, {data.reg_key} {best['weight_decay']:g} "
                f"({metric} {abs(best['score']):.4f})")

    def advice(self, data: GridData, findings: Sequence[Finding]) -> list[str]:
        best, rk = data.best, data.reg_key
        if best is None:
            return [f.advice for f in findings]
        if data.coarse:
            return [f"refine around lr {best['lr']:.3g}, {rk} {best['weight_decay']:g}"]
        return [f"train with optim.lr = {best['lr']:.3g}, {rk} = {best['weight_decay']:g}"
                + (f"; the validation loss was lowest at epoch {best['best_epoch']:g}" if "best_epoch" in best else "")]

    def numbers(self, data: GridData) -> dict[str, Any]:
        metric, score = data.metric_and_score
        return {"lrs": data.lrs, "wds": data.wds, "reg_key": data.reg_key, "epochs": data.epochs, "metric": metric,
                "score": score.tolist(), "best": data.best, "diverged": sorted(data.history.diverged)}

    def figures(self, data: GridData) -> Figures:
        best = data.best
        if best is None:
            return {}
        metric, score = data.metric_and_score
        figs: Figures = {"grid": (plot_grid(data.lrs, data.wds, score, metric=metric, best=data.best_index,
                                            title=f"{'coarse' if data.coarse else 'refined'} grid, {data.epochs} "
                                                  "epoch(s)"),
                                  f"{metric} of every member of one population (rows: {data.reg_key}; columns: "
                                  "learning rate); the best in bold.")}
        if not data.coarse:
            figs["best_curves"] = (plot_curves(data.history, member=best["member"],
                                               early_stop_epoch=best.get("best_epoch"),
                                               title=f"best member: lr {best['lr']:.3g}, wd {best['weight_decay']:g}"),
                                   "Curves of the refined grid's best member.")
        return figs


def _suggestion(ctx: Context) -> float | None:
    """Step 3's suggestion, when step 3 ran and made one."""
    rd = ctx.data.get(3)
    return rd.result.suggestion if rd is not None else None


class CoarseGrid(_Grid):
    number = 4

    def measure(self, ctx: Context) -> GridData:
        o = ctx.options
        suggestion = _suggestion(ctx)
        if suggestion is not None:
            center, source = suggestion, "the LR range test's suggestion"
        else:
            center = ctx.lr
            source = ("the config's rate: the range test made no suggestion" if 3 in ctx.data
                      else "the config's rate")
        lrs = sorted(float(f"{center * f:.4g}") for f in o.coarse_factors)
        key = reg_key(ctx.cfg)
        wds = (reg_values(key, float(ctx.cfg.get(key)), (), True, len(o.coarse_wds) + 1)
               or sorted(set(float(v) for v in o.coarse_wds)))
        return train_grid(ctx, lrs, wds, o.coarse_epochs, key, True,
                          f"{len(lrs)} rates around {center:.3g} ({source}) x {len(wds)} values of {key}, "
                          f"{o.coarse_epochs} epoch(s)")


class RefinedGrid(_Grid):
    number = 5

    def measure(self, ctx: Context) -> GridData:
        o = ctx.options
        coarse = ctx.data.get(4)
        coarse_best = coarse.best if coarse is not None else None
        key = reg_key(ctx.cfg)
        if coarse_best is not None:
            lr0, wd0 = coarse_best["lr"], coarse_best["weight_decay"]
            source = "the coarse grid's best"
        else:
            lr0, wd0 = ctx.lr, ctx.wd
            source = "the config"
            if key != "optim.weight_decay":
                wd0 = float(ctx.cfg.get(key))
        lrs = sorted({float(f"{lr0 * f:.4g}") for f in o.refine_factors})
        wds = reg_values(key, wd0, o.refine_wd_factors, False, 0)
        if not wds:
            if wd0 > 0:
                wds = sorted({float(f"{wd0 * f:.4g}") for f in o.refine_wd_factors})
            else:
                wds = [0.0] + ([1e-5] if len(o.refine_wd_factors) > 1 else [])
        return train_grid(ctx, lrs, wds, o.refine_epochs, key, False,
                          f"{len(lrs)} rates x {len(wds)} values of {key} around lr {lr0:.3g}, {key} {wd0:g} "
                          f"({source}), {o.refine_epochs} epochs")
