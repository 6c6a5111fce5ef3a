"""Limited-memory BFGS: the two-loop recursion on the last ``history`` pairs."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.second_order._base import Method, Step, check_wolfe_constants
from trainlab.second_order._objective import Objective
from trainlab.second_order._search import search_step

#: one member's curvature pairs (s, y, rho = 1 / y^T s), oldest first
_Pairs = deque[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

__all__ = ["LBFGS"]


class LBFGS(Method):
    """L-BFGS (Nocedal 1980; N&W Alg. 7.4 and 7.5).

    Keeps the last ``history`` pairs ``s_i = w_{i+1} - w_i``, ``y_i = g_{i+1} - g_i``
    and computes ``d = -Hinv_k g`` without forming a matrix (two-loop recursion):

        q <- g
        for i = newest .. oldest:  a_i <- rho_i s_i^T q;  q <- q - a_i y_i
        r <- gamma q,   gamma = s^T y / y^T y of the newest pair   (N&W 7.20)
        for i = oldest .. newest:  b <- rho_i y_i^T r;  r <- r + s_i (a_i - b)
        d <- -r

    ``rho_i = 1 / (y_i^T s_i)``. Step lengths come from the strong-Wolfe line search
    (the first trial is ``1``, or ``1/|g|`` while there is no pair yet). Memory and
    work are ``O(history * m)`` per iteration, so it runs where Newton and BFGS are
    refused. A pair with ``y^T s <= 1e-12 |s| |y|`` is skipped.
    """

    name = "lbfgs"

    def __init__(self, *, history: int = 10, c1: float = 1e-4, c2: float = 0.9, max_evals: int = 30) -> None:
        if not isinstance(history, int) or isinstance(history, bool) or history < 1:
            raise ConfigError(f"LBFGS history must be an integer >= 1, got {history!r}")
        check_wolfe_constants(c1, c2)
        self._settings = dict(history=history, c1=c1, c2=c2, max_evals=max_evals)
        self.history, self.c1, self.c2, self.max_evals = history, c1, c2, max_evals

    def label(self) -> str:
        return f"lbfgs(m={self.history})"

    def start(self, objective: Objective, w: torch.Tensor, f: torch.Tensor, g: torch.Tensor) -> list[_Pairs]:
        return [deque(maxlen=self.history) for _ in range(w.shape[0])]

    @staticmethod
    def two_loop(g: torch.Tensor, pairs: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``Hinv g`` for one member from its (s, y, rho) pairs, oldest first."""
        q = g.clone()
        alphas = []
        for s, y, rho in reversed(pairs):
            a = rho * torch.dot(s, q)
            q -= a * y
            alphas.append(a)
        if pairs:
            s, y, _ = pairs[-1]
            q *= torch.dot(s, y) / torch.dot(y, y)
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            b = rho * torch.dot(y, q)
            q += (a - b) * s
        return q

    def step(self, objective: Objective, state: list[_Pairs], w: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
             active: torch.Tensor, iteration: int) -> Step:
        d = torch.zeros_like(w)
        alpha1 = torch.ones(w.shape[0], dtype=w.dtype, device=w.device)
        for i in active.nonzero().flatten().tolist():
            d[i] = -self.two_loop(g[i], state[i])
            if not float(torch.dot(d[i], g[i])) < 0.0:  # rounding only; start afresh
                state[i].clear()
                d[i] = -g[i]
            if not state[i]:
                alpha1[i] = min(1.0, 1.0 / max(float(g[i].norm()), torch.finfo(w.dtype).tiny))
        step = search_step(objective, w, d, f, g, active, alpha1, c1=self.c1, c2=self.c2,
                           max_evals=self.max_evals, iteration=iteration)
        for i in step.ok.nonzero().flatten().tolist():
            s, y = step.w[i] - w[i], step.g[i] - g[i]
            sy = torch.dot(s, y)
            if float(sy) > 1e-12 * float(s.norm() * y.norm()):
                state[i].append((s, y, 1.0 / sy))
        return step
