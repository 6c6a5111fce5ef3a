"""Normalization layers on the population axis: BatchNorm, LayerNorm, GroupNorm, InstanceNorm.

All four standardize some set of values, ``xhat = (x - mean) / sqrt(var + eps)`` with
the *biased* variance of that set, then (optionally) scale and shift,
``y = gamma * xhat + beta``. They differ only in which values form the set:

==============  ==========================================  ============================
layer           statistics over, per member                 gamma / beta
==============  ==========================================  ============================
BatchNorm       the batch: N (and H, W), per channel         per channel ``(P, C)``
LayerNorm       one example: all its features                per element ``(P, C[, H, W])``
GroupNorm       one example: C/G channels (and H, W)         per channel ``(P, C)``
InstanceNorm    one example: H, W, per channel               per channel ``(P, C)``
==============  ==========================================  ============================

Statistics never mix members: every reduction runs over ``N`` and the per-example
axes, never over ``P``. gamma and beta are ``Parameter(kind="norm", decay=False)``.

The backward of a standardization goes through its statistics (the mean and the
variance depend on every value of the set); :func:`_standardize_backward` holds the
one compact formula all four layers use. See ``docs/normalization.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import math
from typing import Any
import warnings

import torch

from trainlab.errors import ConfigError
from trainlab.nn._module import Module, Parameter, check_size as _check_size
from trainlab.nn._traceable import batch_norm_backward
from trainlab.population import Population, member_values

__all__ = [
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    "InstanceNorm",
    "momentum_from_keras",
    "momentum_to_keras",
    "textbook_batch_norm",
    "batch_norm_layers",
    "compute_population_statistics",
    "recompute_running_statistics",
    "StatisticsPass",
]

#: above this, a BatchNorm momentum looks like the Keras/textbook convention (weight of the old value)
_MOMENTUM_WARN = 0.5


# ---- the shared math ------------------------------------------------------------------


def _standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``xhat = (x - mean) / sqrt(var + eps)`` over ``dims`` (biased variance); also returns mean, var, 1/std."""
    # Two passes (mean, then mean of squared deviations): on CPU this is several times
    # faster than torch.var_mean's one-pass Welford reduction, and as accurate here.
    mean = x.mean(dim=dims, keepdim=True)
    xc = x - mean
    var = (xc * xc).mean(dim=dims, keepdim=True)
    inv_std = torch.rsqrt(var + eps)
    return xc.mul_(inv_std), mean, var, inv_std


def _mean_var(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and biased variance over ``dims`` (kept as size-1 dims)."""
    mean = x.mean(dim=dims, keepdim=True)
    xc = x - mean
    return mean, (xc * xc).mean(dim=dims, keepdim=True)


def _standardize_backward(dxhat: torch.Tensor, xhat: torch.Tensor, inv_std: torch.Tensor,
                          dims: tuple[int, ...]) -> torch.Tensor:
    """``dL/dx`` from ``dL/dxhat`` for ``xhat = (x - mean(x)) / sqrt(var(x) + eps)`` over ``dims``.

    Each ``x_i`` reaches the loss three ways: directly, through the mean and through
    the variance of its set (``m`` values). With ``d mean/d x_i = 1/m`` and
    ``d var/d x_i = 2 (x_i - mean) / m`` -- the variance's path through the mean
    vanishes because ``sum_i (x_i - mean) = 0`` -- the three paths collect into

        dx = (1/m) * inv_std * (m*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat))

    two reductions and no explicit ``dvar``/``dmean`` (the textbook's staged version
    gives the same numbers with more passes). Written below with means instead of
    ``1/m`` times sums.
    """
    if dxhat.shape[0] != xhat.shape[0]:
        # Shared (1, N, ...) input: the members' input gradients are summed, and the
        # map dxhat -> dx is linear with the same xhat for all members, so sum first.
        dxhat = dxhat.sum(dim=0, keepdim=True)
    mean_d = dxhat.mean(dim=dims, keepdim=True)
    mean_dx = (dxhat * xhat).mean(dim=dims, keepdim=True)
    return inv_std * (dxhat - mean_d - xhat * mean_dx)


def _check_eps(eps: Any, layer: str) -> float:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f"{layer} eps must be a number > 0, got {eps!r}")
    return float(eps)


def _check_bool(value: Any, name: str, layer: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{layer} {name} must be true or false, got {value!r}")


class _Normalization(Module):
    """Shared pieces: the optional per-member affine ``y = gamma * xhat + beta``."""

    affine: bool
    _ndim: int  # the input's rank, (P, N, ...) included; set by each subclass's build

    def _init_common(self, eps: float, affine: bool) -> None:
        """Check and keep the two settings every normalization layer has: ``eps`` and ``affine``."""
        name = type(self).__name__
        _check_eps(eps, name)
        _check_bool(affine, "affine", name)
        self.eps = float(eps)
        self.affine = affine

    def _channels(self, in_shape: tuple[int, ...], attr: str) -> int:
        """The channel count ``C`` of a per-example shape ``(C, ...)``: recorded as ``attr`` when it is
        still None, otherwise checked against it (one line naming the layer and both counts)."""
        C = in_shape[0]
        have = getattr(self, attr)
        if have is None:
            setattr(self, attr, C)
        elif have != C:
            raise ConfigError(f"{type(self).__name__}({attr}={have}) got inputs with {C} channels "
                              f"(per-example shape {in_shape})")
        return C

    def _build_affine(self, P: int, shape: tuple[int, ...], view: tuple[int, ...], device: torch.device | str,
                      dtype: torch.dtype) -> None:
        # gamma = 1, beta = 0: the layer starts as a pure standardization (as in torch and Keras).
        self._param_view = (P,) + view
        if self.affine:
            self.gamma = Parameter(torch.ones((P,) + shape, device=device, dtype=dtype), kind="norm", decay=False,
                                   name="gamma")
            self.beta = Parameter(torch.zeros((P,) + shape, device=device, dtype=dtype), kind="norm", decay=False,
                                  name="beta")

    def parameters(self) -> list[Parameter]:
        return [self.gamma, self.beta] if self.affine else []

    def freeze_affine(self, frozen: bool = True) -> None:
        """Stop (or, with ``frozen=False``, resume) training gamma and beta: sets their ``trainable`` flag."""
        for p in self.parameters():
            p.trainable = not frozen

    def _gamma(self) -> torch.Tensor:
        return self.gamma.data.view(self._param_view)

    def _beta(self) -> torch.Tensor:
        return self.beta.data.view(self._param_view)

    def _affine_forward(self, xhat: torch.Tensor) -> torch.Tensor:
        if not self.affine:
            return xhat
        return torch.addcmul(self._beta(), xhat, self._gamma())

    def _affine_backward(self, g: torch.Tensor, xhat: torch.Tensor, sum_dims: tuple[int, ...]) -> torch.Tensor:
        """Fill gamma/beta grads (summed over ``sum_dims``); return ``dL/dxhat``."""
        if not self.affine:
            return g
        self.gamma.grad.copy_((g * xhat).sum(dim=sum_dims).reshape(self.gamma.grad.shape))
        self.beta.grad.copy_(g.sum(dim=sum_dims).reshape(self.beta.grad.shape))
        return g * self._gamma()

    def _check_rank(self, x: torch.Tensor, expected: str) -> None:
        if x.ndim != self._ndim or x.shape[0] not in (1, self.population_size):
            raise ConfigError(f"{type(self).__name__} expects inputs of shape {expected} with P = "
                              f"{self.population_size} (or 1 for a shared input), got {tuple(x.shape)}")


# ---- BatchNorm's modes: what a forward did, and the backward that goes with it --------------

#: dtypes PyTorch's native CPU/CUDA batch-norm kernels take (others use the reference formulas)
_NATIVE_DTYPES = (torch.float32, torch.float64)


class _Mode:
    """One BatchNorm forward: normalize ``x`` and keep what the matching backward needs."""

    def forward(self, layer: "BatchNorm", x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, layer: "BatchNorm", g: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError


class _ReferenceBatchMode(_Mode):
    """Batch statistics, the explicit formulas: :func:`_standardize` forward, :func:`_standardize_backward`.

    The documented reference (``BatchNorm.reference = True``); also used for an input shared by
    several members, whose statistics are computed once for all of them."""

    def forward(self, layer: BatchNorm, x: torch.Tensor) -> torch.Tensor:
        m = layer._batch_stats_input(x)
        xhat, mean, var, inv_std = _standardize(x, layer._dims, layer.eps)
        layer._record(mean, var, var * (m / (m - 1)))
        self.xhat, self.inv_std = xhat, inv_std
        if not layer.affine:
            xhat = xhat.expand((layer.population_size,) + xhat.shape[1:])
        return layer._affine_forward(xhat)

    def backward(self, layer: BatchNorm, g: torch.Tensor) -> torch.Tensor | None:
        dxhat = layer._affine_backward(g, self.xhat, layer._dims)
        if not layer.input_grad:
            return None
        return _standardize_backward(dxhat, self.xhat, self.inv_std, layer._dims)


# The kernels by their direct bindings: torch.native_batch_norm is the op torch.ops.aten.native_batch_norm
# resolves to, without the Python overload lookup of an op packet (a few microseconds per call); the
# backward through trainlab.nn._traceable (the same kernel, recordable by the JIT tracer).


def _reshaped(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``t.reshape(shape)``; for a contiguous ``t`` (the kernels' outputs, a Linear's) the view directly: one
    dispatcher call instead of reshape's two."""
    return t.view(shape) if t.is_contiguous() else t.reshape(shape)


class _NativeBatchMode(_Mode):
    """Batch statistics with PyTorch's own kernels (``aten::native_batch_norm`` and its backward,
    what ``torch.nn.BatchNorm*d`` runs). A population's ``(P, N, C[, H, W])`` is ``P*C`` independent
    channels: it is laid out as ``(N, P*C[, H, W])`` -- a view for one member, a copy for more -- so
    one kernel call normalizes every member's channels over ``N`` (and ``H, W``) only. Per-activation
    statistics (``statistics="activation"``) make every ``(c, h, w)`` a channel.

    With torch's conventions (one momentum for all members, unbiased running variance, no
    statistics pass, every member active) the kernel also updates the running averages in place,
    as ``torch.nn.BatchNorm1d`` does. Otherwise the batch mean comes back from the kernel and the
    unbiased batch variance from its running-variance update into a zeroed scratch buffer with
    momentum 1 (``0 * 0 + 1 * var_B m/(m-1)``), and :meth:`BatchNorm._record` applies trainlab's
    conventions (per-member momentum, biased variance, inactive members, statistics passes). The numbers equal the
    reference formulas up to rounding (``tests/nn_tests/test_norm_native.py``)."""

    def _to_channels(self, layer: "BatchNorm", t: torch.Tensor) -> torch.Tensor:
        P, N = t.shape[:2]
        if P == 1:  # one member: the layout is already the channels'
            return _reshaped(t, (N, -1) if layer._dims == (1,) else t.shape[1:])
        if layer._dims == (1,):  # every statistic element is a channel
            return t.reshape(P, N, -1).transpose(0, 1).reshape(N, -1)
        return t.transpose(0, 1).reshape(N, P * t.shape[2], *t.shape[3:])

    def _from_channels(self, t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if shape[0] == 1:
            return _reshaped(t, shape)
        return t.reshape(shape[1], shape[0], *shape[2:]).transpose(0, 1).contiguous()

    def forward(self, layer: BatchNorm, x: torch.Tensor) -> torch.Tensor:
        m = layer._batch_stats_input(x)
        P = x.shape[0]
        xc = self._to_channels(layer, x)
        K = xc.shape[1]
        w, b, running_mean, running_var = layer._channel_views(K)
        if (layer._collect is None and layer._active is None and layer._shared_momentum is not None
                and layer.running_variance == "unbiased"):
            # torch's own convention throughout: the kernel updates the running averages in place
            # (running = (1 - momentum) running + momentum * batch, unbiased variance), exactly as
            # torch.nn.BatchNorm1d/2d; (P, *S) buffers viewed as the P*C channels
            y, save_mean, save_invstd = torch.native_batch_norm(
                xc, w, b, running_mean, running_var, True, layer._shared_momentum, layer.eps)
            layer.num_batches_tracked += 1
        else:
            scratch = layer._scratch
            if scratch is None or scratch[0].shape[0] != K or scratch[0].dtype != x.dtype:
                scratch = layer._scratch = (torch.zeros(K, dtype=x.dtype, device=x.device),
                                            torch.zeros(K, dtype=x.dtype, device=x.device))
            mean_buf, var_buf = scratch
            mean_buf.zero_()
            var_buf.zero_()  # momentum 1 still multiplies the old value by 0: no NaN may stay in it
            y, save_mean, save_invstd = torch.native_batch_norm(xc, w, b, mean_buf, var_buf, True, 1.0,
                                                                         layer.eps)
            unbiased = var_buf.view(P, -1)
            layer._record(save_mean.view(P, -1), unbiased * ((m - 1) / m), unbiased)
        self.xc, self.w, self.shape = xc, w, x.shape
        self.save_mean, self.save_invstd = save_mean, save_invstd
        return self._from_channels(y, x.shape)

    def backward(self, layer: BatchNorm, g: torch.Tensor) -> torch.Tensor | None:
        mask = [layer.input_grad, layer.affine, layer.affine]
        if not any(mask):
            return None
        dx, dw, db = batch_norm_backward(self._to_channels(layer, g), self.xc, self.w, self.save_mean,
                                         self.save_invstd, layer.eps, mask)
        if layer.affine:
            dgamma, dbeta = layer._grad_views(dw.shape[0])
            dgamma.copy_(dw)
            dbeta.copy_(db)
        return self._from_channels(dx, self.shape) if layer.input_grad else None


class _FoldedMode(_Mode):
    """Fixed statistics ``E``, ``Var`` (running or population averages; frozen or eval mode): one affine
    map per channel, ``y = a x + b`` with ``a = gamma / sqrt(Var + eps)``, ``b = beta - a E``."""

    def __init__(self, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.mean_stat, self.var_stat = mean, var

    def forward(self, layer: BatchNorm, x: torch.Tensor) -> torch.Tensor:
        view = layer._param_view
        inv_std = torch.rsqrt(self.var_stat + layer.eps)
        a = layer.gamma.data * inv_std if layer.affine else inv_std
        b = layer.beta.data - a * self.mean_stat if layer.affine else -a * self.mean_stat
        self.x, self.mean, self.inv_std, self.a = x, self.mean_stat.view(view), inv_std.view(view), a.view(view)
        return torch.addcmul(b.view(view), x, a.view(view))

    def backward(self, layer: BatchNorm, g: torch.Tensor) -> torch.Tensor | None:
        if layer.affine:
            # y = gamma (x - E) inv_std + beta: dgamma = sum g (x - E) inv_std, dbeta = sum g
            layer.gamma.grad.copy_((g * (self.x - self.mean)).sum(dim=layer._dims)
                                   * self.inv_std.reshape(layer.gamma.grad.shape))
            layer.beta.grad.copy_(g.sum(dim=layer._dims))
        if not layer.input_grad:
            return None
        dx = g * self.a
        return dx.sum(dim=0, keepdim=True) if layer._shared else dx


# ---- BatchNorm ------------------------------------------------------------------------


class BatchNorm(_Normalization):
    """Batch normalization (Ioffe & Szegedy 2015) for ``(P, N, C)`` or ``(P, N, C, H, W)``.

    Training (``training=True``), per member and channel ``c``, over the ``m = N``
    (or ``N*H*W``) values of the batch::

        mu_B   = (1/m) sum x                       # batch mean
        var_B  = (1/m) sum (x - mu_B)^2            # batch variance, BIASED (1/m)
        xhat   = (x - mu_B) / sqrt(var_B + eps)
        y      = gamma * xhat + beta

    and the backward goes through ``mu_B`` and ``var_B`` (see ``_standardize_backward``).
    Statistics are per member: they reduce over ``N`` (and ``H``, ``W``), never ``P``.
    An input shared by the members, ``(1, N, ...)``, has the same batch statistics for
    every member; the output is ``(P, N, ...)`` and the input gradient is summed over
    the members (as for ``Linear``).

    Running averages (``inference="running"``), PyTorch's convention::

        running_mean = (1 - momentum) * running_mean + momentum * mu_B
        running_var  = (1 - momentum) * running_var  + momentum * var_B * m / (m - 1)

    i.e. ``momentum`` weighs the NEW batch statistic (default 0.1) and the running
    variance takes the UNBIASED batch variance, exactly as ``torch.nn.BatchNorm*d``.
    Keras' ``momentum`` weighs the OLD value (default 0.99; ``momentum_keras = 1 -
    momentum_torch``) and Keras and the textbook (Saito, ``momentum=0.9`` on the old
    value, i.e. torch 0.1) average the biased variance. Use :func:`momentum_from_keras`
    / :func:`momentum_to_keras`; a momentum above 0.5 draws a warning, since it most
    likely follows the other convention. ``momentum`` may differ per member.

    ``running_variance="biased"`` averages the biased ``var_B`` instead (Keras, the textbook);
    ``running_var_init`` is the running variance's start (1 as torch and Keras; the textbook
    starts it at 0, like the running mean). ``statistics="activation"`` normalizes conv maps
    ``(C, H, W)`` per activation -- each ``(c, h, w)`` over the ``N`` examples only, with gamma,
    beta and the running statistics of shape ``(C, H, W)`` -- as the textbook's
    ``BatchNormalization`` does (it reshapes ``(N, C, H, W)`` to ``(N, C*H*W)``); the default
    ``"channel"`` shares them over ``H, W`` (Ioffe & Szegedy's conv BN, torch's ``BatchNorm2d``).
    For flat inputs the two are the same. :func:`textbook_batch_norm` gives all of the
    textbook's settings at once.

    Inference (``training=False``) uses fixed statistics ``E[x]``, ``Var[x]`` folded
    into one affine map per channel::

        y = a * x + b,   a = gamma / sqrt(Var[x] + eps),   b = beta - a * E[x]

    (with its own backward, so gradients can be checked in eval mode too).
    ``inference="running"`` takes ``E, Var`` from the running averages;
    ``inference="population"`` from :func:`compute_population_statistics`, Ioffe &
    Szegedy's Algorithm 2: ``E[x] = mean_B mu_B``, ``Var[x] = m/(m-1) mean_B var_B``
    over training mini-batches of size ``m``.

    Batch of one: in training, a channel with a single value (``N = 1`` for
    ``(P, N, C)``; ``N = 1`` and ``H*W = 1`` for images) has zero batch variance and
    the output would be ``beta`` whatever the input, so it raises ``ConfigError``
    (PyTorch raises too; ``N = 1`` with ``H*W > 1`` is allowed, as in PyTorch). Use
    LayerNorm or GroupNorm for per-example statistics.

    Two separate freeze switches: ``freeze_stats=True`` normalizes with the running
    statistics in training too and never updates them (frozen BN for fine-tuning;
    torch: put the BN module in ``eval()``); :meth:`freeze_affine` stops gamma/beta
    (their ``trainable`` flag).

    Parameters
    ----------
    num_features:
        Channels ``C``; ``None`` takes them from the input shape at build.
    eps:
        Added to the variance (torch 1e-5, Keras 1e-3, the textbook 10e-7 = 1e-6).
    momentum:
        PyTorch convention, in ``[0, 1]``; one number or one per member.
    inference:
        ``"running"`` or ``"population"``: which statistics eval mode uses.
    affine:
        Learn gamma (starts at 1) and beta (starts at 0), each ``(P, C)``.
    freeze_stats:
        Use and keep the running statistics, also in training.
    running_variance:
        ``"unbiased"`` (torch: ``var_B m/(m-1)``) or ``"biased"`` (Keras, the textbook: ``var_B``)
        in the running variance.
    running_var_init:
        The running variance's initial value (and its value after a reset): 1 (torch, Keras)
        or 0 (the textbook).
    statistics:
        ``"channel"`` or ``"activation"`` (conv inputs only; see above).

    Buffers: ``running_mean``, ``running_var`` (start 0 and 1), ``num_batches_tracked``
    (``(P,)``), ``population_mean``, ``population_var`` and ``population_batches``
    (``(P,)``, 0 until computed) -- all saved with the model.

    See: torch.nn.BatchNorm1d, torch.nn.BatchNorm2d; https://arxiv.org/abs/1502.03167
    """

    #: normalize training batches with the explicit formulas (``_standardize`` and its backward)
    #: instead of PyTorch's native batch-norm kernels: the documented reference, the same numbers
    #: up to rounding (tests/nn_tests/test_norm_native.py). Set on a layer, or on the class.
    reference: bool = False

    # Its output is a new tensor it does not keep -- except without affine, where the reference formulas
    # return (a view of) the xhat kept for the backward: the promise is the instance's (set in __init__).
    # Every mode's input gradient is new. See Module.fresh_output.
    fresh_output = True
    fresh_input_grad = True

    def __init__(self, num_features: int | None = None, *, eps: float = 1e-5,
                 momentum: float | Sequence[float] = 0.1, inference: str = "running", affine: bool = True,
                 freeze_stats: bool = False, running_variance: str = "unbiased", running_var_init: float = 1.0,
                 statistics: str = "channel") -> None:
        _check_size(num_features, "num_features", "BatchNorm")
        if running_variance not in ("unbiased", "biased"):
            raise ConfigError(f"BatchNorm running_variance must be 'unbiased' (torch) or 'biased' (Keras, the "
                              f"textbook), got {running_variance!r}")
        if (not isinstance(running_var_init, (int, float)) or isinstance(running_var_init, bool)
                or not math.isfinite(running_var_init) or running_var_init < 0):
            raise ConfigError(f"BatchNorm running_var_init must be a number >= 0, got {running_var_init!r}")
        if statistics not in ("channel", "activation"):
            raise ConfigError(f"BatchNorm statistics must be 'channel' (per channel, over N, H, W) or 'activation' "
                              f"(per (c, h, w), over N: the textbook's), got {statistics!r}")
        _check_eps(eps, "BatchNorm")
        if inference not in ("running", "population"):
            raise ConfigError(f"BatchNorm inference must be 'running' or 'population', got {inference!r}")
        _check_bool(affine, "affine", "BatchNorm")
        _check_bool(freeze_stats, "freeze_stats", "BatchNorm")
        values = member_values(momentum, len(momentum) if isinstance(momentum, Sequence) else 1,
                               name="BatchNorm momentum", dtype=torch.float64, low=0.0, high=1.0)
        if bool((values > _MOMENTUM_WARN).any()):
            warnings.warn(
                f"BatchNorm momentum={momentum!r} is above {_MOMENTUM_WARN}: trainlab uses PyTorch's convention, "
                f"running = (1 - momentum) * running + momentum * batch (default 0.1). A value like 0.9 or 0.99 "
                f"is the Keras/textbook convention (the weight of the OLD value); for that meaning pass "
                f"momentum_from_keras({float(values.max()):g}) = {1.0 - float(values.max()):g}.",
                UserWarning, stacklevel=2)
        self._settings = dict(num_features=num_features, eps=eps, momentum=momentum, inference=inference,
                              affine=affine, freeze_stats=freeze_stats, running_variance=running_variance,
                              running_var_init=running_var_init, statistics=statistics)
        self.running_variance = running_variance
        self.running_var_init = float(running_var_init)
        self.statistics = statistics
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = momentum
        self.inference = inference
        self.affine = affine
        self.fresh_output = affine
        self.freeze_stats = freeze_stats
        # What a training-mode forward does with its batch statistics: None (update the running
        # averages with ``momentum``), or the collector of a statistics pass (StatisticsPass below).
        self._collect: _Collector | None = None
        self._mode: _Mode | None = None
        self._active: torch.Tensor | None = None

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 3):
            raise ConfigError(f"BatchNorm expects inputs (P, N, C) or (P, N, C, H, W), i.e. a per-example shape "
                              f"(C,) or (C, H, W), got per-example shape {in_shape}")
        C = self._channels(in_shape, "num_features")
        P = population.size
        self._ndim = len(in_shape) + 2
        per_activation = self.statistics == "activation" and len(in_shape) == 3
        self._dims = (1,) if len(in_shape) == 1 or per_activation else (1, 3, 4)
        # the shape of gamma, beta and every statistic, per member
        self._stat_shape = in_shape if per_activation else (C,)
        view = (1,) + in_shape if per_activation else (1, C) + (1,) * (len(in_shape) - 1)
        self._build_affine(P, self._stat_shape, view, device, dtype)
        self._momentum = member_values(self.momentum, P, name="BatchNorm momentum", dtype=dtype, device=device,
                                       low=0.0, high=1.0)
        # one momentum for every member: the native kernel can then update the running averages itself
        mv = member_values(self.momentum, P, name="BatchNorm momentum", dtype=torch.float64, low=0.0, high=1.0)
        self._shared_momentum = float(mv[0]) if bool((mv == mv[0]).all()) else None
        S = (P,) + self._stat_shape
        self.running_mean = torch.zeros(S, device=device, dtype=dtype)
        self.running_var = torch.full(S, self.running_var_init, device=device, dtype=dtype)
        self.num_batches_tracked = torch.zeros(P, dtype=torch.int64, device=device)
        self.population_mean = torch.zeros(S, device=device, dtype=dtype)
        self.population_var = torch.ones(S, device=device, dtype=dtype)
        self.population_batches = torch.zeros(P, dtype=torch.int64, device=device)
        self._active = None
        self._mode = None
        self._scratch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._flat_views: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(tensor) -> (tensor, flat view)
        return in_shape

    def buffers(self) -> dict[str, torch.Tensor]:
        return {"running_mean": self.running_mean, "running_var": self.running_var,
                "num_batches_tracked": self.num_batches_tracked, "population_mean": self.population_mean,
                "population_var": self.population_var, "population_batches": self.population_batches}

    @property
    def needs_batch_statistics(self) -> bool:
        """True while training normalizes with batch statistics (the Trainer then never feeds a batch of one)."""
        return not self.freeze_stats

    def set_active(self, mask: torch.Tensor | None) -> None:
        """Update running statistics only for members where ``mask`` is true (``None``: all).

        Mirrors ``Optimizer.set_active``: a stopped or diverged member's running
        statistics then stay as they were while the other members train on.
        """
        if mask is not None and bool(mask.all()):
            mask = None  # every member on: the same as no mask (and the kernel's own update stays usable)
        self._active = None if mask is None else mask.to(device=self.running_mean.device, dtype=torch.bool).clone()

    # ---- forward / backward ---------------------------------------------------------
    def _shape_text(self) -> str:
        C = self.num_features
        return f"(P, N, {C})" if self._ndim == 3 else f"(P, N, {C}, H, W)"

    def _batch_stats_input(self, x: torch.Tensor) -> int:
        """The number ``m`` of values per channel (per activation); raises for a batch of one."""
        m = x.shape[1] * (x.shape[3] * x.shape[4] if x.ndim == 5 and self._dims != (1,) else 1)
        if m < 2:
            where = "N=1" if x.ndim == 3 else f"N={x.shape[1]} and H*W={x.shape[3] * x.shape[4]}"
            raise ConfigError(
                f"BatchNorm got a batch with {where} in training mode (input shape {tuple(x.shape)}): batch "
                f"statistics need at least 2 values per channel (the variance of one value is 0, so the output "
                f"would be beta whatever the input). Use a batch of at least 2, training=False (running "
                f"statistics), or LayerNorm/GroupNorm, which normalize each example on its own.")
        return m

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        if x.ndim != self._ndim or x.shape[0] not in (1, self.population_size):
            self._check_rank(x, self._shape_text())  # raises (the text is made only then)
        if x.shape[2] != self.num_features:
            raise ConfigError(f"BatchNorm(num_features={self.num_features}) expects inputs {self._shape_text()}, "
                              f"got {tuple(x.shape)}")
        P = self.population_size
        self._shared = bool(x.shape[0] == 1 and P > 1)
        if training and not self.freeze_stats:
            m = self._batch_stats_input(x)
            mode: _Mode = (_ReferenceBatchMode() if self.reference or self._shared or x.dtype not in _NATIVE_DTYPES
                           else _NativeBatchMode())
        else:
            if training and self._collect is not None and self._collect.measures_frozen:
                # a frozen layer still measures its input for the population statistics
                m = self._batch_stats_input(x)
                mean, var = _mean_var(x, self._dims)
                self._record(mean, var, var * (m / (m - 1)))
            if training or self.inference == "running":
                mean, var = self.running_mean, self.running_var
            else:
                if bool((self.population_batches == 0).any()):
                    raise ConfigError("BatchNorm(inference='population') has no population statistics yet: call "
                                      "trainlab.nn.compute_population_statistics(model, x_train, batch_size=...) "
                                      "after training, before evaluating")
                mean, var = self.population_mean, self.population_var
            mode = _FoldedMode(mean, var)
        y = mode.forward(self, x)
        self._mode = mode
        return y

    def _channel_views(self, K: int) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """gamma, beta (None without affine), running mean and variance as flat ``(K,)`` views for the
        native kernel (see :meth:`_flat`)."""
        gamma = None if not self.affine else self._flat(self.gamma.data, K)
        beta = None if not self.affine else self._flat(self.beta.data, K)
        return gamma, beta, self._flat(self.running_mean, K), self._flat(self.running_var, K)

    def _grad_views(self, K: int) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma's and beta's gradients as flat ``(K,)`` views (the native backward's layout)."""
        return self._flat(self.gamma.grad, K), self._flat(self.beta.grad, K)

    def _flat(self, t: torch.Tensor, K: int) -> torch.Tensor:
        """``t.view(K)``, made once and reused while ``t`` is the same tensor: the layer's parameters,
        gradients and running averages are updated in place, never replaced (a view call per tensor and
        step saved)."""
        c = self._flat_views.get(id(t))
        if c is None or c[0] is not t or c[1].shape[0] != K:
            c = self._flat_views[id(t)] = (t, t.view(K))
        return c[1]

    def _folded_forward(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Fixed statistics (``mean``, ``var`` of shape ``(P, *stat_shape)``): ``y = a x + b``."""
        mode = _FoldedMode(mean, var)
        y = mode.forward(self, x)
        self._mode = mode
        return y

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        mode, self._mode = self._mode, None
        if mode is None:
            raise RuntimeError("BatchNorm.backward called without a forward before it")
        return mode.backward(self, g)

    # ---- statistics -------------------------------------------------------------------
    def _record(self, mean: torch.Tensor, var: torch.Tensor, unbiased: torch.Tensor) -> None:
        """Use a training batch's statistics (``mean``, biased ``var`` and the unbiased ``var m/(m-1)``;
        each ``(P or 1, ...)`` with the statistics' number of elements per member)."""
        S = self._stat_shape
        mean = mean.reshape((mean.shape[0],) + S)
        var = var.reshape((var.shape[0],) + S)
        unbiased = unbiased.reshape((unbiased.shape[0],) + S)
        if self._collect is not None and self._collect.add(self, mean, unbiased):
            return
        # what the running variance averages: torch's unbiased var_B m/(m-1), or Keras'/the textbook's var_B
        tracked = unbiased if self.running_variance == "unbiased" else var
        active = self._active
        self.num_batches_tracked += 1 if active is None else active.long()
        factor = self._momentum if self._collect is None else self._collect.factor(self)
        factor = factor.reshape((-1,) + (1,) * len(S))
        new_mean = (1.0 - factor) * self.running_mean + factor * mean
        new_var = (1.0 - factor) * self.running_var + factor * tracked
        if active is not None:
            on = active.reshape((-1,) + (1,) * len(S))
            new_mean = torch.where(on, new_mean, self.running_mean)
            new_var = torch.where(on, new_var, self.running_var)
        self.running_mean.copy_(new_mean)
        self.running_var.copy_(new_var)

    def reset_running_statistics(self) -> None:
        """``running_mean = 0``, ``running_var = running_var_init`` (1 by default), ``num_batches_tracked = 0``
        (torch's ``reset_running_stats``)."""
        self.running_mean.zero_()
        self.running_var.fill_(self.running_var_init)
        self.num_batches_tracked.zero_()


# ---- LayerNorm / GroupNorm / InstanceNorm ------------------------------------------------


class LayerNorm(_Normalization):
    """Layer normalization (Ba, Kiros & Hinton 2016): each example standardized on its own.

    Per member and example, over the trailing ``normalized_shape`` features (by
    default all of them: ``C``, or ``C, H, W``)::

        xhat = (x - mean) / sqrt(var + eps)     # biased variance over those features
        y    = gamma * xhat + beta              # gamma, beta per ELEMENT: (P, *normalized_shape)

    Same in training and inference (no batch statistics, no running averages), so a
    batch of one is fine. As ``torch.nn.LayerNorm`` (eps 1e-5, per-element affine,
    ``elementwise_affine`` is ``affine`` here). Keras' ``LayerNormalization`` defaults
    to ``axis=-1`` only and eps 1e-3.

    See: torch.nn.LayerNorm; https://arxiv.org/abs/1607.06450
    """

    _cache: tuple[torch.Tensor, torch.Tensor] | None = None  # xhat, 1/std from the last forward

    def __init__(self, normalized_shape: int | Sequence[int] | None = None, *, eps: float = 1e-5,
                 affine: bool = True) -> None:
        if normalized_shape is not None:
            dims = [normalized_shape] if isinstance(normalized_shape, int) else normalized_shape
            if not isinstance(dims, Sequence) or not dims or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
                raise ConfigError(f"LayerNorm normalized_shape must be an integer >= 1, a list of them, or None, "
                                  f"got {normalized_shape!r}")
        self._init_common(eps, affine)
        self._settings = dict(normalized_shape=normalized_shape, eps=eps, affine=affine)
        self.normalized_shape = normalized_shape

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        ns = self.normalized_shape
        ns = in_shape if ns is None else (ns,) if isinstance(ns, int) else tuple(ns)
        if len(ns) > len(in_shape) or tuple(in_shape[len(in_shape) - len(ns):]) != ns:
            raise ConfigError(f"LayerNorm normalized_shape={list(ns)} must be the trailing dimensions of the "
                              f"per-example shape, got per-example shape {in_shape}")
        self.normalized_shape_ = ns
        self._in_shape = in_shape
        self._ndim = len(in_shape) + 2
        k = len(ns)
        self._dims = tuple(range(self._ndim - k, self._ndim))
        self._sum_dims = tuple(range(1, self._ndim - k))  # N and any leading per-example dims
        self._build_affine(population.size, ns, (1,) * (self._ndim - k - 1) + ns, device, dtype)
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._check_rank(x, "(P, N, " + ", ".join(map(str, self._in_shape)) + ")")
        if tuple(x.shape[self._ndim - len(self.normalized_shape_):]) != self.normalized_shape_:
            raise ConfigError(f"LayerNorm over {list(self.normalized_shape_)} got inputs {tuple(x.shape)}")
        xhat, _, _, inv_std = _standardize(x, self._dims, self.eps)
        self._cache = (xhat, inv_std)
        return self._affine_forward(xhat)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        cache, self._cache = self._cache, None
        assert cache is not None, "LayerNorm.backward without a forward"
        xhat, inv_std = cache
        dxhat = self._affine_backward(g, xhat, self._sum_dims)
        if not self.input_grad:
            return None
        return _standardize_backward(dxhat, xhat, inv_std, self._dims)


class GroupNorm(_Normalization):
    """Group normalization (Wu & He 2018) for ``(P, N, C)`` or ``(P, N, C, H, W)``.

    The ``C`` channels are cut into ``num_groups`` groups of ``C / G`` consecutive
    channels; per member, example and group, over its ``C/G`` (times ``H*W``) values::

        xhat = (x - mean_group) / sqrt(var_group + eps)     # biased variance
        y    = gamma_c * xhat + beta_c                      # gamma, beta per CHANNEL: (P, C)

    Same in training and inference; independent of the batch size. ``G = 1`` is a
    LayerNorm with per-channel affine; ``G = C`` on images is InstanceNorm. As
    ``torch.nn.GroupNorm`` (eps 1e-5); ``C`` must be divisible by ``G``.

    See: torch.nn.GroupNorm; https://arxiv.org/abs/1803.08494
    """

    _cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # xhat, grouped xhat, 1/std

    def __init__(self, num_groups: int, num_channels: int | None = None, *, eps: float = 1e-5,
                 affine: bool = True) -> None:
        _check_size(num_groups, "num_groups", "GroupNorm", optional=False)
        _check_size(num_channels, "num_channels", "GroupNorm")
        if num_channels is not None and num_channels % num_groups:
            raise ConfigError(f"GroupNorm num_channels must be divisible by num_groups, got num_channels="
                              f"{num_channels}, num_groups={num_groups}")
        self._init_common(eps, affine)
        self._settings = dict(num_groups=num_groups, num_channels=num_channels, eps=eps, affine=affine)
        self.num_groups = num_groups
        self.num_channels = num_channels

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 3):
            raise ConfigError(f"GroupNorm expects inputs (P, N, C) or (P, N, C, H, W), i.e. a per-example shape "
                              f"(C,) or (C, H, W), got per-example shape {in_shape}")
        C = self._channels(in_shape, "num_channels")
        if C % self.num_groups:
            raise ConfigError(f"GroupNorm num_channels must be divisible by num_groups, got num_channels={C}, "
                              f"num_groups={self.num_groups}")
        self._ndim = len(in_shape) + 2
        self._sum_dims = (1,) if len(in_shape) == 1 else (1, 3, 4)
        self._build_affine(population.size, (C,), (1, C) + (1,) * (len(in_shape) - 1), device, dtype)
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        C = self.num_channels
        self._check_rank(x, f"(P, N, {C})" if self._ndim == 3 else f"(P, N, {C}, H, W)")
        if x.shape[2] != C:
            raise ConfigError(f"GroupNorm(num_channels={C}) got inputs {tuple(x.shape)}")
        grouped = x.reshape(x.shape[0], x.shape[1], self.num_groups, -1)
        xhat_g, _, _, inv_std = _standardize(grouped, (3,), self.eps)
        xhat = xhat_g.view(x.shape)
        self._cache = (xhat, xhat_g, inv_std)
        return self._affine_forward(xhat)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        cache, self._cache = self._cache, None
        assert cache is not None, "GroupNorm.backward without a forward"
        xhat, xhat_g, inv_std = cache
        dxhat = self._affine_backward(g, xhat, self._sum_dims)
        if not self.input_grad:
            return None
        dxhat_g = dxhat.reshape(dxhat.shape[0], dxhat.shape[1], self.num_groups, -1)
        dx = _standardize_backward(dxhat_g, xhat_g, inv_std, (3,))
        return dx.reshape(dx.shape[:2] + xhat.shape[2:])


class InstanceNorm(_Normalization):
    """Instance normalization (Ulyanov et al. 2016) for images ``(P, N, C, H, W)``.

    Per member, example and channel, over the ``H*W`` positions::

        xhat = (x - mean_hw) / sqrt(var_hw + eps)     # biased variance
        y    = gamma_c * xhat + beta_c                # only with affine=True: (P, C)

    Same in training and inference: there are no running statistics (as
    ``torch.nn.InstanceNorm2d`` with its default ``track_running_stats=False``).
    ``affine`` defaults to False as in torch. ``H*W = 1`` raises (the output would be
    constant). Equals ``GroupNorm(num_groups=C)``.

    See: torch.nn.InstanceNorm2d; https://arxiv.org/abs/1607.08022
    """

    _cache: tuple[torch.Tensor, torch.Tensor] | None = None  # xhat, 1/std from the last forward

    def __init__(self, num_features: int | None = None, *, eps: float = 1e-5, affine: bool = False) -> None:
        _check_size(num_features, "num_features", "InstanceNorm")
        self._init_common(eps, affine)
        self._settings = dict(num_features=num_features, eps=eps, affine=affine)
        self.num_features = num_features

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        if len(in_shape) != 3:
            raise ConfigError(f"InstanceNorm expects image inputs (P, N, C, H, W), i.e. a per-example shape "
                              f"(C, H, W), got per-example shape {in_shape}; for flat features use LayerNorm")
        C = self._channels(in_shape, "num_features")
        self._ndim = 5
        self._build_affine(population.size, (C,), (1, C, 1, 1), device, dtype)
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        C = self.num_features
        self._check_rank(x, f"(P, N, {C}, H, W)")
        if x.shape[2] != C:
            raise ConfigError(f"InstanceNorm(num_features={C}) got inputs {tuple(x.shape)}")
        if x.shape[3] * x.shape[4] < 2:
            raise ConfigError(f"InstanceNorm needs more than one spatial position (H*W > 1) per channel, got "
                              f"inputs {tuple(x.shape)}")
        xhat, _, _, inv_std = _standardize(x, (3, 4), self.eps)
        self._cache = (xhat, inv_std)
        return self._affine_forward(xhat)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        cache, self._cache = self._cache, None
        assert cache is not None, "InstanceNorm.backward without a forward"
        xhat, inv_std = cache
        dxhat = self._affine_backward(g, xhat, (1, 3, 4))
        if not self.input_grad:
            return None
        return _standardize_backward(dxhat, xhat, inv_std, (3, 4))


# ---- momentum conventions ---------------------------------------------------------------


def _convert_momentum(m: float | Sequence[float], name: str) -> float | list[float]:
    many = isinstance(m, Sequence) and not isinstance(m, (str, bytes))
    size = len(m) if isinstance(m, Sequence) and many else 1
    vals = member_values(m, size, name=name, dtype=torch.float64, low=0.0, high=1.0).tolist()
    out = [1.0 - v for v in vals]
    return out if many else out[0]


def textbook_batch_norm(**overrides: Any) -> "BatchNorm":
    """The textbook's ``BatchNormalization`` (Saito, *Deep Learning from Scratch*, ``common/layers.py``).

    Its forward, per activation (a conv input is reshaped to ``(N, C*H*W)`` first)::

        mu = x.mean(axis=0); xc = x - mu; var = mean(xc**2, axis=0)      # biased
        xn = xc / sqrt(var + 10e-7)                                       # eps 10e-7 = 1e-6
        running_mean = momentum * running_mean + (1 - momentum) * mu      # momentum = 0.9
        running_var  = momentum * running_var  + (1 - momentum) * var     # biased var
        # running_mean, running_var start at zeros; test: (x - running_mean) / sqrt(running_var + 10e-7)

    In trainlab's (torch's) convention: ``momentum=0.1`` (the textbook's 0.9 is the weight of
    the OLD value), ``running_variance="biased"``, ``running_var_init=0``, ``eps=1e-6``
    (the textbook writes ``10e-7``, which is 1e-6, added inside the square root as trainlab
    does), ``statistics="activation"``. ``overrides`` change any of them.
    """
    kw: dict[str, Any] = dict(eps=1e-6, momentum=0.1, running_variance="biased", running_var_init=0.0,
                              statistics="activation")
    kw.update(overrides)
    return BatchNorm(**kw)


def momentum_from_keras(momentum: float | Sequence[float]) -> float | list[float]:
    """Keras/textbook momentum (weight of the OLD running value; Keras 0.99, Saito 0.9) -> trainlab/PyTorch's.

    ``momentum_torch = 1 - momentum_keras``: ``momentum_from_keras(0.99) == 0.01``.
    (The variance convention still differs: Keras averages the biased batch variance.)
    """
    return _convert_momentum(momentum, "momentum_from_keras momentum")


def momentum_to_keras(momentum: float | Sequence[float]) -> float | list[float]:
    """trainlab/PyTorch momentum (weight of the NEW batch statistic, default 0.1) -> Keras': ``1 - momentum``."""
    return _convert_momentum(momentum, "momentum_to_keras momentum")


# ---- passes over training data: population statistics, recomputed running statistics -------


def _walk(model: Module) -> Iterator[Module]:
    return model.modules()


def batch_norm_layers(model: Module) -> list[BatchNorm]:
    """Every :class:`BatchNorm` in ``model`` (itself, or nested in containers: Sequential, Residual), in order."""
    return [m for m in _walk(model) if isinstance(m, BatchNorm)]


class _Collector:
    """What one BatchNorm does with its training batches' statistics during a :class:`StatisticsPass`."""

    #: whether a layer with ``freeze_stats=True`` (which normalizes with its running statistics)
    #: still measures its input
    measures_frozen = False

    def begin(self, layer: BatchNorm) -> None:
        pass

    def add(self, layer: BatchNorm, mean: torch.Tensor, unbiased: torch.Tensor) -> bool:
        """Take a batch's statistics; True if they are consumed (the running averages stay)."""
        return False

    def factor(self, layer: BatchNorm) -> torch.Tensor:
        """The weight of the new batch in the running averages, per member."""
        return layer._momentum

    def end(self, layer: BatchNorm, completed: bool) -> None:
        pass


class _PopulationCollector(_Collector):
    """Ioffe & Szegedy's Algorithm 2: sums of the batch means and unbiased variances (float64), divided
    once at the end of a completed pass into ``population_mean`` / ``population_var``."""

    measures_frozen = True

    def begin(self, layer: BatchNorm) -> None:
        shape = (layer.population_size,) + layer._stat_shape
        self.sum_mean = torch.zeros(shape, dtype=torch.float64, device=layer.running_mean.device)
        self.sum_var = torch.zeros(shape, dtype=torch.float64, device=layer.running_mean.device)
        self.count = 0

    def add(self, layer: BatchNorm, mean: torch.Tensor, unbiased: torch.Tensor) -> bool:
        self.sum_mean += mean.double()
        self.sum_var += unbiased.double()
        self.count += 1
        return True

    def end(self, layer: BatchNorm, completed: bool) -> None:
        if completed and self.count:
            layer.population_mean.copy_(self.sum_mean / self.count)
            layer.population_var.copy_(self.sum_var / self.count)
            layer.population_batches.fill_(self.count)


class _CumulativeCollector(_Collector):
    """PyTorch's ``momentum=None``: running statistics reset, then the k-th batch gets weight 1/k."""

    def begin(self, layer: BatchNorm) -> None:
        layer.reset_running_statistics()

    def factor(self, layer: BatchNorm) -> torch.Tensor:
        return 1.0 / layer.num_batches_tracked.clamp(min=1).to(layer.running_mean.dtype)


_COLLECTORS: dict[str, type[_Collector]] = {"population": _PopulationCollector, "cumulative": _CumulativeCollector}


class StatisticsPass:
    """A pass over training data that collects BatchNorm statistics, as a context manager.

    Inside the ``with`` block, training-mode forwards of ``model`` feed each of ``layers`` (by
    default every BatchNorm) to a collector of ``kind``: ``"population"`` (Algorithm 2's population
    statistics; running averages untouched) or ``"cumulative"`` (running statistics reset and
    recomputed as equal-weight averages). On entry the member random generators the model can
    reach are saved (those for ``device`` created first, as a first draw would); on exit every layer
    leaves collection -- storing its result only if the block completed without an exception --
    and the generators are given back untouched::

        with StatisticsPass(model, "population"), torch.no_grad():
            for xb in batches:
                model.forward(xb, training=True)

    :func:`compute_population_statistics` and :func:`recompute_running_statistics` are this with
    their checks and the batching of ``x``.
    """

    def __init__(self, model: Module, kind: str, *, layers: Sequence[BatchNorm] | None = None,
                 device: torch.device | str = "cpu") -> None:
        if kind not in _COLLECTORS:
            raise ConfigError(f"StatisticsPass kind must be one of {', '.join(_COLLECTORS)}, got {kind!r}")
        self.model, self.kind, self.device = model, kind, torch.device(device)
        self.layers = list(batch_norm_layers(model) if layers is None else layers)
        self._rng: list[tuple[Population, Any]] = []

    def __enter__(self) -> "StatisticsPass":
        # Training-mode forwards may draw random numbers (dropout): save every member generator.
        populations = {id(p): p for p in (getattr(m, "population", None) for m in self.model.modules())
                       if isinstance(p, Population)}
        self._rng = []
        for pop in populations.values():
            pop.generators(self.device)
            self._rng.append((pop, pop.get_state()))
        for layer in self.layers:
            collector = _COLLECTORS[self.kind]()
            collector.begin(layer)
            layer._collect = collector
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            for layer in self.layers:
                collector, layer._collect = layer._collect, None
                if collector is not None:
                    collector.end(layer, exc_type is None)
        finally:
            for pop, state in self._rng:
                pop.set_state(state)


def _statistics_pass(model: Module, x: torch.Tensor, batch_size: int, kind: str, what: str,
                     layers: list[BatchNorm]) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 2:
        raise ConfigError(f"{what} batch_size must be an integer >= 2, got {batch_size!r}")
    if not layers:
        raise ConfigError(f"{what}: the model has no BatchNorm layer")
    input_shape = getattr(model, "input_shape", None)
    if input_shape is not None and x.ndim == len(input_shape) + 1:
        x = x.unsqueeze(0)  # plain data (n, ...): one input shared by every member
    n = x.shape[1] if x.ndim >= 2 else 0
    if n < batch_size:
        raise ConfigError(f"{what} needs at least one full mini-batch: batch_size={batch_size} but x has "
                          f"{n} examples")
    with StatisticsPass(model, kind, layers=layers, device=x.device), torch.no_grad():
        # Full batches only: Algorithm 2 averages mini-batches of one size m.
        for i in range(0, n - batch_size + 1, batch_size):
            model.forward(x[:, i:i + batch_size], training=True)


def compute_population_statistics(model: Module, x: torch.Tensor, *, batch_size: int) -> None:
    """Ioffe & Szegedy's Algorithm 2: population statistics for ``BatchNorm(inference="population")``.

    Runs ``model.forward(batch, training=True)`` over the ``n // batch_size`` full
    mini-batches of ``x`` in order (a trailing incomplete batch is left out), and for
    every BatchNorm layer, per member and channel, stores::

        population_mean = mean over batches of mu_B
        population_var  = m/(m-1) * mean over batches of var_B     (m = batch_size, x H*W)

    Nothing else changes: no running average, no parameter, no gradient; the
    population's random streams are restored afterwards. ``x`` is the training inputs
    ``(n, ...)`` (shared by all members) or ``(P or 1, n, ...)``. Every BatchNorm is
    measured, whatever its ``inference`` setting; only ``"population"`` layers use it.
    """
    _statistics_pass(model, x, batch_size, "population", "compute_population_statistics",
                     batch_norm_layers(model))


def recompute_running_statistics(model: Module, x: torch.Tensor, *, batch_size: int) -> None:
    """Reset every BatchNorm's running statistics and recompute them over one pass of ``x``.

    The running averages become equal-weight averages of the ``n // batch_size`` full
    mini-batches (PyTorch's ``momentum=None`` cumulative average; running variance of
    the unbiased batch variances) -- the tool for statistics that went stale after the
    weights changed (weight averaging, pruning, a changed data distribution). Layers
    with ``freeze_stats=True`` are left as they are. Parameters are not touched; the
    population's random streams are restored afterwards.
    """
    layers = [layer for layer in batch_norm_layers(model) if not layer.freeze_stats]
    _statistics_pass(model, x, batch_size, "cumulative", "recompute_running_statistics", layers)
