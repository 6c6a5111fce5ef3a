"""The dropout family: Dropout (two conventions), DropConnect, and MC-dropout prediction.

Every random draw comes from the member's own generator
(``population.generators(x.device)``), so member *i* of a population drops exactly
the units it would drop if trained alone with the same seed.

``p`` is always the **drop** probability, as in ``torch.nn.Dropout(p)`` and Keras'
``Dropout(rate)``. Srivastava et al. (2014) and TensorFlow 1's ``keep_prob`` use the
*keep* probability instead; see ``docs/dropout.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
import warnings

import torch

from trainlab.errors import ConfigError
from trainlab.nn._linear import Linear
from trainlab.nn._module import Module
from trainlab.population import Population, member_draw, member_values, member_view

__all__ = [
    "DropoutFamily",
    "Dropout",
    "DropConnectLinear",
]

_MODES = ("inverted", "classic")
#: at or above this drop probability a warning suggests a keep/drop mix-up
SUSPICIOUS_P = 0.8


def _check_drop_probability(value: Any, size: int, *, owner: str, warn: bool = False,
                            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(size,)`` drop probabilities, each in ``[0, 1)``; optionally warn about keep/drop mix-ups."""
    t = member_values(value, size, name=f"{owner} p", dtype=torch.float64)
    vals = t.tolist()
    for i, v in enumerate(vals):
        if not 0.0 <= v < 1.0:
            where = f" (member {i})" if size > 1 else ""
            raise ConfigError(f"{owner} p is the drop probability and must satisfy 0 <= p < 1, got {v}{where}")
    if warn:
        high = [v for v in vals if v >= SUSPICIOUS_P]
        if high:
            v = high[0]
            warnings.warn(
                f"{owner} p={v} drops {v:.0%} of the units: p is the drop probability (torch.nn.Dropout's p, "
                f"Keras' rate), not the keep probability (Srivastava et al.'s p, TF1's keep_prob); "
                f"this may be a keep probability mix-up. If you meant to keep {v:.0%}, use p={1.0 - v:.4g}",
                UserWarning,
                stacklevel=3,
            )
    return t.to(device=device, dtype=dtype)


def _size_of(value: Any, name: str) -> int:
    """How many members a setting lists (1 for a scalar); rejects what is neither."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, Sequence, torch.Tensor)):
        raise ConfigError(f"{name} must be a number or a list of numbers (one per member), got {value!r}")
    if isinstance(value, torch.Tensor):
        return max(value.numel(), 1)
    return len(value) if isinstance(value, Sequence) else 1


def _as_keep_mask(mask: torch.Tensor, *, owner: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ConfigError(f"{owner}.fix_mask expects a tensor of 0/1 (or booleans), got {type(mask).__name__}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ConfigError(f"{owner}.fix_mask expects a keep-mask of 0/1 (or booleans): 1 = kept, 0 = dropped")
    return mask.detach().to(torch.bool).clone()


class DropoutFamily:
    """Mixin of the layers that drop things at random (units, weights).

    * ``mc``: when ``True`` the layer samples even in eval mode (``training=False``).
      :func:`mc_dropout` sets it on these layers only, so Monte-Carlo dropout never
      switches anything else (BatchNorm, ...) into training mode.
    * ``fix_mask(keep)`` / ``release_mask()``: hold a keep-mask (``True`` = kept) fixed
      for every sampling forward (gradient checks, demonstrations); no random numbers
      are drawn while a mask is fixed.
    * ``last_mask``: the keep-mask of the last sampling forward (``None`` after a
      deterministic one).
    """

    #: what the last forward multiplied by (mask, scale or both), None when nothing
    _mult: torch.Tensor | None

    mc: bool = False
    _fixed_keep: torch.Tensor | None = None
    _last_keep: torch.Tensor | None = None

    def _init_family(self) -> None:
        self.mc = False
        self._fixed_keep = None
        self._last_keep = None

    def _sampling(self, training: bool) -> bool:
        return training or self.mc

    def fix_mask(self, keep: torch.Tensor) -> None:
        """Use ``keep`` (1/``True`` = kept) in every sampling forward until :meth:`release_mask`."""
        self._fixed_keep = _as_keep_mask(keep, owner=type(self).__name__)

    def release_mask(self) -> None:
        """Go back to drawing a fresh mask on every sampling forward."""
        self._fixed_keep = None

    @property
    def last_mask(self) -> torch.Tensor | None:
        """Boolean keep-mask used by the last sampling forward."""
        return self._last_keep

    def _keep_mask(self, population: Population, shape: tuple[int, ...], p: torch.Tensor, *,
                   device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Float 0/1 keep-mask ``(P, *shape)``: fixed, or ``u >= p`` with ``u ~ U[0,1)`` per member."""
        if self._fixed_keep is not None:
            want = (population.size, *shape)
            if tuple(self._fixed_keep.shape) != want:
                raise ConfigError(f"{type(self).__name__}: the fixed mask has shape {tuple(self._fixed_keep.shape)}, "
                                  f"this forward needs {want}")
            keep = self._fixed_keep.to(device=device, dtype=dtype)
        else:
            u = member_draw(population, shape, kind="uniform", device=device, dtype=dtype)
            # P(u >= p) = 1 - p; in place, u becomes the 0/1 mask (no second allocation).
            keep = u.ge_(member_view(p, u.ndim))
        self._last_keep = keep.to(torch.bool)
        return keep


class Dropout(DropoutFamily, Module):
    """Drop each unit with probability ``p`` while training; ``p`` may differ per member.

    ``mode="inverted"`` (default; ``torch.nn.Dropout``, Keras ``Dropout``)::

        training:  y = x * m / (1 - p),   m ~ Bernoulli(1 - p) per unit
        eval:      y = x

    ``mode="classic"`` (Srivastava et al. 2014; the course notes)::

        training:  y = x * m
        eval:      y = x * (1 - p)       (scaled by the KEEP probability)

    Either way ``E[y_train] = y_eval`` for every unit, so eval runs the "mean network".
    Backward passes the gradient through the same mask and scale: ``dx = g * m / (1-p)``
    (inverted) or ``dx = g * m`` (classic) in training; ``dx = g`` or ``g * (1 - p)`` in eval.

    A shared input ``(1, N, ...)`` (input dropout on the data batch) gives a
    ``(P, N, ...)`` output, each member with its own mask; its ``dx`` is summed back to
    ``(1, N, ...)``. In inverted eval mode the input is returned as is.

    Per-layer rates (the course's input 0.2 / hidden 0.5) are separate layers:
    ``Sequential([Dropout(0.2), Linear(784, 512), ReLU(), Dropout(0.5), ...])``.

    See: ``torch.nn.Dropout``; Srivastava et al., JMLR 15 (2014),
    https://jmlr.org/papers/v15/srivastava14a.html (whose ``p`` is the keep probability).

    Parameters
    ----------
    p:
        Drop probability in ``[0, 1)``: one number, or one per member. ``p >= 0.8``
        warns, since it is often a keep probability passed by mistake.
    mode:
        ``"inverted"`` or ``"classic"``: where the ``1 - p`` correction goes.

    After ``build``, ``rate`` holds the ``(P,)`` drop probabilities.
    """

    def __init__(self, p: float | Sequence[float] = 0.5, *, mode: str = "inverted") -> None:
        owner = type(self).__name__
        if mode not in _MODES:
            raise ConfigError(f"{owner} mode must be 'inverted' or 'classic', got {mode!r}")
        _check_drop_probability(p, _size_of(p, f"{owner} p"), owner=owner, warn=True)
        self._settings = dict(p=p, mode=mode)
        self.p = p
        self.mode = mode
        self._init_family()

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        self.population = population
        self.device = torch.device(device)
        self.rate = _check_drop_probability(self.p, population.size, owner=type(self).__name__, dtype=dtype,
                                            device=device)
        keep_prob = 1.0 - self.rate
        # inverted: the training mask carries 1/(1-p); classic: eval multiplies by (1-p)
        self._train_scale = 1.0 / keep_prob if self.mode == "inverted" else None
        self._eval_scale = keep_prob if self.mode == "classic" else None
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        P = self.population.size
        self._shared = bool(x.shape[0] == 1 and P > 1)
        if self._sampling(training):
            keep = self._keep_mask(self.population, self._mask_shape(x), self.rate, device=x.device, dtype=x.dtype)
            if self._train_scale is not None:
                keep.mul_(member_view(self._train_scale, keep.ndim))
            self._mult = keep
            return x * keep
        self._last_keep = None
        if self._eval_scale is None:
            self._mult = None
            self._shared = False  # the output is x itself, of x's shape
            return x
        self._mult = member_view(self._eval_scale, x.ndim)
        return x * self._mult

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        if self._mult is None:
            return g
        dx = g * self._mult  # the units dropped going forward get no gradient going back
        return dx.sum(dim=0, keepdim=True) if self._shared else dx

    def _mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """The per-member shape of the keep-mask: one draw per unit of every example."""
        return tuple(x.shape[1:])


class DropConnectLinear(DropoutFamily, Linear):
    """A :class:`~trainlab.nn.Linear` layer that drops individual *weights* while training.

    Per member, with ``M ~ Bernoulli(1 - p)`` of the weight's shape ``(in, out)``::

        training:  W~ = W * M / (1 - p),   y = x W~ + b
        eval:      y = x W + b             (E[W~] = W)
        backward:  dW = (x^T g) * M / (1 - p),  db = sum_n g,  dx = g W~^T

    Wan et al. (2013) draw a mask per *example*; trainlab draws one weight mask per
    member per mini-batch (a common simplification): per-example masks would hold
    ``N`` copies of ``W`` (``N * in * out`` numbers) and turn one batched matmul into
    ``N`` small ones. The bias is never dropped. At inference Wan et al. moment-match
    a Gaussian and sample; trainlab uses the mean weights ``W`` (the same
    weight-scaling rule as inverted dropout); :func:`mc_dropout_predict` samples instead.

    See: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    def __init__(self, in_features: int | None, out_features: int, *, p: float | Sequence[float] = 0.5,
                 init: Any = "xavier_uniform", init_scale: float | Sequence[float] = 1.0, bias: bool = True) -> None:
        super().__init__(in_features, out_features, init=init, init_scale=init_scale, bias=bias)
        _check_drop_probability(p, _size_of(p, "DropConnectLinear p"), owner="DropConnectLinear", warn=True)
        self._settings = dict(in_features=in_features, out_features=out_features, p=p, init=init,
                              init_scale=init_scale, bias=bias)
        self.p = p
        self._init_family()

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        out = super().build(in_shape, population, device=device, dtype=dtype)
        self.population = population
        self.device = torch.device(device)
        self.rate = _check_drop_probability(self.p, population.size, owner="DropConnectLinear", dtype=dtype,
                                            device=device)
        self._scale = 1.0 / (1.0 - self.rate)
        return out

    def _effective_weight(self, training: bool) -> torch.Tensor:
        W = self.weight.data
        if self._sampling(training):
            keep = self._keep_mask(self.population, tuple(W.shape[1:]), self.rate, device=W.device, dtype=W.dtype)
            self._mult = keep.mul_(member_view(self._scale, 3))
            return W * self._mult
        self._last_keep = None
        self._mult = None
        return W

    def _chain_weight_grad(self, grad: torch.Tensor) -> None:
        if self._mult is not None:
            # y depends on W only through W~ = W * M / (1-p): the chain rule masks and scales dW.
            grad.mul_(self._mult)
