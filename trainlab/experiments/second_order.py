"""Second-order optimization: Newton, BFGS and L-BFGS against gradient descent.

Uses :mod:`trainlab.second_order` (full-batch minimizers on flat parameter vectors).
Softmax regression (``Linear(k, 10)`` + cross-entropy + a small L2 penalty, float64,
zero start) on MNIST images reduced to ``k`` PCA-whitened components, so the problem
is convex with one minimum and Newton's dense ``m x m`` Hessian (``m = 10 k + 10``)
fits in memory. Every method runs to ``tol`` or ``max_iter``; ``f*`` is the lowest
value any method reached, and "converged" means ``f - f* <= 1e-6 max(1, |f*|)``.
A second picture shows the methods' paths on Rosenbrock's valley.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.population import Population

_NEEDS = ("minimize", "ModelObjective", "Newton", "LBFGS", "BFGS", "GradientDescent", "Rosenbrock")

SETTINGS = {
    "smoke": dict(train=300, components=10, l2=1e-3, gd_lr=0.5, max_iter={"GD": 50, "L-BFGS": 50, "BFGS": 50,
                                                                            "Newton": 10}, tol=1e-7,
                  rosenbrock_iter={"GD": 200, "L-BFGS": 100, "BFGS": 100, "Newton": 50}),
    "quick": dict(train=2000, components=50, l2=1e-3, gd_lr=0.5, max_iter={"GD": 500, "L-BFGS": 200, "BFGS": 200,
                                                                             "Newton": 30}, tol=1e-7,
                  rosenbrock_iter={"GD": 2000, "L-BFGS": 200, "BFGS": 200, "Newton": 100}),
    # not a textbook experiment (the textbook has no second-order methods); bigger problem
    "textbook": dict(train=10000, components=100, l2=1e-4, gd_lr=0.5,
                     max_iter={"GD": 2000, "L-BFGS": 500, "BFGS": 500, "Newton": 50}, tol=1e-8,
                     rosenbrock_iter={"GD": 5000, "L-BFGS": 200, "BFGS": 200, "Newton": 100}),
}


def available() -> tuple[bool, str]:
    try:
        so = importlib.import_module("trainlab.second_order")
    except ImportError as e:
        return False, f"trainlab.second_order is not installed ({e}); second-order methods are being built"
    missing = [n for n in _NEEDS if not hasattr(so, n)]
    if missing:
        return False, f"trainlab.second_order lacks {', '.join(missing)}"
    return True, ""


def _methods(so: ModuleType, gd_lr: float) -> dict[str, Any]:
    return {"GD": so.GradientDescent(lr=gd_lr), "L-BFGS": so.LBFGS(), "BFGS": so.BFGS(max_params=20000),
            "Newton": so.Newton(max_params=20000)}


def run(preset: Preset) -> Result:
    so = importlib.import_module("trainlab.second_order")
    from trainlab.regularize import L2

    s = dict(preset.pick(SETTINGS))
    k = s["components"]
    data = splits(preset, train=s["train"], test=0, preprocess="pca-whiten", n_components=k)
    x, y = data.train.x.double(), data.train.y
    runs = {}
    for name, method in _methods(so, s["gd_lr"]).items():
        model = nn.Sequential([nn.Linear(k, 10, init="zeros")])
        model.build((k,), Population(1, seed=preset.seed), dtype=torch.float64)
        obj = so.ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y, regularizers=[L2(s["l2"], include_1d=True)])
        r = so.minimize(obj, method, max_iter=s["max_iter"][name], tol=s["tol"])
        runs[name] = {"f": r.f_history[:, 0].double().numpy(), "t": r.times.double().numpy(),
                      "iterations": int(r.iterations[0]), "status": r.status[0], "evals": int(r.evals)}
    fstar = min(float(v["f"].min()) for v in runs.values())
    eps = 1e-6 * max(1.0, abs(fstar))
    conv = {}
    for name, v in runs.items():
        hit = np.nonzero(v["f"] - fstar <= eps)[0]
        it = int(hit[0]) if len(hit) else None
        conv[name] = {"iterations": it, "seconds": float(v["t"][it]) if it is not None else None,
                      "seconds_per_iteration": float(v["t"][-1]) / max(1, v["iterations"]),
                      "final_gap": float(v["f"][-1] - fstar), "status": v["status"], "evals": v["evals"]}
    gd_its = conv["GD"]["iterations"] if conv["GD"]["iterations"] is not None else s["max_iter"]["GD"]
    newton_its = conv["Newton"]["iterations"]
    its_ratio = (newton_its / gd_its) if newton_its is not None else float("inf")
    cost_ratio = conv["Newton"]["seconds_per_iteration"] / conv["GD"]["seconds_per_iteration"]
    times = {n: c["seconds"] for n, c in conv.items()}
    lb = times["L-BFGS"]
    others = [t for n, t in times.items() if n != "L-BFGS" and t is not None]
    time_ratio = (lb / min(others)) if lb is not None and others else (float("inf") if lb is None else 0.0)
    conv_text = "; ".join(
        f"{n}: {'not within ' + str(s['max_iter'][n]) if c['iterations'] is None else c['iterations']} iterations, "
        f"{c['seconds_per_iteration'] * 1000:.1f} ms/iteration" for n, c in conv.items())
    checks = [
        # Near the minimum Newton converges quadratically (the number of correct digits
        # doubles per step); a tenth of gradient descent's iterations is a cautious bar.
        Check("Newton's method needs far fewer iterations",
              "Using the second derivatives (the Hessian), Newton's method knows how far to go, not only which "
              "way: it converges in a handful of iterations where gradient descent needs hundreds.",
              its_ratio, 0.1, "<=",
              f"Iterations to reach f* + 1e-6 on softmax regression with {10 * k + 10} parameters: {conv_text}."),
        # Each Newton step builds and solves with an m x m Hessian; 5x the cost of a gradient
        # step is a conservative bar for m = 510 (measured ~40x).
        Check("but each Newton iteration costs much more",
              "The price is the Hessian: computing and solving with it makes each iteration far more expensive.",
              cost_ratio, 5.0, ">=",
              f"Time per iteration, Newton / gradient descent: {cost_ratio:.1f} "
              f"({conv['Newton']['seconds_per_iteration'] * 1000:.1f} vs {conv['GD']['seconds_per_iteration'] * 1000:.2f} ms)."),
        # Quasi-Newton methods approximate the curvature from gradients; L-BFGS keeps only a
        # few vectors. It must reach f* + 1e-6 soonest in wall-clock time.
        Check("L-BFGS gets there first in time",
              "Quasi-Newton methods (BFGS, and L-BFGS with a short memory) approximate the Hessian from the "
              "gradients: nearly Newton's few iterations at nearly gradient descent's cost per iteration.",
              time_ratio, 1.0, "<=",
              "Seconds to reach f* + 1e-6: " + ", ".join(f"{n} {'never' if t is None else f'{t:.3f}'}"
                                                         for n, t in times.items()) + "."),
    ]

    # Rosenbrock paths (the picture)
    paths = {}
    for name, method in _methods(so, 1e-3).items():
        r = so.minimize(so.Rosenbrock(), method, max_iter=s["rosenbrock_iter"][name], tol=1e-8, record_path=True)
        paths[name] = {"path": r.path[:, 0].double().numpy(), "iterations": int(r.iterations[0]),
                       "status": r.status[0]}
    numbers = {"parameters": 10 * k + 10, "f_star": fstar, "convergence": tolist(conv),
               "rosenbrock": {n: {"iterations": v["iterations"], "status": v["status"]} for n, v in paths.items()}}
    return Result(name="second-order", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"runs": runs, "fstar": fstar, "paths": paths, "conv": conv},
                  summary="iterations to converge: " + ", ".join(
                      f"{n} {'>' + str(s['max_iter'][n]) if c['iterations'] is None else c['iterations']}"
                      for n, c in conv.items()))


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    runs, fstar = result.arrays["runs"], result.arrays["fstar"]
    fig1, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, v in runs.items():
        gap = np.maximum(v["f"] - fstar, 1e-16)
        a1.semilogy(np.arange(len(gap)), gap, label=name)
        a2.loglog(np.maximum(v["t"], 1e-4), gap, label=name)
    a1.set_xlabel("iteration")
    a2.set_xlabel("seconds")
    for ax in (a1, a2):
        ax.set_ylabel("f - f*")
        ax.legend(fontsize=8)
    fig1.tight_layout()

    paths = result.arrays["paths"]
    fig2, axes = plt.subplots(1, len(paths), figsize=(3.0 * len(paths), 3.0), squeeze=False)
    X, Y = np.meshgrid(np.linspace(-1.6, 1.6, 200), np.linspace(-0.6, 1.6, 200))
    Z = (1 - X) ** 2 + 100 * (Y - X**2) ** 2
    for ax, (name, v) in zip(axes[0], paths.items()):
        ax.contour(X, Y, Z, levels=np.logspace(-1, 3, 12), colors="gray", linewidths=0.5)
        p = v["path"]
        ax.plot(p[:, 0], p[:, 1], ".-", color="C3", ms=2, lw=0.8)
        ax.plot(1, 1, "k+", ms=10)
        ax.set_title(f"{name}: {v['iterations']} iterations", fontsize=9)
        ax.tick_params(labelsize=7)
    fig2.tight_layout()
    n = result.numbers
    return [
        Figure(fig1, "convergence on softmax regression",
               f"Distance from the minimum (log scale) for softmax regression on MNIST ({n['parameters']} parameters), "
               "by iteration (left) and by seconds (right). Newton's method needs only a few iterations but each is "
               "expensive; gradient descent's iterations are cheap but it needs very many; BFGS and L-BFGS build up "
               "curvature information from the gradients and get the best of both."),
        Figure(fig2, "paths on Rosenbrock's valley",
               "Paths from (-1.2, 1) to the minimum (1, 1) along a curved, narrow valley. Gradient descent crawls "
               "along the valley floor; Newton's method and the quasi-Newton methods use curvature to take long, "
               "well-aimed steps."),
    ]


EXPERIMENT = Experiment(
    name="second-order",
    title="Second-order optimization: Newton, BFGS, L-BFGS",
    claim="Second-order information (the Hessian) tells an optimizer how far to step: Newton's method converges in "
          "very few iterations but each costs much more; quasi-Newton methods (BFGS, L-BFGS) approximate the Hessian "
          "from gradients and get most of the benefit cheaply.",
    source="course note 004 (second-derivative optimization: Newton's method, quasi-Newton, L-BFGS)",
    docs="second_order",
    run=run,
    plot=plot,
    available=available,
)
