"""Step 0: checks of the data before any training (the measurements, the judge and the figure live in
:mod:`trainlab.diagnose._data_checks`; this is the step that runs them on the doctor's data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from trainlab.diagnose import _data_checks as dc
from trainlab.diagnose._findings import Finding
from trainlab.diagnose._step import Context, Figures, Step

__all__ = ["DataChecks"]


class DataChecks(Step[Mapping[str, Any]]):
    """The data is :func:`~trainlab.diagnose._data_checks.measure`'s JSON-ready table of plain numbers."""

    number = 0

    def measure(self, ctx: Context) -> Mapping[str, Any]:
        return dc.measure(ctx.splits, preprocess=ctx.cfg.data.preprocess, seed=ctx.cfg.seed,
                          noise_steps=ctx.options.noise_steps)

    def judge(self, data: Mapping[str, Any]) -> list[Finding]:
        return dc.judge(data)

    def summary(self, data: Mapping[str, Any], findings: Sequence[Finding]) -> str:
        st = data["stats"]["train"]
        return (f"training inputs {st['min']:.4g}..{st['max']:.4g} (mean {st['mean']:.3g}, std {st['std']:.3g}); "
                f"{data['constant_features']} of {data['features']} features constant"
                + (f"; classes {data['imbalance_ratio']:.3g}:1" if "imbalance_ratio" in data else "")
                + (f"; label-noise estimate {data['label_noise_estimate']:.1%}" if "label_noise_estimate" in data
                   else "")
                + f"; {sum(d['count'] for d in data['duplicates'].values())} val/test duplicates in train"
                + (f"; train/test shift {data['shift']:.3f}" if "shift" in data else ""))

    def numbers(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return dict(data)

    def figures(self, data: Mapping[str, Any]) -> Figures:
        return dc.figures(data)
