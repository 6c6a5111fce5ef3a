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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from trainlab.nn import Loss, Module, Sequential

if TYPE_CHECKING:  # regularize sits above this module's floor: the type only
    from trainlab.regularize import Regularizer

__all__ = ["GradcheckResult", "GradientMismatch", "check_layer", "check_loss", "check_penalty", "assert_gradients",
           "relative_error"]


def relative_error(analytic: torch.Tensor, numeric: torch.Tensor) -> float:
    """``max|a - n| / max(max|a|, max|n|)`` (0 when both are exactly zero)."""
    scale = max(analytic.abs().max().item(), numeric.abs().max().item())
    if scale == 0.0:
        return 0.0
    return (analytic - numeric).abs().max().item() / scale


@dataclass
class GradcheckResult:
    """Relative error per checked tensor (``"input"`` and each parameter name), and for each
    tensor its worst entry: ``(index, analytic value, numeric value)``."""

    errors: dict[str, float]
    worst: dict[str, tuple[tuple[int, ...], float, float]] = field(default_factory=dict)

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

    result = GradcheckResult({})
    if dx is not None:
        _record(result, "input", dx, _numeric(s, x, h))
    for name, p in layer.named_parameters().items():
        _record(result, name, analytic[name], _numeric(s, p.data, h))
    return result


def _record(result: GradcheckResult, name: str, analytic: torch.Tensor, numeric: torch.Tensor) -> None:
    result.errors[name] = relative_error(analytic, numeric)
    flat = (analytic - numeric).abs().reshape(-1)
    if flat.numel():
        k = int(flat.argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(k), analytic.shape))
        result.worst[name] = (index, float(analytic.reshape(-1)[k]), float(numeric.reshape(-1)[k]))


class GradientMismatch(AssertionError):
    """A backward that disagrees with central differences (raised by :func:`assert_gradients`)."""


def assert_gradients(
    layer: Module,
    x: torch.Tensor,
    *,
    atol: float = 1e-6,
    training: bool = True,
    h: float = 1e-6,
    seed: int = 0,
    before_forward: Callable[[], None] | None = None,
    what: str = "",
) -> GradcheckResult:
    """:func:`check_layer`, raising :class:`GradientMismatch` when any tensor's relative error is
    above ``atol``; the message names the tensor and its worst entry. Returns the result otherwise.
    """
    result = check_layer(layer, x, training=training, h=h, seed=seed, before_forward=before_forward)
    bad = {k: v for k, v in result.errors.items() if not v <= atol}  # NaN counts as bad
    if bad:
        name = max(bad, key=lambda k: bad[k] if bad[k] == bad[k] else float("inf"))
        index, a, n = result.worst.get(name, ((), float("nan"), float("nan")))
        raise GradientMismatch(
            f"{what or type(layer).__name__}: gradient of {name} has relative error {bad[name]:.3g} > {atol:g}; "
            f"worst entry {name}{list(index)}: backward gives {a:.6g}, central differences {n:.6g} "
            f"(all: {result})")
    return result


def check_loss(loss: Loss, out: torch.Tensor, target: torch.Tensor, *, h: float = 1e-6) -> GradcheckResult:
    """Compare ``loss.backward()`` with central differences of ``sum_p loss(out)_p``."""
    out = out.detach().clone()
    loss.forward(out, target)
    analytic = loss.backward()
    numeric = _numeric(lambda: float(loss.forward(out, target).sum()), out, h)
    result = GradcheckResult({})
    _record(result, "input", analytic, numeric)
    return result


def _penalty_sum(regularizer: Regularizer) -> torch.Tensor:
    penalty = regularizer.penalty()
    assert penalty is not None  # check_penalty checked it
    return penalty.sum()


def check_penalty(regularizer: Regularizer, model: Sequential, *, h: float = 1e-6) -> GradcheckResult:
    """Compare a regularizer's ``add_grad`` with central differences of ``sum_p penalty()_p``.

    ``regularizer`` must already be attached to ``model`` (``regularizer.attach(model)``).
    """
    if regularizer.penalty() is None:
        raise ValueError(f"check_penalty: {type(regularizer).__name__} has no penalty to differentiate "
                         "(penalty() is None; it acts on the weights directly)")
    params = model.named_parameters()
    for p in params.values():
        p.grad.zero_()
    regularizer.add_grad()
    analytic = {name: p.grad.clone() for name, p in params.items()}
    errors: dict[str, float] = {}
    for name, p in params.items():
        numeric = _numeric(lambda: float(_penalty_sum(regularizer)), p.data, h)
        errors[name] = relative_error(analytic[name], numeric)
    return GradcheckResult(errors)
