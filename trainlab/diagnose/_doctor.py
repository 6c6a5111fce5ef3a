"""The training doctor: the course's six-step recipe run on a config, with a verdict per step.

Around the recipe: step 0 checks the data (:mod:`trainlab.diagnose._data_checks`) and step 7
names the cause by ablation (:mod:`trainlab.diagnose._ablation`); every finding with a
remedy carries a fix (:mod:`trainlab.diagnose._fixes`, ``doctor --apply``).

1. **initial loss** with regularization off, against the loss's reference (ln C for
   softmax cross-entropy over C classes; the targets' variance for MSE), plus a probe
   of the untrained net (symmetry, saturation, vanishing signals);
2. **overfit a small sample** (augmentation and regularization off, evaluated on the
   very examples it trains on) -- as a population: the config's rate and rates 100x
   smaller to 10,000x larger, so a failure can be told apart: diverged (too high),
   no progress where larger rates progress (too low), or no rate helps and the probes
   show the cause (bad initialization);
3. **LR range test**: one population over a log grid of rates, ~100 iterations from
   the same weights; the largest rate whose loss falls steadily
   (:func:`~trainlab.diagnose.lr_range_test`);
4. **coarse grid** of learning rate x weight decay around it, a few epochs (one population);
5. **refined grid** around the best, trained longer (one population);
6. **curves** of the config as given, with a :class:`~trainlab.diagnose.Probe`:
   divergence, instability, plateaus, under- and overfitting (with the epoch where
   validation stops improving), dead/saturated units at the end.

:func:`doctor` returns a :class:`DoctorReport`; with ``out`` it writes ``doctor.json``
(per step: name, verdict ok/warn/fail, numbers, findings, advice) and ``doctor.html``
(self-contained, figures embedded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import io
import json
from pathlib import Path
import time
from typing import Any

import torch

from trainlab.build import resolve_device
from trainlab.config import RunConfig, apply_overrides, parse_override
from trainlab.diagnose._fixes import format_fixes, order_fixes
from trainlab.diagnose._html import render_html
from trainlab.diagnose._options import DoctorOptions
from trainlab.diagnose._severity import Severity, worst
from trainlab.diagnose._step import STEP_NAMES, Context, Step, StepResult, jsonable
from trainlab.diagnose._step_attribution import Attribution
from trainlab.diagnose._step_curves import CurvesStep
from trainlab.diagnose._step_data import DataChecks
from trainlab.diagnose._step_grid import CoarseGrid, RefinedGrid
from trainlab.diagnose._step_initial import InitialLoss
from trainlab.diagnose._step_overfit import Overfit
from trainlab.diagnose._step_range import LRRange
from trainlab.errors import ConfigError
from trainlab.io import atomic_write_bytes, atomic_write_text

__all__ = ["DoctorOptions", "StepResult", "DoctorReport", "doctor", "STEP_NAMES", "STEPS", "format_step",
           "parse_steps"]

#: the steps of the recipe, by number, in the order they run
STEPS: dict[int, Step[Any]] = {s.number: s for s in (DataChecks(), InitialLoss(), Overfit(), LRRange(), CoarseGrid(),
                                                     RefinedGrid(), CurvesStep(), Attribution())}


@dataclass
class DoctorReport:
    """Every step's result; ``verdict`` is the worst of them."""

    config: RunConfig  # the diagnosed member alone
    source: str
    steps: list[StepResult]
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> Severity:
        """``fail``, ``warn`` or ``ok`` (a skipped step counts as ok)."""
        return worst(s.verdict for s in self.steps)

    @property
    def codes(self) -> list[str]:
        """Every finding's code, over all steps (``"diverged"``, ``"symmetry"``, ...)."""
        return [c for s in self.steps for c in s.codes]

    @property
    def fixes(self) -> list[dict[str, Any]]:
        """Every finding's fix, in the order to apply them (:func:`~trainlab.diagnose._fixes.order_fixes`)."""
        return order_fixes([(s.number, f) for s in self.steps for f in s.findings])

    def step(self, number: int) -> StepResult:
        for s in self.steps:
            if s.number == number:
                return s
        raise KeyError(f"step {number} was not run (ran: {[s.number for s in self.steps]})")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "verdict": self.verdict, "seconds": round(self.seconds, 3),
                "steps": [s.to_dict() for s in self.steps], "codes": self.codes, "fixes": jsonable(self.fixes),
                "environment": self.environment, "config": jsonable(self.config.to_dict())}

    def text(self) -> str:
        """The console report: one block per step, then the overall verdict."""
        blocks = [format_step(s) for s in self.steps]
        fx = format_fixes(self.fixes)
        return "\n\n".join(blocks + ([fx] if fx else []) + [f"verdict: {self.verdict.upper()}  ({self.seconds:.1f} s)"])

    def save(self, out: str | Path) -> Path:
        """Write ``doctor.json``, ``doctor.html`` and the figures (``doctor_<step>_<name>.png``) to ``out``."""
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create output directory {out}: {e.strerror}") from None
        pngs: dict[str, bytes] = {}
        for s in self.steps:
            for name, (fig, _caption) in s.figures.items():
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=90)
                pngs[f"doctor_{s.number}_{name}.png"] = buf.getvalue()
        for fname, data in pngs.items():
            atomic_write_bytes(out / fname, data)
        atomic_write_text(out / "doctor.json", json.dumps(self.to_dict(), indent=1))
        atomic_write_text(out / "doctor.html", render_html(self, pngs))
        return out

    def close_figures(self) -> None:
        import matplotlib.pyplot as plt

        for s in self.steps:
            for fig, _ in s.figures.values():
                plt.close(fig)


def format_step(s: StepResult) -> str:
    """One step as a console block: header with the verdict, the summary, findings, advice."""
    lines = [f"[{s.number}] {s.name} ".ljust(60, ".") + f" {s.verdict.upper()}  ({s.seconds:.1f} s)",
             f"    {s.summary}"]
    lines += [f"    - {f.severity}: {f.message}" for f in s.findings]
    lines += [f"    -> {a}" for a in s.advice]
    return "\n".join(lines)


def parse_steps(spec: str | Sequence[int] | None) -> list[int]:
    """``"1,2,6"`` / ``"0-3"`` / ``[1, 2]`` -> sorted step numbers (all, 0-7, by default)."""
    if spec is None:
        return list(range(0, 8))
    if isinstance(spec, str):
        out: set[int] = set()
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    out.update(range(int(a), int(b) + 1))
                else:
                    out.add(int(part))
            except ValueError:
                raise ConfigError(f"--steps expects step numbers 0-7 like 1,2,6 or 0-3, got {spec!r}") from None
        items = sorted(out)
    else:
        items = sorted(set(int(v) for v in spec))
    bad = [v for v in items if v not in STEPS]
    if bad or not items:
        raise ConfigError(f"steps must be numbers from 0 to 7 (e.g. 1,2,6 or 0-3), got {spec!r}")
    return items


def doctor(config: str | Path | RunConfig | Mapping[str, Any], *, steps: str | Sequence[int] | None = None,
           options: DoctorOptions | None = None, out: str | Path | None = None, overrides: Sequence[str] = (),
           echo: Callable[[StepResult], None] | None = None) -> DoctorReport:
    """Run the recipe's steps on ``config`` (a TOML path, a :class:`~trainlab.config.RunConfig` or a dict of
    given keys; ``overrides``: ``key=value`` strings on top) and return the report.

    ``steps`` picks a subset (``"1,2,6"``); a later step uses what an earlier one found
    (step 4 centers on step 3's suggestion, step 5 on step 4's best) and falls back to
    the config's values when that step was not run. A population config is diagnosed
    for one member (``options.member``, default 0). ``echo`` is called with each step's
    result as soon as it is done (the CLI prints it). With ``out``, the report is
    written there (doctor.json, doctor.html, figures).
    """
    from trainlab.data import load_splits
    from trainlab.run import environment

    t0 = time.perf_counter()
    options = options or DoctorOptions()
    chosen = parse_steps(steps)
    if isinstance(config, (str, Path)):
        source = str(config)
        cfg = RunConfig.load(config, list(overrides))
    elif isinstance(config, RunConfig):
        source = "<config>"
        parsed = [parse_override(t) for t in overrides]
        cfg = config.replace({".".join(k): v for k, v in parsed}) if parsed else config
    else:
        source = "<dict>"
        cfg = RunConfig.from_dict(apply_overrides(dict(config), list(overrides)))
    one = cfg.member(options.member)
    device = resolve_device(one.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[one.dtype]

    def load(c: RunConfig) -> Any:
        from trainlab.data import plant_faults

        d = c.data
        sp = load_splits(d.name, train=d.train, val=d.val, test=d.test, seed=c.seed, preprocess=d.preprocess,
                         flatten=d.flatten, data_dir=d.data_dir, cache_dir=d.cache_dir, download=d.download,
                         device=device, dtype=dtype)
        return plant_faults(sp, d.as_dict(), seed=c.seed)

    ctx = Context(one, load(one), options, load=load)
    results: list[StepResult] = []
    for k in chosen:
        step = STEPS[k]
        ts = time.perf_counter()
        data = step.measure(ctx)
        res = step.result(data)
        res.seconds = time.perf_counter() - ts
        for number, findings in step.revise(data, ctx.results).items():
            ctx.results[number].findings = findings
        ctx.data[k] = data
        ctx.results[k] = res
        results.append(res)
        if echo is not None:
            echo(res)
    report = DoctorReport(config=one, source=source, steps=results, seconds=time.perf_counter() - t0,
                          environment=environment(device))
    if out is not None:
        report.save(out)
    return report
