"""Building blocks: the course's Conv -> BN -> activation -> dropout order, as a list of layers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainlab.errors import ConfigError
from trainlab.nn._activations import ELU, GELU, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._dropout import Dropout, _check_drop_probability, _size_of
from trainlab.nn._module import Module
from trainlab.nn._norm import BatchNorm, GroupNorm, InstanceNorm
from trainlab.nn._pool import AvgPool2d, MaxPool2d

__all__ = ["conv_block", "BLOCK_ACTIVATIONS", "BLOCK_NORMS"]

BLOCK_ACTIVATIONS: dict[str, type[Module]] = {
    "relu": ReLU, "leaky_relu": LeakyReLU, "elu": ELU, "gelu": GELU, "softplus": Softplus,
    "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity,
}
BLOCK_NORMS = ("batchnorm", "groupnorm", "instancenorm", "none")
_RELU_LIKE = {"relu", "leaky_relu", "elu", "gelu", "softplus", "prelu", "maxout"}  # names; a layer object: its class name


def conv_block(
    in_channels: int | None,
    out_channels: int,
    kernel_size: int | Sequence[int] = 3,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = "same",
    dilation: int | Sequence[int] = 1,
    norm: str | Module | None = "batchnorm",
    groups: int = 8,
    activation: str | Module = "relu",
    dropout: float | Sequence[float] = 0.0,
    spatial: bool = True,
    pool: str | None = None,
    init: Any = "auto",
    bias: bool | None = None,
) -> list[Module]:
    """``[Conv2d, norm, activation, dropout, pool]`` -- the layers of one block, in the course's order.

    Splice the list into a model: ``Sequential([*conv_block(1, 32), *conv_block(32, 64,
    pool="max"), Flatten(), Linear(None, 10)])``. (A list rather than a container, so
    the trainer sees every BatchNorm directly.)

    Why this order (course notes 003; Ioffe & Szegedy 2015):

    * **Conv -> BN**: BN standardizes what the convolution produced, per channel, so
      the activation always receives inputs of a controlled scale and offset, whatever
      the weights do while they train. BN subtracts the channel mean, so the conv's
      bias would cancel: the conv gets ``bias=False`` and BN's ``beta`` is the shift.
    * **BN -> activation**: the nonlinearity acts on standardized values, in its useful
      range (ReLU: about half the units active; sigmoid/tanh: not saturated). BN after
      the activation would standardize an already half-zero, skewed distribution.
    * **activation -> dropout last**: dropout's zeros must reach the next layer as
      zeros. Before a sigmoid a dropped unit would become ``sigmoid(0) = 0.5`` -- not
      dropped at all -- and before BN the dropped units would shift the batch
      statistics between training and inference. On feature maps whole channels are
      dropped (``spatial=True``, :class:`SpatialDropout2d`): neighbouring pixels carry
      the same information, so dropping single pixels hardly regularizes.
    * **pool last** (optional): pooling a ReLU output equals ReLU of the pooled
      output for max pooling, and is cheaper after the expensive per-pixel layers.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation:
        The convolution (:class:`Conv2d`); ``padding="same"`` by default.
    norm:
        ``"batchnorm"`` (default), ``"groupnorm"`` (``groups`` groups),
        ``"instancenorm"`` (affine), ``"none"``/``None``, or a norm layer instance.
    activation:
        A name (``relu``, ``leaky_relu``, ``elu``, ``gelu``, ``softplus``, ``sigmoid``,
        ``tanh``, ``identity``) or a layer instance.
    dropout:
        Drop probability (one or per member); 0 leaves the dropout layer out.
    spatial:
        Drop whole channels (default) or single units (:class:`Dropout`).
    pool:
        ``None``, ``"max"`` or ``"avg"``: a 2x2 pooling at the end.
    init:
        Conv initializer; ``"auto"`` = He for ReLU-like activations, Xavier otherwise.
    bias:
        Conv bias; default: only without a norm layer.
    """
    if isinstance(norm, str):
        if norm not in BLOCK_NORMS:
            raise ConfigError(f"conv_block norm must be one of {', '.join(BLOCK_NORMS)} or a layer, got {norm!r}")
        norm_layer: Module | None = {"batchnorm": lambda: BatchNorm(out_channels),
                                     "groupnorm": lambda: GroupNorm(groups, out_channels),
                                     "instancenorm": lambda: InstanceNorm(out_channels, affine=True),
                                     "none": lambda: None}[norm]()
    elif norm is None or isinstance(norm, Module):
        norm_layer = norm
    else:
        raise ConfigError(f"conv_block norm must be a name or a layer, got {norm!r}")
    if isinstance(activation, str):
        if activation not in BLOCK_ACTIVATIONS:
            raise ConfigError(f"conv_block activation must be one of {', '.join(BLOCK_ACTIVATIONS)} or a layer, "
                              f"got {activation!r}")
        act_name = activation
        act: Module = BLOCK_ACTIVATIONS[activation]()
    elif isinstance(activation, Module):
        act_name = type(activation).__name__.lower()
        act = activation
    else:
        raise ConfigError(f"conv_block activation must be a name or a layer, got {activation!r}")
    if init == "auto":
        init = "he_normal" if act_name in _RELU_LIKE or isinstance(act, (ReLU, LeakyReLU, ELU, GELU, Softplus)) \
            else "xavier_normal"
    if bias is None:
        bias = norm_layer is None
    if pool not in (None, "max", "avg"):
        raise ConfigError(f"conv_block pool must be None, 'max' or 'avg', got {pool!r}")
    if not isinstance(spatial, bool):
        raise ConfigError(f"conv_block spatial must be true or false, got {spatial!r}")
    layers: list[Module] = [Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                   dilation=dilation, bias=bias, init=init)]
    if norm_layer is not None:
        layers.append(norm_layer)
    layers.append(act)
    rates = _check_drop_probability(dropout, _size_of(dropout, "conv_block dropout"), owner="conv_block dropout")
    if bool((rates > 0).any()):
        layers.append(SpatialDropout2d(dropout) if spatial else Dropout(dropout))
    if pool == "max":
        layers.append(MaxPool2d(2))
    elif pool == "avg":
        layers.append(AvgPool2d(2))
    return layers
