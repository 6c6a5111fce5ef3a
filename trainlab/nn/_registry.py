"""The layer registry: config name -> layer class.

The one table of the layers a config (``[[model.layers]] type = "..."``) and a saved model
(``model.json``) may name. :mod:`trainlab.build` resolves names through it, :mod:`trainlab.io`
rebuilds saved models through it, and the contract suite (:mod:`trainlab.nn.testing`) checks
every class in it. A new layer registers itself here with :func:`register_layer`.
"""

from __future__ import annotations

from trainlab.nn._activations import ELU, GELU, SELU, Hardswish, Identity, LeakyReLU, Mish, ReLU, SiLU, Sigmoid, Softplus, Tanh
from trainlab.nn._alpha_dropout import AlphaDropout
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._dropout import DropConnectLinear, Dropout
from trainlab.nn._learned_activations import Maxout, PReLU
from trainlab.nn._linear import Linear
from trainlab.nn._module import Module
from trainlab.nn._noise import GaussianNoise, NoisyLinear
from trainlab.nn._norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm
from trainlab.nn._residual import Residual
from trainlab.nn._pool import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d, StochasticPool2d

__all__ = ["LAYERS", "register_layer"]

#: layer name in configs -> class
LAYERS: dict[str, type[Module]] = {
    "linear": Linear,
    "identity": Identity,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "gelu": GELU,
    "softplus": Softplus,
    "prelu": PReLU,
    "maxout": Maxout,
    "silu": SiLU,
    "swish": SiLU,
    "mish": Mish,
    "selu": SELU,
    "hardswish": Hardswish,
    "alpha_dropout": AlphaDropout,
    "dropout": Dropout,
    "dropconnect": DropConnectLinear,
    "gaussian_noise": GaussianNoise,
    "noisy_linear": NoisyLinear,
    "batchnorm": BatchNorm,
    "layernorm": LayerNorm,
    "groupnorm": GroupNorm,
    "instancenorm": InstanceNorm,
    "conv2d": Conv2d,
    "maxpool2d": MaxPool2d,
    "avgpool2d": AvgPool2d,
    "global_avgpool2d": GlobalAvgPool2d,
    "stochastic_pool2d": StochasticPool2d,
    "flatten": Flatten,
    "spatial_dropout2d": SpatialDropout2d,
    "residual": Residual,
}


def register_layer(name: str, cls: type[Module]) -> None:
    """Make ``cls`` available as ``type = name`` in ``[[model.layers]]`` and in saved models."""
    LAYERS[name] = cls
