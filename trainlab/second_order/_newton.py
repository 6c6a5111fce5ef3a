"""Newton's method with Levenberg-Marquardt damping on a dense Hessian."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.population import member_values
from trainlab.second_order._base import Method, Step
from trainlab.second_order._hessian import hessian
from trainlab.second_order._objective import Objective

__all__ = ["Newton"]


class Newton(Method):
    """Damped Newton: solve ``(H + lambda I) d = -g`` by Cholesky and step ``w <- w + d``.

    From the second-order Taylor model ``f(w + d) ~ f + g^T d + 1/2 d^T H d``, whose
    minimizer for positive-definite ``H`` is ``d = -H^{-1} g`` (N&W eq. 2.15): a
    quadratic is minimized in one step, and near a minimizer with ``H`` positive
    definite convergence is quadratic (N&W Thm. 3.5).

    Damping (Levenberg 1944, Marquardt 1963; Hessian modification as in N&W Alg. 3.3):
    ``lambda`` starts at ``damping`` (per member) and is multiplied by ``increase``
    (first jumping to ``beta = 1e-3 * max|diag H|``) while ``H + lambda I`` is not
    positive definite (the Cholesky factorization fails) or the step fails the
    sufficient-decrease test ``f(w + d) <= f(w) + c1 g^T d`` (NaN counts as failure;
    a member whose Hessian itself is not finite stops with status ``"hessian_nan"``).
    After an accepted step ``lambda`` is divided by ``decrease``, back to ``damping``
    once it falls below ``beta``. Large ``lambda`` turns the step into a short
    gradient step ``-g / lambda``, so non-convex losses and saddle points are safe;
    ``lambda = 0`` on a convex problem is the pure Newton step (unit step length).

    Cost per iteration: the Hessian (``2m`` gradient evaluations by differences, or the
    analytic formula where the objective has one) plus the ``m^3 / 3`` flops of
    Cholesky. ``max_params`` refuses models whose dense ``m x m`` Hessian is too big.

    Parameters
    ----------
    damping:
        Initial and minimum ``lambda`` (a number or one per member), ``>= 0``.
    max_params:
        Largest ``m`` (parameters per member) accepted.
    hessian:
        ``"auto"``, ``"analytic"`` or ``"differences"`` (see :func:`hessian`).
    increase, decrease:
        Factors (> 1) applied to ``lambda`` after a failure / a success.
    max_tries:
        Damping increases per iteration before giving up.
    c1:
        Sufficient-decrease constant.
    """

    name = "newton"

    def __init__(self, *, damping: float | Sequence[float] = 0.0, max_params: int = 5000, hessian: str = "auto",
                 increase: float = 10.0, decrease: float = 10.0, max_tries: int = 30, c1: float = 1e-4) -> None:
        if not isinstance(max_params, int) or isinstance(max_params, bool) or max_params < 1:
            raise ConfigError(f"Newton max_params must be an integer >= 1, got {max_params!r}")
        if hessian not in ("auto", "analytic", "differences"):
            raise ConfigError(f"Newton hessian must be 'auto', 'analytic' or 'differences', got {hessian!r}")
        for name, v in (("increase", increase), ("decrease", decrease)):
            if not v > 1.0:
                raise ConfigError(f"Newton {name} must be > 1, got {v!r}")
        if not isinstance(max_tries, int) or max_tries < 1:
            raise ConfigError(f"Newton max_tries must be an integer >= 1, got {max_tries!r}")
        if not 0.0 < c1 < 1.0:
            raise ConfigError(f"Newton c1 must be in (0, 1), got {c1!r}")
        member_values(damping, len(damping) if isinstance(damping, Sequence) else 1, name="Newton damping", low=0.0)
        self._settings = dict(damping=damping, max_params=max_params, hessian=hessian, increase=increase,
                              decrease=decrease, max_tries=max_tries, c1=c1)
        self.damping, self.max_params, self.hessian = damping, max_params, hessian
        self.increase, self.decrease, self.max_tries, self.c1 = increase, decrease, max_tries, c1

    def check(self, objective: Objective) -> None:
        m = objective.dim
        if m > self.max_params:
            raise ConfigError(f"Newton needs a dense {m} x {m} Hessian per member ({m} parameters); the limit is "
                              f"max_params={self.max_params} — use LBFGS or raise max_params")

    def start(self, objective: Objective, w: torch.Tensor, f: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
        floor = member_values(self.damping, objective.size, name="Newton damping", dtype=w.dtype,
                              device=w.device, low=0.0)
        return {"floor": floor, "lam": floor.clone()}

    def step(self, objective: Objective, state: dict[str, torch.Tensor], w: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
             active: torch.Tensor, iteration: int) -> Step:
        P, m = w.shape
        H = hessian(objective, w, method=self.hessian)
        broken = active & ~torch.isfinite(H).flatten(1).all(dim=1)
        if bool(broken.any()):  # keep NaN out of the batched factorization
            H = torch.where(broken.view(-1, 1, 1), torch.zeros_like(H), H)
        diag = H.diagonal(dim1=1, dim2=2)
        beta = 1e-3 * diag.abs().amax(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
        lam = state["lam"].clone()
        used = torch.zeros_like(lam)
        eye = torch.eye(m, dtype=w.dtype, device=w.device)
        pending = active & ~broken
        ok = torch.zeros_like(active)
        nan = torch.zeros(P, dtype=torch.int64, device=w.device)
        w_new, f_new, g_new = w.clone(), f.clone(), g.clone()
        for _ in range(self.max_tries):
            if not bool(pending.any()):
                break
            idx = pending.nonzero().flatten()
            L, info = torch.linalg.cholesky_ex(H[idx] + lam[idx].view(-1, 1, 1) * eye)
            pd = info == 0
            bad = idx[~pd]
            lam[bad] = torch.maximum(lam[bad] * self.increase, beta[bad])
            good = idx[pd]
            if good.numel() == 0:
                continue
            d = -torch.cholesky_solve(g[good].unsqueeze(-1), L[pd]).squeeze(-1)
            W = w.clone()
            W[good] = w[good] + d
            F, G = objective.value_and_grad(W)
            Fg, Gg = F[good], G[good]
            finite = torch.isfinite(Fg) & torch.isfinite(Gg).all(dim=1)
            nan[good[~finite]] += 1
            accept = finite & (Fg <= f[good] + self.c1 * (g[good] * d).sum(dim=1))
            acc, rej = good[accept], good[~accept]
            w_new[acc], f_new[acc], g_new[acc] = W[acc], F[acc], G[acc]
            ok[acc] = True
            pending[acc] = False
            used[acc] = lam[acc]
            lam[rej] = torch.maximum(lam[rej] * self.increase, beta[rej])
        # Accepted: relax the damping; below beta it returns to the user's floor (pure Newton at 0).
        relaxed = lam / self.decrease
        relaxed = torch.where(relaxed < beta, state["floor"], torch.maximum(relaxed, state["floor"]))
        state["lam"] = torch.where(ok, relaxed, state["lam"])
        failures = {i: ("hessian_nan", "the Hessian has non-finite entries")
                    for i in broken.nonzero().flatten().tolist()}
        for i in pending.nonzero().flatten().tolist():
            status = "damping_nan" if int(nan[i]) else "damping_failed"
            what = "produced NaN" if int(nan[i]) else "found no decrease"
            failures[i] = (status, f"Newton step {what} for every damping up to lambda = {float(lam[i]):.3g}")
        return Step(w_new, f_new, g_new, ok, failures, nan, info={"damping": used})
