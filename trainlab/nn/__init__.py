"""Layers and losses with explicit forward/backward on the population axis."""

from trainlab.nn._dropout import DropConnectLinear, Dropout, DropoutFamily
from trainlab.nn._mc import MCUncertainty, mc_dropout, mc_dropout_predict, mc_dropout_samples
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
    StatisticsPass,
    textbook_batch_norm,
)
from trainlab.nn._noise import GaussianNoise, NoiseFamily, NoisyLinear
from trainlab.nn._activations import (
    ELU,
    GELU,
    SELU,
    Hardswish,
    Identity,
    LeakyReLU,
    Mish,
    ReLU,
    SiLU,
    Sigmoid,
    Softplus,
    Tanh,
)
from trainlab.nn._alpha_dropout import AlphaDropout
from trainlab.nn._learned_activations import Maxout, PReLU
from trainlab.nn._linear import Linear
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._pool import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d, StochasticPool2d
from trainlab.nn._blocks import conv_block
from trainlab.nn._losses import Loss, MeanSquaredError, SoftmaxCrossEntropy, accuracy
from trainlab.nn._sigmoid_losses import BCEWithLogits, SigmoidFocalLoss
from trainlab.nn._module import Module, Parameter
from trainlab.nn._sequential import Sequential
from trainlab.nn._residual import Residual, resnet
from trainlab.nn._registry import LAYERS, register_layer

__all__ = [
    "LAYERS",
    "register_layer",
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
    "Residual",
    "resnet",
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
    "SiLU",
    "Mish",
    "SELU",
    "Hardswish",
    "AlphaDropout",
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
    "StatisticsPass",
    "momentum_from_keras",
    "momentum_to_keras",
    "textbook_batch_norm",
    "GaussianNoise",
    "NoisyLinear",
    "NoiseFamily",
    "Loss",
    "SoftmaxCrossEntropy",
    "MeanSquaredError",
    "BCEWithLogits",
    "SigmoidFocalLoss",
    "accuracy",
]
