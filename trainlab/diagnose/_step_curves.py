"""Step 6: the curves of the config as given, trained with a :class:`~trainlab.diagnose.Probe` -- divergence,
instability, plateaus, under- and overfitting (with the epoch where validation stops improving), and
dead/saturated units at the end (:func:`~trainlab.diagnose._findings.read_curves`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
import time
from typing import Any

import numpy as np

from trainlab.diagnose._findings import Finding, probe_findings, read_curves
from trainlab.diagnose._plots import plot_activation_grid, plot_curves, plot_probe_series
from trainlab.diagnose._probe import Probe, probe_model
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._step import Context, Figures, HistoryArrays, Step, StepLoss, build, member_value

__all__ = ["CurvesData", "CurvesStep"]


@dataclass(frozen=True)
class CurvesData:
    """What step 6 measured: the run's curves and every step's loss, the probes, and the refined grid's best
    (step 5's, for comparison; ``None`` when step 5 did not run)."""

    history: HistoryArrays
    step_losses: np.ndarray  # (steps, 1)
    reference: float  # the loss of an uninformed model
    probe: Mapping[str, Any]  # the Probe's data (every probe_every steps)
    end: Mapping[str, Any]  # probe_model at the end, on more training images
    probe_every: int
    train_seconds: float
    probe_seconds: float
    refined_best: Mapping[str, Any] | None = None


class CurvesStep(Step[CurvesData]):
    number = 6

    def measure(self, ctx: Context) -> CurvesData:
        o = ctx.options
        epochs = o.curve_epochs or ctx.cfg.train.epochs
        sl = StepLoss()
        probe = Probe(every=o.probe_every, examples=o.probe_examples, bins=40)
        run = build(ctx.cfg, ctx.splits, callbacks=[sl, probe], epochs=epochs if o.curve_epochs else None)
        t0 = time.perf_counter()
        hist = run.trainer.fit(ctx.splits.train, ctx.splits.val)
        seconds = time.perf_counter() - t0
        npass = min(o.pass_examples, ctx.splits.train.x.shape[0])
        end = probe_model(run.model, ctx.splits.train.x[:npass], bins=0, gradients=True)
        grid = ctx.data.get(5)
        return CurvesData(HistoryArrays.from_history(hist), sl.values,
                          float(run.loss.reference(ctx.splits.num_classes, ctx.splits.train.y)), probe.data, end,
                          o.probe_every, seconds, probe.seconds, grid.best if grid is not None else None)

    def judge(self, data: CurvesData) -> list[Finding]:
        findings, _ = read_curves(data.history, data.step_losses, reference=data.reference)
        pf = probe_findings(data.end["summary"], when="at the end of training", severity=Severity.WARN,
                            layers=data.end["layers"], table=data.probe["layers"])
        if any(f.code in ("diverged", "no_progress") for f in findings):  # the probes show the blow-up's damage
            pf = [replace(f, severity=Severity.WARN) if f.severity == Severity.FAIL else f for f in pf]
        return findings + pf

    def numbers(self, data: CurvesData) -> dict[str, Any]:
        h = data.history
        _, nums = read_curves(h, data.step_losses, reference=data.reference)
        nums.update(epochs=float(h["epoch"][-1]) if len(h) else 0.0, probe_every=data.probe_every,
                    train_seconds=data.train_seconds, probe_seconds=data.probe_seconds,
                    probe_overhead=data.probe_seconds / max(data.train_seconds - data.probe_seconds, 1e-9),
                    probe_at_end={k: member_value(v) for k, v in data.end["summary"].items()})
        if "val_acc" in h.metrics:
            nums["final_val_acc"] = float(h["val_acc"][-1, 0])
            bv = h["val_acc"][:, 0]
            nums["best_val_acc"] = float(np.nanmax(bv)) if np.isfinite(bv).any() else None
        return nums

    def summary(self, data: CurvesData, findings: Sequence[Finding]) -> str:
        nums = self.numbers(data)
        main = [f for f in findings if f.severity in (Severity.WARN, Severity.FAIL)]
        out = (f"trained the config as given for {nums['epochs']:g} epochs: "
               + ("; ".join(f.code.replace("_", " ") for f in main) if main else "healthy curves"))
        if "final_val_acc" in nums:
            out += f" (final val acc {nums['final_val_acc']:.3f})"
        return out

    def advice(self, data: CurvesData, findings: Sequence[Finding]) -> list[str]:
        out = [f.advice for f in findings if f.advice]
        rb = data.refined_best
        if rb is not None:
            line = (f"the refined grid's best: lr {rb['lr']:.3g}, {rb.get('reg_key', 'weight decay')} "
                    f"{rb['weight_decay']:g}")
            if "best_val_acc" in rb:
                line += f", best val acc {rb['best_val_acc']:.3f}"
            if "val_acc" in data.history.metrics and "best_val_acc" in rb:
                line += f" (this config: {float(np.nanmax(data.history['val_acc'][:, 0])):.3f})"
            out.append(line)
        return out

    def figures(self, data: CurvesData) -> Figures:
        findings = self.judge(data)
        E = next((f.numbers.get("early_stop_epoch") for f in findings if f.code == "overfitting"), None)
        return {"curves": (plot_curves(data.history, early_stop_epoch=E, title="the config as given"),
                           "Loss and accuracy per epoch (solid: training set, dashed: validation)."
                           + (f" The dotted line marks epoch {E:g}, where the validation loss was lowest."
                              if E else "")),
                "probes": (plot_probe_series(data.probe, title=f"probes every {data.probe_every} steps"),
                           "RMS gradient and update/weight ratio of every weight layer; dead and saturated fractions "
                           f"(on {data.probe['examples']} probe images)."),
                "activations": (plot_activation_grid(data.probe),
                                "Activation histograms per layer at the start, the middle and the end of training.")}
