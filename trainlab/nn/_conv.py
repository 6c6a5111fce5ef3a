"""Convolution on the population axis, and spatial (channel) dropout.

``Conv2d`` takes feature maps ``(P, N, C, H, W)`` -- or ``(1, N, C, H, W)``, a batch
shared by every member -- and writes its own forward and backward; the heavy lifting
is PyTorch's kernels, called explicitly: ``torch.nn.functional.conv2d`` going
forward, ``torch.ops.aten.convolution_backward`` (the kernel autograd itself calls)
going back. Three ways to run ``P`` members, chosen per call (``strategy="auto"``;
measured on CPU in ``docs/convolution.md`` with ``benchmarks/bench_conv.py``):

* **wide** (input shared by all members, e.g. the first layer): one convolution with
  ``P * out`` output channels -- the members' filters stacked. The data is read once;
  its input gradient comes out already summed over the members.
* **grouped** (each member its own input): the members become the groups of one
  grouped convolution, ``(P, N, C, H, W) -> (N, P*C, H, W)`` with ``groups = P``.
* **loop**: one ordinary convolution per member -- on CPU the fastest in every
  measured case, so ``"auto"`` picks it there (wide / grouped on a GPU).

``P = 1`` is the same code: a loop over one member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

from trainlab.errors import ConfigError
from trainlab.init import Initializer, get_initializer
from trainlab.nn._dropout import Dropout
from trainlab.nn._module import Module, Parameter, check_size, draw_weight
from trainlab.nn._traceable import convolution_backward as _conv_backward
from trainlab.population import Population

__all__ = ["Conv2d", "SpatialDropout2d", "pair", "STRATEGIES"]

#: population strategies of :class:`Conv2d`
STRATEGIES = ("auto", "loop", "grouped", "wide")


def pair(value: Any, name: str, owner: str, *, low: int = 1) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; anything else is a one-line error."""
    items = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in items):
        raise ConfigError(f"{owner} {name} must be an integer >= {low} or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in every framework) for each member.

    ``x (P, N, C_in, H, W) -> y (P, N, C_out, H_out, W_out)`` with, per member ``p``::

        y[p, n, o, i, j] = b[p, o] + sum_{c, u, v} W[p, o, c, u, v] * x[p, n, c, s*i + d*u - pad, s*j + d*v - pad]
        H_out = floor((H + 2*pad - d*(k - 1) - 1) / s) + 1

    Weight ``(P, out, in, kh, kw)`` (member ``p``'s slice is ``torch.nn.Conv2d.weight``),
    bias ``(P, out)``. Backward, per member: ``dW`` correlates the input with the
    output gradient, ``db = sum over n, i, j of g``, ``dx`` is the transposed
    convolution of ``g`` with ``W`` -- computed by ``aten.convolution_backward``, only
    the parts needed (no ``dx`` for a model's first layer). A shared input
    ``(1, N, ...)`` receives the sum of the members' input gradients.

    See: torch.nn.Conv2d; the course's Conv -> BN -> activation -> dropout order is
    :func:`~trainlab.nn.conv_block`.

    Parameters
    ----------
    in_channels, out_channels:
        Channels. ``in_channels=None`` takes them from the input shape at build.
    kernel_size, stride, dilation:
        An integer or an ``(h, w)`` pair, each >= 1.
    padding:
        Zeros added on each side: an integer or a pair (>= 0), ``"valid"`` (0) or
        ``"same"`` (output as large as the input; stride 1 and an odd effective
        kernel ``d*(k-1)+1`` only, so the padding is symmetric).
    bias:
        Whether to have a bias (a conv followed by BatchNorm does not need one).
    init:
        Weight initializer (see :mod:`trainlab.init`; fans of ``(out, in, kh, kw)``:
        ``fan_in = in*kh*kw``); default ``"xavier_uniform"`` as :class:`Linear` and
        Keras' ``Conv2D``. Biases start at zero.
    init_scale:
        Multiplies each member's initial weights: a number or one per member.
    strategy:
        How the members run: ``"auto"`` (measured choice), ``"loop"``,
        ``"grouped"`` or ``"wide"`` (inputs shared by all members only).
    """

    def __init__(
        self,
        in_channels: int | None = None,
        out_channels: int | None = None,
        kernel_size: int | Sequence[int] | None = None,
        *,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        bias: bool = True,
        init: str | Initializer | Mapping[str, Any] = "xavier_uniform",
        init_scale: float | Sequence[float] = 1.0,
        strategy: str = "auto",
    ) -> None:
        check_size(out_channels, "out_channels", "Conv2d", optional=False)
        check_size(in_channels, "in_channels", "Conv2d")
        if kernel_size is None:
            raise ConfigError("Conv2d kernel_size must be an integer >= 1 or a pair of them, got None")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.dilation = pair(dilation, "dilation", "Conv2d")
        if isinstance(padding, str):
            if padding == "valid":
                self.padding = (0, 0)
            elif padding == "same":
                if self.stride != (1, 1):
                    raise ConfigError(f"Conv2d padding='same' needs stride 1, got stride={stride!r}")
                spans = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
                if any(s % 2 for s in spans):
                    raise ConfigError(f"Conv2d padding='same' needs an odd effective kernel size d*(k-1)+1 (symmetric "
                                      f"padding), got kernel_size={kernel_size!r}, dilation={dilation!r}")
                self.padding = (spans[0] // 2, spans[1] // 2)
            else:
                raise ConfigError(f"Conv2d padding must be an integer >= 0, a pair, 'valid' or 'same', got {padding!r}")
        else:
            self.padding = pair(padding, "padding", "Conv2d", low=0)
        if not isinstance(bias, bool):
            raise ConfigError(f"Conv2d bias must be true or false, got {bias!r}")
        if strategy not in STRATEGIES:
            raise ConfigError(f"Conv2d strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self._settings = dict(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                              stride=stride, padding=padding, dilation=dilation, bias=bias, init=init,
                              init_scale=init_scale, strategy=strategy)
        self.in_channels = in_channels
        self.out_channels: int = cast(int, out_channels)  # check_size refused None above
        self.initializer = get_initializer(init)
        self.init_scale = init_scale
        self.has_bias = bias
        self.strategy = strategy
        #: the strategy the last forward used ("loop", "grouped" or "wide")
        self.last_strategy: str | None = None

    # ---- build --------------------------------------------------------------------------
    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        if len(in_shape) != 3:
            raise ConfigError(f"Conv2d expects feature maps (P, N, C, H, W), i.e. a per-example shape (C, H, W), "
                              f"got per-example shape {in_shape}; load images with flatten=False")
        C, H, W = in_shape
        if self.in_channels is None:
            self.in_channels = C
        elif C != self.in_channels:
            raise ConfigError(f"Conv2d({self.in_channels}, {self.out_channels}) got inputs with {C} channels "
                              f"(per-example shape {in_shape})")
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        Ho, Wo = _out_size(H, kh, sh, ph, dh), _out_size(W, kw, sw, pw, dw)
        if Ho < 1 or Wo < 1:
            raise ConfigError(f"Conv2d kernel {self.kernel_size} (dilation {self.dilation}, padding {self.padding}) "
                              f"does not fit inputs of {H}x{W}")
        P = population.size
        self.weight = draw_weight(self.initializer, (self.out_channels, self.in_channels, kh, kw), population,
                                  self.init_scale, what=f"Conv2d({self.in_channels}, {self.out_channels}, "
                                                        f"{self.kernel_size})", device=device, dtype=dtype)
        self.bias = (Parameter(torch.zeros(P, self.out_channels, device=device, dtype=dtype), kind="bias",
                               decay=False, name="bias") if self.has_bias else None)
        self._cache: tuple[Any, ...] | None = None
        return (self.out_channels, Ho, Wo)

    def parameters(self) -> list[Parameter]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    # ---- strategy -----------------------------------------------------------------------
    def _choose(self, shared: bool, device: torch.device) -> str:
        """The strategy for this input: the setting, or ``"auto"``'s measured choice.

        On CPU the loop was never slower in the measurements (``docs/convolution.md``):
        oneDNN's grouped convolution (and its backward) runs 1.4-2x slower than ``P``
        plain ones, and the wide convolution ties at small ``P`` but loses at large ``P``
        to the copies that move the member axis in and out of the channels. On a GPU one
        large launch replaces ``P`` small ones, so ``"auto"`` uses wide (shared input) /
        grouped there -- not measured here; ``benchmarks/bench_conv.py --strategies
        --device cuda`` checks it.
        """
        if self.strategy == "wide" and not shared:
            raise ConfigError("Conv2d strategy='wide' needs an input shared by all members (1, N, C, H, W); this "
                              "input has one per member (e.g. after per-member augmentation): use 'auto'")
        if self.strategy != "auto":
            return self.strategy
        if self.weight.data.shape[0] == 1 or device.type == "cpu":
            return "loop"
        return "wide" if shared else "grouped"

    def _args(self) -> tuple[list[int], list[int], list[int]]:
        return list(self.stride), list(self.padding), list(self.dilation)

    # ---- forward / backward -------------------------------------------------------------
    # every strategy's output and input gradient are new tensors the layer does not keep (it keeps only
    # its input): see Module.fresh_output
    fresh_output = True
    fresh_input_grad = True

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        W = self.weight.data
        P = W.shape[0]
        if x.ndim != 5 or x.shape[0] not in (1, P) or x.shape[2] != self.in_channels:
            raise ConfigError(f"Conv2d({self.in_channels}, {self.out_channels}) expects inputs (P, N, "
                              f"{self.in_channels}, H, W) with P = {P} (or 1 for a shared input), got {tuple(x.shape)}")
        shared = x.shape[0] == 1 and P > 1
        how = _STRATEGIES[self._choose(shared, x.device)]
        self.last_strategy = how.name
        y, saved = how.forward(self, x, shared)
        self._cache = (how, saved, shared)
        return y

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        cache, self._cache = self._cache, None
        assert cache is not None, "Conv2d.backward without a forward"
        how, saved, shared = cache
        return how.backward(self, g, saved, shared)


class _Strategy:
    """One way of running the P members' convolutions; owns its forward and its backward.

    ``forward(layer, x, shared) -> (y, saved)``; ``backward(layer, g, saved, shared) -> dx or None``
    (fills the layer's parameter gradients). ``shared``: one input ``(1, N, ...)`` for all members.
    """

    name = ""

    def forward(self, layer: Conv2d, x: torch.Tensor, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def backward(self, layer: Conv2d, g: torch.Tensor, x: torch.Tensor, shared: bool) -> torch.Tensor | None:
        raise NotImplementedError


class _Loop(_Strategy):
    """One ordinary convolution per member (the CPU's fastest in every measured case)."""

    name = "loop"

    def forward(self, layer: Conv2d, x: torch.Tensor, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        W, b = layer.weight.data, None if layer.bias is None else layer.bias.data
        s, p, d = layer._args()
        ys = [F.conv2d(x[0 if shared else m], W[m], None if b is None else b[m], s, p, d) for m in range(W.shape[0])]
        # one member: its output as it is (a view); stacking would copy the largest tensor of the step
        return (ys[0].unsqueeze(0) if len(ys) == 1 else torch.stack(ys)), x

    def backward(self, layer: Conv2d, g: torch.Tensor, x: torch.Tensor, shared: bool) -> torch.Tensor | None:
        W = layer.weight.data
        s, p, d = layer._args()
        mask = [layer.input_grad, True, layer.bias is not None]
        dxs = []
        for m in range(W.shape[0]):
            dx_m, dw_m, db_m = _conv_backward(g[m], x[0 if shared else m], W[m],
                                              [layer.out_channels] if layer.bias is not None else None,
                                              s, p, d, 1, mask)
            layer.weight.grad[m].copy_(dw_m)
            if layer.bias is not None:
                layer.bias.grad[m].copy_(db_m)
            if layer.input_grad:
                dxs.append(dx_m)
        if not layer.input_grad:
            return None
        # A shared input feeds every member: its gradient is their sum.
        if len(dxs) == 1:
            return dxs[0].unsqueeze(0)
        return torch.stack(dxs).sum(dim=0, keepdim=True) if shared else torch.stack(dxs)


class _Stacked(_Strategy):
    """The members' filters stacked into one bank of ``P * out`` and run as one convolution:
    ``groups = 1`` (wide: the shared input is read once) or ``groups = P`` (grouped)."""

    groups_per_member = False

    def _input(self, layer: Conv2d, x: torch.Tensor, P: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, layer: Conv2d, x: torch.Tensor, shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
        W, b = layer.weight.data, None if layer.bias is None else layer.bias.data
        P, out, N = W.shape[0], layer.out_channels, x.shape[1]
        s, p, d = layer._args()
        x4 = self._input(layer, x, P)
        flat_b = None if b is None else b.reshape(P * out)
        y4 = F.conv2d(x4, W.reshape(P * out, *W.shape[2:]), flat_b, s, p, d, P if self.groups_per_member else 1)
        return y4.view(N, P, out, y4.shape[2], y4.shape[3]).transpose(0, 1).contiguous(), x4

    def backward(self, layer: Conv2d, g: torch.Tensor, x4: torch.Tensor, shared: bool) -> torch.Tensor | None:
        W = layer.weight.data
        P, out, N = W.shape[0], layer.out_channels, g.shape[1]
        s, p, d = layer._args()
        g4 = g.transpose(0, 1).reshape(N, P * out, *g.shape[3:])
        dx4, dw, db = _conv_backward(g4, x4, W.reshape(P * out, *W.shape[2:]),
                                     [P * out] if layer.bias is not None else None, s, p, d,
                                     P if self.groups_per_member else 1,
                                     [layer.input_grad, True, layer.bias is not None])
        layer.weight.grad.view(P * out, *W.shape[2:]).copy_(dw)
        if layer.bias is not None:
            layer.bias.grad.view(P * out).copy_(db)
        return self._input_grad(layer, dx4, P, N, shared) if layer.input_grad else None

    def _input_grad(self, layer: Conv2d, dx4: torch.Tensor, P: int, N: int, shared: bool) -> torch.Tensor:
        raise NotImplementedError


class _Wide(_Stacked):
    """Input shared by all members (e.g. the first layer): read once, ``P * out`` output channels."""

    name = "wide"

    def _input(self, layer: Conv2d, x: torch.Tensor, P: int) -> torch.Tensor:
        return x[0]

    def _input_grad(self, layer: Conv2d, dx4: torch.Tensor, P: int, N: int, shared: bool) -> torch.Tensor:
        # One convolution over all P*out filters: dx already sums every member's contribution.
        return dx4.unsqueeze(0)


class _Grouped(_Stacked):
    """Each member its own input: the members become the groups of one grouped convolution,
    ``(P, N, C, H, W) -> (N, P*C, H, W)``; member m owns channels m*C .. (m+1)*C - 1."""

    name = "grouped"
    groups_per_member = True

    def _input(self, layer: Conv2d, x: torch.Tensor, P: int) -> torch.Tensor:
        N = x.shape[1]
        return x.expand(P, *x.shape[1:]).transpose(0, 1).reshape(N, P * x.shape[2], *x.shape[3:])

    def _input_grad(self, layer: Conv2d, dx4: torch.Tensor, P: int, N: int, shared: bool) -> torch.Tensor:
        dx = dx4.view(N, P, dx4.shape[1] // P, *dx4.shape[2:]).transpose(0, 1)
        return dx.sum(dim=0, keepdim=True) if shared else dx.contiguous()


_STRATEGIES: dict[str, _Strategy] = {s.name: s for s in (_Loop(), _Wide(), _Grouped())}


class SpatialDropout2d(Dropout):
    """Drop whole channels (feature maps) while training; ``p`` may differ per member.

    For ``x (P, N, C, H, W)``: one Bernoulli(1 - p) draw per member, example and
    channel, shared by all ``H * W`` positions of that channel::

        inverted (default):  y = x * m / (1 - p)   training;   y = x          eval
        classic:             y = x * m             training;   y = x * (1-p)  eval

    Neighbouring pixels of a feature map are strongly correlated, so dropping single
    pixels (ordinary dropout) barely removes information: the neighbours carry it.
    Dropping the whole map does (Tompson et al. 2015). Backward: ``dx = g * m / (1-p)``
    (or ``g * m``) -- the same mask. Masks come from each member's generator.
    ``fix_mask`` takes a keep-mask ``(P, N, C)`` (or ``(P, N, C, 1, 1)``).

    See: torch.nn.Dropout2d, Keras SpatialDropout2D; Tompson et al., "Efficient Object
    Localization Using Convolutional Networks", CVPR 2015.
    """

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        if len(tuple(in_shape)) != 3:
            raise ConfigError(f"SpatialDropout2d expects feature maps (P, N, C, H, W), i.e. a per-example shape "
                              f"(C, H, W), got per-example shape {tuple(in_shape)}; use Dropout for flat features")
        return tuple(super().build(in_shape, population, device=device, dtype=dtype))

    def fix_mask(self, keep: torch.Tensor) -> None:
        """Hold a channel keep-mask ``(P, N, C)`` (or ``(P, N, C, 1, 1)``) fixed; 1 = kept."""
        if isinstance(keep, torch.Tensor) and keep.ndim == 3:
            keep = keep[..., None, None]
        super().fix_mask(keep)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        P = self.population.size
        if x.ndim != 5 or x.shape[0] not in (1, P):
            raise ConfigError(f"SpatialDropout2d expects inputs (P, N, C, H, W) with P = {P} (or 1), got "
                              f"{tuple(x.shape)}")
        return super().forward(x, training=training)  # a dropped channel gets no gradient at any position

    def _mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return (x.shape[1], x.shape[2], 1, 1)  # one draw per member, example and channel
