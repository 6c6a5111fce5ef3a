"""Step 3: the learning-rate range test -- one population over a log grid of rates, ~100 iterations from
the same weights; the largest rate whose loss falls steadily (:func:`~trainlab.diagnose.lr_range_test`).

Note 004, step 3: the architecture of step 2 (regularization off) on all the training data, with a
small weight decay. The test restores the trainer bit for bit; the step checks that it did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainlab.diagnose._findings import Finding
from trainlab.diagnose._lr_range import LRRangeResult, log_grid, lr_range_test
from trainlab.diagnose._plots import plot_lr_range
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._step import Context, Figures, Step, build

__all__ = ["RangeData", "LRRange", "bitwise_equal", "states_equal"]


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes: a NaN marker (e.g. the Trainer's not-yet-recorded initial loss) equals
    itself, which ``torch.equal`` would deny."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point() or a.is_complex():
        return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
    return torch.equal(a, b)


def states_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Two state dicts with the same keys and bitwise equal tensors."""
    return set(a) == set(b) and all(bitwise_equal(a[k], b[k]) for k in a)


@dataclass(frozen=True)
class RangeData:
    """What step 3 measured."""

    result: LRRangeResult
    restored_bitwise: bool
    config_lr: float
    weight_decay: float
    regularization_turned_off: list[str]
    coarse_factors: tuple[float, ...]  # the next step's spread around the suggestion (for the advice)

    @property
    def lrs(self) -> list[float]:
        return list(self.result.lrs)


class LRRange(Step[RangeData]):
    number = 3

    def measure(self, ctx: Context) -> RangeData:
        o = ctx.options
        lrs = log_grid(o.range_low, o.range_high, o.range_per_decade)
        base, changed = ctx.cfg.without_regularization()
        cfg = base.replace({"optim.weight_decay": o.range_weight_decay}).as_population({"optim.lr": lrs})
        run = build(cfg, ctx.splits)
        state, meta_before = run.trainer.state_dict()
        before = {k: v.clone() for k, v in state.items()}
        rng_before = torch.get_rng_state()
        res = lr_range_test(run.trainer, ctx.splits.train, lrs, steps=o.range_steps, seed=ctx.cfg.seed)
        after, meta_after = run.trainer.state_dict()
        bitwise = (states_equal(before, after) and meta_before == meta_after
                   and torch.equal(rng_before, torch.get_rng_state()))
        return RangeData(res, bitwise, ctx.lr, o.range_weight_decay, changed, tuple(o.coarse_factors))

    def judge(self, data: RangeData) -> list[Finding]:
        res, lr = data.result, data.config_lr
        findings: list[Finding] = []
        if not data.restored_bitwise:
            findings.append(Finding("restore_failed", Severity.FAIL, "the trainer's state after the test differs from "
                                    "before", "report this as a bug"))
        if res.suggestion is None:
            findings.append(Finding("no_suggestion", Severity.WARN, f"no suggestion: {res.reason}",
                                    "the grids below center on the config's rate instead"))
        else:
            s = res.suggestion
            if lr > 3 * s:
                findings.append(Finding("lr_above_range", Severity.WARN,
                                        f"the config's rate {lr:g} is {lr / s:.3g} x above the largest steady rate "
                                        f"{s:g}: expect divergence, oscillation or dead units",
                                        f"use a rate at or below {s:g} (steps 4-5 pick the best one)"))
            elif lr < s / 100:
                findings.append(Finding("lr_below_range", Severity.WARN,
                                        f"the config's rate {lr:g} is {s / lr:.3g} x below the largest steady rate "
                                        f"{s:g}: training will crawl", f"try rates between {s / 30:.3g} and {s:g}"))
        for note in res.notes:
            findings.append(Finding("note", Severity.INFO, note))
        return findings

    def summary(self, data: RangeData, findings: Sequence[Finding]) -> str:
        res = data.result
        if res.suggestion is None:
            return f"no learning rate suggested: {res.reason}"
        return (f"largest rate whose loss falls steadily within {res.iterations} iterations: {res.suggestion:g} "
                f"({res.status.count('steady')} of {len(res.lrs)} rates steady, "
                f"{res.status.count('diverged')} diverged; regularization off but a small weight decay "
                f"{data.weight_decay:g}, as note 004 prescribes)")

    def advice(self, data: RangeData, findings: Sequence[Finding]) -> list[str]:
        out = [f.advice for f in findings if f.advice]
        s = data.result.suggestion
        if s is not None:
            out.append(f"the coarse grid (step 4) tries rates from {s * min(data.coarse_factors):.3g} to "
                       f"{s * max(data.coarse_factors):.3g}")
        return out

    def numbers(self, data: RangeData) -> dict[str, Any]:
        res = data.result
        return {"lrs": data.lrs, "iterations": res.iterations, "stop_reason": res.stop_reason,
                "suggestion": res.suggestion, "reason": res.reason, "status": res.status,
                "diverged_at": res.diverged_at, "drop": res.drop, "restored_bitwise": data.restored_bitwise,
                "config_lr": data.config_lr, "members": len(res.lrs), "weight_decay": data.weight_decay,
                "regularization_turned_off": list(data.regularization_turned_off)}

    def figures(self, data: RangeData) -> Figures:
        res = data.result
        return {"lr_range": (plot_lr_range(res),
                             f"LR range test: {len(res.lrs)} members, one per rate, from the same weights on the same "
                             f"batches, {res.iterations} iterations. Solid: the loss falls steadily; the dashed "
                             "vertical line is the suggestion.")}
