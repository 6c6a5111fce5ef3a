"""The minimizer hook: a :class:`Method` takes one step for every active member;
:func:`~trainlab.second_order.minimize` does the rest (convergence tests, best-point
bookkeeping, restoring and reporting, timing, the trajectory)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.second_order._objective import Objective

__all__ = ["Method", "Step", "LineSearchRecord", "check_wolfe_constants"]


@dataclass
class LineSearchRecord:
    """One member's line search at one iteration: ``phi(a) = f(w + a d)``."""

    iteration: int
    member: int
    ok: bool
    alpha: float
    phi0: float
    dphi0: float
    phi: float
    dphi: float
    evals: int
    nan_evals: int


@dataclass
class Step:
    """What a method did in one iteration.

    ``w, f, g``: the new point of every member with ``ok`` (other rows are ignored);
    ``failures``: member -> (status, reason) for members that could not move;
    ``nan_evals``: non-finite evaluations met (backtracked from) per member.
    """

    w: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    ok: torch.Tensor
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)
    nan_evals: torch.Tensor | None = None
    line_searches: list[LineSearchRecord] = field(default_factory=list)
    info: dict[str, torch.Tensor] = field(default_factory=dict)


def check_wolfe_constants(c1: float, c2: float) -> None:
    if not (0.0 < c1 < c2 < 1.0):
        raise ConfigError(f"the Wolfe constants must satisfy 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")


class Method:
    """Base class of the full-batch minimizers. Settings are stored verbatim
    (``settings()``); per-run state is built by ``start`` (never lazily)."""

    name = "method"

    def settings(self) -> dict[str, Any]:
        return dict(getattr(self, "_settings", {}))

    def check(self, objective: Objective) -> None:
        """Raise a one-line error when the method cannot run on ``objective``."""

    def start(self, objective: Objective, w: torch.Tensor, f: torch.Tensor, g: torch.Tensor) -> Any:
        return None

    def step(self, objective: Objective, state: Any, w: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
             active: torch.Tensor, iteration: int) -> Step:
        raise NotImplementedError

    def label(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"
