"""Reading a finished run's learning curves (the recipe's step 6), as pure functions of plain numbers.

:func:`load_curves` reads a run directory (``history.json``, or ``metrics.jsonl`` when the run
was cut short) into :class:`Curves` -- lists of numbers per evaluation for one member;
:func:`judge` turns them into :class:`~trainlab.diagnose._findings.Finding` s, each with the
evidence (epochs, values) in its message and ``numbers``. Nothing here trains.

The verdicts (codes), after the lecture that follows the tuning recipe:

``loss_rising``     the training loss rose from the start: the rate is too high (or the sign of an update is wrong)
``noisy_loss``      the loss jumps up and down between evaluations: batch too small or rate too high
``plateau``         the loss stopped improving for a long stretch at a level well above zero: decay the rate
                    (if it was constant) or raise it (if the loss hardly moved at all)
``early_decay``     the rate was cut while the loss was still falling fast, and the progress stalled right after:
                    the decay came too early
``overfitting``     the gap between training and validation grew: validation loss up from its minimum, or a large
                    accuracy gap
``underfitting``    training and validation accuracy both low (and close): the model does not fit the training data

Every threshold lives in :class:`CT` with what it was measured on (the planted runs of
``examples/faults/curves/`` and ``examples/healthy.toml``; the numbers are in ``docs/doctor.md``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.diagnose._findings import T, Finding
from trainlab.diagnose._severity import Severity, worst

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from trainlab.errors import ConfigError

__all__ = ["CT", "Curves", "curves_from_history", "load_curves", "judge", "judge_run", "verdict", "to_dict",
           "format_findings", "noise_level", "HistoryReading", "READING"]


class CT:
    """Thresholds of the curve reading (each with what it was measured on)."""

    # Rising: the training loss ends above its first evaluation by RISE (lr 1 and 3 planted runs: 78 x and
    # 150 x), and its lowest point came within the first LOWEST_BY of the evaluations (the second one at most
    # in the planted runs): it rose from the start instead of falling first.
    RISE = 0.10
    LOWEST_BY = 0.1
    # Noise: the loss's total rise between evaluations over its total fall ("climb-back"), with at least
    # NOISE_UPS of the evaluations going up. Measured (seeds 0 and 1): the noisy runs (batch 1, lr 0.05 and
    # 0.1, 6 runs) 0.65-1.00 climb-back and 0.34-0.48 ups; healthy.toml 0 and 0 (it only falls); the plateau
    # runs 0.03-0.06 (ups 0.21-0.36: a flat curve wiggles, but little); the overfitting runs 0.03-0.25.
    # 0.5 sits 1.3 x below the noisy runs and 2 x above the others.
    NOISE = 0.5
    NOISE_UPS = 0.25
    # Plateau at the end: the last PLATEAU_SHARE of the evaluations (>= 3) bring less than PLATEAU_END_GAIN on
    # the best loss before them, at a level above PLATEAU_LEVEL x the first loss (a converged loss near 0 is
    # not a plateau). In the middle: PLATEAU_SHARE of the evaluations in a row without a PLATEAU_GAIN gain on
    # the best so far, then a >= 10% fall (the doctor's step-6 rule).
    PLATEAU_SHARE = 0.3
    PLATEAU_GAIN = 0.01
    PLATEAU_END_GAIN = 0.05  # planted run 3.1%, healthy 63% (last 3 of 10 epochs), underfitting run 1.9%
    PLATEAU_LEVEL = 0.05
    # Early decay: the rate fell by >= 2x at an evaluation while the training loss had fallen by >= FALLING
    # (relative) per evaluation over the (up to 3) evaluations before it, and afterwards fell by less than
    # STALLED x that pace. Planted run: 48% per epoch before the cut, 4.6% after (0.1 x).
    DROP = 0.5
    FALLING = 0.05
    STALLED = 0.25
    # Under/overfitting: the doctor's own thresholds (trainlab.diagnose.THRESHOLDS).
    GAP = T.GAP_WARN
    VAL_RISE = T.VAL_RISE
    UNDERFIT_ACC = T.UNDERFIT_ACC


@dataclass(frozen=True)
class Curves:
    """One member's curves: one entry per evaluation (``None`` where a value is missing)."""

    epoch: list[float]
    train_loss: list[float | None] | None = None
    val_loss: list[float | None] | None = None
    train_acc: list[float | None] | None = None
    val_acc: list[float | None] | None = None
    batch_loss: list[float | None] | None = None
    lr: list[float | None] | None = None
    member: int = 0
    batch_size: int | None = None
    diverged: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def array(self, name: str) -> np.ndarray | None:
        v = getattr(self, name)
        if v is None:
            return None
        a = np.array([np.nan if x is None else float(x) for x in v], dtype=float)
        return a if np.isfinite(a).any() else None


_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "batch_loss", "lr")


def curves_from_history(history: Mapping[str, Any], member: int = 0) -> Curves:
    """From a :meth:`History.to_dict` (``history.json``) -- plain JSON, no trainlab objects."""
    size = int(history.get("size", 1))
    if not 0 <= member < size:
        raise ConfigError(f"--member {member} does not exist: this run has {size} member(s) (0..{size - 1})")
    recs = list(history.get("records", []))
    info = dict(history.get("info", {}))
    series: dict[str, Any] = {m: [r[m][member] if isinstance(r.get(m), list) else None for r in recs]
              for m in _METRICS if any(isinstance(r.get(m), list) for r in recs)}
    return Curves(epoch=[float(r["epoch"]) for r in recs], member=member, info=info, batch_size=info.get("batch_size"),
                  diverged=history.get("diverged", {}).get(str(member)), **series)


def _from_jsonl(path: Path, member: int) -> Curves:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON lines ({e})") from None
    rows = [r for r in rows if r.get("member") == member]
    if not rows:
        raise ConfigError(f"{path}: no evaluations of member {member}")
    series: dict[str, Any] = {m: [r.get(m) for r in rows] for m in _METRICS if any(m in r for r in rows)}
    return Curves(epoch=[float(r["epoch"]) for r in rows], member=member, **series)


def load_curves(run_dir: str | Path, member: int = 0) -> Curves:
    """A run directory's curves for ``member``: ``history.json`` if the run finished, else ``metrics.jsonl``."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"--history {d}: not a directory (give a run directory, e.g. runs/mlp)")
    hist = d / "history.json"
    if hist.exists():
        try:
            data = json.loads(hist.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{hist}: not valid JSON ({e})") from None
        c = curves_from_history(data, member)
    elif (d / "metrics.jsonl").exists():
        c = _from_jsonl(d / "metrics.jsonl", member)
    else:
        raise ConfigError(f"--history {d}: no history.json or metrics.jsonl (is this a trainlab run directory?)")
    if c.batch_size is None and (d / "config.toml").exists():
        import tomllib

        try:
            c = replace(c, batch_size=tomllib.loads((d / "config.toml").read_text()).get("train", {}).get("batch_size"))
        except tomllib.TOMLDecodeError:
            pass
    if len(c.epoch) < 2:
        raise ConfigError(f"--history {d}: {len(c.epoch)} evaluation(s); reading curves needs at least 2 "
                          "(evaluate more often: train.eval_every)")
    return c


# ---- the judging (pure) ---------------------------------------------------------------------------
def _train_curve(c: Curves) -> tuple[np.ndarray | None, str]:
    a = c.array("train_loss")
    if a is not None:
        return a, "training loss"
    return c.array("batch_loss"), "mean batch loss"


def _rising(L: np.ndarray, ep: np.ndarray, what: str) -> Finding | None:
    first, last = L[0], L[-1]
    lowest = int(np.argmin(L))
    if last > first * (1 + CT.RISE) and lowest <= max(1, CT.LOWEST_BY * L.size):
        return Finding("loss_rising", Severity.FAIL,
                       f"the {what} rose from the start: {first:.3g} at epoch {ep[0]:g}, lowest {L[lowest]:.3g} at "
                       f"epoch {ep[lowest]:g}, {last:.3g} ({last / first:.3g} x its start) at epoch {ep[-1]:g}",
                       "lower the learning rate (the LR range test suggests one); if it rises at any rate, check "
                       "the sign of the update and the loss",
                       {"first": float(first), "last": float(last), "lowest": float(L[lowest]),
                        "lowest_epoch": float(ep[lowest])})
    return None


def noise_level(L: np.ndarray) -> tuple[float, float]:
    """(climb-back ratio, share of evaluations where L went up).

    The climb-back ratio is the loss's total rise between evaluations over its total fall: 0 for a
    curve that only falls, about 1 for one that jumps up as much as it comes down, > 1 for a loss
    that rises overall. Unlike the size of single jumps it does not depend on the loss level."""
    if L.size < 3:
        return 0.0, 0.0
    d = np.diff(L)
    down = float(-d[d < 0].sum())
    up = float(d[d > 0].sum())
    return (up / down if down > 0 else (math.inf if up > 0 else 0.0)), float(np.mean(d > 0))


def _noisy(L: np.ndarray, what: str, batch_size: int | None) -> Finding | None:
    noise, ups = noise_level(L)
    if L.size >= 5 and noise >= CT.NOISE and ups >= CT.NOISE_UPS:
        bs = f" (batch size {batch_size})" if batch_size else ""
        return Finding("noisy_loss", Severity.WARN,
                       f"the {what} is noisy{bs}: between evaluations it climbed back {noise:.0%} of what it "
                       f"fell (it went up at {ups:.0%} of them)",
                       "a larger batch (less gradient noise) or a lower learning rate",
                       {"climb_back": noise, "ups": ups, "batch_size": batch_size})
    return None


def _longest_stall(L: np.ndarray) -> tuple[int, int, int]:
    """(length, start, end) of the longest run of evaluations without a PLATEAU_GAIN gain on the best so far."""
    best = np.minimum.accumulate(L)
    improved = np.r_[True, L[1:] < (1 - CT.PLATEAU_GAIN) * best[:-1]]
    longest, start, span = 0, 0, (0, 0)
    for i in range(L.size):
        if improved[i]:
            start = i
        if i - start > longest:
            longest, span = i - start, (start, i)
    return longest, span[0], span[1]


def _plateau(L: np.ndarray, ep: np.ndarray, lr: np.ndarray | None, what: str) -> Finding | None:
    n = L.size
    if n < 5:
        return None
    # (a) at the end: the last PLATEAU_SHARE of the evaluations (>= 3) gained < PLATEAU_END_GAIN on the best
    # before them, at a level well above zero
    w = max(3, math.ceil(CT.PLATEAU_SHARE * n))
    if n - w >= 1:
        before, window = float(np.min(L[:n - w])), L[n - w:]
        gain = (before - float(np.min(window))) / before if before > 0 else 0.0
        level = float(np.mean(window))
        if gain < CT.PLATEAU_END_GAIN and level >= CT.PLATEAU_LEVEL * L[0]:
            a = n - w
            lw = lr[a - 1:] if lr is not None else None
            constant = lw is None or np.nanmax(lw) <= np.nanmin(lw) * (1 + 1e-6)
            moved = (L[0] - level) / L[0]
            if constant and moved > 0.1:
                advice = ("decay the learning rate: the loss stalled at a constant rate (a step or cosine "
                          "schedule, or schedule.name = \"plateau\" to cut it when the validation loss stalls)")
            elif constant:
                advice = "raise the learning rate: the loss barely moved from its start"
            else:
                advice = "the rate was already decaying: a larger model or a higher starting rate may help"
            return Finding("plateau", Severity.WARN,
                           f"a plateau: the {what} stayed near {level:.3g} over the last {w} evaluations (epoch "
                           f"{ep[a]:g} to {ep[-1]:g}), {gain:.1%} below its best before them; it started at "
                           f"{L[0]:.3g}" + (" -- at a constant learning rate" if constant and lr is not None else ""),
                           advice, {"from_epoch": float(ep[a]), "to_epoch": float(ep[-1]), "level": level,
                                    "gain": gain, "first": float(L[0]), "constant_lr": bool(constant)})
    # (b) in the middle: a long stall (no 1% gain on the best so far), then a real fall (>= 10%)
    length, a, b = _longest_stall(L)
    later = L[b:]
    if length >= max(3, CT.PLATEAU_SHARE * n) and b < n - 1 and float(later.min()) < 0.9 * float(L[b]):
        return Finding("plateau", Severity.WARN,
                       f"a plateau: the {what} hardly moved from epoch {ep[a]:g} to {ep[b]:g} ({length} "
                       f"evaluations without a {CT.PLATEAU_GAIN:.0%} gain), then fell again",
                       "a larger learning rate, momentum/Adam, or better-scaled initialization shortens plateaus "
                       "(saturated units cause many)", {"from_epoch": float(ep[a]), "to_epoch": float(ep[b])})
    return None


def _early_decay(L: np.ndarray, ep: np.ndarray, lr: np.ndarray | None, what: str) -> Finding | None:
    if lr is None or L.size < 4:
        return None
    for k in range(1, lr.size):
        # record k holds the rate of the steps that led to it: the cut took effect after record k - 1
        if not (np.isfinite(lr[k]) and np.isfinite(lr[k - 1]) and lr[k] <= CT.DROP * lr[k - 1]):
            continue
        if k < 2 or k >= L.size:
            continue
        w = min(3, k - 1)  # up to 3 evaluations on each side of the cut (made after record k - 1)
        i0, j1 = k - 1 - w, min(L.size - 1, k - 1 + w)
        pace_before = (L[i0] - L[k - 1]) / (L[i0] * w)
        pace_after = (L[k - 1] - L[j1]) / (L[k - 1] * (j1 - (k - 1)))
        if pace_before >= CT.FALLING and pace_after < CT.STALLED * pace_before:
            return Finding("early_decay", Severity.WARN,
                           f"the learning rate was cut too early: {lr[k - 1]:.3g} -> {lr[k]:.3g} after epoch "
                           f"{ep[k - 1]:g}, while the {what} was still falling {pace_before:.0%} per evaluation; "
                           f"after the cut it fell only {pace_after:.1%} per evaluation",
                           "decay later: keep the rate until the loss plateaus (a later step, schedule.name = "
                           "\"plateau\", or a cosine over the whole run)",
                           {"epoch": float(ep[k - 1]), "lr_before": float(lr[k - 1]), "lr_after": float(lr[k]),
                            "pace_before": float(pace_before), "pace_after": float(pace_after)})
    return None


def _overfitting(c: Curves, ep: np.ndarray) -> Finding | None:
    vl, tl = c.array("val_loss"), c.array("train_loss")
    ta, va = c.array("train_acc"), c.array("val_acc")
    if vl is None:
        return None
    ok = np.isfinite(vl)
    vi = int(np.nanargmin(vl))
    vmin, vend = float(vl[vi]), float(vl[ok][-1])
    rise = vend / vmin - 1.0 if vmin > 0 else 0.0
    gap = float(ta[-1] - va[-1]) if ta is not None and va is not None else None
    gap_grew = None
    if tl is not None:
        g = vl - tl
        gap_grew = float(g[-1] - g[vi])
    d_val = vend - vmin
    # a validation loss rising while the training loss rises about as much is instability, not overfitting:
    # the gap must account for at least half of the validation loss's rise
    rose_apart = rise >= CT.VAL_RISE and vi < vl.size - 1 and (gap_grew is None or gap_grew >= 0.5 * d_val)
    if (gap is not None and gap >= CT.GAP) or rose_apart:
        parts = []
        if gap is not None and ta is not None and va is not None:
            parts.append(f"train acc {ta[-1]:.3f} vs val acc {va[-1]:.3f} (gap {gap:.3f}, from "
                         f"{ta[0] - va[0]:.3f} at the first evaluation)")
        parts.append(f"val loss lowest ({vmin:.3g}) at epoch {ep[vi]:g}, {rise:+.0%} by the end")
        if gap_grew is not None:
            parts.append(f"val - train loss grew by {gap_grew:.3g} since")
        return Finding("overfitting", Severity.WARN, "overfitting, a growing gap: " + "; ".join(parts),
                       f"early stop at epoch {ep[vi]:g} (early_stopping.enabled = true restores the best weights); "
                       "regularize (weight decay, dropout), get more data or augment it, or use a smaller model",
                       {"best_val_epoch": float(ep[vi]), "val_loss_rise": rise, "acc_gap": gap, "gap_grew": gap_grew})
    return None


def _underfitting(c: Curves, ep: np.ndarray) -> Finding | None:
    ta, va = c.array("train_acc"), c.array("val_acc")
    if ta is None:
        return None
    t_end = float(ta[np.isfinite(ta)][-1])
    v_end = float(va[np.isfinite(va)][-1]) if va is not None else None
    if t_end < CT.UNDERFIT_ACC and (v_end is None or t_end - v_end < CT.GAP):
        both = f" and val acc {v_end:.3f}" if v_end is not None else ""
        return Finding("underfitting", Severity.WARN,
                       f"underfitting: train acc {t_end:.3f}{both} after {ep[-1]:g} epochs -- both low, the model "
                       "does not fit even its training data",
                       "train longer or with a larger learning rate, use a bigger model, or check the "
                       "initialization (trainlab doctor CONFIG, steps 1-2)",
                       {"train_acc": t_end, "val_acc": v_end})
    return None


def judge(c: Curves) -> list[Finding]:
    """Every verdict the curves support, most severe first (pure: plain numbers in, findings out)."""
    out: list[Finding] = []
    ep = np.array(c.epoch, dtype=float)
    if c.diverged:
        out.append(Finding("diverged", Severity.FAIL, f"the loss became {c.diverged.get('loss')} at step "
                           f"{c.diverged.get('step')} (epoch {c.diverged.get('epoch')}): the member diverged and "
                           "was frozen", "lower the learning rate", dict(c.diverged)))
    L, what = _train_curve(c)
    lr = c.array("lr")
    if L is not None:
        keep = np.isfinite(L)
        Lk, ek = L[keep], ep[keep]
        lk = lr[keep] if lr is not None and lr.size == L.size else None
        if Lk.size >= 2:
            rising = _rising(Lk, ek, what)
            if rising is not None:
                out.append(rising)
            else:
                noisy = _noisy(Lk, what, c.batch_size)
                early = _early_decay(Lk, ek, lk, what)
                # after a too-early cut the loss stalls: that stall is the early decay's, not a plateau of its own;
                # and a noisy loss has no 1% gains on its lucky best for long stretches without being a plateau
                plateau = None if early or noisy else _plateau(Lk, ek, lk, what)
                for f in (noisy, early, plateau):
                    if f is not None:
                        out.append(f)
    if not any(f.code in ("loss_rising", "diverged") for f in out):  # else both follow from the blow-up
        for f in (_overfitting(c, ep), _underfitting(c, ep)):
            if f is not None:
                out.append(f)
    return sorted(out, key=lambda f: -f.severity.rank)


def judge_run(run_dir: str | Path, member: int = 0) -> tuple[Curves, list[Finding]]:
    """:func:`load_curves` then :func:`judge` (the :class:`HistoryReading` unit's measure and judge)."""
    c = load_curves(run_dir, member)
    return c, judge(c)


def verdict(findings: Sequence[Finding]) -> Severity:
    """``FAIL``, ``WARN`` or ``OK``: the worst finding."""
    return worst(f.severity for f in findings)


def to_dict(run_dir: str | Path, c: Curves, findings: Sequence[Finding]) -> dict[str, Any]:
    """The JSON of ``trainlab doctor --history RUN_DIR --json``."""
    return {"history": str(run_dir), "member": c.member, "evaluations": len(c.epoch), "verdict": verdict(findings),
            "findings": [f.to_dict() for f in findings]}


def format_findings(run_dir: str | Path, c: Curves, findings: Sequence[Finding]) -> str:
    """The console text: one block per finding, its evidence and its advice."""
    head = (f"curves of {run_dir} (member {c.member}, {len(c.epoch)} evaluations to epoch {c.epoch[-1]:g}): "
            f"{verdict(findings).upper()}")
    lines = [head]
    if not findings:
        lines.append("  nothing wrong with the curves: no plateau, early decay, over/underfitting, noise or rise")
    for f in findings:
        lines.append(f"  [{f.severity}] {f.message} ({f.code})")
        if f.advice:
            lines.append(f"      -> {f.advice}")
    return "\n".join(lines)


class HistoryReading:
    """``trainlab doctor --history RUN_DIR`` as a unit like the recipe's steps: :meth:`measure` reads a run
    directory's curves (no training), :meth:`judge` is the pure :func:`judge`, :meth:`figures` draws them."""

    def measure(self, run_dir: str | Path, member: int = 0) -> Curves:
        return load_curves(run_dir, member)

    def judge(self, curves: Curves) -> list[Finding]:
        return judge(curves)

    def figures(self, curves: Curves) -> dict[str, tuple[Figure, str]]:
        """The loss (left) and accuracy (right) per evaluation, training solid, validation dashed."""
        import matplotlib.pyplot as plt

        fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 3.8))
        ep = np.asarray(curves.epoch, dtype=float)
        for name, ax, style in (("train_loss", ax_l, "-"), ("val_loss", ax_l, "--"), ("batch_loss", ax_l, ":"),
                                ("train_acc", ax_a, "-"), ("val_acc", ax_a, "--")):
            a = curves.array(name)
            if a is not None:
                ax.plot(ep, a, style, marker="o", ms=2, label=name.replace("_", " "))
        for ax, what in ((ax_l, "loss"), (ax_a, "accuracy")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(what)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
        fig.tight_layout()
        return {"curves": (fig, f"The curves of member {curves.member}, one point per evaluation.")}


#: the --history unit
READING = HistoryReading()
