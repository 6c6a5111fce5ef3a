"""Losses on independent sigmoids: binary cross-entropy with logits (multi-label) and focal loss.

Each output unit ``c`` of example ``n`` is its own yes/no question, ``p = sigmoid(z)``.
Targets are multi-hot ``t`` in ``[0, 1]``: ``(N, C)`` shared or ``(P, N, C)`` per member;
class indices ``(N,)`` / ``(P, N)`` are one-hot encoded (then accuracy is reported too).
Both losses average over every example and unit, as ``reduction="mean"`` in torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.nn._losses import Loss
from trainlab.population import member_values, member_view

__all__ = ["BCEWithLogits", "SigmoidFocalLoss"]

_INT = (torch.int64, torch.int32, torch.uint8, torch.int16)


def _binary_entropy(q: torch.Tensor) -> torch.Tensor:
    q = q.clamp(1e-12, 1.0 - 1e-12)
    return -(q * q.log() + (1.0 - q) * (1.0 - q).log())


class _SigmoidLoss(Loss):
    def _targets(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if z.ndim != 3:
            raise ConfigError(f"{type(self).__name__} expects logits of shape (P, N, C), got {tuple(z.shape)}")
        P, N, C = z.shape
        # Set per call: with class indices the argmax is a prediction and accuracy means something.
        self.classification = target.dtype in _INT
        if self.classification:
            target = torch.nn.functional.one_hot(target.long(), C).to(z.dtype)
        t = target if target.ndim == 3 else target.unsqueeze(0)
        if tuple(t.shape[1:]) != (N, C):
            raise ConfigError(f"{type(self).__name__}: targets of shape {tuple(target.shape)} do not fit logits of "
                              f"shape {tuple(z.shape)}; give multi-hot (N, C) or (P, N, C), or class indices (N,)")
        return t.to(z.dtype)

    def reference(self, num_classes: int, targets: torch.Tensor | None = None) -> float:
        """The loss of the best constant prediction (each unit's base rate): the mean binary entropy."""
        if targets is None or targets.dtype in _INT:
            return float(_binary_entropy(torch.tensor(1.0 / num_classes, dtype=torch.float64)))
        t = targets.reshape(-1, targets.shape[-1]).double()
        return float(_binary_entropy(t.mean(dim=0)).mean())


class BCEWithLogits(_SigmoidLoss):
    """``L = mean_{n,c} [ softplus(z) - t z ]`` = ``-[t log p + (1 - t) log(1 - p)]``, ``p = sigmoid(z)``.

    Written as ``max(z, 0) - t z + log(1 + e^-|z|)``: no overflow for large ``|z|``.
    Backward: ``dL/dz = (sigmoid(z) - t) / (N C)``. See: ``torch.nn.BCEWithLogitsLoss()``.
    """

    classification = False

    def forward(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self._targets(z, target)
        self._p = torch.sigmoid(z)
        self._t = t
        self._count = z.shape[1] * z.shape[2]
        elem = z.clamp(min=0) - z * t + torch.log1p(torch.exp(-z.abs()))
        return elem.reshape(z.shape[0], -1).mean(dim=1)

    def backward(self) -> torch.Tensor:
        return (self._p - self._t) / self._count


class SigmoidFocalLoss(_SigmoidLoss):
    """Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, eq. 5), mean-reduced::

        p_t = p t + (1 - p)(1 - t),   alpha_t = alpha t + (1 - alpha)(1 - t)
        FL  = alpha_t (1 - p_t)^gamma * BCE(z, t)

    (``BCE`` = ``-log p_t`` for 0/1 targets), as ``torchvision.ops.sigmoid_focal_loss(reduction="mean")``.
    ``gamma = 0`` with ``alpha=None`` is :class:`BCEWithLogits`. ``gamma`` and ``alpha`` may differ per
    member; ``alpha=None`` switches the class weighting off (torchvision's ``alpha < 0``).

    Backward, with ``ce = BCE``, ``dce/dz = p - t`` and ``dp_t/dz = p (1 - p)(2t - 1)``::

        dFL/dz = alpha_t [ (p - t)(1 - p_t)^gamma - gamma (1 - p_t)^(gamma - 1) p (1 - p)(2t - 1) ce ] / (N C)
    """

    classification = False

    def __init__(self, *, gamma: float | Sequence[float] = 2.0, alpha: float | Sequence[float] | None = 0.25) -> None:
        n = (lambda v: len(v) if isinstance(v, Sequence) else 1)
        member_values(gamma, n(gamma), name="focal gamma", low=0.0, dtype=torch.float64)
        if alpha is not None:
            member_values(alpha, n(alpha), name="focal alpha", low=0.0, high=1.0, dtype=torch.float64)
        self.gamma, self.alpha = gamma, alpha
        self._g = torch.zeros(0)

    def build(self, population_size: int, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> None:
        super().build(population_size)
        self._g = member_values(self.gamma, population_size, name="focal gamma", low=0.0, device=device, dtype=dtype)
        self._a = None if self.alpha is None else member_values(
            self.alpha, population_size, name="focal alpha", low=0.0, high=1.0, device=device, dtype=dtype)

    def forward(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        P = z.shape[0]
        if self._g.shape[0] != P or self._g.dtype != z.dtype or self._g.device != z.device:
            self.build(P, device=z.device, dtype=z.dtype)
        t = self._targets(z, target)
        p = torch.sigmoid(z)
        ce = z.clamp(min=0) - z * t + torch.log1p(torch.exp(-z.abs()))
        one_m_pt = 1.0 - (p * t + (1.0 - p) * (1.0 - t))
        gamma = member_view(self._g, 3)
        mod = one_m_pt.pow(gamma)
        at = 1.0 if self._a is None else member_view(self._a, 3) * t + (1.0 - member_view(self._a, 3)) * (1.0 - t)
        self._cache = (p, t, ce, one_m_pt, gamma, mod, at)
        self._count = z.shape[1] * z.shape[2]
        return (at * mod * ce).reshape(P, -1).mean(dim=1)

    def backward(self) -> torch.Tensor:
        p, t, ce, one_m_pt, gamma, mod, at = self._cache
        # (1 - p_t)^(gamma - 1) is infinite at p_t = 1 for gamma < 1; there p (1 - p) = 0 and the
        # product's limit is 0, so the base is kept off 0 (gamma = 0 drops the term exactly).
        tiny = torch.finfo(p.dtype).tiny
        dmod = torch.where(gamma > 0, gamma * one_m_pt.clamp(min=tiny).pow(gamma - 1.0), torch.zeros_like(gamma))
        g = (p - t) * mod - dmod * p * (1.0 - p) * (2.0 * t - 1.0) * ce
        return at * g / self._count

