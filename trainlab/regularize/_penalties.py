"""Norm penalties (L2, L1, elastic net) and the max-norm constraint, per member."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Sequential
from trainlab.population import member_values, member_view
from trainlab.regularize._base import Regularizer, StepInfo, select_parameters


__all__ = ["L2", "L1", "ElasticNet", "MaxNorm"]

Number = float | Sequence[float]


class _Penalty(Regularizer):
    def __init__(self, *, include_1d: bool = False, layers: Sequence[int] | None = None) -> None:
        self.include_1d = include_1d
        self.layers = None if layers is None else list(layers)

    def attach(self, model: Sequential) -> None:
        super().attach(model)
        self.params = select_parameters(model, include_1d=self.include_1d, layers=self.layers)
        P = model.size
        dev, dt = model.device, model.dtype
        self._build(P, dev, dt)

    def _build(self, P: int, device: torch.device | str, dtype: torch.dtype) -> None: ...

    def parameter_names(self) -> list[str]:
        return [n for n, _ in self.params]


class L2(_Penalty):
    """``lambda * sum w^2`` (``form="full"``, Keras' ``l2(lambda)``) or ``lambda/2 * sum w^2``
    (``form="half"``, the textbook's ``0.5 * lambda * sum W^2``), summed over the selected weights.

    Gradient: ``2 lambda w`` (full) or ``lambda w`` (half). The ``half`` form is what
    ``torch.optim.SGD(weight_decay=lambda)`` adds to the gradient, so with plain SGD
    ``L2(lambda, form="half")`` and coupled weight decay ``lambda`` take identical steps.
    ``lambda`` may differ per member.
    """

    def __init__(self, lam: Number, *, form: str = "full", include_1d: bool = False,
                 layers: Sequence[int] | None = None) -> None:
        super().__init__(include_1d=include_1d, layers=layers)
        if form not in ("full", "half"):
            raise ConfigError(f"L2 form must be 'full' (lambda * sum w^2) or 'half' (lambda/2 * sum w^2), got {form!r}")
        self.lam, self.form = lam, form

    def _build(self, P: int, device: torch.device | str, dtype: torch.dtype) -> None:
        self._lam = member_values(self.lam, P, name="l2 lambda", device=device, dtype=dtype, low=0.0)
        self._c = self._lam * (1.0 if self.form == "full" else 0.5)

    def penalty(self) -> torch.Tensor:
        total = torch.zeros_like(self._c)
        for _, p in self.params:
            total += p.data.reshape(p.data.shape[0], -1).pow(2).sum(dim=1)
        return self._c * total

    def add_grad(self) -> None:
        for _, p in self.params:
            p.grad.addcmul_(p.data, member_view(self._c, p.data.ndim), value=2.0)


class L1(_Penalty):
    """``alpha * sum |w|`` over the selected weights; subgradient ``alpha * sign(w)`` (0 at 0).

    Plain (sub)gradient steps oscillate around zero and never reach it exactly.
    ``proximal=True`` instead applies the penalty as a proximal step after each
    optimizer update (ISTA): ``w <- sign(w) * max(|w| - lr * lr_scale * alpha, 0)`` (soft
    thresholding at the parameter's own step, ``lr_scale`` being its per-layer rate factor),
    which sets weights exactly to zero. With ``proximal=True`` the
    penalty is still reported in the loss, but no gradient is added.
    """

    def __init__(self, alpha: Number, *, proximal: bool = False, include_1d: bool = False,
                 layers: Sequence[int] | None = None) -> None:
        super().__init__(include_1d=include_1d, layers=layers)
        self.alpha, self.proximal = alpha, bool(proximal)

    def _build(self, P: int, device: torch.device | str, dtype: torch.dtype) -> None:
        self._alpha = member_values(self.alpha, P, name="l1 alpha", device=device, dtype=dtype, low=0.0)

    def penalty(self) -> torch.Tensor:
        total = torch.zeros_like(self._alpha)
        for _, p in self.params:
            total += p.data.reshape(p.data.shape[0], -1).abs().sum(dim=1)
        return self._alpha * total

    def add_grad(self) -> None:
        if self.proximal:
            return
        for _, p in self.params:
            p.grad.addcmul_(torch.sign(p.data), member_view(self._alpha, p.data.ndim))

    def after_step(self, optimizer: StepInfo) -> None:
        if not self.proximal:
            return
        # The threshold is the parameter's effective step times alpha, lr * lr_scale * alpha, per
        # member (the proximal operator of the step that parameter took); an inactive member's lr
        # counts as 0 (no change), and so does a layer set to learn at 0x the rate.
        thr = optimizer.lr * self._alpha * optimizer.active.to(self._alpha.dtype)
        for _, p in self.params:
            if not p.trainable or p.lr_scale == 0.0:
                continue
            t = member_view(thr * p.lr_scale, p.data.ndim)
            p.data.copy_(torch.sign(p.data) * torch.clamp(p.data.abs() - t, min=0.0))


class ElasticNet(_Penalty):
    """``alpha * sum |w| + lambda * sum w^2`` (Zou & Hastie 2005): L1 and L2 together
    (``form`` as in :class:`L2`; ``proximal`` as in :class:`L1`)."""

    def __init__(self, alpha: Number, lam: Number, *, form: str = "full", proximal: bool = False,
                 include_1d: bool = False, layers: Sequence[int] | None = None) -> None:
        super().__init__(include_1d=include_1d, layers=layers)
        self.l1 = L1(alpha, proximal=proximal, include_1d=include_1d, layers=layers)
        self.l2 = L2(lam, form=form, include_1d=include_1d, layers=layers)

    def attach(self, model: Sequential) -> None:
        super().attach(model)
        self.l1.attach(model)
        self.l2.attach(model)

    def penalty(self) -> torch.Tensor:
        return self.l1.penalty() + self.l2.penalty()

    def add_grad(self) -> None:
        self.l1.add_grad()
        self.l2.add_grad()

    def after_step(self, optimizer: StepInfo) -> None:
        self.l1.after_step(optimizer)


class MaxNorm(Regularizer):
    """Max-norm constraint (Srivastava et al. 2014): after each step, every unit's
    *incoming* weight vector is projected onto the ball ``||w|| <= c``.

    Axes: a Linear weight ``(P, in, out)`` -- unit ``j``'s incoming weights are
    ``W[p, :, j]`` (norm over dim 1); a convolution weight ``(P, out, in, kh, kw)``
    -- filter ``o``'s weights ``W[p, o]`` (norm over dims 2, 3, 4). Biases are not
    constrained. ``c`` may differ per member.

    The projection does not depend on the step size, but a parameter that does not
    learn -- ``trainable=False`` or a per-layer rate of 0 (``lr_scale == 0``, e.g.
    ``set_layer_lr(model, {0: 0.0})``) -- is left exactly as it is, as the optimizer leaves it.
    """

    def __init__(self, c: Number, *, layers: Sequence[int] | None = None) -> None:
        self.c = c
        self.layers = None if layers is None else list(layers)

    def attach(self, model: Sequential) -> None:
        super().attach(model)
        self.params = [(n, p) for n, p in select_parameters(model, layers=self.layers) if p.kind == "weight"]
        self._c = member_values(self.c, model.size, name="max_norm c", device=model.device, dtype=model.dtype,
                                low=0.0, low_inclusive=False)
        for n, p in self.params:
            if p.data.ndim not in (3, 5):
                raise ConfigError(f"max-norm does not know the unit axis of {n} with shape {tuple(p.data.shape)}")

    @staticmethod
    def unit_norms(w: torch.Tensor) -> torch.Tensor:
        """Norm of each unit's incoming weights, keeping dims for broadcasting."""
        dims = (1,) if w.ndim == 3 else (2, 3, 4)
        return w.pow(2).sum(dim=dims, keepdim=True).sqrt()

    def after_step(self, optimizer: StepInfo) -> None:
        for _, p in self.params:
            if not p.trainable or p.lr_scale == 0.0:
                continue
            c = member_view(self._c, p.data.ndim)
            norms = self.unit_norms(p.data)
            # scale = min(1, c / ||w||); inactive members are left as they are
            scale = torch.clamp(c / norms.clamp_min(1e-12), max=1.0)
            active = member_view(optimizer.active, p.data.ndim)
            p.data.mul_(torch.where(active, scale, torch.ones_like(scale)))

    def parameter_names(self) -> list[str]:
        return [n for n, _ in self.params]
