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

    def build(self, population_size: int, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> None:
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

    ``weight``: class weights, ``(C,)`` shared or ``(P, C)`` one row per member, as
    ``torch.nn.CrossEntropyLoss(weight=w)`` (see :meth:`_weighted_forward` for the formula:
    with class indices the batch mean is weighted, ``sum_n w_{y_n} l_n / sum_n w_{y_n}``).

    Backward: ``dL/dz = (softmax(z) - t) / N``.
    """

    classification = True
    _minus_ones_cache: torch.Tensor | None = None  # see _minus_ones

    def __init__(self, *, label_smoothing: float | Sequence[float] = 0.0,
                 weight: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor | None = None) -> None:
        member_values(label_smoothing, len(label_smoothing) if isinstance(label_smoothing, Sequence) else 1,
                      name="label_smoothing", low=0.0, high=1.0, high_inclusive=False)
        self.label_smoothing = label_smoothing
        self.weight = None if weight is None else _class_weights(weight)
        self._eps = torch.zeros(0)
        self._w: torch.Tensor | None = None  # (P, C) class weights once built
        self._hard: torch.Tensor | None = None  # (P, N, 1) class indices of the last batch, or
        self._t: torch.Tensor | None = None  # (P, N, C) its soft targets (exactly one is set)

    def build(self, population_size: int, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> None:
        super().build(population_size)
        self._eps = member_values(self.label_smoothing, population_size, name="label_smoothing",
                                  device=device, dtype=dtype, low=0.0, high=1.0, high_inclusive=False)
        self._smooth = bool((self._eps > 0).any())
        self._w = None
        if self.weight is not None:
            w = self.weight.to(device=device, dtype=dtype)
            if w.shape[0] not in (1, population_size):
                raise ConfigError(f"cross-entropy class weights are given for {w.shape[0]} members, "
                                  f"the population has {population_size}")
            self._w = w.expand(population_size, w.shape[1]).contiguous()  # (P, C)

    def forward(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if z.ndim != 3:
            raise ConfigError(f"cross-entropy expects logits of shape (P, N, C), got {tuple(z.shape)}")
        P, N, C = z.shape
        if self._eps.shape[0] != P or self._eps.dtype != z.dtype or self._eps.device != z.device:
            self.build(P, device=z.device, dtype=z.dtype)
        # log p = z - logsumexp(z), in exactly this order. torch.log_softmax is the same function and a few
        # microseconds faster, but it rounds differently ((z - max) - log s instead of z - (max + log s)),
        # and results that amplify the last bit move with it: the Newton test's singular Hessian (the output
        # biases' shift direction) needed damping on its last step, and at rate 0.3 the schedules
        # experiment's chaotic momentum runs ended at other losses (docs/benchmarks.md, issue 20).
        lse = torch.logsumexp(z, dim=2, keepdim=True)
        logp = self._logp = z - lse  # backward's softmax is exp(logp), made there (evaluation never needs it)
        self._n = int(N)  # a plain number while trace_step records, not a traced size (see Linear.forward)
        if self._w is not None:
            return self._weighted_forward(logp, target, self._w)
        if target.dtype in (torch.int64, torch.int32, torch.uint8, torch.int16):
            if target.dtype != torch.int64:
                target = target.long()
            # (P, N, 1) class indices: (N,) or (1, N) labels shared by the members, or (P, N); expanded only
            # where the shape differs (expand also raises for a wrong N)
            idx = target.view(1, N, 1) if target.ndim == 1 else target.unsqueeze(2)
            if idx.shape != (P, N, 1):
                idx = idx.expand(P, N, 1)
            picked = torch.gather(logp, 2, idx)  # (P, N, 1): log p of each example's class
            self._hard = idx
            self._t = None
            if not self._smooth:  # mean_n(-log p_y) as -(mean_n log p_y): the same number, bit for bit
                return picked.mean(dim=(1, 2)).neg_()
            nll = -picked.squeeze(2)  # (P, N)
            eps = member_view(self._eps, 2)
            nll = (1.0 - eps) * nll - eps * logp.mean(dim=2)
        else:
            t = self._soft_targets(target, C)
            self._t = t
            self._hard = None
            nll = -(t * logp).sum(dim=2)
        return nll.mean(dim=1)

    def _soft_targets(self, target: torch.Tensor, C: int) -> torch.Tensor:
        """Soft targets ``(1 or P, N, C)``, smoothed per member: ``(1 - eps) t + eps / C``."""
        t = target if target.ndim == 3 else target.unsqueeze(0)
        if t.shape[-1] != C:
            raise ConfigError(f"soft targets have {t.shape[-1]} classes, logits have {C}")
        if self._smooth:
            eps = member_view(self._eps, 3)
            t = (1.0 - eps) * t + eps / C
        return t

    def _weighted_forward(self, logp: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Class weights ``w`` as ``torch.nn.CrossEntropyLoss(weight=w, label_smoothing=eps)``:

        * class indices: ``L = [(1-eps) sum_n w_{y_n} (-log p_{n,y_n})
          + (eps/C) sum_n sum_c w_c (-log p_{nc})] / sum_n w_{y_n}``
          (a weighted mean: each example counts ``w_{y_n}`` times);
        * soft targets ``t`` (smoothed first): ``L = (1/N) sum_n sum_c w_c t_{nc} (-log p_{nc})``.
        """
        P, N, C = logp.shape
        if weight.shape[1] != C:
            raise ConfigError(f"cross-entropy has {weight.shape[1]} class weights but the logits have {C} classes")
        w = weight.unsqueeze(1)  # (P, 1, C)
        if target.dtype in (torch.int64, torch.int32, torch.uint8, torch.int16):
            if target.ndim == 1:
                target = target.unsqueeze(0)
            idx = target.long().expand(P, N).unsqueeze(2)
            wy = torch.gather(w.expand(P, N, C), 2, idx)  # (P, N, 1)
            self._hard, self._t, self._wy = idx, None, wy
            self._wsum = wy.sum(dim=1, keepdim=True)  # (P, 1, 1)
            nll = -(wy * torch.gather(logp, 2, idx)).sum(dim=(1, 2))
            if self._smooth:
                eps = self._eps
                nll = (1.0 - eps) * nll - (eps / C) * (w * logp).sum(dim=(1, 2))
            return nll / self._wsum.reshape(P)
        t = self._soft_targets(target, C)
        a = t * w  # the weighted target mass
        self._hard, self._t = None, a
        return -(a * logp).sum(dim=2).mean(dim=1)

    def _weighted_backward(self, weight: torch.Tensor) -> torch.Tensor:
        p = torch.exp(self._logp)
        if self._hard is None:
            a = self._t
            assert a is not None  # forward set the hard or the soft targets
            return (a.sum(dim=2, keepdim=True) * p - a.expand_as(p)) / self._n
        P, N, C = p.shape
        w = weight.unsqueeze(1)
        # d/dz of w_y (-log p_y) = w_y (p - e_y);  d/dz of sum_c w_c (-log p_c) = (sum_c w_c) p - w
        g = self._wy * p
        g.scatter_add_(2, self._hard, -self._wy)
        if self._smooth:
            eps = member_view(self._eps, 3)
            g = (1.0 - eps) * g + (eps / C) * (w.sum(dim=2, keepdim=True) * p - w)
        return g / self._wsum

    def backward(self) -> torch.Tensor:
        if self._w is not None:
            return self._weighted_backward(self._w)
        g = torch.exp(self._logp)  # softmax, a new tensor to work in
        if self._hard is not None:
            if self._smooth:
                eps = member_view(self._eps, 3)
                g -= eps / g.shape[2]
                g.scatter_add_(2, self._hard, -(1.0 - eps).expand(g.shape[0], g.shape[1], 1))
            else:
                g.scatter_add_(2, self._hard, self._minus_ones(self._hard, g.dtype))
        else:
            assert self._t is not None  # forward set the hard or the soft targets
            g -= self._t
        g /= self._n
        return g

    def _minus_ones(self, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A tensor of -1 shaped like ``like`` (the targets' ``(P, N, 1)``), made once per shape and reused:
        ``scatter_add_`` only reads it."""
        m = self._minus_ones_cache
        if m is None or m.shape != like.shape or m.dtype != dtype or m.device != like.device:
            m = self._minus_ones_cache = torch.full(like.shape, -1.0, dtype=dtype, device=like.device)
        return m

    def reference(self, num_classes: int, targets: torch.Tensor | None = None) -> float:
        import math

        return math.log(num_classes)


def _class_weights(weight: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
    """``(C,)`` or ``(P, C)`` non-negative finite class weights -> a float64 ``(1 or P, C)`` tensor."""
    try:
        w = torch.as_tensor(weight, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"class weights must be a list of numbers (one per class), got {weight!r}") from None
    if w.ndim == 1:
        w = w.unsqueeze(0)
    if w.ndim != 2 or w.shape[1] < 1:
        raise ConfigError(f"class weights must be a list of C numbers or one such list per member, got shape "
                          f"{tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w.sum(dim=1) <= 0).any()):
        raise ConfigError(f"class weights must be finite, >= 0 and not all 0, got {w.tolist()}")
    return w


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

    def reference(self, num_classes: int, targets: torch.Tensor | None = None) -> float:
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
