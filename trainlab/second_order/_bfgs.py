"""BFGS with a dense inverse-Hessian approximation."""

from __future__ import annotations

import torch

from trainlab.errors import ConfigError
from trainlab.second_order._base import Method, Step, check_wolfe_constants
from trainlab.second_order._objective import Objective
from trainlab.second_order._search import search_step

__all__ = ["BFGS"]


class BFGS(Method):
    """Quasi-Newton with the BFGS update of ``Hinv ~ H^{-1}`` (N&W Alg. 6.1).

    Direction ``d = -Hinv g``, step length from the strong-Wolfe line search, then
    with ``s = w_new - w``, ``y = g_new - g``, ``rho = 1 / (y^T s)``:

        Hinv <- (I - rho s y^T) Hinv (I - rho y s^T) + rho s s^T          (N&W 6.17)

    ``Hinv`` starts as ``I``; before the first update it is rescaled to
    ``(y^T s / y^T y) I`` (N&W 6.20), and the first trial step is ``1/|g|`` so the
    first move has unit length. The curvature condition makes ``y^T s > 0``, so
    ``Hinv`` stays positive definite; an update with ``y^T s <= 1e-12 |s| |y|``
    (possible only through rounding) is skipped, and ``Hinv`` is reset to ``I`` if
    ``d`` is ever not a descent direction. Memory ``m^2`` per member, work ``O(m^2)``
    per iteration: ``max_params`` refuses large models.
    """

    name = "bfgs"

    def __init__(self, *, max_params: int = 5000, c1: float = 1e-4, c2: float = 0.9, max_evals: int = 30) -> None:
        if not isinstance(max_params, int) or isinstance(max_params, bool) or max_params < 1:
            raise ConfigError(f"BFGS max_params must be an integer >= 1, got {max_params!r}")
        check_wolfe_constants(c1, c2)
        self._settings = dict(max_params=max_params, c1=c1, c2=c2, max_evals=max_evals)
        self.max_params, self.c1, self.c2, self.max_evals = max_params, c1, c2, max_evals

    def check(self, objective: Objective) -> None:
        m = objective.dim
        if m > self.max_params:
            raise ConfigError(f"BFGS needs a dense {m} x {m} inverse-Hessian approximation per member ({m} "
                              f"parameters); the limit is max_params={self.max_params} — use LBFGS or raise "
                              "max_params")

    def start(self, objective: Objective, w: torch.Tensor, f: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        P, m = w.shape
        Hinv = torch.eye(m, dtype=w.dtype, device=w.device).repeat(P, 1, 1)
        return {"Hinv": Hinv, "fresh": torch.ones(P, dtype=torch.bool, device=w.device)}

    def step(self, objective: Objective, state: dict[str, torch.Tensor], w: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
             active: torch.Tensor, iteration: int) -> Step:
        Hinv, fresh = state["Hinv"], state["fresh"]
        d = -torch.bmm(Hinv, g.unsqueeze(-1)).squeeze(-1)
        reset = ~((g * d).sum(dim=1) < 0) & active
        if bool(reset.any()):
            Hinv[reset] = torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
            fresh |= reset
            d[reset] = -g[reset]
        gnorm = g.norm(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
        alpha1 = torch.where(fresh, torch.clamp(1.0 / gnorm, max=1.0), torch.ones_like(gnorm))
        step = search_step(objective, w, d, f, g, active, alpha1, c1=self.c1, c2=self.c2,
                           max_evals=self.max_evals, iteration=iteration)
        idx = step.ok.nonzero().flatten()
        if idx.numel():
            s = step.w[idx] - w[idx]
            y = step.g[idx] - g[idx]
            sy = (s * y).sum(dim=1)
            good = sy > 1e-12 * s.norm(dim=1) * y.norm(dim=1)
            idx, s, y, sy = idx[good], s[good], y[good], sy[good]
            H = Hinv[idx]
            first = fresh[idx]
            if bool(first.any()):
                gamma = sy[first] / (y[first] * y[first]).sum(dim=1)
                H[first] = gamma.view(-1, 1, 1) * torch.eye(w.shape[1], dtype=w.dtype, device=w.device)
            rho = (1.0 / sy).view(-1, 1, 1)
            Hy = torch.bmm(H, y.unsqueeze(-1))  # (k, m, 1)
            yHy = torch.bmm(y.unsqueeze(1), Hy)  # (k, 1, 1)
            sc, Hyc = s.unsqueeze(-1), Hy
            H = (H - rho * (torch.bmm(sc, Hyc.transpose(1, 2)) + torch.bmm(Hyc, sc.transpose(1, 2)))
                 + (rho * rho * yHy + rho) * torch.bmm(sc, sc.transpose(1, 2)))
            Hinv[idx] = 0.5 * (H + H.transpose(1, 2))  # keep it exactly symmetric
            fresh[idx] = False
        return step
