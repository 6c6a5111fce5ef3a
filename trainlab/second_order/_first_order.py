"""trainlab's first-order optimizers, run full batch on the flat parameter vector."""

from __future__ import annotations

from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Parameter
from trainlab.optim import OPTIMIZERS, Number, Optimizer
from trainlab.second_order._base import Method, Step
from trainlab.second_order._objective import Objective

__all__ = ["FirstOrder", "GradientDescent"]


class FirstOrder(Method):
    """One step of a :mod:`trainlab.optim` optimizer per iteration, on the full batch.

    The ``(P, m)`` point is held as one :class:`~trainlab.nn.Parameter` (``decay=False``:
    put penalties in the objective) whose ``.grad`` is filled with the full-batch
    gradient before ``optimizer.step()``: the same update code as in training, so
    SGD, Momentum, AdaGrad and Adam paths in the demos are trainlab's own. There is
    no line search; a member whose objective turns NaN/inf is stopped ("diverged")
    and its best point restored.

    ``optimizer``: a class from :mod:`trainlab.optim` or its name (``"sgd"``,
    ``"adam"``, ...); ``hparams``: its keyword arguments (per-member lists allowed).
    """

    name = "first_order"

    def __init__(self, optimizer: type[Optimizer] | str = "sgd", **hparams: Any) -> None:
        if isinstance(optimizer, str):
            if optimizer.lower() not in OPTIMIZERS:
                raise ConfigError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
            cls = OPTIMIZERS[optimizer.lower()]
        elif isinstance(optimizer, type) and issubclass(optimizer, Optimizer):
            cls = optimizer
        else:
            raise ConfigError(f"optimizer must be a trainlab.optim class or name, got {optimizer!r}")
        self._settings = dict(optimizer=optimizer, **hparams)
        self.optimizer_cls, self.hparams = cls, dict(hparams)
        self.name = cls.__name__.lower()

    def label(self) -> str:
        return f"{self.optimizer_cls.__name__}(" + ", ".join(f"{k}={v}" for k, v in self.hparams.items()) + ")"

    def start(self, objective: Objective, w: torch.Tensor, f: torch.Tensor, g: torch.Tensor) -> dict[str, Any]:
        param = Parameter(w.clone(), kind="weight", decay=False, name="flat")
        return {"param": param, "opt": self.optimizer_cls([param], **self.hparams)}

    def step(self, objective: Objective, state: dict[str, Any], w: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
             active: torch.Tensor, iteration: int) -> Step:
        param, opt = state["param"], state["opt"]
        opt.set_active(active)
        param.data.copy_(w)
        param.grad.copy_(g)
        opt.step()
        W = param.data.clone()
        F, G = objective.value_and_grad(W)
        finite = torch.isfinite(F) & torch.isfinite(G).all(dim=1)
        ok = active & finite
        failures = {i: ("diverged", "the objective became non-finite")
                    for i in (active & ~finite).nonzero().flatten().tolist()}
        nan = (active & ~finite).to(torch.int64)
        return Step(W, F, G, ok, failures, nan)


class GradientDescent(FirstOrder):
    """Plain full-batch gradient descent ``w <- w - lr g`` (per-member ``lr``)."""

    def __init__(self, *, lr: Number = 0.1) -> None:
        super().__init__("sgd", lr=lr)
        self._settings = dict(lr=lr)
        self.name = "gd"

    def label(self) -> str:
        return f"GD(lr={self.hparams['lr']})"
