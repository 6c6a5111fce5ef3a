"""``minimize(objective, method)``: run a full-batch method until every member stops."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.second_order._base import LineSearchRecord, Method
from trainlab.second_order._bfgs import BFGS
from trainlab.second_order._first_order import FirstOrder, GradientDescent
from trainlab.second_order._lbfgs import LBFGS
from trainlab.second_order._newton import Newton
from trainlab.second_order._objective import Objective

__all__ = ["Result", "minimize", "METHODS", "get_method"]

METHODS: dict[str, type[Method]] = {"newton": Newton, "bfgs": BFGS, "lbfgs": LBFGS, "gd": GradientDescent}


def get_method(method: str | Method, **options: Any) -> Method:
    """A method instance from a name in :data:`METHODS` (with its options) or an instance."""
    if isinstance(method, Method):
        if options:
            raise ConfigError("pass options to the method's constructor, not next to a method instance")
        return method
    if isinstance(method, str) and method.lower() in METHODS:
        return METHODS[method.lower()](**options)
    raise ConfigError(f"unknown method {method!r}; allowed: {', '.join(METHODS)} or a Method instance "
                      "(e.g. FirstOrder('adam', lr=0.01))")


@dataclass
class Result:
    """What :func:`minimize` returns (per member where shaped ``(P, ...)``).

    Attributes
    ----------
    method:
        The method's label.
    x, fun, grad_norm:
        Final point ``(P, m)``, its value ``(P,)`` and its gradient's max-norm
        ``(P,)``: the last iterate, or, for a member that failed, its best point
        (lowest ``f`` among the iterates it accepted).
    iterations:
        Iterations each member took ``(P,)`` (a member stops at convergence or failure).
    status, message:
        Per member: ``"converged"``, ``"max_iter"``, ``"line_search_nan"``,
        ``"line_search_failed"``, ``"damping_nan"``, ``"damping_failed"``, ``"hessian_nan"`` or
        ``"diverged"``,
        and one line saying what happened.
    f_history, grad_history:
        ``(T + 1, P)``: value and gradient max-norm after each iteration (row 0: the
        start). A stopped member's row repeats its final value.
    times:
        ``(T + 1,)`` wall-clock seconds since the start, after each iteration.
    evals:
        Batched objective evaluations (each one evaluates all ``P`` members).
    nan_evals:
        ``(P,)`` non-finite evaluations each member met (and backtracked from, or
        stopped at).
    path:
        ``(T + 1, P, m)`` iterates when ``record_path=True``, else ``None``.
    line_searches:
        Every line search (BFGS, L-BFGS): step, values, slopes.
    info:
        Method-specific histories, e.g. ``"damping"`` ``(T, P)`` for Newton.
    """

    method: str
    x: torch.Tensor
    fun: torch.Tensor
    grad_norm: torch.Tensor
    iterations: torch.Tensor
    status: list[str]
    message: list[str]
    f_history: torch.Tensor
    grad_history: torch.Tensor
    times: torch.Tensor
    evals: int
    nan_evals: torch.Tensor
    path: torch.Tensor | None = None
    line_searches: list[LineSearchRecord] = field(default_factory=list)
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def converged(self) -> torch.Tensor:
        return torch.tensor([s == "converged" for s in self.status])

    def member_history(self, i: int) -> torch.Tensor:
        """Member ``i``'s values, start and each iteration it took."""
        return self.f_history[: int(self.iterations[i]) + 1, i]

    def __str__(self) -> str:
        lines = [f"{self.method}: {self.evals} evaluations, {float(self.times[-1]):.3f} s"]
        for i, msg in enumerate(self.message):
            lines.append(f"  member {i}: f = {float(self.fun[i]):.10g}, {msg}")
        return "\n".join(lines)


def _gnorm(g: torch.Tensor) -> torch.Tensor:
    return g.abs().amax(dim=1)


def minimize(objective: Objective, method: str | Method = "lbfgs", *, x0: torch.Tensor | None = None,
             max_iter: int = 100, tol: float = 1e-6, ftol: float = 0.0, record_path: bool = False,
             callback: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
             **options: Any) -> Result:
    """Minimize ``objective`` for every member, full batch.

    Parameters
    ----------
    method:
        ``"newton"``, ``"bfgs"``, ``"lbfgs"``, ``"gd"`` (``options`` go to its
        constructor) or a :class:`Method` instance (``Newton(damping=1e-3)``,
        ``FirstOrder("adam", lr=0.01)``, ...).
    x0:
        Starting point ``(P, m)``; default ``objective.initial_point()`` (a model's
        current weights).
    max_iter:
        Iterations per member.
    tol:
        A member has converged when ``max_j |g_j| <= tol``.
    ftol:
        ... or when an iteration changes ``f`` by at most ``ftol * max(1, |f|)`` (0: off).
    record_path:
        Keep every iterate (for 2-D pictures).
    callback:
        ``callback(iteration, w, f, g)`` after each iteration.

    Failures never lose work: a member whose line search or damping loop cannot find
    an acceptable point, or whose objective turns NaN, stops at its best accepted
    point (``Result.x``), and its message says so, e.g. ``"line search produced NaN;
    restored best point at iteration 7 (f = 0.1234)"``. At the end the final points
    are written back through ``objective.set_point`` (a model holds its result).
    """
    method = get_method(method, **options)
    if not isinstance(max_iter, int) or isinstance(max_iter, bool) or max_iter < 0:
        raise ConfigError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    if not tol >= 0.0 or not ftol >= 0.0:
        raise ConfigError(f"tol and ftol must be >= 0, got tol={tol!r}, ftol={ftol!r}")
    method.check(objective)
    P, m = objective.size, objective.dim
    w = (objective.initial_point() if x0 is None else torch.as_tensor(x0)).to(
        dtype=objective.dtype, device=objective.device).clone()
    if tuple(w.shape) != (P, m):
        raise ConfigError(f"x0 must have shape (P, m) = ({P}, {m}), got {tuple(w.shape)}")
    evals0 = objective.evals
    t0 = time.perf_counter()
    f, g = objective.value_and_grad(w)
    state = method.start(objective, w, f, g)
    active = torch.ones(P, dtype=torch.bool, device=w.device)
    status = ["running"] * P
    message = [""] * P
    iterations = torch.zeros(P, dtype=torch.int64)
    nan_evals = torch.zeros(P, dtype=torch.int64)
    best_iter = [0] * P
    best_w, best_f, best_g = w.clone(), f.clone(), g.clone()
    for i in range(P):
        if not (torch.isfinite(f[i]) and torch.isfinite(g[i]).all()):
            active[i] = False
            status[i], message[i] = "diverged", "the objective is not finite at the starting point"
        elif float(_gnorm(g[i:i + 1])) <= tol:
            active[i] = False
            status[i] = "converged"
            message[i] = f"converged: |g|_inf = {float(_gnorm(g[i:i + 1])):.3g} <= tol = {tol:g} at the start"
    f_hist, g_hist, times = [f.clone()], [_gnorm(g)], [time.perf_counter() - t0]
    path = [w.clone()] if record_path else None
    records: list[LineSearchRecord] = []
    info: dict[str, list[torch.Tensor]] = {}
    for k in range(1, max_iter + 1):
        if not bool(active.any()):
            break
        step = method.step(objective, state, w, f, g, active, k)
        records.extend(step.line_searches)
        for name, v in step.info.items():
            info.setdefault(name, []).append(v.detach().clone())
        if step.nan_evals is not None:
            nan_evals += step.nan_evals.cpu()
        moved = step.ok & active
        f_prev = f.clone()
        w = torch.where(moved.unsqueeze(1), step.w, w)
        f = torch.where(moved, step.f, f)
        g = torch.where(moved.unsqueeze(1), step.g, g)
        iterations += active.cpu().to(torch.int64)
        gn = _gnorm(g)
        better = moved & (f < best_f)
        best_w = torch.where(better.unsqueeze(1), w, best_w)
        best_f = torch.where(better, f, best_f)
        best_g = torch.where(better.unsqueeze(1), g, best_g)
        for i in better.nonzero().flatten().tolist():
            best_iter[i] = k
        for i in moved.nonzero().flatten().tolist():
            if float(gn[i]) <= tol:
                active[i] = False
                status[i] = "converged"
                message[i] = f"converged: |g|_inf = {float(gn[i]):.3g} <= tol = {tol:g} after {k} iterations"
            elif ftol > 0 and abs(float(f_prev[i] - f[i])) <= ftol * max(1.0, abs(float(f[i]))):
                active[i] = False
                status[i] = "converged"
                message[i] = (f"converged: f decreased by {float(f_prev[i] - f[i]):.3g} <= ftol * max(1, |f|) "
                              f"after {k} iterations (|g|_inf = {float(gn[i]):.3g})")
        for i, (st, reason) in step.failures.items():
            if not bool(active[i]):
                continue
            active[i] = False
            status[i] = st
            w[i], f[i], g[i] = best_w[i], best_f[i], best_g[i]
            gn[i] = _gnorm(g[i:i + 1])[0]
            head = {"line_search_nan": "line search produced NaN", "line_search_failed": "line search failed",
                    "damping_nan": "Newton step produced NaN", "damping_failed": "Newton damping failed",
                    "hessian_nan": "Hessian produced NaN",
                    "diverged": f"objective became non-finite at iteration {k}"}.get(st, st)
            message[i] = (f"{head}; restored best point at iteration {best_iter[i]} "
                          f"(f = {float(f[i]):.10g}, |g|_inf = {float(gn[i]):.3g}) [{reason}]")
        if callback is not None:
            callback(k, w, f, g)
        f_hist.append(f.clone())
        g_hist.append(gn.clone())
        times.append(time.perf_counter() - t0)
        if path is not None:
            path.append(w.clone())
    for i in range(P):
        if status[i] == "running":
            status[i] = "max_iter"
            message[i] = (f"stopped after max_iter = {max_iter} iterations: |g|_inf = {float(_gnorm(g[i:i + 1])):.3g}"
                          f" > tol = {tol:g}")
        if int(nan_evals[i]) and status[i] in ("converged", "max_iter"):
            message[i] += f" (backtracked from {int(nan_evals[i])} non-finite evaluations)"
    objective.set_point(w)
    return Result(
        method=method.label(), x=w, fun=f, grad_norm=_gnorm(g), iterations=iterations, status=status,
        message=message, f_history=torch.stack(f_hist), grad_history=torch.stack(g_hist),
        times=torch.tensor(times, dtype=torch.float64), evals=objective.evals - evals0, nan_evals=nan_evals,
        path=None if path is None else torch.stack(path), line_searches=records,
        info={k: torch.stack(v) for k, v in info.items()})
