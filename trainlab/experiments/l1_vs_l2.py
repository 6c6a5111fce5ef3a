"""L1 vs L2 vs elastic net: weight distributions, sparsity, and the constraint-region picture.

Part 1: a 784-100-10 ReLU net learns MNIST four times in one population: no penalty,
L1 (``alpha * sum |w|``, applied as a proximal step so weights can reach exactly 0),
L2 (``lambda * sum w^2``) and elastic net (half of each). Measured: the distribution
of the trained weights and the share that is exactly zero.

Part 2 draws the textbook picture (diamond vs circle) from a real two-parameter
problem: least squares on MNIST, predicting "is this digit a 1?" (standardized) from
two standardized features, the ink in the central columns (x1) and the total ink
(x2): ``y ~ w1 x1 + w2 x2``. A ``Linear(2, 1, bias=False)`` population is trained
full-batch for a grid of L1 strengths, another for L2 strengths; the unregularized
solution, the loss contours and the regularized solutions are all measured, not drawn
by hand.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import linear_layers, mlp, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.regularize import L1, L2
from trainlab.train import Trainer

MEMBERS = ("none", "L1", "L2", "elastic net")

SETTINGS = {
    "smoke": dict(train=300, test=200, hidden=[50], lr=0.1, epochs=5, batch_size=100, alpha=1e-3, lam=1e-2,
                  path_points=6, path_steps=100),
    "quick": dict(train=1000, test=1000, hidden=[100], lr=0.1, epochs=30, batch_size=100, alpha=1e-3, lam=1e-2,
                  path_points=24, path_steps=400),
    # not a textbook experiment: more data and epochs
    "textbook": dict(train=5000, test=10000, hidden=[100], lr=0.1, epochs=30, batch_size=100, alpha=1e-3, lam=1e-2,
                     path_points=40, path_steps=1000),
}


def _standardize(v: torch.Tensor) -> torch.Tensor:
    return (v - v.mean()) / v.std(unbiased=False)


def _two_feature_problem(preset: Preset) -> tuple[torch.Tensor, torch.Tensor]:
    data = splits(preset, train=None, test=1000, preprocess="minmax")
    img = data.train.x.reshape(-1, 28, 28).double()
    x1 = _standardize(img[:, :, 12:16].mean(dim=(1, 2)))  # ink in the four central columns
    x2 = _standardize(img.mean(dim=(1, 2)))               # total ink
    y = _standardize((data.train.y == 1).double())
    return torch.stack([x1, x2], dim=1).float(), y.unsqueeze(1).float()


def _path(F: torch.Tensor, t: torch.Tensor, strengths: list[float], kind: str, s: dict, seed: int) -> np.ndarray:
    """Solutions ``(len(strengths), 2)`` of the penalized least-squares problem, one member per strength."""
    linear = nn.Linear(2, 1, init="zeros", bias=False)
    model = nn.Sequential([linear])
    model.build((2,), Population(len(strengths), seed=seed))
    reg = L1(strengths, proximal=True) if kind == "L1" else L2(strengths)
    # Step 1/L with L the largest curvature of the objective (2 x the top eigenvalue of
    # F'F/n, plus 2 lambda for L2): stable for every member, and the proximal L1 step
    # converges to the exact lasso solution.
    top = float(torch.linalg.eigvalsh((F.T @ F / F.shape[0]).double()).max())
    lr = [1.0 / (2 * top + (2 * v if kind == "L2" else 0.0)) for v in strengths]
    Trainer(model, nn.MeanSquaredError(), SGD(model.parameters(), lr=lr), steps=s["path_steps"],
            batch_size=F.shape[0], seed=seed, eval_every=10**9, eval_train=False, regularizers=[reg]).fit((F, t))
    return linear.weight.data[:, :, 0].double().numpy()


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    # ---- part 1: weight distributions in a net
    data = splits(preset, train=s["train"], test=s["test"])
    a, lam = s["alpha"], s["lam"]
    model = mlp(4, s["hidden"], activation="relu", init="he_normal", seed=preset.seed)
    h = Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=s["lr"]), epochs=s["epochs"],
                batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9,
                regularizers=[L1([0.0, a, 0.0, a / 2], proximal=True), L2([0.0, 0.0, lam, lam / 2])]
                ).fit(data.train, test=data.test)
    w = torch.cat([layer.weight.data.reshape(4, -1) for layer in linear_layers(model)], dim=1).double()
    zero = (w == 0).double().mean(dim=1).numpy()
    mean_abs = w.abs().mean(dim=1).numpy()
    test_acc = np.array(h.final["test_acc"])
    checks = [
        # With the proximal step, a weight whose data gradient stays below alpha is set to
        # exactly 0 (e.g. the weights of MNIST's always-blank border pixels). A tenth of all
        # weights exactly 0 is unambiguous sparsity; measured ~0.3.
        Check("L1 makes weights exactly zero (sparse)",
              "L1 regularization drives many weights to exactly zero, keeping only the important ones "
              "(feature selection).",
              float(zero[1]), 0.1, ">=",
              f"Share of weights exactly 0: none {zero[0]:.1%}, L1 {zero[1]:.1%}, L2 {zero[2]:.1%}, elastic net "
              f"{zero[3]:.1%}. Test accuracy {', '.join(f'{m} {v:.3f}' for m, v in zip(MEMBERS, test_acc))}."),
        # L2's gradient 2 lambda w shrinks a weight in proportion to its size, so it never
        # reaches 0 exactly; at most 0.1% (rounding) may.
        Check("L2 shrinks all weights but zeroes none",
              "L2 regularization (weight decay) makes all weights smaller, large ones fastest, without setting any "
              "to zero: every input is used a little.",
              float(zero[2]), 0.001, "<=",
              f"Share of weights exactly 0 under L2: {zero[2]:.2%}; mean |w|: none {mean_abs[0]:.4f}, L2 "
              f"{mean_abs[2]:.4f}, L1 {mean_abs[1]:.4f}."),
    ]

    # ---- part 2: two parameters
    F, t = _two_feature_problem(preset)
    Fd, td = F.double(), t.double()
    w_ols = torch.linalg.lstsq(Fd, td).solution.squeeze(1).numpy()
    l1_grid = np.logspace(-3, 0, s["path_points"]).tolist()
    l2_grid = np.logspace(-3, 1, s["path_points"]).tolist()
    w_l1 = _path(F, t, l1_grid, "L1", s, preset.seed)
    w_l2 = _path(F, t, l2_grid, "L2", s, preset.seed)
    # the picture's L1 solution: the weakest penalty that puts the solution on an axis (one weight exactly 0)
    on_axis = [i for i in range(len(l1_grid)) if (w_l1[i] == 0).sum() == 1]
    i1 = on_axis[0] if on_axis else len(l1_grid) // 2
    radius = float(np.abs(w_l1[i1]).sum())
    # the L2 solution whose circle has the diamond's size (||w||_2 closest to the L1 solution's ||w||_1)
    i2 = int(np.argmin(np.abs(np.linalg.norm(w_l2, axis=1) - radius)))
    l1_small = float(np.abs(w_l1[i1]).min())
    l2_ratio = float(np.abs(w_l2[i2]).min() / np.abs(w_l2[i2]).max())
    cov = (Fd.T @ Fd / Fd.shape[0]).numpy()
    numbers = {
        "members": list(MEMBERS), "zero_fraction": tolist(zero), "mean_abs_weight": tolist(mean_abs),
        "test_acc": tolist(test_acc),
        "two_d": {"w_unregularized": tolist(w_ols), "feature_correlation": float(cov[0, 1]),
                  "l1_alpha": l1_grid[i1], "w_l1": tolist(w_l1[i1]), "l2_lambda": l2_grid[i2], "w_l2": tolist(w_l2[i2]),
                  "l1_grid": tolist(l1_grid), "l2_grid": tolist(l2_grid),
                  "l1_path": tolist(w_l1), "l2_path": tolist(w_l2)},
    }
    checks += [
        # The solution is exactly on an axis when one weight is exactly 0 (proximal step).
        Check("two parameters: the L1 solution sits on a corner of the diamond",
              "The L1 constraint region is a diamond; the loss contours touch it first at a corner, where one "
              "weight is 0.",
              l1_small, 0.0, "<=",
              f"Unregularized solution w = ({w_ols[0]:.3f}, {w_ols[1]:.3f}); with L1 alpha {l1_grid[i1]:.3g}: "
              f"w = ({w_l1[i1][0]:.4f}, {w_l1[i1][1]:.4f}) -- the smaller weight is exactly 0."
              + ("" if on_axis else " No strength in the grid put the solution on an axis.")),
        # On a circle the contours touch where the gradient of the loss points to the
        # centre: both weights shrink together. Ratio >= 0.1 = the smaller weight is
        # still a tenth of the larger (at the unregularized solution it is
        # |w1|/|w2| = %.2f).
        Check("two parameters: the L2 solution keeps both weights",
              "The L2 constraint region is a circle; the loss contours touch it at a point where both weights are "
              "non-zero.",
              l2_ratio, 0.1, ">=",
              f"With L2 lambda {l2_grid[i2]:.3g} (a circle as large as the diamond): w = ({w_l2[i2][0]:.4f}, "
              f"{w_l2[i2][1]:.4f}); smaller/larger = {l2_ratio:.2f} (unregularized: "
              f"{np.abs(w_ols).min() / np.abs(w_ols).max():.2f})."),
    ]
    hists = {}
    first = linear_layers(model)[0].weight.data.reshape(4, -1).double()
    lim = float(first.abs().max())
    for i, m in enumerate(MEMBERS):
        hists[m] = torch.histc(first[i], bins=81, min=-lim, max=lim).numpy()
    return Result(name="l1-vs-l2", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"hists": hists, "lim": lim, "zero": zero, "F": F.numpy(), "t": t.numpy(), "w_ols": w_ols,
                          "w_l1": w_l1, "w_l2": w_l2, "i1": i1, "i2": i2, "l1_grid": l1_grid, "l2_grid": l2_grid},
                  summary=f"weights exactly 0: L1 {zero[1]:.0%}, elastic net {zero[3]:.0%}, L2 {zero[2]:.0%}; 2-D L1 "
                          f"solution on an axis")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    A = result.arrays
    fig1, axes = plt.subplots(1, 4, figsize=(11, 3.2), sharey=True, squeeze=False)
    edges = np.linspace(-A["lim"], A["lim"], 82)
    for ax, m in zip(axes[0], MEMBERS):
        ax.stairs(np.maximum(A["hists"][m], 0.5), edges, fill=True)
        ax.set_yscale("log")
        ax.set_title(f"{m}: {A['zero'][MEMBERS.index(m)]:.0%} exactly 0", fontsize=9)
        ax.set_xlabel("weight value")
    axes[0, 0].set_ylabel("count (log)")
    fig1.tight_layout()

    F, t = A["F"].astype(np.float64), A["t"].astype(np.float64)
    w_ols, w1, w2 = A["w_ols"], A["w_l1"][A["i1"]], A["w_l2"][A["i2"]]
    span = 1.3 * max(np.abs(w_ols).max(), 0.3)
    g = np.linspace(-span, span, 161)
    W1, W2 = np.meshgrid(g, g)
    # MSE(w) = mean (y - x w)^2 = t't/n - 2 w' F't/n + w' F'F/n w
    C, b, c = F.T @ F / len(F), F.T @ t[:, 0] / len(F), float(t[:, 0] @ t[:, 0] / len(F))
    L = c - 2 * (W1 * b[0] + W2 * b[1]) + C[0, 0] * W1**2 + 2 * C[0, 1] * W1 * W2 + C[1, 1] * W2**2
    fig2, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.6))
    levels = np.quantile(L, [0.005, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7])
    a1.contour(W1, W2, L, levels=np.unique(levels), colors="gray", linewidths=0.8)
    for level_w, color in ((w1, "C3"), (w2, "C0")):
        a1.contour(W1, W2, L, levels=[c - 2 * level_w @ b + level_w @ C @ level_w], colors=color, linewidths=1.2,
                   linestyles="--")
    r1 = float(np.abs(w1).sum())
    a1.fill([r1, 0, -r1, 0], [0, r1, 0, -r1], color="C3", alpha=0.2, label=f"L1: |w1| + |w2| <= {r1:.2f}")
    r2 = float(np.linalg.norm(w2))
    th = np.linspace(0, 2 * np.pi, 200)
    a1.fill(r2 * np.cos(th), r2 * np.sin(th), color="C0", alpha=0.2, label=f"L2: w1^2 + w2^2 <= {r2:.2f}^2")
    a1.plot(*w_ols, "k*", ms=12, label="no penalty")
    a1.plot(*w1, "o", color="C3", ms=8, label=f"L1 solution ({w1[0]:.2f}, {w1[1]:.2f})")
    a1.plot(*w2, "o", color="C0", ms=8, label=f"L2 solution ({w2[0]:.2f}, {w2[1]:.2f})")
    a1.axhline(0, color="k", lw=0.5), a1.axvline(0, color="k", lw=0.5)
    a1.set_aspect("equal")
    a1.set_xlim(-span, span), a1.set_ylim(-span, span)
    a1.set_xlabel("w1 (ink in the central columns)"), a1.set_ylabel("w2 (total ink)")
    a1.legend(fontsize=7, loc="upper left")
    a1.set_title("loss contours and constraint regions", fontsize=10)
    for k, (grid, path, name, style) in enumerate(((A["l1_grid"], A["w_l1"], "L1", "-"),
                                                    (A["l2_grid"], A["w_l2"], "L2", "--"))):
        for j in range(2):
            a2.semilogx(grid, path[:, j], style, color=f"C{j + 2}", label=f"{name}: w{j + 1}")
    a2.axhline(0, color="k", lw=0.5)
    a2.set_xlabel("penalty strength (alpha for L1, lambda for L2)")
    a2.set_ylabel("weight")
    a2.legend(fontsize=8)
    a2.set_title("regularization paths", fontsize=10)
    fig2.tight_layout()
    n = result.numbers
    return [
        Figure(fig1, "weight distributions",
               "Histograms of the first layer's 78,400 trained weights (log count). L1 pushes every weight toward "
               f"0 by the same amount each step and stops it exactly at 0: {n['zero_fraction'][1]:.0%} of the weights "
               "are exactly zero (a tall bar at 0), e.g. all weights from the always-blank border pixels. L2 pulls "
               "harder on large weights and never quite reaches 0: the distribution just gets narrower. Elastic net "
               "does some of both."),
        Figure(fig2, "diamond vs circle, from a real problem",
               "Left: gray lines are the contours of a real least-squares loss on MNIST with two weights (is the "
               "digit a 1? from central-column ink and total ink). The star is the best fit without a penalty. "
               "A penalty keeps the solution inside a region: a diamond for L1, a circle for L2; the solution is "
               "where the smallest contour (dashed) touches the region. The diamond's corners stick out, so it is "
               "touched at a corner, where w1 = 0; the round circle is touched where both weights are non-zero. "
               "Right: the solutions as the penalty grows -- under L1 a weight hits 0 and stays there; under L2 both "
               "shrink smoothly."),
    ]


EXPERIMENT = Experiment(
    name="l1-vs-l2",
    title="L1 vs L2 regularization",
    claim="L1 regularization drives weights to exactly zero (sparse; a diamond-shaped constraint region touched at "
          "its corners), L2 shrinks all weights without zeroing them (a circle); elastic net combines both.",
    source="course notes 000 (L1, L2, the diamond and circle constraint regions, elastic net), 001 (L1 selects a few "
           "inputs, L2 uses all a little) and 002",
    docs="regularization",
    run=run,
    plot=plot,
)
