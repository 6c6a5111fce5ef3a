"""Optimizers on the population axis (per-member hyperparameters)."""

from trainlab.optim._base import Optimizer
from trainlab.optim._clip import ClipGradients
from trainlab.optim._first_order import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSProp,
    "adam": Adam,
    "adamw": AdamW,
}

__all__ = ["Optimizer", "ClipGradients", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW", "OPTIMIZERS"]
