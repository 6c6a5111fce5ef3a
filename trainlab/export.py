"""Export one member of a trainlab model as an equivalent ``torch.nn`` module.

``to_torch(model, member)`` returns a ``torch.nn.Sequential`` that computes, for a
batch ``x`` of shape ``(N, ...)``, what ``model.forward(x[None], training=False)[member]``
computes. Every tensor is copied: the torch module never aliases trainlab's storage,
so training either one afterwards leaves the other alone.

Converters are looked up in a registry keyed by the layer's exact type: a subclass
may change the math, so it never silently inherits its parent's converter. The
converters of trainlab's own layers live here (this module imports ``trainlab.nn``,
so the layer modules cannot import it); a layer defined elsewhere registers its own::

    from trainlab.export import register_converter

    @register_converter(MyLayer)
    def _my_layer_to_torch(layer: MyLayer, member: int) -> torch.nn.Module:
        ...

Stochastic training-only layers export their *eval-mode* function where torch has no
equivalent (DropConnect and weight noise -> ``Linear`` with the mean weights,
Gaussian input noise -> ``Identity``).

A converter receives a *built* layer and the member index and returns a fresh
``torch.nn.Module`` holding copies of that member's parameters and buffers, with that
member's hyperparameters (slope, alpha, beta, rate, ...). A layer type with no
registered converter raises :class:`~trainlab.errors.ConfigError` naming the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from trainlab.errors import ConfigError
from trainlab.nn import (
    SELU,
    AlphaDropout,
    BatchNorm,
    Hardswish,
    Mish,
    SiLU,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    ELU,
    GELU,
    DropConnectLinear,
    Dropout,
    GaussianNoise,
    Identity,
    LeakyReLU,
    Linear,
    Maxout,
    Module,
    NoisyLinear,
    PReLU,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Softplus,
    Tanh,
)

__all__ = ["Converter", "register_converter", "converter_for", "to_torch", "to_torch_population", "TorchMaxout",
           "TorchResidual"]

#: ``(layer, member) -> torch.nn.Module``
Converter = Callable[[Module, int], torch.nn.Module]

_CONVERTERS: dict[type, Converter] = {}

_C = TypeVar("_C", bound=Callable[..., torch.nn.Module])
_T = TypeVar("_T")


def _built(value: _T | None, layer: Module, what: str) -> _T:
    """``value``, which ``layer.build`` fills in (a size taken from the input, a statistic)."""
    if value is None:
        raise ConfigError(f"cannot export {type(layer).__name__}: its {what} is not known until the model is "
                          f"built (build the model first)")
    return value


def register_converter(layer_type: type[Module]) -> Callable[[_C], _C]:
    """Decorator: register ``fn(layer, member) -> torch.nn.Module`` for ``layer_type``.

    Registering a type again replaces its converter (the last registration wins).
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, Module)):
        raise TypeError(f"register_converter expects a trainlab layer class, got {layer_type!r}")

    def decorate(fn: _C) -> _C:
        _CONVERTERS[layer_type] = fn
        return fn

    return decorate


def converter_for(layer: Module) -> Converter:
    """The converter registered for exactly ``type(layer)``."""
    fn = _CONVERTERS.get(type(layer))
    if fn is not None:
        return fn
    known = ", ".join(sorted(c.__name__ for c in _CONVERTERS))
    raise ConfigError(f"cannot export layer {layer!r} to torch: no converter for {type(layer).__name__} "
                      f"(registered: {known})")


def _member_scalar(values: torch.Tensor, member: int) -> float:
    return float(values[member].item())


def _check_member(model: Module, member: int) -> None:
    size = getattr(model, "population_size", None)
    if size is None:
        raise ConfigError("the model is not built yet: call model.build(input_shape, population) before exporting")
    if not isinstance(member, int) or isinstance(member, bool) or not 0 <= member < size:
        raise ConfigError(f"member must be an integer in [0, {size}), got {member!r}")


def to_torch(model: Sequential, member: int = 0) -> torch.nn.Sequential:
    """An equivalent ``torch.nn.Sequential`` for member ``member`` of a built ``model``.

    Parameters keep the model's device and dtype. The result is in eval mode when the
    trainlab layers have a training/inference difference; call ``.train()`` as usual.
    """
    _check_member(model, member)
    layers = model.layers if isinstance(model, Sequential) else [model]
    out = torch.nn.Sequential(*(converter_for(layer)(layer, member) for layer in layers))
    return out.eval()


def to_torch_population(model: Sequential) -> list[torch.nn.Sequential]:
    """``[to_torch(model, i) for i in range(P)]``."""
    _check_member(model, 0)
    return [to_torch(model, i) for i in range(model.population_size)]


# ---- converters of the layers in trainlab.nn ----------------------------------------


@register_converter(Sequential)
def _sequential(layer: Sequential, member: int) -> torch.nn.Module:
    return torch.nn.Sequential(*(converter_for(sub)(sub, member) for sub in layer.layers))


class TorchResidual(torch.nn.Module):
    """``y = block(x) + shortcut(x)``: the torch form of :class:`trainlab.nn.Residual`.

    ``shortcut`` is ``torch.nn.Identity()`` for the identity skip. Its parameter names
    (``block.0.weight``, ``shortcut.1.running_mean``, ...) follow trainlab's, with torch's
    ``weight``/``bias`` for BatchNorm's ``gamma``/``beta``.
    """

    def __init__(self, block: torch.nn.Module, shortcut: torch.nn.Module) -> None:
        super().__init__()
        self.block = block
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.shortcut(x)


@register_converter(Residual)
def residual_to_torch(layer: Residual, member: int) -> torch.nn.Module:
    shortcut = torch.nn.Identity() if layer.shortcut is None else _sequential(layer.shortcut, member)
    return TorchResidual(_sequential(layer.block, member), shortcut)


@register_converter(Linear)
@register_converter(DropConnectLinear)
@register_converter(NoisyLinear)
def _linear(layer: Linear, member: int) -> torch.nn.Module:
    w = layer.weight.data[member]  # (in, out): trainlab's x @ W layout; torch stores W^T
    lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=layer.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w.T)
        if layer.bias is not None:
            lin.bias.copy_(layer.bias.data[member, 0])
    return lin


@register_converter(Identity)
def _identity(layer: Identity, member: int) -> torch.nn.Module:
    return torch.nn.Identity()


@register_converter(Sigmoid)
def _sigmoid(layer: Sigmoid, member: int) -> torch.nn.Module:
    return torch.nn.Sigmoid()


@register_converter(Tanh)
def _tanh(layer: Tanh, member: int) -> torch.nn.Module:
    return torch.nn.Tanh()


@register_converter(ReLU)
def _relu(layer: ReLU, member: int) -> torch.nn.Module:
    return torch.nn.ReLU()


@register_converter(LeakyReLU)
def _leaky_relu(layer: LeakyReLU, member: int) -> torch.nn.Module:
    return torch.nn.LeakyReLU(negative_slope=_member_scalar(layer._p, member))


@register_converter(ELU)
def _elu(layer: ELU, member: int) -> torch.nn.Module:
    return torch.nn.ELU(alpha=_member_scalar(layer._p, member))


@register_converter(GELU)
def _gelu(layer: GELU, member: int) -> torch.nn.Module:
    return torch.nn.GELU(approximate=layer.approximate)


@register_converter(Softplus)
def _softplus(layer: Softplus, member: int) -> torch.nn.Module:
    return torch.nn.Softplus(beta=_member_scalar(layer._p, member), threshold=layer.threshold)


@register_converter(PReLU)
def _prelu(layer: PReLU, member: int) -> torch.nn.Module:
    a = layer.weight.data[member]
    out = torch.nn.PReLU(num_parameters=a.shape[0], device=a.device, dtype=a.dtype)
    with torch.no_grad():
        out.weight.copy_(a)
    return out


class TorchMaxout(torch.nn.Module):
    """Maxout for torch (which has none): ``(N, C*k, ...) -> (N, C, ...)``, the max over
    each unit's ``k`` contiguous features/channels -- trainlab's :class:`~trainlab.nn.Maxout`
    grouping. Autograd's backward of ``max`` routes to the arg-max piece, as trainlab's does."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = int(pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (x.shape[1] // self.pieces, self.pieces)).max(dim=2).values

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@register_converter(Maxout)
def _maxout(layer: Maxout, member: int) -> torch.nn.Module:
    return TorchMaxout(layer.pieces)
@register_converter(SiLU)
def _silu(layer: SiLU, member: int) -> torch.nn.Module:
    return torch.nn.SiLU()


@register_converter(Mish)
def _mish(layer: Mish, member: int) -> torch.nn.Module:
    return torch.nn.Mish()


@register_converter(SELU)
def _selu(layer: SELU, member: int) -> torch.nn.Module:
    return torch.nn.SELU()


@register_converter(Hardswish)
def _hardswish(layer: Hardswish, member: int) -> torch.nn.Module:
    return torch.nn.Hardswish()


@register_converter(AlphaDropout)
def _alpha_dropout(layer: AlphaDropout, member: int) -> torch.nn.Module:
    return torch.nn.AlphaDropout(_member_scalar(layer.rate, member))


class _Scale(torch.nn.Module):
    """``y = c * x``: classic dropout's keep-probability scaling."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.c

    def extra_repr(self) -> str:
        return f"c={self.c}"


@register_converter(Dropout)
def _dropout(layer: Dropout, member: int) -> torch.nn.Module:
    """``torch.nn.Dropout(p_member)``; classic mode adds a ``(1 - p)`` scale after it:
    ``classic(x) = (1 - p) * inverted(x)`` for the same mask, in training and in eval."""
    p = _member_scalar(layer.rate, member)
    if layer.mode == "inverted":
        return torch.nn.Dropout(p)
    return torch.nn.Sequential(torch.nn.Dropout(p), _Scale(1.0 - p))


@register_converter(GaussianNoise)
def _gaussian_noise(layer: GaussianNoise, member: int) -> torch.nn.Module:
    return torch.nn.Identity()


@register_converter(BatchNorm)
def batchnorm_to_torch(layer: BatchNorm, member: int) -> torch.nn.Module:
    """``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` with member ``member``'s gamma, beta, statistics, momentum.

    Its running statistics are the ones trainlab's eval mode uses: the running
    averages, or the population statistics for ``inference="population"``.
    """
    C = _built(layer.num_features, layer, "num_features")
    ref = layer.running_mean
    per_activation = layer._ndim == 5 and layer._dims == (1,)
    if per_activation:
        # statistics per (c, h, w): torch's BatchNorm1d over the flattened C*H*W features
        shape = tuple(layer._stat_shape)
        C = shape[0] * shape[1] * shape[2]
    cls = torch.nn.BatchNorm1d if layer._ndim == 3 or per_activation else torch.nn.BatchNorm2d
    bn = cls(C, eps=layer.eps, momentum=float(layer._momentum[member]), affine=layer.affine,
             device=ref.device, dtype=ref.dtype)
    population = layer.inference == "population"
    with torch.no_grad():
        if layer.affine:
            bn.weight.copy_(layer.gamma.data[member].reshape(-1))
            bn.bias.copy_(layer.beta.data[member].reshape(-1))
        # track_running_stats=True (torch's default) allocates these three buffers
        assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
        mean = _built(layer.population_mean, layer, "population mean") if population else layer.running_mean
        var = _built(layer.population_var, layer, "population variance") if population else layer.running_var
        bn.running_mean.copy_(mean[member].reshape(-1))
        bn.running_var.copy_(var[member].reshape(-1))
        bn.num_batches_tracked.fill_(int(layer.num_batches_tracked[member]))
    if per_activation:
        return torch.nn.Sequential(torch.nn.Flatten(), bn, torch.nn.Unflatten(1, shape))
    return bn


@register_converter(LayerNorm)
def layernorm_to_torch(layer: LayerNorm, member: int) -> torch.nn.Module:
    """``torch.nn.LayerNorm(normalized_shape, eps, elementwise_affine=affine)`` with member ``member``'s gamma/beta."""
    ln = torch.nn.LayerNorm(layer.normalized_shape_, eps=layer.eps, elementwise_affine=layer.affine)
    if layer.affine:
        g = layer.gamma.data
        ln = ln.to(device=g.device, dtype=g.dtype)
        with torch.no_grad():
            ln.weight.copy_(g[member])
            ln.bias.copy_(layer.beta.data[member])
    return ln


@register_converter(GroupNorm)
def groupnorm_to_torch(layer: GroupNorm, member: int) -> torch.nn.Module:
    """``torch.nn.GroupNorm(num_groups, num_channels, eps, affine)`` with member ``member``'s gamma/beta."""
    gn = torch.nn.GroupNorm(layer.num_groups, _built(layer.num_channels, layer, "num_channels"), eps=layer.eps,
                            affine=layer.affine)
    if layer.affine:
        g = layer.gamma.data
        gn = gn.to(device=g.device, dtype=g.dtype)
        with torch.no_grad():
            gn.weight.copy_(g[member])
            gn.bias.copy_(layer.beta.data[member])
    return gn


@register_converter(InstanceNorm)
def instancenorm_to_torch(layer: InstanceNorm, member: int) -> torch.nn.Module:
    """``torch.nn.InstanceNorm2d(C, eps, affine, track_running_stats=False)`` with member ``member``'s gamma/beta."""
    inorm = torch.nn.InstanceNorm2d(_built(layer.num_features, layer, "num_features"), eps=layer.eps, affine=layer.affine,
                                    track_running_stats=False)
    if layer.affine:
        g = layer.gamma.data
        inorm = inorm.to(device=g.device, dtype=g.dtype)
        with torch.no_grad():
            inorm.weight.copy_(g[member])
            inorm.bias.copy_(layer.beta.data[member])
    return inorm


# ---- convolution, pooling and feature-map layers ------------------------------------------------

from trainlab.nn import AvgPool2d, Conv2d, Flatten, GlobalAvgPool2d, MaxPool2d, SpatialDropout2d, StochasticPool2d  # noqa: E402,E501


@register_converter(Conv2d)
def conv2d_to_torch(layer: Conv2d, member: int) -> torch.nn.Module:
    """``torch.nn.Conv2d`` with member ``member``'s filters ``(out, in, kh, kw)`` and bias."""
    w = layer.weight.data[member]
    conv = torch.nn.Conv2d(_built(layer.in_channels, layer, "in_channels"),
                           _built(layer.out_channels, layer, "out_channels"), layer.kernel_size, stride=layer.stride,
                           padding=layer.padding, dilation=layer.dilation, bias=layer.bias is not None,
                           device=w.device, dtype=w.dtype)
    with torch.no_grad():
        conv.weight.copy_(w)
        if layer.bias is not None and conv.bias is not None:  # both or neither (bias=layer.bias is not None)
            conv.bias.copy_(layer.bias.data[member])
    return conv


@register_converter(MaxPool2d)
def maxpool2d_to_torch(layer: MaxPool2d, member: int) -> torch.nn.Module:
    return torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                              ceil_mode=layer.ceil_mode)


@register_converter(AvgPool2d)
def avgpool2d_to_torch(layer: AvgPool2d, member: int) -> torch.nn.Module:
    return torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode,
                              count_include_pad=layer.count_include_pad)


@register_converter(GlobalAvgPool2d)
def global_avgpool2d_to_torch(layer: GlobalAvgPool2d, member: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


@register_converter(Flatten)
def flatten_to_torch(layer: Flatten, member: int) -> torch.nn.Module:
    return torch.nn.Flatten()


@register_converter(SpatialDropout2d)
def spatial_dropout_to_torch(layer: SpatialDropout2d, member: int) -> torch.nn.Module:
    """``torch.nn.Dropout2d(p_member)`` (whole channels); classic mode adds the ``(1 - p)`` scale."""
    p = _member_scalar(layer.rate, member)
    if layer.mode == "inverted":
        return torch.nn.Dropout2d(p)
    return torch.nn.Sequential(torch.nn.Dropout2d(p), _Scale(1.0 - p))


class _ProbabilityWeightedPool(torch.nn.Module):
    """Stochastic pooling's eval-mode function: ``sum a^2 / sum a`` over each window (0 for all zeros)."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        num = torch.nn.functional.avg_pool2d(x * x, self.kernel_size, self.stride)
        den = torch.nn.functional.avg_pool2d(x, self.kernel_size, self.stride)
        return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


@register_converter(StochasticPool2d)
def stochastic_pool2d_to_torch(layer: StochasticPool2d, member: int) -> torch.nn.Module:
    """The eval-mode probability-weighted average (torch has no stochastic pooling)."""
    return _ProbabilityWeightedPool(layer.kernel_size, layer.stride)
