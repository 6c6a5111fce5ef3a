"""Pooling and reshaping of feature maps ``(P, N, C, H, W)``.

Max and average pooling have no parameters and treat every member, example and
channel alike, so the population axis simply joins the batch: ``(P, N, C, H, W)``
is viewed as ``(P*N, C, H, W)`` (no copy) and PyTorch's kernels run once, called
explicitly: ``aten.max_pool2d_with_indices`` / ``..._backward`` and
``aten.avg_pool2d`` / ``avg_pool2d_backward``. A shared input ``(1, N, ...)`` stays
shared (its output is ``(1, N, ...)`` too) -- except for stochastic pooling in
training, where every member samples its own windows.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from trainlab.errors import ConfigError
from trainlab.nn._conv import _out_size, pair
from trainlab.nn._module import Module
from trainlab.population import Population, member_draw

__all__ = ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "StochasticPool2d", "Flatten"]

_max_pool = torch.ops.aten.max_pool2d_with_indices.default
_max_pool_backward = torch.ops.aten.max_pool2d_with_indices_backward.default
_avg_pool = torch.ops.aten.avg_pool2d.default
_avg_pool_backward = torch.ops.aten.avg_pool2d_backward.default


def _check_maps(layer: Module, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise ConfigError(f"{type(layer).__name__} expects feature maps (P, N, C, H, W), i.e. a per-example shape "
                          f"(C, H, W), got per-example shape {in_shape}")
    C, H, W = in_shape
    return C, H, W


def _check_input(layer: Module, x: torch.Tensor, P: int) -> None:
    if x.ndim != 5 or x.shape[0] not in (1, P):
        raise ConfigError(f"{type(layer).__name__} expects inputs (P, N, C, H, W) with P = {P} (or 1 for a shared "
                          f"input), got {tuple(x.shape)}")


class _Pool(Module):
    """Window settings shared by max and average pooling (PyTorch's conventions)."""

    def _init_window(self, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool) -> None:
        owner = type(self).__name__
        self.kernel_size = pair(kernel_size, "kernel_size", owner)
        # stride defaults to the kernel: non-overlapping windows, as in torch and Keras
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", owner)
        self.padding = pair(padding, "padding", owner, low=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ConfigError(f"{owner} padding must be at most half the kernel size, got padding={padding!r}, "
                              f"kernel_size={kernel_size!r}")
        if not isinstance(ceil_mode, bool):
            raise ConfigError(f"{owner} ceil_mode must be true or false, got {ceil_mode!r}")
        self.ceil_mode = ceil_mode

    def _build_window(self, in_shape: tuple[int, ...], population: Population,
                      dilation: tuple[int, int] = (1, 1)) -> tuple[int, ...]:
        super().build(in_shape, population)
        C, H, W = _check_maps(self, tuple(in_shape))
        x = torch.empty(1, C, H, W, device="meta")  # the output size by torch's own rule (ceil_mode, padding)
        try:
            out = F.max_pool2d(x, self.kernel_size, self.stride, self.padding, dilation, self.ceil_mode)
        except RuntimeError as e:
            raise ConfigError(f"{type(self).__name__} kernel {self.kernel_size} does not fit inputs of "
                              f"{H}x{W}: {e}") from None
        return tuple(out.shape[1:])

    def _as_batch(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x, self.population_size)
        return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


class MaxPool2d(_Pool):
    """Maximum over each ``k x k`` window (stride ``s``, default ``s = k``) of every channel.

    Backward routes each window's gradient to the position that held the maximum
    (the "switch" kept in forward; on ties, the first one, as in PyTorch); every
    other position gets 0. Overlapping windows add up.

    See: torch.nn.MaxPool2d (same padding, dilation and ``ceil_mode`` rules).
    """

    _cache: tuple[torch.Tensor, torch.Tensor, torch.Size] | None  # what backward needs from the last forward

    def __init__(self, kernel_size: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None, *,
                 padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                 ceil_mode: bool = False) -> None:
        self._init_window(kernel_size, stride, padding, ceil_mode)
        self.dilation = pair(dilation, "dilation", "MaxPool2d")
        self._settings = dict(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                              ceil_mode=ceil_mode)

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        return self._build_window(in_shape, population, self.dilation)

    # the pooled output and the input gradient are new tensors (the layer keeps its input and the argmax
    # indices): see Module.fresh_output
    fresh_output = True
    fresh_input_grad = True

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        x4 = self._as_batch(x)
        y4, idx = _max_pool(x4, list(self.kernel_size), list(self.stride), list(self.padding),
                            list(self.dilation), self.ceil_mode)
        self._cache = (x4, idx, x.shape)
        return y4.view(x.shape[0], x.shape[1], *y4.shape[1:])

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        assert self._cache is not None, "MaxPool2d.backward without a forward"
        x4, idx, shape = self._cache
        self._cache = None
        if not self.input_grad:
            return None
        g4 = g.reshape(g.shape[0] * g.shape[1], *g.shape[2:])
        dx4 = _max_pool_backward(g4, x4, list(self.kernel_size), list(self.stride), list(self.padding),
                                 list(self.dilation), self.ceil_mode, idx)
        return dx4.view(shape)


class AvgPool2d(_Pool):
    """Mean over each ``k x k`` window (stride ``s``, default ``s = k``) of every channel.

    Backward spreads each window's gradient evenly, ``g / (window size)``, over its
    positions. With padding, ``count_include_pad=True`` (PyTorch's default) divides
    by ``k*k`` including the zeros; ``False`` by the number of real positions.

    See: torch.nn.AvgPool2d.
    """

    _cache: tuple[torch.Tensor, torch.Size] | None  # what backward needs from the last forward

    def __init__(self, kernel_size: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None, *,
                 padding: int | Sequence[int] = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        self._init_window(kernel_size, stride, padding, ceil_mode)
        if not isinstance(count_include_pad, bool):
            raise ConfigError(f"AvgPool2d count_include_pad must be true or false, got {count_include_pad!r}")
        self.count_include_pad = count_include_pad
        self._settings = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                              count_include_pad=count_include_pad)

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        return self._build_window(in_shape, population)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        x4 = self._as_batch(x)
        y4 = _avg_pool(x4, list(self.kernel_size), list(self.stride), list(self.padding), self.ceil_mode,
                       self.count_include_pad, None)
        self._cache = (x4, x.shape)
        return y4.view(x.shape[0], x.shape[1], *y4.shape[1:])

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        assert self._cache is not None, "AvgPool2d.backward without a forward"
        x4, shape = self._cache
        self._cache = None
        if not self.input_grad:
            return None
        g4 = g.reshape(g.shape[0] * g.shape[1], *g.shape[2:])
        dx4 = _avg_pool_backward(g4, x4, list(self.kernel_size), list(self.stride), list(self.padding),
                                 self.ceil_mode, self.count_include_pad, None)
        return dx4.view(shape)


class GlobalAvgPool2d(Module):
    """Mean of each channel over all positions: ``(P, N, C, H, W) -> (P, N, C)``.

    ``y[p, n, c] = (1 / HW) sum_{i,j} x[p, n, c, i, j]``; backward ``dx = g / HW`` at
    every position. The usual head of an all-convolutional net (Lin et al. 2013,
    "Network in Network"): one number per channel, no weights, any input size.

    See: torch.nn.AdaptiveAvgPool2d(1) followed by torch.nn.Flatten().
    """

    def __init__(self) -> None:
        self._settings = {}

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        C, _, _ = _check_maps(self, tuple(in_shape))
        return (C,)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        _check_input(self, x, self.population_size)
        self._shape = x.shape
        return x.mean(dim=(3, 4))

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        shape = self._shape
        return (g / (shape[3] * shape[4]))[..., None, None].expand(shape).contiguous()


class Flatten(Module):
    """``(P, N, d1, d2, ...) -> (P, N, d1*d2*...)`` in C order (channel-major, as torch.nn.Flatten).

    A view forward and back: ``dx`` is ``g`` reshaped to the input's shape. Put it
    between the convolutional part of a net and its first :class:`Linear`.
    """

    def __init__(self) -> None:
        self._settings = {}

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        return (math.prod(in_shape),)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._shape = x.shape
        return x.reshape(x.shape[0], x.shape[1], -1)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        return g.reshape(self._shape)


class StochasticPool2d(Module):
    """Stochastic pooling (Zeiler & Fergus 2013) over ``k x k`` windows (stride default ``k``).

    Inputs must be non-negative (put it after a ReLU). In each window, position ``i``
    has probability ``p_i = a_i / sum_j a_j``:

    * training: the output is ``a_i`` at ONE position ``i`` drawn with probability
      ``p_i`` -- a fresh draw per member, example, channel and window, from the
      member's generator. Backward sends the window's gradient to the drawn position
      (like max pooling, with a random "switch"). A window of zeros gives 0.
    * eval: the probability-weighted average ``y = sum_i p_i a_i = sum a^2 / sum a``
      (the expectation of the training output); backward
      ``dy/da_j = (2 a_j - y) / sum a`` (0 for a window of zeros).

    A regularizer, listed in the course notes with dropout and DropConnect: the net
    cannot rely on one position being picked. ``mc = True`` samples in eval too.
    ``fix_sample(index)`` holds the drawn positions fixed (an int64 tensor
    ``(P, N, C, H_out, W_out)`` of window positions in ``[0, kh*kw)``, row-major in
    the window) for gradient checks; ``last_sample`` is the last draw.

    See: Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
    Convolutional Neural Networks", ICLR 2013, https://arxiv.org/abs/1301.3557
    (no torch equivalent; the export is the eval-mode average).
    """

    _cache: (tuple[Literal["sample"], torch.Tensor, torch.Size]
              | tuple[Literal["mean"], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None)  # what backward needs from the last forward

    def __init__(self, kernel_size: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None) -> None:
        self.kernel_size = pair(kernel_size, "kernel_size", "StochasticPool2d")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", "StochasticPool2d")
        self._settings = dict(kernel_size=kernel_size, stride=stride)
        self.mc = False
        self._fixed: torch.Tensor | None = None
        self._last: torch.Tensor | None = None

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        C, H, W = _check_maps(self, tuple(in_shape))
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        Ho, Wo = _out_size(H, kh, sh, 0, 1), _out_size(W, kw, sw, 0, 1)
        if Ho < 1 or Wo < 1:
            raise ConfigError(f"StochasticPool2d kernel {self.kernel_size} does not fit inputs of {H}x{W}")
        self.population = population
        self.device = torch.device(device)
        self._out_hw = (Ho, Wo)
        return (C, Ho, Wo)

    def fix_sample(self, index: torch.Tensor) -> None:
        """Use these window positions in every sampling forward until :meth:`release_sample`."""
        kk = self.kernel_size[0] * self.kernel_size[1]
        if not isinstance(index, torch.Tensor) or index.dtype not in (torch.int64, torch.int32):
            raise ConfigError("StochasticPool2d.fix_sample expects an integer tensor of window positions")
        if bool(((index < 0) | (index >= kk)).any()):
            raise ConfigError(f"StochasticPool2d.fix_sample positions must be in [0, {kk}) (row-major in the window)")
        self._fixed = index.detach().long().clone()

    def release_sample(self) -> None:
        self._fixed = None

    @property
    def last_sample(self) -> torch.Tensor | None:
        """Window positions drawn by the last sampling forward, ``(P, N, C, H_out, W_out)``."""
        return self._last

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """``(Q, N, C, H, W) -> (Q*N*C, kh*kw, L)``: every window as a column."""
        B = x.shape[0] * x.shape[1] * x.shape[2]
        return F.unfold(x.reshape(B, 1, *x.shape[3:]), self.kernel_size, stride=self.stride)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        P = self.population_size
        _check_input(self, x, P)
        if bool((x < 0).any()):
            raise ConfigError("StochasticPool2d needs non-negative inputs (activations are its probabilities): "
                              "put it after a ReLU")
        Ho, Wo = self._out_hw
        sampling = training or self.mc
        # A shared input sampled in training: every member draws its own positions from it.
        self._shared = bool(sampling and x.shape[0] != P)
        if self._shared:
            x = x.expand(P, *x.shape[1:])
        Q, N, C = x.shape[:3]
        a = self._windows(x)  # (B, kk, L)
        self._shape = x.shape
        if sampling:
            if self._fixed is not None:
                want = (P, N, C, Ho, Wo)
                if tuple(self._fixed.shape) != want:
                    raise ConfigError(f"StochasticPool2d: the fixed sample has shape {tuple(self._fixed.shape)}, "
                                      f"this forward needs {want}")
                idx = self._fixed.to(x.device).reshape(-1, 1, Ho * Wo)
            else:
                # u in (0, 1]; the drawn position is the first whose running sum reaches u * total,
                # so position i is drawn with probability a_i / total (a zero never is, unless all are).
                u = 1.0 - member_draw(self.population, (N, C, Ho * Wo), kind="uniform", device=x.device,
                                      dtype=x.dtype)
                c = a.cumsum(dim=1)
                target = u.reshape(-1, 1, Ho * Wo) * c[:, -1:, :]
                idx = (c < target).sum(dim=1, keepdim=True).clamp_(max=a.shape[1] - 1)
            self._last = idx.view(P, N, C, Ho, Wo)
            self._cache = ("sample", idx, a.shape)
            y = a.gather(1, idx)
        else:
            s = a.sum(dim=1, keepdim=True)
            safe = torch.where(s > 0, s, torch.ones_like(s))
            y = (a * a).sum(dim=1, keepdim=True) / safe  # 0 where the window is all zeros
            self._cache = ("mean", a, safe, y, s > 0)
        return y.view(Q, N, C, Ho, Wo)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        cache, self._cache = self._cache, None
        assert cache is not None, "StochasticPool2d.backward without a forward"
        if not self.input_grad:
            return None
        Ho, Wo = self._out_hw
        shape = self._shape
        B = shape[0] * shape[1] * shape[2]
        g3 = g.reshape(B, 1, Ho * Wo)
        if cache[0] == "sample":
            _, idx, wshape = cache
            da = torch.zeros(wshape, dtype=g.dtype, device=g.device).scatter_(1, idx, g3)
        else:
            _, a, safe, y, nonzero = cache
            da = (2.0 * a - y) / safe * (g3 * nonzero)
        dx = F.fold(da, shape[3:], self.kernel_size, stride=self.stride).view(shape)
        return dx.sum(dim=0, keepdim=True) if self._shared else dx
