"""Hessian-vector products and dense Hessians from the engine's own gradients.

Central differences of gradients
--------------------------------
With ``g = grad f`` smooth, Taylor's theorem gives

    g(w + e v) - g(w - e v) = 2 e H v + (e^3 / 3) D^4 f(w)[v, v, v] + O(e^5)

so ``Hv ~ (g(w + e v) - g(w - e v)) / (2 e)`` has truncation error
``(e^2 / 6) |D^4 f[v, v, v]|`` -- second order in ``e`` -- and exactly zero for a
quadratic (Nocedal & Wright, sec. 8.1: central differences, here applied to the
gradient, one derivative higher). Rounding adds about ``u |g| / e`` (``u`` the unit roundoff of the
dtype: each gradient is computed with a relative error of a few ``u``). The sum is
smallest near ``e ~ (3 u |g| / |D^4 f|)^(1/3)``, i.e. ``e = u^(1/3) * scale``:
about ``6e-6`` in float64, where both terms are ``~ u^(2/3) ~ 4e-11`` relative to
the problem's scale. In float32 ``u^(1/3) ~ 5e-3`` and the error is ``~ 2e-5`` at
best: use float64 for Hessians.

Here the step is ``e = u^(1/3) * max(1, |w|_inf) / |v|_inf`` per member, so the
perturbation ``e v`` is ``u^(1/3)`` relative to the parameters' size.

A dense Hessian is ``m`` such products with the unit vectors ``e_j`` (``2m`` gradient
evaluations, all ``P`` members at once), then symmetrized, ``(H + H^T)/2`` (which
halves the antisymmetric part of the error and makes Cholesky applicable).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.second_order._objective import Objective

#: a finite-difference step: one number, one per member, or ``None`` (the default rule)
Eps = float | Sequence[float] | torch.Tensor | None

__all__ = ["default_eps", "hvp", "fd_hessian", "hessian"]


def default_eps(w: torch.Tensor, v: torch.Tensor | None = None) -> torch.Tensor:
    """``u^(1/3) * max(1, |w|_inf) / |v|_inf`` per member, ``(P,)``."""
    u = torch.finfo(w.dtype).eps
    scale = w.abs().amax(dim=1).clamp_min(1.0)
    eps = u ** (1.0 / 3.0) * scale
    if v is not None:
        eps = eps / v.abs().amax(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
    return eps


def _as_eps(eps: Eps, w: torch.Tensor, v: torch.Tensor | None) -> torch.Tensor:
    if eps is None:
        return default_eps(w, v)
    e = torch.as_tensor(eps, dtype=w.dtype, device=w.device).reshape(-1)
    if e.numel() == 1:
        e = e.expand(w.shape[0])
    if e.numel() != w.shape[0] or not bool((e > 0).all()):
        raise ConfigError(f"eps must be a positive number or one per member ({w.shape[0]}), got {eps!r}")
    return e


def hvp(objective: Objective, w: torch.Tensor, v: torch.Tensor, *, eps: Eps = None) -> torch.Tensor:
    """``H(w) v (P, m)`` by central differences of gradients (two gradient evaluations).

    ``eps``: the step (a number or one per member); default :func:`default_eps`.
    """
    if tuple(v.shape) != tuple(w.shape):
        raise ConfigError(f"v must have the shape of w {tuple(w.shape)}, got {tuple(v.shape)}")
    e = _as_eps(eps, w, v).unsqueeze(1)
    _, gp = objective.value_and_grad(w + e * v)
    _, gm = objective.value_and_grad(w - e * v)
    return (gp - gm) / (2.0 * e)


def fd_hessian(objective: Objective, w: torch.Tensor, *, eps: Eps = None) -> torch.Tensor:
    """Dense ``H (P, m, m)`` from ``m`` central-difference products with unit vectors, symmetrized."""
    P, m = w.shape
    e = _as_eps(eps, w, None)  # |e_j|_inf = 1
    H = torch.empty(P, m, m, dtype=w.dtype, device=w.device)
    wp = w.clone()
    for j in range(m):
        wp[:, j] = w[:, j] + e
        up = wp[:, j] - w[:, j]  # the step actually taken after rounding w_j + e
        _, gp = objective.value_and_grad(wp)
        wp[:, j] = w[:, j] - e
        um = wp[:, j] - w[:, j]
        _, gm = objective.value_and_grad(wp)
        wp[:, j] = w[:, j]
        H[:, :, j] = (gp - gm) / (up - um).unsqueeze(1)
    return 0.5 * (H + H.transpose(1, 2))


def hessian(objective: Objective, w: torch.Tensor, *, method: str = "auto", eps: Eps = None) -> torch.Tensor:
    """Dense Hessian ``(P, m, m)`` at ``w``.

    ``method``: ``"differences"`` (:func:`fd_hessian`), ``"analytic"`` (the objective's
    formula: test functions, softmax regression) or ``"auto"`` (analytic when the
    objective has a formula, else differences).
    """
    if method not in ("auto", "analytic", "differences"):
        raise ConfigError(f"hessian method must be 'auto', 'analytic' or 'differences', got {method!r}")
    if method in ("auto", "analytic"):
        with torch.no_grad():
            H = objective.analytic_hessian(w)
        if H is not None:
            return H
        if method == "analytic":
            raise ConfigError(f"{objective.name} has no analytic Hessian; use method='differences' (or 'auto')")
    return fd_hessian(objective, w, eps=eps)
