"""Optimizers on the population axis (per-member hyperparameters)."""

from __future__ import annotations

import inspect
from typing import Any

from trainlab.optim._adaptive import Adadelta, Adamax, NAdam, RAdam
from trainlab.optim._base import Number, Optimizer
from trainlab.optim._clip import ClipGradients
from trainlab.optim._first_order import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
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


def optimizer_defaults(cls: type[Optimizer]) -> dict[str, Any]:
    """The keyword defaults of an optimizer class (what Python's ``Cls(params)`` uses)."""
    return {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty}


__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW", "NAdam", "RAdam",
           "Adamax", "Adadelta", "Lookahead", "ClipGradients", "OPTIMIZERS", "optimizer_defaults", "Number"]
