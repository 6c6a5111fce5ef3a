"""Layers and losses with explicit forward/backward on the population axis."""

from trainlab.nn._dropout import (
    DropConnectLinear,
    Dropout,
    DropoutFamily,
    MCUncertainty,
    mc_dropout,
    mc_dropout_predict,
    mc_dropout_samples,
)
from trainlab.nn._norm import (
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    batch_norm_layers,
    compute_population_statistics,
    momentum_from_keras,
    momentum_to_keras,
    recompute_running_statistics,
    textbook_batch_norm,
)
from trainlab.nn._noise import GaussianNoise, NoiseFamily, NoisyLinear
from trainlab.nn._activations import ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from trainlab.nn._learned_activations import Maxout, PReLU
from trainlab.nn._linear import Linear
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._pool import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d, StochasticPool2d
from trainlab.nn._blocks import conv_block
from trainlab.nn._losses import Loss, MeanSquaredError, SoftmaxCrossEntropy, accuracy
from trainlab.nn._module import Module, Parameter
from trainlab.nn._sequential import Sequential

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "GlobalAvgPool2d",
    "StochasticPool2d",
    "Flatten",
    "SpatialDropout2d",
    "conv_block",
    "Identity",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Softplus",
    "Maxout",
    "PReLU",
    "Dropout",
    "DropConnectLinear",
    "DropoutFamily",
    "mc_dropout",
    "mc_dropout_samples",
    "mc_dropout_predict",
    "MCUncertainty",
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm",
    "batch_norm_layers",
    "compute_population_statistics",
    "recompute_running_statistics",
    "momentum_from_keras",
    "momentum_to_keras",
    "textbook_batch_norm",
    "GaussianNoise",
    "NoisyLinear",
    "NoiseFamily",
    "Loss",
    "SoftmaxCrossEntropy",
    "MeanSquaredError",
    "accuracy",
]
