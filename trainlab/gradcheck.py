"""Numerical gradient checking (public utility).

For a layer ``f`` and a fixed random "upstream gradient" ``R``, the scalar
``s(x, theta) = sum(f(x) * R)`` has ``ds/dx = backward(R)`` and
``ds/dtheta = theta.grad``. Central differences ``(s(v + h) - s(v - h)) / 2h``
estimate each entry; the relative error per tensor is
``max|a - n| / max(max|a|, max|n|, tiny)`` (a norm-wise measure that is not fooled
by entries that are zero in both). In float64 with ``h = 1e-6`` a correct backward
gives errors around 1e-9..1e-7; the tests require < 1e-6.

Stochastic layers must hold their random mask fixed between the evaluations: pass
``training=False``, or give the layer a fixed mask first (see each layer's docs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainlab.nn._losses import Loss
from trainlab.nn._module import Module

__all__ = ["GradcheckResult", "check_layer", "check_loss", "relative_error"]


def relative_error(analytic: torch.Tensor, numeric: torch.Tensor) -> float:
    """``max|a - n| / max(max|a|, max|n|)`` (0 when both are exactly zero)."""
    scale = max(analytic.abs().max().item(), numeric.abs().max().item())
    if scale == 0.0:
        return 0.0
    return (analytic - numeric).abs().max().item() / scale


@dataclass
class GradcheckResult:
    """Relative error per checked tensor (``"input"`` and each parameter name)."""

    errors: dict[str, float]

    @property
    def max_error(self) -> float:
        return max(self.errors.values()) if self.errors else 0.0

    def __str__(self) -> str:
        return ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())


def _numeric(fn: Callable[[], float], t: torch.Tensor, h: float) -> torch.Tensor:
    out = torch.zeros_like(t)
    flat, oflat = t.view(-1), out.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + h
        fp = fn()
        flat[i] = old - h
        fm = fn()
        flat[i] = old
        oflat[i] = (fp - fm) / (2.0 * h)
    return out


def check_layer(
    layer: Module,
    x: torch.Tensor,
    *,
    training: bool = True,
    h: float = 1e-6,
    seed: int = 0,
    before_forward: Callable[[], None] | None = None,
) -> GradcheckResult:
    """Compare ``layer.backward`` with central differences at input ``x`` (built layer, float64).

    ``before_forward`` runs before every forward (e.g. to reset a random mask so
    every evaluation sees the same one).
    """
    x = x.detach().clone()
    prep = before_forward or (lambda: None)
    prep()
    out = layer.forward(x, training=training)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    g_copy = g.clone()
    dx = layer.backward(g)
    if not torch.equal(g, g_copy):
        raise AssertionError(f"{type(layer).__name__}.backward mutated its incoming gradient")
    analytic = {name: p.grad.clone() for name, p in layer.named_parameters().items()}

    def s() -> float:
        prep()
        return float((layer.forward(x, training=training) * g).sum())

    errors: dict[str, float] = {}
    if dx is not None:
        errors["input"] = relative_error(dx, _numeric(s, x, h))
    for name, p in layer.named_parameters().items():
        errors[name] = relative_error(analytic[name], _numeric(s, p.data, h))
    return GradcheckResult(errors)


def check_loss(loss: Loss, out: torch.Tensor, target: torch.Tensor, *, h: float = 1e-6) -> GradcheckResult:
    """Compare ``loss.backward()`` with central differences of ``sum_p loss(out)_p``."""
    out = out.detach().clone()
    loss.forward(out, target)
    analytic = loss.backward()
    numeric = _numeric(lambda: float(loss.forward(out, target).sum()), out, h)
    return GradcheckResult({"input": relative_error(analytic, numeric)})


def check_penalty(regularizer, model, *, h: float = 1e-6) -> GradcheckResult:
    """Compare a regularizer's ``add_grad`` with central differences of ``sum_p penalty()_p``.

    ``regularizer`` must already be attached to ``model`` (``regularizer.attach(model)``).
    """
    params = model.named_parameters()
    for p in params.values():
        p.grad.zero_()
    regularizer.add_grad()
    analytic = {name: p.grad.clone() for name, p in params.items()}
    errors = {}
    for name, p in params.items():
        numeric = _numeric(lambda: float(regularizer.penalty().sum()), p.data, h)
        errors[name] = relative_error(analytic[name], numeric)
    return GradcheckResult(errors)
