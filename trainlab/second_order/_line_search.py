"""A line search satisfying the strong Wolfe conditions (Nocedal & Wright, Alg. 3.5/3.6).

Along a descent direction ``d`` from ``w``, ``phi(a) = f(w + a d)``. An accepted
step ``a`` satisfies

* sufficient decrease (Armijo):  ``phi(a) <= phi(0) + c1 a phi'(0)``        (N&W 3.7a)
* strong curvature:              ``|phi'(a)| <= c2 |phi'(0)|``               (N&W 3.7b)

with ``0 < c1 < c2 < 1`` (defaults ``c1 = 1e-4``, ``c2 = 0.9``, the quasi-Newton
choice). Curvature guarantees ``s^T y > 0`` for the BFGS update.

Algorithm 3.5 brackets: it tries ``a1``, then doubles, until a trial violates
sufficient decrease, does not decrease ``phi`` further, or has ``phi' >= 0``;
Algorithm 3.6 ("zoom") then shrinks the bracket ``[lo, hi]`` -- ``lo`` always the
best point satisfying sufficient decrease -- by safeguarded cubic interpolation
(N&W eq. 3.59), falling back to bisection when the cubic's minimizer is outside
the middle 80 % of the bracket.

Non-finite values. A trial where ``phi`` or ``phi'`` is NaN or infinite is treated
as "too far": it becomes the bracket's ``hi`` end and the next trial bisects towards
the last finite point. If no acceptable step is found within ``max_evals``
evaluations the search fails and says whether NaN was met; the minimizer then
restores its best point and reports.

The search is written for one member as a generator: it yields trial steps and
receives ``(phi(a), phi'(a))``. :func:`wolfe_batch` drives one such generator per
member, evaluating all members' trials in one batched objective call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol

import torch



class ValueAndGrad(Protocol):
    """What :func:`wolfe_batch` evaluates: an :class:`~trainlab.second_order.Objective`, or the
    Trainer's closure over the parameters."""

    def value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

__all__ = ["LineSearchOutcome", "strong_wolfe", "line_search", "wolfe_batch"]


@dataclass
class LineSearchOutcome:
    """What one line search found. ``ok``: ``alpha`` satisfies both strong Wolfe
    conditions and ``phi``/``dphi`` are its values (the last point evaluated)."""

    ok: bool
    alpha: float
    phi: float
    dphi: float
    evals: int
    nan_evals: int
    message: str = ""


Search = Generator[float, tuple[float, float], LineSearchOutcome]


def _cubic_min(a: float, fa: float, da: float, b: float, fb: float, db: float) -> float | None:
    """Minimizer of the cubic through (a, fa, da), (b, fb, db) (N&W eq. 3.59), or None."""
    if a == b:
        return None
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if not math.isfinite(disc) or disc < 0.0:
        return None
    d2 = math.copysign(math.sqrt(disc), b - a)
    den = db - da + 2.0 * d2
    if den == 0.0 or not math.isfinite(den):
        return None
    return b - (b - a) * (db + d2 - d1) / den


def strong_wolfe(phi0: float, dphi0: float, alpha1: float = 1.0, *, c1: float = 1e-4, c2: float = 0.9,
                 alpha_max: float = 1e10, max_evals: int = 30) -> Search:
    """Generator for one strong-Wolfe search (N&W Alg. 3.5 with zoom, Alg. 3.6).

    ``next(gen)`` gives the first trial; ``gen.send((phi, dphi))`` the next; the
    :class:`LineSearchOutcome` arrives as ``StopIteration.value``.
    """
    state = {"evals": 0, "nan": 0}
    if not (math.isfinite(phi0) and math.isfinite(dphi0)):
        return LineSearchOutcome(False, 0.0, phi0, dphi0, 0, 0, "the starting point is not finite")
    if dphi0 >= 0.0:
        return LineSearchOutcome(False, 0.0, phi0, dphi0, 0, 0,
                                 f"not a descent direction (phi'(0) = {dphi0:.3e} >= 0)")

    def armijo(a: float, fa: float) -> bool:
        return fa <= phi0 + c1 * a * dphi0

    def curvature(da: float) -> bool:
        return abs(da) <= -c2 * dphi0

    def done(ok: bool, a: float, fa: float, da: float, msg: str = "") -> LineSearchOutcome:
        return LineSearchOutcome(ok, a, fa, da, state["evals"], state["nan"], msg)

    def zoom(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> Search:
        # lo, hi = (alpha, phi, dphi); lo satisfies sufficient decrease and has the lowest phi so far.
        while state["evals"] < max_evals:
            a_lo, f_lo, d_lo = lo
            a_hi, f_hi, d_hi = hi
            width = abs(a_hi - a_lo)
            if width <= 1e-14 * max(1.0, abs(a_lo)):
                return done(False, a_lo, f_lo, d_lo, "the bracket shrank below rounding "
                            f"([{min(a_lo, a_hi):.6g}, {max(a_lo, a_hi):.6g}])")
            a = None
            if math.isfinite(f_hi) and math.isfinite(d_hi):
                a = _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
            lo_end, hi_end = min(a_lo, a_hi), max(a_lo, a_hi)
            if a is None or not (lo_end + 0.1 * width <= a <= hi_end - 0.1 * width):
                a = 0.5 * (a_lo + a_hi)
            fa, da = yield a
            state["evals"] += 1
            if not (math.isfinite(fa) and math.isfinite(da)):
                state["nan"] += 1
                hi = (a, math.nan, math.nan)
                continue
            if not armijo(a, fa) or fa >= f_lo:
                hi = (a, fa, da)
            else:
                if curvature(da):
                    return done(True, a, fa, da)
                if da * (a_hi - a_lo) >= 0.0:
                    hi = lo
                lo = (a, fa, da)
        a_lo, f_lo, d_lo = lo
        return done(False, a_lo, f_lo, d_lo, f"no acceptable step within max_evals = {max_evals} evaluations")

    prev = (0.0, phi0, dphi0)
    a = float(alpha1)
    first = True
    while state["evals"] < max_evals:
        fa, da = yield a
        state["evals"] += 1
        if not (math.isfinite(fa) and math.isfinite(da)):
            state["nan"] += 1
            return (yield from zoom(prev, (a, math.nan, math.nan)))
        if not armijo(a, fa) or (not first and fa >= prev[1]):
            return (yield from zoom(prev, (a, fa, da)))
        if curvature(da):
            return done(True, a, fa, da)
        if da >= 0.0:
            return (yield from zoom((a, fa, da), prev))
        if a >= alpha_max:
            return done(False, a, fa, da, f"reached alpha_max = {alpha_max:g} with phi still decreasing")
        prev = (a, fa, da)
        a = min(2.0 * a, alpha_max)
        first = False
    return done(False, prev[0], prev[1], prev[2], f"no acceptable step within max_evals = {max_evals} evaluations")


def line_search(phi: Callable[[float], tuple[float, float]], phi0: float, dphi0: float, alpha1: float = 1.0,
                *, c1: float = 1e-4, c2: float = 0.9, alpha_max: float = 1e10,
                max_evals: int = 30) -> LineSearchOutcome:
    """Run :func:`strong_wolfe` on a scalar function ``phi(a) -> (phi(a), phi'(a))``."""
    gen = strong_wolfe(phi0, dphi0, alpha1, c1=c1, c2=c2, alpha_max=alpha_max, max_evals=max_evals)
    try:
        a = next(gen)
        while True:
            a = gen.send(phi(a))
    except StopIteration as stop:
        return stop.value


@dataclass
class WolfeBatch:
    """Per-member outcomes of :func:`wolfe_batch`; ``w``, ``f``, ``g`` hold each
    member's last evaluated point (the accepted one when ``outcomes[i].ok``)."""

    outcomes: dict[int, LineSearchOutcome]
    w: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    dphi0: dict[int, float]
    evals: int


def wolfe_batch(objective: ValueAndGrad, w: torch.Tensor, d: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
                members: list[int], alpha1: torch.Tensor, *, c1: float = 1e-4, c2: float = 0.9,
                max_evals: int = 30) -> WolfeBatch:
    """One strong-Wolfe search per listed member along ``d``, all trials of a round
    evaluated in one ``value_and_grad`` call (other members sit at ``w``)."""
    gens: dict[int, Search] = {}
    trial: dict[int, float] = {}
    outcomes: dict[int, LineSearchOutcome] = {}
    dphi0 = (g * d).sum(dim=1)
    slopes = {}
    for i in members:
        slopes[i] = float(dphi0[i])
        gens[i] = strong_wolfe(float(f[i]), slopes[i], float(alpha1[i]), c1=c1, c2=c2, max_evals=max_evals)
        try:
            trial[i] = next(gens[i])
        except StopIteration as stop:
            outcomes[i] = stop.value
    w_last, f_last, g_last = w.clone(), f.clone(), g.clone()
    evals = 0
    while trial:
        W = w.clone()
        for i, a in trial.items():
            W[i] = w[i] + a * d[i]
        F, G = objective.value_and_grad(W)
        evals += 1
        dphi = (G * d).sum(dim=1)
        for i in list(trial):
            w_last[i], f_last[i], g_last[i] = W[i], F[i], G[i]
            try:
                trial[i] = gens[i].send((float(F[i]), float(dphi[i])))
            except StopIteration as stop:
                outcomes[i] = stop.value
                del trial[i]
    return WolfeBatch(outcomes, w_last, f_last, g_last, slopes, evals)
