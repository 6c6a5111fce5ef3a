"""What the doctor concludes from numbers: thresholds (measured, with margins) and the findings they give.

Every threshold below was set after measuring the planted faults in
``examples/faults/`` and the healthy config ``examples/healthy.toml`` on the embedded
MNIST digits (seed 0; the numbers are in ``docs/doctor.md``). Each comment gives
the healthy value, the faulty value and the margin left on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import math
from typing import Any, Protocol

import numpy as np

from trainlab.diagnose._severity import Severity

__all__ = ["Finding", "T", "probe_findings", "read_curves", "exploded_at", "CurveSource"]


class CurveSource(Protocol):
    """What the curve reading needs of a run's history: a :class:`~trainlab.train.History`, or the plain
    arrays of one (:class:`~trainlab.diagnose.HistoryArrays`)."""

    @property
    def metrics(self) -> list[str]: ...

    @property
    def diverged(self) -> Mapping[int, Mapping[str, Any]]: ...

    def __getitem__(self, metric: str) -> np.ndarray: ...


class T:
    """The thresholds (one place, so docs and tests can cite them)."""

    # Initial loss / reference. Healthy He-init ReLU nets: 1.036-1.052 x ln 10; sigmoid
    # with std = 1: 6.04 x; zero or std = 0.01 init: 1.000 x. Above 1.3 the logits start
    # too large; above 2 the net starts confidently wrong on most examples.
    INIT_LOSS_HIGH = 1.3
    INIT_LOSS_FAIL = 2.0
    # Below 0.8 x ln C an untrained net is "better than chance": labels leaking into the
    # inputs, an imbalanced data set, or a loss averaged another way.
    INIT_LOSS_LOW = 0.8
    # Unit spread (how different the units of a hidden layer are, relative to the
    # largest weight): random inits 0.8-1.0; zero/constant init exactly 0 (float
    # rounding would give ~1e-7).
    SYMMETRY = 1e-6
    # Saturated sigmoid/tanh outputs (mean over layers): 5 x 100 Xavier nets 0.000
    # (sigmoid) and 0.00002 (tanh) at init, 0.0014 (tanh) after 10 epochs; std = 1
    # sigmoid nets 0.52 at init, 0.53-0.58 later.
    SATURATED_WARN = 0.2
    # Std of the last hidden activation / the first: He ReLU 1.0-1.8; std = 0.01 ReLU
    # (5 layers) 2e-5 at init. Below 0.1 the signal fades on its way up; above 10 it grows.
    VANISHING_ACT = 0.1
    EXPLODING_ACT = 10.0
    # RMS gradient of the first weight layer / the last: He ReLU 0.15-0.30; 5-layer
    # sigmoid with std = 1: 0.018 at init. Below 0.03 the first layers hardly learn. (A net
    # whose activations vanish has small gradients at *both* ends: std = 0.01 gives 0.11 at
    # init -- the activation ratio below catches it.)
    VANISHING_GRAD = 0.03
    EXPLODING_GRAD = 100.0
    # Dead ReLU units (never active on any example of a pass over up to 2,000 training
    # images): healthy 1-2% (max layer 3%) after 10 epochs (seeds 0-2), 3.5% after the
    # overfit run; SGD at lr 0.8: 22-25% (max layer 49-62%) after 10 epochs, 89% after the
    # overfit run; the course says "up to 40%". Whole net 0.15 or one layer 0.3 warn.
    DEAD_WARN = 0.15
    DEAD_LAYER_WARN = 0.3
    DEAD_FAIL = 0.5
    # Update / weight ratio per step (median over the layers and the first half of the
    # overfit run's sampled steps): healthy 1.2e-4 (overfit run, mostly after it has fit),
    # 1e-3 - 1e-2 early in training; SGD at lr 1e-6: 1.0e-7. Below 1e-5 the weights barely move.
    TINY_UPDATE = 1e-5
    # A member "exploded" when its training loss (running mean of 5 steps) exceeds 4x its
    # first value: lr 5 (momentum) reaches 5.3e4 x; SGD at 0.8 peaks at 2.9 x on the full
    # data (batches of 100) and recovers -- but explodes (2e6 x) on the 100-image sample.
    # Cross-entropy through log-sum-exp rarely gives NaN: a blown-up ReLU net's loss stays
    # finite while its units die, so the loss curve, not NaN, tells divergence.
    EXPLODE = 4.0
    # Overfitting: final train acc - val acc. Healthy (3,500 images, 10 epochs, seeds 0-2):
    # 0.055-0.074; 100 training images: 0.21-0.27. 0.12 leaves a factor 1.6 on each side.
    GAP_WARN = 0.12
    # ... or the validation loss ends 25% above its minimum (healthy: +5%).
    VAL_RISE = 0.25
    # Underfitting: final training accuracy below 0.9 (healthy: 0.998).
    UNDERFIT_ACC = 0.9
    # No progress: the final training loss is still above 0.9 x the first one.
    NO_PROGRESS = 0.9
    # Unstable: after its best, the training loss climbed back by at least this fraction of
    # the progress made (best - first). SGD at 0.8: 0.33; 100 images (batch 20): 0.07;
    # healthy: 0.
    UNSTABLE = 0.15
    # Plateau: at least this share of the evaluations without a 1% improvement on the best
    # training loss so far, followed by a real improvement (>= 10%).
    PLATEAU_SHARE = 0.3


@dataclass
class Finding:
    """One conclusion: ``code`` (stable, for scripts and tests), severity, message and advice."""

    code: str
    severity: Severity  # INFO, WARN or FAIL (a plain "warn" is read as Severity.WARN)
    message: str
    advice: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    #: a machine-readable fix (``trainlab.diagnose._fixes``): ``{"overrides": ["key=value", ...],
    #: "val_acc": measured with it or None, "baseline_val_acc": without it, "measured_by": ...}``
    fix: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.severity = Severity(self.severity)

    def to_dict(self) -> dict[str, Any]:
        d = {"code": self.code, "severity": self.severity, "message": self.message, "advice": self.advice,
             "numbers": self.numbers}
        if self.fix is not None:
            d["fix"] = self.fix
        return d


def _m(summary: Mapping[str, Any], key: str, member: int = 0) -> float | None:
    v = summary.get(key)
    if v is None:
        return None
    x = v[member]
    return None if x is None or not math.isfinite(x) else float(x)


def probe_findings(summary: Mapping[str, Any], *, member: int = 0, when: str = "",
                   severity: Severity = Severity.WARN,
                   layers: Mapping[str, Any] | None = None, table: Sequence[Mapping[str, Any]] | None = None
                   ) -> list[Finding]:
    """Findings from a probe summary (:func:`~trainlab.diagnose.summarize_record`) of one member."""
    out: list[Finding] = []
    at = f" {when}" if when else ""
    spread = _m(summary, "min_unit_spread", member)
    if spread is not None and spread < T.SYMMETRY:
        which = ""
        if layers is not None and table is not None:
            hidden = [r for r in table if r["role"] == "weight"][:-1]
            same = []
            for r in hidden:
                sp = layers.get(str(r["index"]), {}).get("weight", {}).get("unit_spread")
                if sp is not None and sp[member] is not None and sp[member] < T.SYMMETRY:
                    same.append(r["name"])
            which = f" ({', '.join(same)})" if same else ""
        out.append(Finding("symmetry", severity,
                           f"all units of a hidden layer{which} have identical weights{at} (unit spread {spread:.1e}): "
                           "they compute the same function and get the same gradient, so they never become different",
                           "break the symmetry with a random initialization: He (he_normal) for ReLU-like units, "
                           "Xavier (xavier_normal) for sigmoid/tanh -- never zeros or a constant",
                           {"min_unit_spread": spread}))
    sat = _m(summary, "saturated", member)
    if sat is not None and sat >= T.SATURATED_WARN:
        worst = _m(summary, "saturated_max_layer", member)
        out.append(Finding("saturation", severity,
                           f"{sat:.0%} of the sigmoid/tanh outputs are saturated{at} (worst layer {worst:.0%}): there "
                           "the slope is < 5% of its maximum and almost no gradient passes",
                           "use Xavier initialization (xavier_normal, std = sqrt(2/(fan_in+fan_out))) or a smaller "
                           "init_scale; or ReLU units with He initialization; or batch normalization",
                           {"saturated": sat, "saturated_max_layer": worst}))
    ratio = _m(summary, "act_std_ratio", member)
    first, last = _m(summary, "act_std_first", member), _m(summary, "act_std_last", member)
    dead = _m(summary, "dead", member)
    dead_layer = _m(summary, "dead_max_layer", member)
    mostly_dead = dead is not None and dead >= T.DEAD_FAIL  # then a fading signal is the dead units' doing
    if mostly_dead:
        pass
    elif (ratio is not None and ratio < T.VANISHING_ACT) or (first is not None and first > 0 and last == 0.0):
        out.append(Finding("vanishing", severity,
                           f"activations vanish layer by layer{at}: the last hidden layer's std is "
                           f"{(last or 0):.2g} vs {first:.2g} in the first "
                           f"(ratio {ratio if ratio is not None else 0:.1e}); "
                           "the gradients going back shrink the same way",
                           "initialize with the fan-in rule (He for ReLU: std = sqrt(2/fan_in); Xavier for "
                           "sigmoid/tanh) instead of a fixed small std; batch normalization also restores the scale",
                           {"act_std_ratio": ratio, "act_std_first": first, "act_std_last": last}))
    elif ratio is not None and ratio > T.EXPLODING_ACT:
        out.append(Finding("exploding_activations", severity,
                           f"activations grow layer by layer{at}: last/first hidden std ratio {ratio:.3g}",
                           "use a smaller init scale (He/Xavier fan-in rules) or normalization layers",
                           {"act_std_ratio": ratio}))
    g = _m(summary, "grad_ratio", member)
    if g is not None and g < T.VANISHING_GRAD and not any(f.code == "vanishing" for f in out):
        out.append(Finding("vanishing_gradients", severity,
                           f"the first layer's RMS gradient is {g:.1e} x the last layer's{at}: the gradient "
                           "vanishes on its way back and the first layers hardly learn",
                           "ReLU-like units with He initialization, or batch normalization; for sigmoid nets "
                           "Xavier initialization and fewer layers", {"grad_ratio": g}))
    elif g is not None and g > T.EXPLODING_GRAD:
        out.append(Finding("exploding_gradients", severity,
                           f"the first layer's RMS gradient is {g:.3g} x the last layer's{at}: exploding gradients",
                           "smaller init scale, normalization layers, or a lower learning rate", {"grad_ratio": g}))
    # Units of a symmetric net, or downstream of a vanishing signal, are "dead" for those reasons, not the rate's.
    if dead is not None and (dead >= T.DEAD_WARN or (dead_layer or 0) >= T.DEAD_LAYER_WARN) \
            and not any(f.code in ("symmetry", "vanishing") for f in out):
        sev = Severity.FAIL if dead >= T.DEAD_FAIL else severity
        out.append(Finding("dead_relu", sev,
                           f"{dead:.0%} of the ReLU units are dead{at} (worst layer {dead_layer:.0%}): they output 0 "
                           "on every example, pass no gradient, and never recover",
                           "lower the learning rate (a too high rate pushes units where they never fire; see the "
                           "LR range test), or use Leaky ReLU (model.activation = \"leaky_relu\"), whose negative "
                           "slope always passes some gradient",
                           {"dead": dead, "dead_max_layer": dead_layer}))
    return out


def exploded_at(step_losses: np.ndarray, *, window: int = 5, factor: float = T.EXPLODE) -> int | None:
    """1-based step where a loss series became non-finite or its running mean exceeded ``factor`` x its start."""
    L = np.asarray(step_losses, dtype=float)
    if L.size == 0:
        return None
    bad = ~np.isfinite(L)
    first_bad = int(np.argmax(bad)) if bad.any() else None
    l0 = L[0]
    if not math.isfinite(l0) or l0 <= 0:
        return 1 if first_bad is not None else None
    stop = first_bad if first_bad is not None else len(L)
    clean = L[:stop]
    if clean.size:
        kernel = np.ones(min(window, clean.size)) / min(window, clean.size)
        run = np.convolve(clean, kernel, mode="valid")
        over = np.flatnonzero(run > factor * l0)
        if over.size:
            return int(over[0]) + 1
    return first_bad + 1 if first_bad is not None else None


def _epoch_of(history: CurveSource, index: int) -> float:
    return float(history["epoch"][index])


def read_curves(history: CurveSource, step_losses: np.ndarray | None, *, member: int = 0, reference: float | None = None
                ) -> tuple[list[Finding], dict[str, Any]]:
    """Step 6: read one member's curves -- divergence, instability, no progress, plateaus, under/overfitting."""
    out: list[Finding] = []
    nums: dict[str, Any] = {}
    have = history.metrics
    epochs = history["epoch"]
    tl = history["train_loss"][:, member] if "train_loss" in have else history["batch_loss"][:, member]
    first = float(step_losses[0, member]) if step_losses is not None and step_losses.size else float(tl[0])
    nums["first_loss"] = first
    if member in history.diverged:
        d = history.diverged[member]
        out.append(Finding("diverged", Severity.FAIL, f"the loss became {d['loss']} at step {d['step']} (epoch "
                           f"{d['epoch']:.2f}): training diverged and the member was frozen",
                           "lower the learning rate (below the LR range test's suggestion)", {"step": d["step"]}))
        return out, nums
    if step_losses is not None and step_losses.size:
        s = exploded_at(step_losses[:, member])
        if s is not None:
            peak = float(np.nanmax(step_losses[:, member]))
            nums.update(exploded_step=s, peak_loss=peak)
            out.append(Finding("diverged", Severity.FAIL,
                               f"the training loss exploded at step {s}: it reached {peak:.3g} ({peak / first:.3g} x "
                               f"its start {first:.3g}) -- a diverging run, even if it later settles (often with its "
                               "units dead)", "lower the learning rate (below the LR range test's suggestion)",
                               {"step": s, "peak_loss": peak}))
            return out, nums
    finite = tl[np.isfinite(tl)]
    if finite.size == 0:
        return out, nums
    final = float(finite[-1])
    nums["final_train_loss"] = final
    if final >= T.NO_PROGRESS * first:
        out.append(Finding("no_progress", Severity.FAIL,
                           f"no progress: the training loss went from {first:.3g} to {final:.3g} in "
                           f"{epochs[-1]:g} epochs", "check the learning rate (the LR range test) and the "
                           "initialization (the overfit step's probes)", {"first": first, "final": final}))
        return out, nums
    # instability: after its best, the loss climbs back by a good part of the progress made
    best_so_far = np.minimum.accumulate(finite)
    progress = first - best_so_far
    with np.errstate(invalid="ignore", divide="ignore"):
        lost = np.where(progress > 0, (finite - best_so_far) / np.maximum(progress, 1e-12), 0.0)
    worst = float(np.max(lost)) if lost.size else 0.0
    nums["relapse"] = worst
    if worst >= T.UNSTABLE:
        i = int(np.argmax(lost))
        out.append(Finding("unstable", Severity.WARN,
                           f"the training loss is unstable: at epoch {epochs[i]:g} it climbed back to {finite[i]:.3g} "
                           f"from a best of {best_so_far[i]:.3g} ({worst:.0%} of the progress lost)",
                           "lower the learning rate (or use momentum with a smaller rate / a schedule)",
                           {"relapse": worst, "epoch": float(epochs[i])}))
    # plateau: a long stretch without improvement, followed by real improvement
    n = finite.size
    if n >= 6:
        improved = np.r_[True, finite[1:] < 0.99 * best_so_far[:-1]]
        longest, run_start, best_run = 0, 0, (0, 0)
        for i in range(n):
            if improved[i]:
                run_start = i
            length = i - run_start
            if length > longest:
                longest, best_run = length, (run_start, i)
        a, b = best_run
        later = finite[b:]
        if longest >= T.PLATEAU_SHARE * n and later.size and float(later.min()) < 0.9 * float(finite[b]) and b < n - 1:
            out.append(Finding("plateau", Severity.WARN,
                               f"a plateau: the training loss hardly moved from epoch {epochs[a]:g} to {epochs[b]:g} "
                               "before falling again", "a larger learning rate, momentum/Adam, or better-scaled "
                               "initialization shortens plateaus (saturated units cause many)",
                               {"from": float(epochs[a]), "to": float(epochs[b])}))
    # overfitting
    if "val_loss" in have:
        vl = history["val_loss"][:, member]
        ok = np.isfinite(vl)
        if ok.any():
            vi = int(np.nanargmin(vl))
            vmin, vend = float(vl[vi]), float(vl[ok][-1])
            nums.update(best_val_loss=vmin, best_val_epoch=_epoch_of(history, vi), final_val_loss=vend)
            gap = None
            if "train_acc" in have and "val_acc" in have:
                ta, va = history["train_acc"][:, member], history["val_acc"][:, member]
                gap = float(ta[-1] - va[-1])
                gaps = ta - va
                nums.update(acc_gap=gap, acc_gap_first=float(gaps[0]), best_val_acc=float(np.nanmax(va)),
                            best_val_acc_epoch=_epoch_of(history, int(np.nanargmax(va))))
            rise = vend / vmin - 1.0 if vmin > 0 else 0.0
            nums["val_loss_rise"] = rise
            if (gap is not None and gap >= T.GAP_WARN) or (rise >= T.VAL_RISE and vi < len(vl) - 1):
                E = _epoch_of(history, vi)
                what = []
                if gap is not None:
                    what.append(f"train acc {history['train_acc'][-1, member]:.3f} vs val acc "
                                f"{history['val_acc'][-1, member]:.3f} (gap {gap:.3f}, from "
                                f"{nums['acc_gap_first']:.3f} "
                                "at the first evaluation)")
                what.append(f"val loss lowest ({vmin:.3g}) at epoch {E:g}, {rise:+.0%} by the end")
                out.append(Finding("overfitting", Severity.WARN, "overfitting: " + "; ".join(what),
                                   f"early stop at epoch {E:g} (early_stopping.enabled = true restores the best "
                                   "weights); regularize (the weight decay of the refined grid, dropout), get more "
                                   "data or augment it, or use a smaller model",
                                   {"early_stop_epoch": E, "gap": gap, "val_loss_rise": rise}))
            elif (vi >= len(vl) - max(2, len(vl) // 5) and len(vl) >= 3
                  and vl[ok][-1] < 0.99 * vl[ok][max(0, len(vl[ok]) - 3)]):
                out.append(Finding("still_improving", Severity.INFO,
                                   f"the validation loss was still falling at the end (epoch {epochs[-1]:g})",
                                   "train longer"))
    if "train_acc" in have:
        ta_end = float(history["train_acc"][-1, member])
        nums["final_train_acc"] = ta_end
        if ta_end < T.UNDERFIT_ACC:
            out.append(Finding("underfitting", Severity.WARN,
                               f"underfitting: the training accuracy is only {ta_end:.3f} after {epochs[-1]:g} epochs",
                               "train longer or with a larger learning rate, use a bigger model, or fix the "
                               "initialization (see the probes)", {"train_acc": ta_end}))
    elif reference is not None and final > 0.3 * reference:
        out.append(Finding("underfitting", Severity.WARN,
                           f"underfitting: the training loss {final:.3g} is still {final / reference:.0%} of the "
                           "reference loss", "train longer, a bigger model, or a larger learning rate",
                           {"ratio": final / reference}))
    return out, nums
