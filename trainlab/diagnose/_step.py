"""What every step of the doctor is made of: ``measure(ctx) -> data``, ``judge(data) -> findings``,
``figures(data)``, and the :class:`StepResult` the driver assembles from them.

A step (:class:`Step`) measures once, on the data and the config the :class:`Context` holds, and
returns a frozen dataclass of plain numbers and arrays. Everything after that is a pure function
of that data: :meth:`Step.judge` (the findings, unit-tested on plain numbers without training),
:meth:`Step.verdict`, :meth:`Step.summary`, :meth:`Step.advice`, :meth:`Step.numbers` (what
``doctor.json`` shows) and :meth:`Step.figures`. A later step reads an earlier step's data from
the context (step 4 centers on step 3's suggestion); it never reads or edits an earlier step's
objects.

The runs a step trains are built from a *derived* config (:func:`build`): the training length
and the evaluation are new keys of a new config, never attributes patched onto a built trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import math
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from trainlab.build import Run, build_run
from trainlab.config import RunConfig
from trainlab.diagnose._findings import Finding
from trainlab.diagnose._options import DoctorOptions
from trainlab.diagnose._severity import Severity, worst
from trainlab.train import Callback, History, Trainer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["STEP_NAMES", "StepResult", "Context", "Step", "HistoryArrays", "StepLoss", "SampleAccuracy", "build",
           "jsonable", "Figures", "member_value", "fmt_acc"]

STEP_NAMES = {
    0: "data checks",
    1: "initial loss",
    2: "overfit a small sample",
    3: "learning-rate range test",
    4: "coarse grid: learning rate x weight decay",
    5: "refined grid, trained longer",
    6: "loss and accuracy curves",
    7: "attribution by ablation",
}

#: a step's figures: name -> (matplotlib figure, caption)
Figures = dict[str, tuple["Figure", str]]


@dataclass
class StepResult:
    """One step's outcome: verdict ``ok``/``warn``/``fail`` (or ``skip``), numbers, findings, advice, figures."""

    number: int
    name: str
    verdict: Severity
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    seconds: float = 0.0
    figures: Figures = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.verdict = Severity(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.number, "name": self.name, "verdict": self.verdict, "summary": self.summary,
                "numbers": jsonable(self.numbers), "findings": [f.to_dict() for f in self.findings],
                "advice": self.advice, "seconds": round(self.seconds, 3),
                "figures": {k: f"doctor_{self.number}_{k}.png" for k in self.figures}}

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]


@dataclass
class Context:
    """What the steps share: the one-member config, its data, the budgets, and each finished step's data
    and result (read by later steps; a step adds its own, never edits another's)."""

    cfg: RunConfig  # the one-member config
    splits: Any
    options: DoctorOptions
    load: Callable[[RunConfig], Any]  # config -> its splits (data faults planted)
    data: dict[int, Any] = field(default_factory=dict)
    results: dict[int, StepResult] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        return _scalar(self.cfg.optim.lr)

    @property
    def wd(self) -> float:
        return _scalar(self.cfg.optim.weight_decay)


def _scalar(v: float | tuple[float, ...]) -> float:
    """A per-member value of the one-member config (a one-value tuple reads as its value)."""
    return float(v[0] if isinstance(v, tuple) else v)


D = TypeVar("D")


class Step(Generic[D]):
    """One step of the recipe. Subclasses set ``number`` and write :meth:`measure`, :meth:`judge`,
    :meth:`summary`, :meth:`numbers` and :meth:`figures` (and, where the default does not fit,
    :meth:`verdict` and :meth:`advice`)."""

    number: ClassVar[int]

    @property
    def name(self) -> str:
        return STEP_NAMES[self.number]

    def measure(self, ctx: Context) -> D:
        raise NotImplementedError

    def judge(self, data: D) -> list[Finding]:
        raise NotImplementedError

    def verdict(self, data: D, findings: Sequence[Finding]) -> Severity:
        """The worst finding's severity (``ok`` when none warns or fails)."""
        return worst(f.severity for f in findings)

    def summary(self, data: D, findings: Sequence[Finding]) -> str:
        raise NotImplementedError

    def advice(self, data: D, findings: Sequence[Finding]) -> list[str]:
        return [f.advice for f in findings if f.advice]

    def numbers(self, data: D) -> dict[str, Any]:
        raise NotImplementedError

    def figures(self, data: D) -> Figures:
        return {}

    def revise(self, data: D, results: Mapping[int, StepResult]) -> dict[int, list[Finding]]:
        """New findings for earlier steps, by step number, where this step measured something they left open
        (the ablation measures the data checks' fixes); none by default."""
        return {}

    def result(self, data: D) -> StepResult:
        """The step's result from its data alone (pure, but for the figures it draws)."""
        findings = self.judge(data)
        return StepResult(self.number, self.name, self.verdict(data, findings), self.summary(data, findings),
                          self.numbers(data), findings, self.advice(data, findings), figures=self.figures(data))


# ---- plain data of a training run --------------------------------------------------------------


@dataclass(frozen=True)
class HistoryArrays:
    """A :class:`~trainlab.train.History` as arrays: ``epoch`` and ``step`` ``(evaluations,)``, every metric
    ``(evaluations, P)``, and the diverged members. Reads like a History (``h["val_acc"]``, ``h.metrics``,
    ``h.diverged``), so the curve reading and the plots take either."""

    epoch: np.ndarray
    step: np.ndarray
    values: Mapping[str, np.ndarray]
    diverged: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_history(cls, history: History) -> HistoryArrays:
        return cls(epoch=history["epoch"], step=history["step"], values={m: history[m] for m in history.metrics},
                   diverged={m: dict(d) for m, d in history.diverged.items()})

    @property
    def metrics(self) -> list[str]:
        return list(self.values)

    def __getitem__(self, metric: str) -> np.ndarray:
        if metric == "epoch":
            return self.epoch
        if metric == "step":
            return self.step
        return self.values[metric]

    def __len__(self) -> int:
        return len(self.epoch)


class StepLoss(Callback):
    """Every step's training objective, ``(steps, P)``; NaN for a frozen (diverged) member."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        self.rows.append(torch.where(trainer.alive, loss.detach(), torch.full_like(loss, math.nan)).double().cpu())

    @property
    def values(self) -> np.ndarray:
        return torch.stack(self.rows).numpy() if self.rows else np.zeros((0, 0))


class SampleAccuracy(Callback):
    """The argmax accuracy on ``(x, labels)`` at every evaluation, ``(evaluations, P)``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.rows: list[torch.Tensor] = []

    @torch.no_grad()
    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        out = trainer.model.forward(self.x.unsqueeze(0), training=False)
        self.rows.append((out.argmax(dim=-1) == self.y.unsqueeze(0)).double().mean(dim=1).cpu())

    @property
    def values(self) -> np.ndarray:
        return torch.stack(self.rows).numpy()


def build(cfg: RunConfig, splits: Any, *, callbacks: Sequence[Callback] = (), epochs: int | None = None,
          steps: int | None = None, eval_every: int | None = None, batch_size: int | None = None,
          eval_train: bool | None = None) -> Run:
    """:func:`trainlab.build.build_run` of a config derived from ``cfg`` with the training length and the
    evaluation changed (``epochs`` given: train that many epochs, not ``train.steps``), on data already loaded."""
    changes: dict[str, Any] = {}
    if epochs:
        changes.update({"train.epochs": epochs, "train.steps": steps})
    elif steps is not None:
        changes["train.steps"] = steps
    if eval_every is not None:
        changes["train.eval_every"] = eval_every
    if batch_size:
        changes["train.batch_size"] = batch_size
    if eval_train is not None:
        changes["train.eval_train"] = eval_train
    return build_run(cfg.replace(changes) if changes else cfg, callbacks=list(callbacks), splits=splits)


# ---- small helpers ----------------------------------------------------------------------------


def member_value(v: Sequence[Any] | None, m: int = 0) -> Any:
    """Member ``m``'s entry of a per-member list (``None`` stays ``None``)."""
    return v[m] if v is not None else None


def fmt_acc(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def jsonable(v: Any) -> Any:
    """``v`` with NumPy/torch values as plain Python ones and non-finite floats as ``None``."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, torch.Tensor):
        return jsonable(v.tolist())
    return v
