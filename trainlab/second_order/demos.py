"""Demonstrations: each ``run_*`` returns data (a dataclass of arrays and numbers),
each ``plot_*`` turns it into a matplotlib ``Figure`` (object-oriented API, no
pyplot state; save with ``fig.savefig``). :func:`save_figures` makes the PNGs in
docs/figures/.

* :func:`run_quadratic_bowl` -- Newton reaches the minimum of a quadratic in one
  step; gradient descent zig-zags across the narrow direction.
* :func:`run_rosenbrock` -- GD, Newton, BFGS and L-BFGS in the curved valley.
* :func:`run_textbook_paths` -- ``x^2/20 + y^2`` from ``(-7, 2)``: SGD, Momentum,
  AdaGrad, Adam (trainlab's own optimizers, the textbook's settings) next to Newton
  and L-BFGS.
* :func:`run_mnist_softmax` -- L2-regularized softmax regression on embedded MNIST:
  loss vs iterations and vs wall time for GD, Adam, Newton and L-BFGS.
* :func:`run_newton_cost` -- measured time of one dense Newton step against the
  parameter count ``m``, with the fitted log-log exponent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trainlab.second_order._base import Method
from trainlab.second_order._first_order import FirstOrder, GradientDescent
from trainlab.second_order._functions import Quadratic, Rosenbrock, textbook_function
from trainlab.second_order._hessian import hessian
from trainlab.second_order._lbfgs import LBFGS
from trainlab.second_order._minimize import minimize
from trainlab.second_order._newton import Newton
from trainlab.second_order._bfgs import BFGS
from trainlab.second_order._objective import Objective

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from trainlab.second_order._objective import ModelObjective

__all__ = [
    "PathsResult",
    "run_quadratic_bowl",
    "run_rosenbrock",
    "run_textbook_paths",
    "plot_paths",
    "MnistResult",
    "softmax_regression_problem",
    "run_mnist_softmax",
    "plot_mnist_softmax",
    "CostResult",
    "run_newton_cost",
    "plot_newton_cost",
    "save_figures",
]

DT = torch.float64


# ---- 2-D paths -----------------------------------------------------------------------------
@dataclass
class PathsResult:
    """Paths of several methods on one 2-D function.

    ``paths[name]``: ``(T + 1, 2)`` iterates; ``values[name]``: ``f`` along it;
    ``iterations[name]`` / ``status[name]``: what :func:`minimize` reported;
    ``minimizer``: the exact minimizer; ``xlim``/``ylim``: the plotting window.
    """

    function: str
    x0: np.ndarray
    minimizer: np.ndarray
    paths: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    iterations: dict[str, int]
    status: dict[str, str]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    objective: Objective | None = field(repr=False, default=None)  # the function itself (plot_paths draws it)


def _run_paths(objective: Objective, methods: dict[str, tuple[Method, int, float]], *, xlim: tuple[float, float],
               ylim: tuple[float, float], minimizer: Sequence[float]) -> PathsResult:
    paths: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    iterations: dict[str, int] = {}
    status: dict[str, str] = {}
    x0 = objective.initial_point()
    for name, (method, max_iter, tol) in methods.items():
        res = minimize(objective, method, x0=x0, max_iter=max_iter, tol=tol, record_path=True)
        n = int(res.iterations[0])
        assert res.path is not None  # record_path=True
        paths[name] = res.path[: n + 1, 0].numpy()
        values[name] = res.f_history[: n + 1, 0].numpy()
        iterations[name] = n
        status[name] = res.status[0]
    return PathsResult(objective.name, x0[0].numpy(), np.asarray(minimizer, dtype=float), paths, values,
                       iterations, status, xlim, ylim, objective)


def run_quadratic_bowl(*, condition: float = 10.0, angle_deg: float = 30.0, x0: Sequence[float] | None = None,
                       gd_lr: float = 0.18, gd_steps: int = 30) -> PathsResult:
    """``f = 1/2 w^T A w`` with eigenvalues ``1`` and ``condition``, axes rotated by
    ``angle_deg``. Gradient descent (``lr * condition = 1.8``: the steep direction
    overshoots and flips sign every step) zig-zags; Newton lands on 0 in one step;
    L-BFGS needs a few line searches. Default start: 4 along the shallow axis, 1.2
    along the steep one."""
    th = math.radians(angle_deg)
    R = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=DT)
    A = R @ torch.diag(torch.tensor([1.0, condition], dtype=DT)) @ R.T
    A = 0.5 * (A + A.T)
    if x0 is None:
        x0 = (-4.0 * R[:, 0] + 1.2 * R[:, 1]).tolist()
    q = Quadratic(A, x0=x0)
    q.name = f"quadratic bowl (condition number {condition:g})"
    methods = {f"GD (lr={gd_lr:g})": (GradientDescent(lr=gd_lr), gd_steps, 0.0),
               "Newton": (Newton(), 10, 1e-10), "L-BFGS": (LBFGS(), 30, 1e-10)}
    r = max(abs(v) for v in x0) * 1.25
    return _run_paths(q, methods, xlim=(-r, r), ylim=(-r * 0.6, r * 0.6), minimizer=(0.0, 0.0))


def run_rosenbrock(*, x0: Sequence[float] = (-1.2, 1.0), gd_lr: float = 1e-3, gd_steps: int = 5000,
                   tol: float = 1e-8) -> PathsResult:
    """The Rosenbrock valley from ``(-1.2, 1)``: GD crawls along the floor; Newton
    (damped), BFGS and L-BFGS follow the curve to ``(1, 1)``."""
    rb = Rosenbrock(x0=x0)
    methods = {f"GD (lr={gd_lr:g})": (GradientDescent(lr=gd_lr), gd_steps, tol), "Newton": (Newton(), 200, tol),
               "BFGS": (BFGS(), 500, tol), "L-BFGS": (LBFGS(), 500, tol)}
    return _run_paths(rb, methods, xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), minimizer=(1.0, 1.0))


def run_textbook_paths(*, x0: Sequence[float] = (-7.0, 2.0), steps: int = 30) -> PathsResult:
    """``f(x, y) = x^2/20 + y^2`` from ``(-7, 2)``, ``steps`` updates each (Saito sec. 6.1.7):
    SGD lr 0.95, Momentum lr 0.1 (momentum 0.9), AdaGrad lr 1.5, Adam lr 0.3 --
    trainlab.optim's classes on the 2-D point -- and Newton, L-BFGS."""
    q = textbook_function(x0=x0)
    methods = {"SGD": (FirstOrder("sgd", lr=0.95), steps, 0.0),
               "Momentum": (FirstOrder("momentum", lr=0.1, momentum=0.9), steps, 0.0),
               "AdaGrad": (FirstOrder("adagrad", lr=1.5), steps, 0.0),
               "Adam": (FirstOrder("adam", lr=0.3), steps, 0.0),
               "Newton": (Newton(), steps, 1e-10), "L-BFGS": (LBFGS(), steps, 1e-10)}
    return _run_paths(q, methods, xlim=(-10.0, 10.0), ylim=(-5.0, 5.0), minimizer=(0.0, 0.0))


def _grid_values(objective: Objective, xlim: tuple[float, float], ylim: tuple[float, float], n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs = torch.linspace(xlim[0], xlim[1], n, dtype=DT)
    ys = torch.linspace(ylim[0], ylim[1], n, dtype=DT)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1)
    # Evaluate through the objective's own formula (one member at a time, batched by rows).
    vals = torch.empty(pts.shape[0], dtype=DT)
    P = objective.size
    for i in range(0, pts.shape[0], P):
        chunk = pts[i:i + P]
        if chunk.shape[0] < P:
            chunk = torch.cat([chunk, chunk[-1:].expand(P - chunk.shape[0], 2)])
        f, _ = objective._value_and_grad(chunk)
        vals[i:i + P] = f[: min(P, pts.shape[0] - i)]
    return X.numpy(), Y.numpy(), vals.reshape(n, n).numpy()


def _batched_grid(objective: Objective, xlim: tuple[float, float], ylim: tuple[float, float],
                  n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The test functions are elementwise in the population axis: evaluate the grid as one population.
    xs = np.linspace(xlim[0], xlim[1], n)
    ys = np.linspace(ylim[0], ylim[1], n)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], axis=1), dtype=DT)
    if isinstance(objective, Quadratic):
        A = objective.A[0]
        b = objective.b[0]
        F = 0.5 * ((pts @ A) * pts).sum(1) - pts @ b + objective.c
    elif isinstance(objective, Rosenbrock):
        F = (objective.a - pts[:, 0]) ** 2 + objective.b * (pts[:, 1] - pts[:, 0] ** 2) ** 2
    else:
        return _grid_values(objective, xlim, ylim, n)
    return X, Y, F.reshape(n, n).numpy()


def plot_paths(result: PathsResult, *, columns: int | None = None, log_levels: bool | None = None) -> Figure:
    """One contour panel per method with its path (start marked, minimizer starred)."""
    from matplotlib.figure import Figure

    names = list(result.paths)
    cols = columns or min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows), constrained_layout=True)
    if result.objective is None:
        raise ValueError("plot_paths draws the function's contours: the PathsResult needs its objective")
    X, Y, F = _batched_grid(result.objective, result.xlim, result.ylim)
    log = isinstance(result.objective, Rosenbrock) if log_levels is None else log_levels
    levels = np.logspace(-1, 3.5, 20) if log else np.linspace(F.min(), np.percentile(F, 60), 15)
    for k, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.contour(X, Y, F, levels=levels, colors="0.7", linewidths=0.7)
        p = result.paths[name]
        ax.plot(p[:, 0], p[:, 1], "o-" if len(p) <= 100 else "-", color="tab:red", ms=2.5, lw=1.0)
        ax.plot(*result.x0, "ks", ms=4)
        ax.plot(*result.minimizer, "*", color="tab:blue", ms=10)
        ax.set_xlim(*result.xlim)
        ax.set_ylim(*result.ylim)
        ax.set_title(f"{name}: {result.iterations[name]} it., f = {result.values[name][-1]:.2e}", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(result.function)
    return fig


# ---- MNIST softmax regression ---------------------------------------------------------------
@dataclass
class MnistResult:
    """Loss curves of softmax regression on embedded MNIST.

    ``curves[name] = {"f": (T+1,), "time": (T+1,) seconds, "iter": (T+1,)}``;
    ``f_star``: the lowest loss any method reached (Newton's, when it converged);
    ``iterations``/``status``/``seconds`` per method; ``m`` parameters, ``n`` images.
    """

    n: int
    m: int
    l2: float
    f_star: float
    curves: dict[str, dict[str, np.ndarray]]
    iterations: dict[str, int]
    status: dict[str, str]
    seconds: dict[str, float]
    final: dict[str, float]


def softmax_regression_problem(*, n_train: int = 1000, features: int = 784, l2: float = 1e-4, seed: int = 0,
                               size: int = 1) -> tuple[ModelObjective, torch.Tensor]:
    """(objective, x0): L2-regularized softmax regression on ``n_train`` embedded MNIST
    images (float64, min-max scaled). ``features < 784`` average-pools the 28x28 image to
    ``k x k`` with ``k^2 = features`` (e.g. 64 -> 8x8). ``L2(l2, include_1d=True)``
    covers the bias too, so the minimizer is unique."""
    from trainlab import nn
    from trainlab.data import load_splits
    from trainlab.population import Population
    from trainlab.regularize import L2
    from trainlab.second_order._objective import ModelObjective

    splits = load_splits("mnist-5k", train=n_train, val=0, test=0, seed=seed, dtype=DT)
    x, y = splits.train.x, splits.train.y
    if features != 784:
        k = int(round(math.sqrt(features)))
        if k * k != features:
            raise ValueError(f"features must be 784 or a square (k x k average pooling), got {features}")
        x = torch.nn.functional.adaptive_avg_pool2d(x.reshape(-1, 1, 28, 28), k).reshape(-1, features)
    model = nn.Sequential([nn.Linear(features, 10)])
    model.build((features,), Population(size, seed=seed), dtype=DT)
    obj = ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y, regularizers=[L2(l2, include_1d=True)])
    return obj, obj.initial_point()


def run_mnist_softmax(*, n_train: int = 1000, features: int = 784, l2: float = 1e-4, seed: int = 0,
                      gd_lr: float = 0.3, adam_lr: float = 0.03, first_order_steps: int = 300,
                      max_iter: int = 300, tol: float = 1e-7) -> MnistResult:
    """GD, Adam, Newton and L-BFGS from the same initial weights, full batch.

    Newton's ``max_params`` is raised to ``m`` (7850 for 784 features: a 493 MB Hessian)."""
    obj, x0 = softmax_regression_problem(n_train=n_train, features=features, l2=l2, seed=seed)
    methods: dict[str, tuple[Method, int]] = {
        f"GD (lr={gd_lr:g})": (GradientDescent(lr=gd_lr), first_order_steps),
        f"Adam (lr={adam_lr:g})": (FirstOrder("adam", lr=adam_lr), first_order_steps),
        "Newton": (Newton(max_params=max(5000, obj.dim)), max_iter),
        "L-BFGS (m=10)": (LBFGS(history=10), max_iter),
    }
    curves, iterations, status, seconds, final = {}, {}, {}, {}, {}
    for name, (method, iters) in methods.items():
        res = minimize(obj, method, x0=x0, max_iter=iters, tol=tol)
        n = int(res.iterations[0])
        curves[name] = {"f": res.f_history[: n + 1, 0].numpy(), "time": res.times[: n + 1].numpy(),
                        "iter": np.arange(n + 1)}
        iterations[name], status[name] = n, res.status[0]
        seconds[name], final[name] = float(res.times[n]), float(res.fun[0])
    obj.set_point(x0)
    f_star = min(final.values())
    return MnistResult(n_train, obj.dim, l2, f_star, curves, iterations, status, seconds, final)


def plot_mnist_softmax(result: MnistResult) -> Figure:
    """``f - f*`` (log scale) against iterations and against wall-clock seconds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), constrained_layout=True)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    floor = 1e-16
    for name, c in result.curves.items():
        gap = np.maximum(c["f"] - result.f_star, floor)
        ax1.semilogy(c["iter"], gap, "-", marker="o" if len(gap) < 40 else None, ms=3, label=name)
        ax2.semilogy(c["time"], gap, "-", marker="o" if len(gap) < 40 else None, ms=3, label=name)
    ax1.set_xlabel("iteration")
    ax2.set_xlabel("wall-clock seconds")
    for ax in (ax1, ax2):
        ax.set_ylabel("f - f*")
        ax.grid(True, which="major", alpha=0.3)
    ax1.set_xscale("symlog", linthresh=10)
    ax1.legend(fontsize=8)
    fig.suptitle(f"softmax regression on {result.n} MNIST images, m = {result.m} parameters, "
                 f"L2 = {result.l2:g} (f* = {result.f_star:.6f})")
    return fig


# ---- cost of a dense Newton step ------------------------------------------------------------
@dataclass
class CostResult:
    """Seconds per dense Newton step against ``m`` (fastest of ``repeats``: the least
    disturbed by other processes).

    ``hessian_s``: forming ``H`` (the analytic softmax-regression formula,
    ``O(N m^2)``); ``solve_s``: Cholesky + two triangular solves (``m^3/3`` flops);
    ``step_s``: one whole :class:`Newton` iteration (Hessian, solve, trial evaluation).
    ``slope_*``: least-squares slope of ``log t`` against ``log m`` over ``m >= fit_from``.
    """

    m: np.ndarray
    n_train: int
    hessian_s: np.ndarray
    solve_s: np.ndarray
    step_s: np.ndarray
    slope_step: float
    slope_solve: float
    slope_hessian: float
    threads: int
    fit_from: float = 0.0


def _slope(m: np.ndarray, t: np.ndarray) -> float:
    return float(np.polyfit(np.log(m), np.log(t), 1)[0])


def run_newton_cost(*, sizes: Sequence[int] = (100, 200, 400, 700, 1000, 1500, 2000, 3000, 4000),
                    n_train: int = 1000, repeats: int = 3, seed: int = 0, fit_from: int = 1000,
                    threads: int | None = None) -> CostResult:
    """Time Newton steps on softmax regression with ``m = (D + 1) * 10`` parameters,
    ``D = m/10 - 1`` input pixels (the ``D`` of highest variance).

    The repeats go round-robin over the sizes (a burst of load from other processes
    then hits every size, not one), and the fastest repeat counts. Slopes are fitted
    on ``m >= fit_from`` (below that, fixed per-call overheads dominate); ``threads``
    sets ``torch.set_num_threads`` for the measurement (restored afterwards).
    """
    from trainlab import nn
    from trainlab.data import load_splits
    from trainlab.regularize import L2
    from trainlab.second_order._objective import ModelObjective

    splits = load_splits("mnist-5k", train=n_train, val=0, test=0, seed=seed, dtype=DT)
    x, y = splits.train.x, splits.train.y
    order = torch.argsort(x.var(dim=0), descending=True)
    problems = []
    for m in sizes:
        D = max(1, round(m / 10) - 1)
        model = nn.Sequential([nn.Linear(D, 10)])
        model.build((D,), 1, dtype=DT)
        obj = ModelObjective(model, nn.SoftmaxCrossEntropy(), x[:, order[:D]], y,
                             regularizers=[L2(1e-4, include_1d=True)])
        w = obj.initial_point()
        f, g = obj.value_and_grad(w)
        problems.append((obj, w, f, g, Newton(max_params=max(5000, obj.dim))))
    times: list[list[list[float]]] = [[[], [], []] for _ in problems]
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for _ in range(repeats):
            for (obj, w, f, g, newton), (th, ts, tt) in zip(problems, times):
                t0 = time.perf_counter()
                H = hessian(obj, w)
                t1 = time.perf_counter()
                L, _ = torch.linalg.cholesky_ex(H)
                torch.cholesky_solve(-g.unsqueeze(-1), L)
                t2 = time.perf_counter()
                state = newton.start(obj, w, f, g)
                t3 = time.perf_counter()
                newton.step(obj, state, w, f, g, torch.ones(1, dtype=torch.bool), 1)
                t4 = time.perf_counter()
                th.append(t1 - t0)
                ts.append(t2 - t1)
                tt.append(t4 - t3)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(saved)
    m_arr = np.array([p[0].dim for p in problems], dtype=float)
    hs_a, ss_a, st_a = (np.array([min(t[k]) for t in times]) for k in range(3))
    fit = m_arr >= fit_from if int((m_arr >= fit_from).sum()) >= 2 else np.ones_like(m_arr, dtype=bool)
    return CostResult(m_arr, n_train, hs_a, ss_a, st_a, _slope(m_arr[fit], st_a[fit]), _slope(m_arr[fit], ss_a[fit]),
                      _slope(m_arr[fit], hs_a[fit]), used, float(m_arr[fit][0]))


def plot_newton_cost(result: CostResult) -> Figure:
    """Log-log: seconds per Newton step (and its parts) vs ``m``, with ``m^3`` and ``m^2`` references."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5), constrained_layout=True)
    ax = fig.add_subplot(1, 1, 1)
    m = result.m
    ax.loglog(m, result.step_s, "o-", label=f"whole Newton step (slope {result.slope_step:.2f})")
    ax.loglog(m, result.hessian_s, "s--", ms=4, label=f"forming H, O(N m^2) (slope {result.slope_hessian:.2f})")
    ax.loglog(m, result.solve_s, "^--", ms=4, label=f"Cholesky solve (slope {result.slope_solve:.2f})")
    ax.loglog(m, result.solve_s[-1] * (m / m[-1]) ** 3, "k:", label="m^3 (through the last solve)")
    ax.loglog(m, result.hessian_s[-1] * (m / m[-1]) ** 2, ":", color="0.5", label="m^2 (through the last H)")
    ax.set_xlabel("parameters per member, m")
    ax.set_ylabel("seconds")
    ax.axvspan(result.fit_from, m[-1], color="0.9", zorder=0, label=f"slopes fitted on m >= {result.fit_from:g}")
    ax.set_title(f"dense Newton step, softmax regression, N = {result.n_train} ({result.threads} CPU "
                 f"thread{'s' if result.threads > 1 else ''})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ---- all figures --------------------------------------------------------------------------
def save_figures(directory: str | Path = "docs/figures", *, quick: bool = False,
                 parts: Sequence[str] = ("quadratic", "rosenbrock", "textbook", "mnist", "cost")) -> dict[str, Any]:
    """Run the demonstrations named in ``parts``, save ``second_order_<part>.png`` in
    ``directory`` and return the headline numbers. ``quick=True`` uses smaller problems
    (a smoke test). The cost curve is timed single-threaded (``threads=1``): on a
    machine shared with other work that is the least noisy measurement."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    if "quadratic" in parts:
        bowl = run_quadratic_bowl()
        plot_paths(bowl).savefig(out / "second_order_quadratic.png", dpi=80)
        summary["quadratic"] = {k: (bowl.iterations[k], float(bowl.values[k][-1])) for k in bowl.paths}
    if "rosenbrock" in parts:
        rb = run_rosenbrock(gd_steps=500 if quick else 5000)
        plot_paths(rb, columns=2).savefig(out / "second_order_rosenbrock.png", dpi=80)
        summary["rosenbrock"] = {k: (rb.iterations[k], float(rb.values[k][-1])) for k in rb.paths}
    if "textbook" in parts:
        tb = run_textbook_paths()
        plot_paths(tb).savefig(out / "second_order_textbook.png", dpi=80)
        summary["textbook"] = {k: (tb.iterations[k], float(tb.values[k][-1])) for k in tb.paths}
    if "mnist" in parts:
        mn = run_mnist_softmax(n_train=200 if quick else 1000, features=64 if quick else 784,
                               first_order_steps=50 if quick else 300)
        plot_mnist_softmax(mn).savefig(out / "second_order_mnist.png", dpi=100)
        summary["mnist"] = {"m": mn.m, "f_star": mn.f_star, "iterations": mn.iterations, "seconds": mn.seconds,
                            "final": mn.final, "status": mn.status}
    if "cost" in parts:
        cost = run_newton_cost(sizes=(100, 200, 400) if quick else (100, 200, 400, 700, 1000, 1500, 2000, 3000, 4000),
                               repeats=1 if quick else 5, threads=1, fit_from=200 if quick else 1000)
        plot_newton_cost(cost).savefig(out / "second_order_cost.png", dpi=100)
        summary["cost"] = {"m": cost.m.tolist(), "step_s": cost.step_s.tolist(), "solve_s": cost.solve_s.tolist(),
                           "hessian_s": cost.hessian_s.tolist(), "slope_step": cost.slope_step,
                           "slope_solve": cost.slope_solve, "slope_hessian": cost.slope_hessian,
                           "threads": cost.threads, "fit_from": cost.fit_from}
    return summary
