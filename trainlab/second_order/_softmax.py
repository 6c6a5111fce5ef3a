"""The exact Hessian of L2-regularized softmax regression (a validation oracle and a
fast path for Newton on that model).

For one example with input ``x`` (``D`` features, with a trailing 1 appended when
the layer has a bias: ``x~``) and class probabilities ``p = softmax(x~^T W~)``, the
cross-entropy's Hessian with respect to the logits is ``S = diag(p) - p p^T`` (for
any target distribution summing to one, so label smoothing does not change it).
With trainlab's flat layout (weight ``(D, C)`` row-major, index ``d*C + c``, then the
bias), the chain rule gives

    H = (1/N) sum_n kron(x~_n x~_n^T, S_n)  +  2 c I_selected

(``kron(S_n, x~_n x~_n^T)`` in the column-major layout textbooks use), where
``c`` is the L2 coefficient of each penalty (``lambda`` for ``form="full"``,
``lambda/2`` for ``"half"``) on the entries it covers. ``S_n`` has the null vector
``1`` (shifting all logits), so without a penalty on the bias ``H`` is singular
along "add a constant to every class's bias": the loss has a unique minimum value
but not a unique minimizer. ``L2(..., include_1d=True)`` makes ``H`` positive definite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Linear, Sequential
from trainlab.population import member_values
from trainlab.regularize import L2, Regularizer
from trainlab.second_order._flat import trainable_parameters

__all__ = ["softmax_regression_hessian", "SoftmaxObjective"]


class SoftmaxObjective(Protocol):
    """What the Hessian formula reads of an objective (``ModelObjective`` has it): the model, the
    inputs, the penalties, and a way to load a flat point into the model."""

    @property
    def model(self) -> Sequential: ...

    @property
    def x(self) -> torch.Tensor: ...

    @property
    def regularizers(self) -> Sequence[Regularizer]: ...

    def set_point(self, w: torch.Tensor) -> None: ...


def softmax_regression_hessian(objective: SoftmaxObjective, w: torch.Tensor) -> torch.Tensor | None:
    """``H (P, m, m)`` at ``w (P, m)`` for a softmax-regression :class:`ModelObjective`.

    Returns ``None`` when some parameter of the layer is frozen (the formula below
    assumes the full weight-and-bias layout).
    """
    layer = objective.model.layers[0]
    if not isinstance(layer, Linear) or len(objective.model.layers) != 1:
        raise ConfigError(f"the softmax-regression Hessian needs a model of one Linear layer, got "
                          f"{[type(m).__name__ for m in objective.model.layers]}")
    penalties = [r for r in objective.regularizers if isinstance(r, L2)]
    if len(penalties) != len(objective.regularizers):
        raise ConfigError(f"the softmax-regression Hessian handles L2 penalties only, got "
                          f"{[type(r).__name__ for r in objective.regularizers]}")
    params = trainable_parameters(objective.model)
    if len(params) != len(layer.parameters()):
        return None
    P, m = w.shape
    D, C = layer.weight.data.shape[1:]  # (P, in, out)
    has_bias = layer.bias is not None
    objective.set_point(w)
    with torch.no_grad():
        z = layer.forward(objective.x, training=False)  # (P, N, C)
        setattr(layer, "_x", None)  # no backward follows; drop Linear's cached input
        p = torch.softmax(z, dim=2)
    x = objective.x
    N = x.shape[1]
    H = torch.zeros(P, m, m, dtype=w.dtype, device=w.device)
    for k in range(P):
        xk = x[k if x.shape[0] > 1 else 0]
        if has_bias:
            xk = torch.cat([xk, torch.ones(N, 1, dtype=xk.dtype, device=xk.device)], dim=1)
        pk = p[k]
        Dt = xk.shape[1]
        H4 = H[k].view(Dt, C, Dt, C)
        # diag(p) part: for each class c the block x~^T diag(p_c) x~ / N at rows (., c), cols (., c).
        blocks = torch.bmm(xk.T.unsqueeze(0) * pk.T.unsqueeze(1), xk.expand(C, N, Dt)) / N  # (C, Dt, Dt)
        for c in range(C):
            H4[:, c, :, c] = blocks[c]
        # -p p^T part: Z_n = kron(x~_n, p_n), sum_n Z_n Z_n^T / N.
        Z = (xk.unsqueeze(2) * pk.unsqueeze(1)).reshape(N, Dt * C)
        H[k].addmm_(Z.T, Z, alpha=-1.0 / N)
    # L2 penalties: c * sum w^2 adds 2c to the diagonal of the entries it covers.
    offsets = {"weight": (0, D * C), "bias": (D * C, D * C + (C if has_bias else 0))}
    for r in penalties:
        coef = member_values(r.lam, P, name="l2 lambda", dtype=w.dtype, device=w.device)
        coef = coef * (1.0 if r.form == "full" else 0.5)
        for name, _ in r.params:
            lo, hi = offsets[name.split(".", 1)[1]]
            idx = torch.arange(lo, hi, device=w.device)
            H[:, idx, idx] += 2.0 * coef.unsqueeze(1)
    return H
