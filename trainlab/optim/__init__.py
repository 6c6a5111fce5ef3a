"""Optimizers on the population axis (per-member hyperparameters)."""

from __future__ import annotations

import inspect
from typing import Any

from trainlab.optim._adaptive import Adadelta, Adamax, NAdam, RAdam
from trainlab.optim._base import Optimizer
from trainlab.optim._first_order import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from trainlab.optim._lbfgs import LBFGS
from trainlab.optim._wrappers import Lookahead

#: first-order optimizers: ``step()`` after each backward
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": AdamW,
    "nadam": NAdam,
    "radam": RAdam,
    "adamax": Adamax,
    "adadelta": Adadelta,
}
#: optimizers whose ``step(closure)`` evaluates the objective itself (line searches)
CLOSURE_OPTIMIZERS: dict[str, type[Optimizer]] = {"lbfgs": LBFGS}


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The keyword defaults of the optimizer called ``name`` (what Python's ``Cls(params)`` uses)."""
    cls = {**OPTIMIZERS, **CLOSURE_OPTIMIZERS}[name]
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW", "NAdam", "RAdam",
           "Adamax", "Adadelta", "LBFGS", "Lookahead", "OPTIMIZERS", "CLOSURE_OPTIMIZERS", "optimizer_defaults"]
