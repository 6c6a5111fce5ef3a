"""Small test functions with analytic gradient and Hessian, as objectives.

They run through exactly the same minimizers as a model, so the 2-D pictures
(paths on a contour plot) show what the methods do on networks.

* :class:`Quadratic` -- ``f(w) = 1/2 w^T A w - b^T w``; ``g = A w - b``; ``H = A``.
  For positive-definite ``A`` the minimizer is ``A^{-1} b`` and a Newton step
  reaches it from anywhere in one step.
* :class:`Rosenbrock` -- ``f(x, y) = (a - x)^2 + b (y - x^2)^2`` (a=1, b=100): a
  curved valley, minimum ``(a, a^2)``, Hessian indefinite where ``y > x^2 + 1/(2b)``.
* :func:`textbook_function` -- ``f(x, y) = x^2/20 + y^2`` (Saito, *Deep Learning from
  Scratch*, sec. 6.1): a bowl 20 times more curved in ``y`` than in ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.second_order._objective import Objective

__all__ = ["Quadratic", "Rosenbrock", "textbook_function"]

#: a tensor or nested lists of numbers (what ``torch.as_tensor`` takes)
_Values = torch.Tensor | Sequence[float] | Sequence[Sequence[float]] | Sequence[Sequence[Sequence[float]]]


def _start(x0: _Values, size: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(x0, dtype=dtype)
    if t.ndim == 1:
        t = t.unsqueeze(0).expand(size, -1)
    if tuple(t.shape) != (size, dim):
        raise ConfigError(f"x0 must have shape ({dim},) or ({size}, {dim}), got {tuple(torch.as_tensor(x0).shape)}")
    return t.clone()


class Quadratic(Objective):
    """``f(w) = 1/2 w^T A w - b^T w + c`` per member.

    ``A`` is ``(m, m)`` (shared) or ``(P, m, m)`` (one per member) and must be
    symmetric; ``b`` is ``(m,)`` or ``(P, m)`` (default 0).
    """

    name = "quadratic"

    def __init__(self, A: _Values, b: _Values | None = None, *, c: float = 0.0, x0: _Values | None = None, size: int = 1,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        A = torch.as_tensor(A, dtype=dtype)
        if A.ndim == 2:
            A = A.unsqueeze(0).expand(size, -1, -1)
        if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] != size:
            raise ConfigError(f"A must be (m, m) or ({size}, m, m), got {tuple(A.shape)}")
        if not torch.allclose(A, A.transpose(1, 2)):
            raise ConfigError("A must be symmetric (f = 1/2 w^T A w only sees its symmetric part)")
        self.size, self.dim, self.dtype = size, A.shape[1], dtype
        self.A = A.contiguous()
        b = torch.zeros(self.dim, dtype=dtype) if b is None else torch.as_tensor(b, dtype=dtype)
        self.b = (b.unsqueeze(0).expand(size, -1) if b.ndim == 1 else b).contiguous()
        self.c = float(c)
        self.x0 = None if x0 is None else _start(x0, size, self.dim, dtype)

    def initial_point(self) -> torch.Tensor:
        if self.x0 is None:
            return super().initial_point()
        return self.x0.clone()

    def minimizer(self) -> torch.Tensor:
        """``A^{-1} b`` per member (for positive-definite ``A``)."""
        return torch.linalg.solve(self.A, self.b.unsqueeze(-1)).squeeze(-1)

    def _value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Aw = torch.bmm(self.A, w.unsqueeze(-1)).squeeze(-1)
        f = 0.5 * (w * Aw).sum(1) - (self.b * w).sum(1) + self.c
        return f, Aw - self.b

    def analytic_hessian(self, w: torch.Tensor) -> torch.Tensor:
        return self.A.clone()


class Rosenbrock(Objective):
    """``f(x, y) = (a - x)^2 + b (y - x^2)^2`` per member; minimum 0 at ``(a, a^2)``.

    ``g = (-2(a - x) - 4 b x (y - x^2), 2 b (y - x^2))``;
    ``H = [[2 - 4 b (y - x^2) + 8 b x^2, -4 b x], [-4 b x, 2 b]]``.
    Default start ``(-1.2, 1)`` (the classic one, Nocedal & Wright ex. 2.1 and sec. 3.3).
    """

    name = "Rosenbrock"

    def __init__(self, a: float = 1.0, b: float = 100.0, *, x0: Sequence[float] | torch.Tensor = (-1.2, 1.0),
                 size: int = 1, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.a, self.b = float(a), float(b)
        self.size, self.dim, self.dtype = size, 2, dtype
        self.x0 = _start(x0, size, 2, dtype)

    def initial_point(self) -> torch.Tensor:
        return self.x0.clone()

    def minimizer(self) -> torch.Tensor:
        return torch.tensor([[self.a, self.a ** 2]], dtype=self.dtype).expand(self.size, 2).clone()

    def _value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = w[:, 0], w[:, 1]
        r = y - x * x
        f = (self.a - x) ** 2 + self.b * r * r
        g = torch.stack([-2.0 * (self.a - x) - 4.0 * self.b * x * r, 2.0 * self.b * r], dim=1)
        return f, g

    def analytic_hessian(self, w: torch.Tensor) -> torch.Tensor:
        x, y = w[:, 0], w[:, 1]
        hxx = 2.0 - 4.0 * self.b * (y - x * x) + 8.0 * self.b * x * x
        hxy = -4.0 * self.b * x
        hyy = torch.full_like(x, 2.0 * self.b)
        return torch.stack([torch.stack([hxx, hxy], 1), torch.stack([hxy, hyy], 1)], 1)


def textbook_function(*, x0: Sequence[float] | torch.Tensor = (-7.0, 2.0), size: int = 1,
                      dtype: torch.dtype = torch.float64) -> Quadratic:
    """``f(x, y) = x^2/20 + y^2`` = ``1/2 w^T diag(1/10, 2) w``, from ``(-7, 2)`` (Saito sec. 6.1)."""
    q = Quadratic(torch.diag(torch.tensor([0.1, 2.0], dtype=dtype)), x0=x0, size=size, dtype=dtype)
    q.name = "x^2/20 + y^2"
    return q
