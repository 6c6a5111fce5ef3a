"""Step 7: name the cause by ablation, when there is a gap to explain (the ablation itself -- the list of
differences, the training side by side, the judge and the figure -- is :mod:`trainlab.diagnose._ablation`).

Besides its own findings, the step measures the fixes the data checks and the batch-norm check
proposed without a number: :meth:`Attribution.revise` gives those earlier findings the validation
accuracy the ablation measured with each fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
import math
from typing import Any

import numpy as np

from trainlab.config import RunConfig, parse_override
from trainlab.diagnose import _ablation as ab
from trainlab.diagnose import _bn_batch
from trainlab.diagnose._findings import Finding
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._step import Context, Figures, Step, StepResult, build

__all__ = ["AttributionData", "Attribution", "gap_to_explain", "GRID_GAP"]

# The refined grid's best must beat the config as given (best validation accuracy) by this
# much to call for attribution: healthy.toml's 10 epochs score 0.944 against the grid's 0.936
# (quick) -- the grid trains fewer epochs, so it rarely wins on a healthy config.
GRID_GAP = 0.02

_HEADS = ("cause", "interacting_pair", "no_single_cause", "no_gap")


def gap_to_explain(results: Mapping[int, StepResult], refined_best: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Is there a gap to explain? A failed step, a fix to measure, or the refined grid's best beating the config
    as given. Also why (or why not), in words."""
    failed = [k for k, r in results.items() if r.verdict == Severity.FAIL and k != 7]
    if failed:
        return True, f"step(s) {', '.join(map(str, failed))} failed"
    unmeasured = [f.code for k in (0, 1) if k in results for f in results[k].findings
                  if f.fix and f.severity in (Severity.WARN, Severity.FAIL)]
    if unmeasured:
        return True, f"{', '.join(unmeasured)}: a fix to measure"
    s6, rb = results.get(6), refined_best
    slow = ("underfitting", "no_progress", "unstable")
    if s6 is not None and set(s6.codes) & set(slow):
        return True, "the config as given " + " and ".join(c.replace("_", " ") for c in s6.codes if c in slow)
    if s6 is not None and rb is not None and "best_val_acc" in rb:
        mine = s6.numbers.get("best_val_acc")
        if mine is not None and rb["best_val_acc"] - mine > GRID_GAP:
            return True, f"the refined grid's best ({rb['best_val_acc']:.3f}) beats the config as given ({mine:.3f})"
    return False, "no step failed, and the config as given is as good as the refined grid's best"


@dataclass(frozen=True)
class AttributionData:
    """What step 7 measured: why it ran (or not), and the ablation's table (``None`` when it did not run)."""

    why: str
    table: Mapping[str, Any] | None  # _ablation.measure's rows, pairs, as_given, reduced, reference, gap
    singles: int = 0  # how many single undos
    epochs: int = 0
    batch_size: int = 0

    @property
    def ran(self) -> bool:
        return self.table is not None


def _ablation_scores(cfg: RunConfig, splits: Any, epochs: int) -> np.ndarray:
    """Train a population config for ``epochs``; each member's best validation accuracy (NaN: diverged)."""
    run = build(cfg, splits, epochs=epochs, steps=None, eval_train=False)
    hist = run.trainer.fit(splits.train, splits.val)
    if "val_acc" in hist.metrics:
        v = np.where(np.isfinite(hist["val_acc"]), hist["val_acc"], np.nan)
        sc = np.nanmax(np.where(np.isnan(v), -np.inf, v), axis=0).astype(float)
    else:
        sc = -np.nanmin(hist["train_loss"], axis=0).astype(float)
    for m in hist.diverged:
        sc[m] = math.nan
    sc[~np.isfinite(sc)] = math.nan
    return sc


class Attribution(Step[AttributionData]):
    number = 7

    def measure(self, ctx: Context) -> AttributionData:
        grid = ctx.data.get(5)
        go, why = gap_to_explain(ctx.results, grid.best if grid is not None else None)
        if not go:
            return AttributionData(why, None)
        o = ctx.options
        rd = ctx.data.get(3)
        lr = rd.result.suggestion if rd is not None else None
        extra = []
        if 0 in ctx.results:
            for f in ctx.results[0].findings:
                if f.fix and f.code in ("class_imbalance",):
                    ov = dict((".".join(k), v) for k, v in (parse_override(t) for t in f.fix["overrides"]))
                    extra.append(ab.Difference(f"remedy for {f.code}: {', '.join(f.fix['overrides'])}", ov, "remedy"))
        diffs = ab.differences(ctx.cfg, lr=lr, extra=extra)
        table = ab.measure(ctx.cfg, diffs, load=ctx.load,
                           train=lambda cfg, splits: _ablation_scores(cfg, splits, o.ablation_epochs))
        return AttributionData(why, table, len(diffs), o.ablation_epochs, ctx.cfg.train.batch_size)

    def judge(self, data: AttributionData) -> list[Finding]:
        return ab.judge(data.table) if data.table is not None else []

    def verdict(self, data: AttributionData, findings: Sequence[Finding]) -> Severity:
        return super().verdict(data, findings) if data.ran else Severity.SKIP

    def summary(self, data: AttributionData, findings: Sequence[Finding]) -> str:
        if data.table is None:
            return f"not run: {data.why}"
        t = data.table
        head = next((f for f in findings if f.code in _HEADS), None)
        return (f"{data.why}; {len(t['rows'])} configs ({data.singles} single undos) trained {data.epochs} epoch(s) "
                f"side by side, same seed" + (f", {len(t['pairs'])} pairs" if t["pairs"] else "")
                + (f": {head.code.replace('_', ' ')}" if head else ""))

    def numbers(self, data: AttributionData) -> dict[str, Any]:
        return ab.with_recovered(data.table) if data.table is not None else {"reason": data.why}

    def figures(self, data: AttributionData) -> Figures:
        return ab.figures(data.table) if data.table is not None else {}

    def revise(self, data: AttributionData, results: Mapping[int, StepResult]) -> dict[int, list[Finding]]:
        """The earlier findings whose fix the ablation measured, with that measurement: the accuracy with the
        fix, the accuracy as given, ``measured_by = "ablation"``; the batch-norm warning also quotes the
        alternatives the ablation trained."""
        t = data.table
        if t is None:
            return {}
        as_given = t["as_given"] if math.isfinite(t["as_given"]) else 0.0
        scored = {tuple(r["overrides"]): r["score"] for r in t["rows"]}
        by_name = {r["name"]: r["score"] for r in t["rows"]}
        bs = data.batch_size
        alts = {"as given": by_name.get("as given"), "layer norm": by_name.get("batch norm -> layer norm"),
                "no norm": by_name.get("batch norm -> none"),
                f"batch {bs * 4}": by_name.get(f"batch size {bs} -> {bs * 4}")}
        bn_noise = results[1].numbers.get("bn_batch_noise") if 1 in results else None
        bn_new = _bn_batch.judge(bn_noise, ablation=alts)
        out: dict[int, list[Finding]] = {}
        bn_done = False
        for k, r in results.items():
            new: list[Finding] = []
            for f in r.findings:
                g = f
                if f.fix and f.fix.get("val_acc") is None and tuple(f.fix["overrides"]) in scored:
                    v = scored[tuple(f.fix["overrides"])]
                    g = replace(g, fix={**f.fix, "val_acc": v if math.isfinite(v) else None,
                                        "measured_by": "ablation", "baseline_val_acc": as_given})
                if f.code == "bn_small_batch" and not bn_done and bn_new:
                    bn_done = True  # the first one (there is one: step 1's)
                    g = replace(g, advice=bn_new[0].advice)
                    ln = alts["layer norm"]
                    if ln is not None and math.isfinite(ln) and g.fix is not None:
                        given = alts["as given"]
                        g = replace(g, fix={**g.fix, "val_acc": ln, "measured_by": "ablation",
                                            "baseline_val_acc": given if given is not None and math.isfinite(given)
                                            else 0.0})
                new.append(g)
            if any(a is not b for a, b in zip(new, r.findings)):
                out[k] = new
        return out
