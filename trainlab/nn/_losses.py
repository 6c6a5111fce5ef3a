"""Losses: forward returns one number per member, ``(P,)``; backward returns dL/d(output)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.population import member_values, member_view

__all__ = ["Loss", "SoftmaxCrossEntropy", "MeanSquaredError", "accuracy"]


class Loss:
    """A loss averaged over the batch for every member: ``forward(out, target) -> (P,)``."""

    #: whether the loss is evaluated against class labels (accuracy makes sense)
    classification = False

    def build(self, population_size: int, *, device="cpu", dtype=torch.float32) -> None:
        self.population_size = population_size

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backward(self) -> torch.Tensor:
        raise NotImplementedError

    def reference(self, num_classes: int, targets: torch.Tensor | None = None) -> float:
        """The loss of an uninformed model (the doctor's "initial loss" reference)."""
        raise NotImplementedError


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, averaged over the batch.

    ``L = mean_n [ logsumexp(z_n) - sum_c t_nc z_nc ]`` -- computed through
    log-sum-exp, so large logits never overflow. Targets may be class indices
    ``(N,)`` / ``(P, N)`` or probability vectors ``(N, C)`` / ``(P, N, C)`` (mixup,
    cutmix). ``label_smoothing`` ``eps`` (per member) replaces the target ``t`` by
    ``(1 - eps) t + eps / C``, as in ``torch.nn.CrossEntropyLoss(label_smoothing=eps)``;
    it is applied here, once, to whatever targets arrive.

    Backward: ``dL/dz = (softmax(z) - t) / N``.
    """

    classification = True

    def __init__(self, *, label_smoothing: float | Sequence[float] = 0.0) -> None:
        member_values(label_smoothing, len(label_smoothing) if isinstance(label_smoothing, Sequence) else 1,
                      name="label_smoothing", low=0.0, high=1.0, high_inclusive=False)
        self.label_smoothing = label_smoothing
        self._eps = torch.zeros(0)

    def build(self, population_size, *, device="cpu", dtype=torch.float32):
        super().build(population_size)
        self._eps = member_values(self.label_smoothing, population_size, name="label_smoothing",
                                  device=device, dtype=dtype, low=0.0, high=1.0, high_inclusive=False)
        self._smooth = bool((self._eps > 0).any())

    def forward(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if z.ndim != 3:
            raise ConfigError(f"cross-entropy expects logits of shape (P, N, C), got {tuple(z.shape)}")
        P, N, C = z.shape
        if self._eps.shape[0] != P or self._eps.dtype != z.dtype or self._eps.device != z.device:
            self.build(P, device=z.device, dtype=z.dtype)
        lse = torch.logsumexp(z, dim=2, keepdim=True)
        logp = z - lse
        self._p = torch.exp(logp)
        if target.dtype in (torch.int64, torch.int32, torch.uint8, torch.int16):
            if target.ndim == 1:
                target = target.unsqueeze(0)
            idx = target.long().expand(P, N).unsqueeze(2)
            nll = -torch.gather(logp, 2, idx).squeeze(2)  # (P, N)
            if self._smooth:
                eps = member_view(self._eps, 2)
                nll = (1.0 - eps) * nll - eps * logp.mean(dim=2)
            self._hard = idx
            self._t = None
        else:
            t = target if target.ndim == 3 else target.unsqueeze(0)
            if t.shape[-1] != C:
                raise ConfigError(f"soft targets have {t.shape[-1]} classes, logits have {C}")
            if self._smooth:
                eps = member_view(self._eps, 3)
                t = (1.0 - eps) * t + eps / C
            self._t = t
            self._hard = None
            nll = -(t * logp).sum(dim=2)
        self._n = N
        return nll.mean(dim=1)

    def backward(self) -> torch.Tensor:
        g = self._p.clone()
        if self._hard is not None:
            if self._smooth:
                eps = member_view(self._eps, 3)
                g -= eps / g.shape[2]
                g.scatter_add_(2, self._hard, -(1.0 - eps).expand(g.shape[0], g.shape[1], 1))
            else:
                g.scatter_add_(2, self._hard, torch.full_like(self._hard, -1.0, dtype=g.dtype))
        else:
            g -= self._t
        g /= self._n
        return g

    def reference(self, num_classes, targets=None):
        import math

        return math.log(num_classes)


class MeanSquaredError(Loss):
    """``L = mean over batch and outputs of (y - t)^2`` (``torch.nn.MSELoss()``'s convention).

    The textbook writes ``0.5 * sum (y - t)^2`` per example; that differs by the
    factor ``D / 2`` (``D`` outputs). Class-index targets are one-hot encoded.
    Backward: ``dL/dy = 2 (y - t) / (N D)``.
    """

    def forward(self, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        P = y.shape[0]
        if target.dtype in (torch.int64, torch.int32, torch.uint8, torch.int16):
            target = torch.nn.functional.one_hot(target.long(), y.shape[-1]).to(y.dtype)
        t = target if target.ndim == y.ndim else target.unsqueeze(0)
        if tuple(t.shape[1:]) != tuple(y.shape[1:]):
            raise ConfigError(f"targets of shape {tuple(target.shape)} do not fit outputs of shape {tuple(y.shape)}")
        self._d = y - t
        self._count = self._d[0].numel()
        return (self._d * self._d).reshape(P, -1).mean(dim=1)

    def backward(self) -> torch.Tensor:
        return self._d * (2.0 / self._count)

    def reference(self, num_classes, targets=None):
        """The variance of the targets (the loss of always predicting their mean)."""
        if targets is None:
            raise ConfigError("the MSE reference loss needs the targets")
        t = targets
        if t.dtype in (torch.int64, torch.int32):
            t = torch.nn.functional.one_hot(t.long(), num_classes).double()
        t = t.reshape(t.shape[0], -1).double()
        return float(t.var(dim=0, unbiased=False).mean())


def accuracy(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correct argmax predictions per member, ``(P,)``."""
    return (out.argmax(dim=-1) == labels.unsqueeze(0) if labels.ndim == 1 else out.argmax(dim=-1) == labels
            ).to(torch.float64).mean(dim=1)
