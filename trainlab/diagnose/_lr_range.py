"""The learning-rate range test, on the population axis.

Each member of a population trains at its own fixed learning rate from a log grid,
for about 100 iterations, on the same batches (and, when the members share a seed,
from the same weights): one batched run replaces a sweep. A rate *works* when the
member's loss falls steadily; the suggestion is the largest rate that works (the
recipe's step 3: "find the LR that makes the loss go down within ~100 iterations").

Afterwards the trainer is put back exactly as it was -- weights, optimizer state
(including its learning rates), BatchNorm statistics, the members' and the
shuffle's random generators, the global torch generator, step counter and history:
:meth:`Trainer.state_dict` is taken before and loaded after, bit for bit.

Per member, on the training loss ``L_t`` of iteration ``t`` (the batch's loss before
its update), with ``L_0`` the first one (the same for members that start alike) and
mini-batch noise averaged over windows of ``smooth`` iterations (default
``max(10, steps // 10)``; NaN/inf points are left out of every statistic):

* ``diverged``: the loss became NaN/inf (the trainer froze the member) or its running
  mean exceeded ``explode x L_0``; every later point is ignored.
* ``steady``: not diverged; the mean of the last window is at most ``(1 - min_drop)
  x L_0`` (it fell), at most ``(1 + rise)`` times the lowest window mean (it did not
  turn back up), and the running mean never exceeded ``(1 + peak) x L_0`` (no early
  blow-up it recovered from).
* ``flat``: fell by less than ``min_drop`` (and did not blow up).
* ``unstable``: the rest -- fell, then rose again, or spiked.

"Ran out of data" is not divergence: with ``max_passes`` set, the test stops when
the training set is used up; members still finite then are judged on the
iterations they had, and with fewer than ``min_iterations`` no suggestion is made
(``reason`` says why) -- never a number from too little evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
import copy
from dataclasses import dataclass, field
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainlab.errors import ConfigError
from trainlab.train import Trainer, as_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LRRangeResult", "lr_range_test", "log_grid", "judge_curves"]


def log_grid(low: float, high: float, per_decade: int = 4) -> list[float]:
    """``low, ..., high`` spaced evenly in log10 with ``per_decade`` points per factor of 10."""
    if not (low > 0 and high > low):
        raise ConfigError(f"a log grid needs 0 < low < high, got low={low}, high={high}")
    if not isinstance(per_decade, int) or per_decade < 1:
        raise ConfigError(f"per_decade must be an integer >= 1, got {per_decade!r}")
    n = int(round(math.log10(high / low) * per_decade)) + 1
    return [float(f"{low * 10 ** (i / per_decade):.4g}") for i in range(n)]


@dataclass
class LRRangeResult:
    """What the range test measured, per member (one learning rate each)."""

    lrs: list[float]
    losses: np.ndarray  # (iterations, P): each iteration's training loss; NaN where ignored
    smoothed: np.ndarray  # (iterations, P)
    status: list[str]  # per member: "steady", "unstable", "flat", "diverged"
    diverged_at: list[int | None]  # iteration (1-based) where a member diverged
    drop: list[float | None]  # 1 - final smoothed loss / initial loss
    iterations: int
    planned: int
    stop_reason: str  # "completed", "data" (ran out of data), "all diverged"
    suggestion: float | None
    reason: str
    restored: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def clean(a: np.ndarray) -> list:
            return [[None if not math.isfinite(v) else round(float(v), 6) for v in row] for row in a.tolist()]

        return {"lrs": self.lrs, "status": self.status, "diverged_at": self.diverged_at, "drop": self.drop,
                "iterations": self.iterations, "planned": self.planned, "stop_reason": self.stop_reason,
                "suggestion": self.suggestion, "reason": self.reason, "restored": self.restored,
                "notes": self.notes, "losses": clean(self.losses), "smoothed": clean(self.smoothed)}

    def plot(self, ax_curves: Axes | None = None, ax_final: Axes | None = None) -> Figure:
        """Loss curves (one per rate) and final smoothed loss vs rate, the suggestion marked."""
        from trainlab.diagnose._plots import plot_lr_range

        return plot_lr_range(self, ax_curves, ax_final)


def _smooth(a: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` iterations, per column, ignoring NaN (NaN where none)."""
    T = a.shape[0]
    out = np.full_like(a, np.nan, dtype=float)
    half = window // 2
    for t in range(T):
        lo, hi = max(0, t - half), min(T, t + half + 1)
        seg = a[lo:hi]
        ok = np.isfinite(seg)
        cnt = ok.sum(axis=0)
        s = np.where(ok, seg, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[t] = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
    return out


def _block_means(col: np.ndarray, w: int) -> np.ndarray:
    """Means of ``w`` consecutive iterations, windows half-overlapping (NaN points left out)."""
    T = col.shape[0]
    step = max(1, w // 2)
    out = []
    for i in range(0, max(T - w, 0) + 1, step):
        seg = col[i:i + w]
        seg = seg[np.isfinite(seg)]
        if seg.size:
            out.append(float(seg.mean()))
    return np.array(out)


def judge_curves(losses: np.ndarray, *, smooth: int, explode: float = 4.0, min_drop: float = 0.1,
                 rise: float = 0.1, peak: float = 0.25
                 ) -> tuple[np.ndarray, np.ndarray, list[str], list[int | None], list[float | None]]:
    """Judge each column of ``losses`` ``(T, P)``: ``(losses, smoothed, status, diverged_at, drop)``.

    ``L_0`` is a member's first loss (before any update: the same for members that
    start alike). Points from a member's divergence on are set to NaN (ignored).
    Mini-batch noise is averaged out: "final" is the mean of the last ``smooth``
    iterations and "lowest" the lowest mean of ``smooth`` consecutive iterations.
    """
    L = np.array(losses, dtype=float)
    T, P = L.shape
    status: list[str] = []
    diverged_at: list[int | None] = []
    drops: list[float | None] = []
    S = _smooth(L, smooth)
    for m in range(P):
        col = L[:, m]
        l0 = float(col[0]) if np.isfinite(col[0]) else math.nan
        bad = ~np.isfinite(col)
        where = int(np.argmax(bad)) if bad.any() else None
        if math.isfinite(l0):
            blow = np.flatnonzero(np.isfinite(S[:, m]) & (S[:, m] > explode * l0))
            if blow.size and (where is None or blow[0] < where):
                where = int(blow[0])
        if where is not None:
            L[where:, m] = np.nan
            S[where:, m] = np.nan
            status.append("diverged")
            diverged_at.append(where + 1)
            drops.append(None)
            continue
        diverged_at.append(None)
        blocks = _block_means(col, smooth)
        final, lowest = float(blocks[-1]), float(blocks.min())
        drop = 1.0 - final / l0 if l0 > 0 else math.nan
        drops.append(None if not math.isfinite(drop) else drop)
        spiked = float(np.nanmax(S[:, m])) > (1.0 + peak) * l0
        if not spiked and final <= (1.0 - min_drop) * l0 and final <= (1.0 + rise) * lowest:
            status.append("steady")
        elif not spiked and final > (1.0 - min_drop) * l0:
            status.append("flat")
        else:
            status.append("unstable")
    return L, S, status, diverged_at, drops


def _suggest(lrs: Sequence[float], status: Sequence[str], iterations: int, min_iterations: int, stop_reason: str,
             planned: int) -> tuple[float | None, str]:
    if iterations < min_iterations:
        why = (f"ran out of data after {iterations} iteration(s)" if stop_reason == "data"
               else f"only {iterations} iteration(s) ran")
        return None, (f"{why}; at least {min_iterations} are needed to judge a rate (use more training data, a "
                      f"smaller batch, or allow more passes over the data)")
    steady = [lr for lr, s in zip(lrs, status) if s == "steady"]
    if steady:
        best = max(steady)
        msg = f"largest rate whose loss fell steadily within {iterations} iterations"
        if stop_reason == "data":
            msg += f" (the data ran out after {iterations} of {planned} planned iterations; not a divergence)"
        if best == max(lrs):
            msg += "; it is the top of the grid, so the real limit may lie higher (extend the grid)"
        return best, msg
    counts = {s: status.count(s) for s in ("diverged", "unstable", "flat")}
    if counts["diverged"] == len(status):
        return None, (f"every rate diverged, even the smallest ({min(lrs):g}): lower the grid, or look for a bad "
                      f"initialization or unscaled inputs")
    if counts["flat"] >= counts["unstable"]:
        return None, (f"at no rate did the loss fall steadily by 10% within {iterations} iterations ({counts['flat']} "
                      f"rates barely moved, {counts['unstable']} rose or oscillated, {counts['diverged']} diverged): "
                      f"the model does not learn at any rate -- see the overfit step (initialization, saturation, "
                      f"symmetry)")
    return None, (f"no rate made the loss fall steadily ({counts['unstable']} rose or oscillated, "
                  f"{counts['flat']} barely moved, {counts['diverged']} diverged); try a finer grid or more iterations")


def _clone_state(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, meta = trainer.state_dict()
    return {k: v.clone() for k, v in tensors.items()}, copy.deepcopy(meta)


def lr_range_test(trainer: Trainer, train: Any, lrs: Sequence[float], *, steps: int = 100, max_passes: float | None = None,
                  seed: int = 0, smooth: int | None = None, min_iterations: int = 20, explode: float = 4.0,
                  min_drop: float = 0.1, rise: float = 0.1, peak: float = 0.25) -> LRRangeResult:
    """Train each member of ``trainer`` at its own rate ``lrs[i]`` for ``steps`` iterations, judge, restore.

    ``trainer.size`` must equal ``len(lrs)`` (one member per rate: the population
    mode), or be 1 (the rates then run one after another, each from the saved state).
    Batches of ``trainer.batch_size`` come from a shuffle seeded by ``seed`` (the last,
    smaller batch of a pass is skipped so every iteration sees as many examples);
    ``max_passes`` limits the passes over ``train`` (``None``: as many as ``steps`` need).
    The trainer is restored afterwards whatever happens (see the module doc).
    """
    lrs = [float(v) for v in lrs]
    if not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs):
        raise ConfigError(f"lr_range_test needs learning rates > 0, got {lrs}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"lr_range_test steps must be an integer >= 1, got {steps!r}")
    P = trainer.size
    if P != len(lrs) and P != 1:
        raise ConfigError(f"lr_range_test needs one member per rate ({len(lrs)} rates) or a single member, "
                          f"but the trainer has {P} members")
    arrays = as_arrays(train, "training")
    if arrays is None:
        raise ConfigError("lr_range_test needs training data (an object with .x/.y, or an (x, y) pair), got None")
    x, y = arrays
    n, bs = x.shape[0], min(trainer.batch_size, x.shape[0])
    per_pass = n // bs
    smooth = smooth or max(10, steps // 10)
    state, meta = _clone_state(trainer)
    history, diverged = trainer.history, copy.deepcopy(trainer.history.diverged)
    old_spe: int | None = getattr(trainer, "steps_per_epoch", None)  # set by fit(); absent before it
    global_rng = torch.get_rng_state()
    restored = False

    def run(rate: Sequence[float]) -> tuple[list[torch.Tensor], str]:
        trainer.optimizer.set_hparam("lr", list(rate) if len(rate) > 1 else rate[0])
        gen = torch.Generator().manual_seed(seed)
        rows: list[torch.Tensor] = []
        passes, reason = 0, "completed"
        while len(rows) < steps:
            if (max_passes is not None and passes >= max_passes) or per_pass == 0:
                reason = "data"
                break
            perm = torch.randperm(n, generator=gen).to(x.device)
            passes += 1
            for b in range(per_pass):
                idx = perm[b * bs:(b + 1) * bs]
                loss = trainer.train_step(x.index_select(0, idx), y.index_select(0, idx))
                rows.append(torch.where(trainer.alive, loss.detach(), torch.full_like(loss, math.nan))
                            .double().cpu())
                if len(rows) >= steps:
                    break
                if not bool(trainer.alive.any()):
                    return rows, "all diverged"
        return rows, reason

    try:
        trainer.steps_per_epoch = max(per_pass, 1)
        if P == len(lrs):
            rows, stop = run(lrs)
            losses = torch.stack(rows).numpy() if rows else np.zeros((0, P))
        else:
            cols, stops = [], []
            for lr in lrs:
                rows, s = run([lr])
                cols.append(torch.stack(rows).numpy()[:, 0] if rows else np.zeros(0))
                stops.append(s)
                trainer.load_state_dict(*_clone_state_from(state, meta))
            T = max((len(c) for c in cols), default=0)
            losses = np.full((T, len(lrs)), np.nan)
            for j, c in enumerate(cols):
                losses[: len(c), j] = c
            stop = "data" if "data" in stops else ("all diverged" if all(s == "all diverged" for s in stops)
                                                   else "completed")
    finally:
        trainer.load_state_dict(*_clone_state_from(state, meta))
        trainer.history = history
        history.diverged = diverged
        if old_spe is not None:
            trainer.steps_per_epoch = old_spe
        else:
            del trainer.steps_per_epoch
        torch.set_rng_state(global_rng)
        restored = True
    iterations = int(losses.shape[0])
    if iterations:
        L, S, status, dat, drops = judge_curves(losses, smooth=min(smooth, iterations), explode=explode,
                                                min_drop=min_drop, rise=rise, peak=peak)
    else:
        L, S, status, dat, drops = losses, losses, ["flat"] * len(lrs), [None] * len(lrs), [None] * len(lrs)
    suggestion, reason = _suggest(lrs, status, iterations, min_iterations, stop, steps)
    notes = []
    if P == len(lrs) and P > 1 and iterations:
        first = losses[0]
        if np.isfinite(first).all() and float(first.max() - first.min()) > 1e-4 * max(1.0, abs(float(first.mean()))):
            notes.append("members started from different losses: give them one seed (population.seeds all equal) "
                         "so every rate starts from the same weights")
    return LRRangeResult(lrs=lrs, losses=L, smoothed=S, status=status, diverged_at=dat, drop=drops,
                         iterations=iterations, planned=steps, stop_reason=stop, suggestion=suggestion,
                         reason=reason, restored=restored, notes=notes)


def _clone_state_from(state: dict[str, torch.Tensor], meta: dict[str, Any]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    # load_state_dict keeps some tensors (e.g. the epoch's permutation): give it copies
    return {k: v.clone() for k, v in state.items()}, copy.deepcopy(meta)
