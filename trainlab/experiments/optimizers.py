"""Optimizers: paths on ``f(x, y) = x^2/20 + y^2`` and loss curves on MNIST.

Part 1 is the textbook's ``optimizer_compare_naive.py`` (Saito ch. 6.1): from
``(-7, 2)``, 30 steps of SGD (lr 0.95), Momentum (lr 0.1, 0.9), AdaGrad (lr 1.5) and
Adam (lr 0.3) -- trainlab's own optimizers, one per member of a population of four
points (:class:`~trainlab.experiments._common.MemberOptimizers`). When
:mod:`trainlab.second_order` is present, Newton's method and L-BFGS are added.

Part 2 is ``optimizer_compare_mnist.py``: a 784-100x4-10 ReLU net (He init), batch
128, with SGD (0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001), the four as
one population with an optimizer per member.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import MemberOptimizers, StepLoss, mlp, smooth, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD, AdaGrad, Adam, Momentum, Optimizer
from trainlab.train import Trainer

NAMES = ("SGD", "Momentum", "AdaGrad", "Adam")

SETTINGS = {
    "smoke": dict(start=[-7.0, 2.0], steps_2d=30, lr_2d=[0.95, 0.1, 1.5, 0.3], train=500, hidden=[100] * 4,
                  batch_size=128, iterations=50, lr_mnist=[0.01, 0.01, 0.01, 0.001]),
    "quick": dict(start=[-7.0, 2.0], steps_2d=30, lr_2d=[0.95, 0.1, 1.5, 0.3], train=4000, hidden=[100] * 4,
                  batch_size=128, iterations=1000, lr_mnist=[0.01, 0.01, 0.01, 0.001]),
    # optimizer_compare_naive.py and optimizer_compare_mnist.py (full MNIST, 2,000 iterations)
    "textbook": dict(start=[-7.0, 2.0], steps_2d=30, lr_2d=[0.95, 0.1, 1.5, 0.3], train=None, hidden=[100] * 4,
                     batch_size=128, iterations=2000, lr_mnist=[0.01, 0.01, 0.01, 0.001]),
}


def _makers(lrs: list[float]) -> list[Callable[[list[nn.Parameter]], Optimizer]]:
    # AdaGrad's eps 1e-7 and the momentum 0.9 are the textbook's
    return [partial(SGD, lr=lrs[0]), partial(Momentum, lr=lrs[1], momentum=0.9),
            partial(AdaGrad, lr=lrs[2], eps=1e-7), partial(Adam, lr=lrs[3])]


def _f(p: np.ndarray) -> np.ndarray:
    return p[..., 0] ** 2 / 20 + p[..., 1] ** 2


def _second_order_paths(start: list[float], steps: int) -> tuple[dict[str, np.ndarray], str]:
    try:
        from trainlab.second_order import minimize, textbook_function
    except ImportError as e:
        return {}, f"Newton and L-BFGS: not available ({e})"
    out = {}
    try:
        for label, method in (("Newton", "newton"), ("L-BFGS", "lbfgs")):
            r = minimize(textbook_function(x0=start, size=1), method, max_iter=steps, tol=1e-10, record_path=True)
            if r.path is None:
                raise RuntimeError("minimize(record_path=True) returned no path")
            out[label] = r.path[:, 0].double().numpy()
    except Exception as e:  # the package is being built: an API change must not break the report
        return {}, f"Newton and L-BFGS: trainlab.second_order did not run ({type(e).__name__}: {e})"
    return out, ""


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    # ---- part 1: 2-D paths
    w = nn.Parameter(torch.tensor([s["start"]] * 4, dtype=torch.float64))
    opt = MemberOptimizers([w], _makers(s["lr_2d"]))
    path = [w.data.clone()]
    for _ in range(s["steps_2d"]):
        x, y = w.data[:, 0], w.data[:, 1]
        w.grad.copy_(torch.stack([x / 10, 2 * y], dim=1))  # grad of x^2/20 + y^2
        opt.step()
        path.append(w.data.clone())
    P = torch.stack(path).numpy()  # (steps + 1, 4, 2)
    paths = {n: P[:, i] for i, n in enumerate(NAMES)}
    so_paths, so_note = _second_order_paths(s["start"], s["steps_2d"])
    paths.update(so_paths)
    final_f = {n: float(_f(p[-1])) for n, p in paths.items()}
    ratio = {n: float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum() / max(np.linalg.norm(p[-1] - p[0]), 1e-12))
             for n, p in paths.items()}
    flips = int((P[1:, 0, 1] * P[:-1, 0, 1] < 0).sum())
    others = {n: ratio[n] for n in NAMES[1:]}
    checks = [
        # A straight path has ratio 1. SGD's lr 0.95 overshoots the steep y direction at
        # every step (y -> -0.9 y); a path 2x longer than the distance covered is a zigzag.
        Check("SGD zigzags on an elongated bowl",
              "On f = x^2/20 + y^2 (20 times steeper in y than in x), SGD's gradient points mostly across the valley, "
              "so it zigzags and crawls along x.",
              ratio["SGD"], 2.0, ">=",
              f"Path length / distance covered after {s['steps_2d']} steps: SGD {ratio['SGD']:.2f} (y changes sign "
              f"{flips} times in {s['steps_2d']} steps), "
              + ", ".join(f"{n} {v:.2f}" for n, v in others.items()) + "."),
        # AdaGrad divides each coordinate's step by its own gradient history, so the
        # shallow x direction gets a larger step; it must end lower than every other
        # first-order method (the textbook's observation).
        Check("AdaGrad adapts per coordinate and gets closest",
              "AdaGrad scales each coordinate's step by its own gradient history, so here it reaches the minimum "
              "fastest of the four.",
              min(final_f[n] for n in NAMES if n != "AdaGrad") - final_f["AdaGrad"], 0.0, ">=",
              "f after " + str(s["steps_2d"]) + " steps: "
              + ", ".join(f"{n} {final_f[n]:.2g}" for n in NAMES) + " (the minimum is 0)."),
    ]
    newton_checks: list[Check] = []  # measured here, shown last in the report
    if "Newton" in paths:
        newton_steps = int(np.argmax(_f(paths["Newton"]) <= 1e-12)) if (_f(paths["Newton"]) <= 1e-12).any() else -1
        newton_checks.append(Check(
            "Newton's method solves a quadratic in one step",
            "Newton's method uses the curvature (the Hessian): on a quadratic bowl its first step lands exactly on "
            "the minimum, whatever the scaling of the axes.",
            newton_steps if newton_steps >= 0 else float("inf"), 1, "<=",
            f"Steps until f <= 1e-12: Newton {newton_steps}; L-BFGS ends at f = {final_f.get('L-BFGS', float('nan')):.2g} "
            f"after {len(paths['L-BFGS']) - 1} iterations."))

    # ---- part 2: MNIST
    data = splits(preset, train=s["train"], test=0) if s["train"] else splits(preset, train=None, test=0)
    model = mlp(4, s["hidden"], activation="relu", init="he_normal", seed=preset.seed)
    rec = StepLoss()
    # MemberOptimizers is duck-typed (step, set_active, lr, active: what the Trainer uses of an optimizer, and no
    # checkpoint here), while Trainer's parameter is typed Optimizer; drop the ignore once it takes a protocol
    per_member = MemberOptimizers(model.parameters(), _makers(s["lr_mnist"]))
    Trainer(model, nn.SoftmaxCrossEntropy(), per_member,  # type: ignore[arg-type]
            steps=s["iterations"], batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9, eval_train=False,
            callbacks=[rec]).fit(data.train)
    loss = rec.values
    tail = max(1, len(loss) // 10)
    final = loss[-tail:].mean(axis=0)
    numbers = {"final_f_2d": tolist(final_f), "path_length_over_distance": tolist(ratio), "sgd_y_sign_flips": flips,
               "paths_2d": {n: tolist(p) for n, p in paths.items()},
               "mnist_final_loss": dict(zip(NAMES, tolist(final))), "train_size": len(data.train)}
    checks += [
        # The textbook's figure: SGD is the slowest of the four on MNIST. Measured on the
        # mean training loss of the last 10% of iterations.
        Check("on MNIST, plain SGD learns slowest",
              "On MNIST, Momentum, AdaGrad and Adam all lower the loss faster than plain SGD.",
              float(final[0] - final[1:].max()), 0.0, ">=",
              f"Mean training loss over the last {tail} of {s['iterations']} iterations: "
              + ", ".join(f"{n} {v:.3f}" for n, v in zip(NAMES, final)) + "."),
        *newton_checks,
    ]
    notes = [so_note] if so_note else []
    return Result(name="optimizers", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"paths": paths, "loss": loss}, notes=notes,
                  summary=f"2-D: SGD path {ratio['SGD']:.1f}x longer than its progress; MNIST final loss "
                          + ", ".join(f"{n} {v:.2f}" for n, v in zip(NAMES, final)))


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    paths = result.arrays["paths"]
    n = len(paths)
    cols = min(3, n)
    rows = -(-n // cols)
    fig1, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), squeeze=False)
    X, Y = np.meshgrid(np.linspace(-10, 10, 200), np.linspace(-5, 5, 200))
    Z = X**2 / 20 + Y**2
    for k, (name, p) in enumerate(paths.items()):
        ax = axes[k // cols, k % cols]
        ax.contour(X, Y, Z, levels=np.logspace(-2, 1.5, 12), colors="gray", linewidths=0.6)
        ax.plot(p[:, 0], p[:, 1], "o-", color="C3", ms=3, lw=1)
        ax.plot(0, 0, "k+", ms=10)
        ax.set_xlim(-10, 10), ax.set_ylim(-5, 5)
        steps = len(p) - 1
        ax.set_title(f"{name}: {steps} step{'s' if steps != 1 else ''}", fontsize=9)
        ax.tick_params(labelsize=7)
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig1.tight_layout()

    loss = result.arrays["loss"]
    fig2, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(loss) + 1)
    w = max(1, min(50, len(loss) // 20))
    for j, name in enumerate(NAMES):
        ax.plot(x, smooth(loss[:, j], w), label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (moving average)")
    ax.set_ylim(0, 2.5)
    ax.legend()
    fig2.tight_layout()
    s = result.settings
    return [
        Figure(fig1, "paths on x^2/20 + y^2",
               f"{s['steps_2d']} steps of each method from (-7, 2) on a bowl 20 times steeper in y than in x "
               "(gray contours, minimum at +). SGD's gradient points mostly across the valley: it zigzags in y and "
               "crawls in x. Momentum builds up speed along x but overshoots; AdaGrad shrinks the step of the steep "
               "coordinate and heads straight for the minimum; Adam combines both ideas."
               + (" Newton's method uses the curvature and lands on the minimum in one step; L-BFGS builds the "
                  "curvature up from the gradients it has seen." if "Newton" in paths else "")),
        Figure(fig2, "MNIST training loss by optimizer",
               f"Training loss (moving average) of the same 784-100x4-10 net with each optimizer, batch "
               f"{s['batch_size']}, learning rates {dict(zip(NAMES, s['lr_mnist']))}. Plain SGD learns slowest; "
               "momentum and the adaptive methods lower the loss much faster."),
    ]


EXPERIMENT = Experiment(
    name="optimizers",
    title="Optimizers: SGD, Momentum, AdaGrad, Adam (and second order)",
    claim="Plain SGD zigzags on elongated loss surfaces and learns slowly; momentum and per-coordinate adaptive steps "
          "(AdaGrad, Adam) move more directly; second-order methods use the curvature and solve a quadratic at once.",
    source="course note 004 (Newton's method, quasi-Newton, L-BFGS) and 002 (momentum, learning rate); Saito ch. 6.1, "
           "optimizer_compare_naive.py and optimizer_compare_mnist.py",
    docs="optimizers",
    run=run,
    plot=plot,
)
