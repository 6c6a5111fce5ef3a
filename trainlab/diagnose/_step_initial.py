"""Step 1: the initial loss with regularization off, against the loss's reference, and a probe of the
untrained net (symmetry, saturation, vanishing signals, batch norm on small batches).

The reference is the loss of an uninformed model: ln C for softmax cross-entropy over C classes,
the targets' variance for MSE (:meth:`trainlab.nn.Loss.reference`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import math
from typing import Any

import torch

from trainlab.build import Run
from trainlab.diagnose import _bn_batch
from trainlab.diagnose._findings import Finding, T, probe_findings
from trainlab.diagnose._plots import plot_activation_grid
from trainlab.diagnose._probe import layer_table, probe_model
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._step import Context, Figures, Step, build, member_value

__all__ = ["InitialLossData", "InitialLoss", "init_probe"]


@dataclass(frozen=True)
class InitialLossData:
    """What step 1 measured (member 0 of the untrained net, regularization off)."""

    loss: float
    reference: float
    reference_kind: str  # "ln C = ln 10" or "the variance of the targets"
    cross_entropy: bool
    examples: int
    regularization_turned_off: list[str]
    probe: Mapping[str, Any]  # probe_model's {"layers", "summary"} with histograms
    table: list[dict[str, Any]]  # layer_table of the model
    bn_batch_noise: Mapping[str, Any] | None = None  # _bn_batch.measure; None without batch norm

    @property
    def ratio(self) -> float:
        return self.loss / self.reference if self.reference > 0 else math.inf


def init_probe(run: Run, x: torch.Tensor, y: torch.Tensor, bins: int = 40) -> dict[str, Any]:
    """Probe an untrained net: one training forward/backward for the gradients, then the eval-mode pass.

    Both run on a copy of ``run.model``: the training forward updates batch norm's running
    statistics and draws dropout masks, which the probe must not leave on the run's model.
    """
    model = copy.deepcopy(run.model)
    with torch.no_grad():
        nb = min(x.shape[0], run.trainer.batch_size * 5)
        if any(getattr(l, "needs_batch_statistics", False) for l in model.modules()) and nb < 2:
            nb = min(x.shape[0], 2)
        out = model.forward(x[:nb].unsqueeze(0), training=True)
        run.loss.forward(out, y[:nb])
        model.backward(run.loss.backward())
    return probe_model(model, x, bins=bins, gradients=True)


class InitialLoss(Step[InitialLossData]):
    number = 1

    def measure(self, ctx: Context) -> InitialLossData:
        cfg, changed = ctx.cfg.without_regularization()
        run = build(cfg, ctx.splits)
        tr = ctx.splits.train
        n = min(ctx.options.init_examples, tr.x.shape[0])
        x, y = tr.x[:n], tr.y[:n]
        measured = run.trainer.evaluate(x, y)
        ce = cfg.loss.name == "cross_entropy"
        probe = init_probe(run, x, y)
        return InitialLossData(
            loss=float(measured["loss"][0]), reference=float(run.loss.reference(ctx.splits.num_classes, tr.y)),
            reference_kind=f"ln C = ln {ctx.splits.num_classes}" if ce else "the variance of the targets",
            cross_entropy=ce, examples=n, regularization_turned_off=changed, probe=probe,
            table=layer_table(run.model),
            bn_batch_noise=_bn_batch.measure(run.model, x, cfg.train.batch_size))

    def judge(self, data: InitialLossData) -> list[Finding]:
        L, ref, kind, ratio = data.loss, data.reference, data.reference_kind, data.ratio
        findings: list[Finding] = []
        if not math.isfinite(L):
            findings.append(Finding("initial_loss_nonfinite", Severity.FAIL, f"the initial loss is {L}: the untrained "
                                    "net already overflows", "check the inputs' scale (preprocessing) and the init "
                                    "scale"))
        elif ratio > T.INIT_LOSS_HIGH and data.cross_entropy:
            sev = Severity.FAIL if ratio > T.INIT_LOSS_FAIL else Severity.WARN
            findings.append(Finding("initial_loss_high", sev,
                                    f"the initial loss {L:.4g} is {ratio:.2f} x the reference {ref:.4g} ({kind}): the "
                                    "untrained outputs are far from uninformed -- large logits make the net "
                                    "confidently wrong before it has learned anything",
                                    "shrink the initialization (He/Xavier fan-in rules, or a smaller init_scale, "
                                    "especially of the last layer); check the input scaling",
                                    {"ratio": ratio}))
        elif ratio > T.INIT_LOSS_HIGH:
            # MSE: unit-scale random outputs already cost their own variance on top of the targets'
            findings.append(Finding("initial_loss_high", Severity.WARN,
                                    f"the initial loss {L:.4g} is {ratio:.2f} x the reference {ref:.4g} ({kind}): the "
                                    "untrained outputs vary more than the targets do, so training first has to "
                                    "shrink them", "start the last layer smaller (a smaller init_scale) so the "
                                    "untrained net predicts close to the targets' mean", {"ratio": ratio}))
        elif ratio < T.INIT_LOSS_LOW:
            findings.append(Finding("initial_loss_low", Severity.WARN,
                                    f"the initial loss {L:.4g} is only {ratio:.2f} x the reference {ref:.4g} ({kind}): "
                                    "an untrained net should not beat chance",
                                    "look for labels leaking into the inputs, a very imbalanced data set, or a loss "
                                    "that is not averaged the usual way", {"ratio": ratio}))
        findings += probe_findings(data.probe["summary"], when="at initialization", severity=Severity.WARN,
                                   layers=data.probe["layers"], table=data.table)
        if data.bn_batch_noise is not None:
            findings += _bn_batch.judge(data.bn_batch_noise)
        return findings

    def summary(self, data: InitialLossData, findings: Sequence[Finding]) -> str:
        changed = data.regularization_turned_off
        return (f"initial loss {data.loss:.4f} vs reference {data.reference:.4f} ({data.reference_kind}), ratio "
                f"{data.ratio:.3f}; regularization off" + (f" ({', '.join(changed)})" if changed else ""))

    def advice(self, data: InitialLossData, findings: Sequence[Finding]) -> list[str]:
        out = [f.advice for f in findings if f.advice]
        if self.verdict(data, findings) == Severity.OK:
            out.append("the untrained net is uninformed, as it should be: the initialization's scale is right")
        return out

    def numbers(self, data: InitialLossData) -> dict[str, Any]:
        nums: dict[str, Any] = {"loss": data.loss, "reference": data.reference, "reference_kind": data.reference_kind,
                                "ratio": data.ratio, "examples": data.examples,
                                "regularization_turned_off": list(data.regularization_turned_off),
                                "probe": {k: member_value(v) for k, v in data.probe["summary"].items()}}
        if data.bn_batch_noise is not None:
            nums["bn_batch_noise"] = dict(data.bn_batch_noise)
        return nums

    def figures(self, data: InitialLossData) -> Figures:
        probe = {"layers": data.table, "records": [{"step": 0, "at": "begin", **data.probe}]}
        return {"activations": (plot_activation_grid(probe, title="activations of the untrained net, per layer"),
                                "Activation histograms of every layer of the untrained net (regularization off), on "
                                f"{data.examples} training images.")}
