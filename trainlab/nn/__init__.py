"""Layers and losses with explicit forward/backward on the population axis."""

from trainlab.nn._activations import ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from trainlab.nn._linear import Linear
from trainlab.nn._losses import Loss, MeanSquaredError, SoftmaxCrossEntropy, accuracy
from trainlab.nn._module import Module, Parameter
from trainlab.nn._sequential import Sequential

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Linear",
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Softplus",
    "Loss",
    "SoftmaxCrossEntropy",
    "MeanSquaredError",
    "accuracy",
]
