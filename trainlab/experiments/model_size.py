"""Model size vs a fixed, small training set: depth x width.

ReLU nets of every depth x width in the grid (He init, Adam lr 1e-3, batch 50) learn
the same few hundred MNIST images; each cell is one population of ``seeds`` members
(different structures cannot share a population). Measured: training and test
accuracy and their gap.
"""

from __future__ import annotations

import numpy as np

from trainlab import nn
from trainlab.experiments._common import mlp, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import Adam
from trainlab.train import Trainer

SETTINGS = {
    "smoke": dict(train=200, test=200, depths=[1, 2], widths=[2, 32], epochs=5, batch_size=50, lr=1e-3, seeds=1),
    "quick": dict(train=500, test=1000, depths=[1, 2, 4], widths=[2, 8, 32, 256], epochs=60, batch_size=50,
                  lr=1e-3, seeds=2),
    # not a textbook experiment: the same grid, longer, more seeds, the full test set
    "textbook": dict(train=500, test=10000, depths=[1, 2, 4], widths=[2, 8, 32, 256], epochs=100, batch_size=50,
                     lr=1e-3, seeds=4),
}


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=s["test"])
    D, W = len(s["depths"]), len(s["widths"])
    train = np.zeros((D, W))
    test = np.zeros((D, W))
    params = np.zeros((D, W), dtype=int)
    for i, depth in enumerate(s["depths"]):
        for j, width in enumerate(s["widths"]):
            model = mlp(s["seeds"], [width] * depth, activation="relu", init="he_normal", seed=preset.seed)
            h = Trainer(model, nn.SoftmaxCrossEntropy(), Adam(model.parameters(), lr=s["lr"]), epochs=s["epochs"],
                        batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9).fit(data.train, test=data.test)
            train[i, j] = np.mean(h.final["train_acc"])
            test[i, j] = np.mean(h.final["test_acc"])
            params[i, j] = model.num_parameters()
    gap = train - test
    fits = train >= 0.95
    min_gap_fit = float(gap[fits].min()) if fits.any() else float("nan")
    expressive = float(train[:, -1].mean() - train[:, 0].mean())
    better = float(test[:, -1].mean() - test[:, 1].mean()) if W > 2 else float(test[:, -1].mean() - test[:, 0].mean())
    ref_w = s["widths"][1] if W > 2 else s["widths"][0]
    widest, narrow = s["widths"][-1], s["widths"][0]
    numbers = {"depths": s["depths"], "widths": s["widths"], "parameters": params.tolist(),
               "train_acc": tolist(train), "test_acc": tolist(test), "gap": tolist(gap)}
    gap_by_width = gap.mean(axis=0)
    checks = [
        # Expressive power: a net of width 2 cannot even fit 500 images; 30 points of
        # training accuracy between the narrowest and the widest column is a plain difference.
        Check("more units, more expressive power",
              "More layers and units make a model more expressive: it fits the training data better.",
              expressive, 0.3, ">=",
              f"Training accuracy, mean over depths: width {narrow} {train[:, 0].mean():.3f}, width {widest} "
              f"{train[:, -1].mean():.3f}."),
        # Every net that can memorize the training set (train >= 95%) leaves a gap: 10
        # points is far above the seed-to-seed noise (~1-2 points).
        Check("a model large for the data overfits",
              "A model that is large compared with the data set overfits: it fits its training images much better "
              "than new ones.",
              min_gap_fit, 0.1, ">=",
              f"Smallest train-test gap among the {int(fits.sum())} nets that fit the training set (>= 95%): "
              f"{min_gap_fit:.3f}. Mean gap by width {s['widths']}: "
              f"{', '.join(f'{v:.3f}' for v in gap_by_width)} -- the gap is largest for the smallest nets that can "
              f"just memorize; wider nets memorize too but generalize better (the gap shrinks again), so on this "
              f"data 'bigger' does not mean 'more overfitting'."),
        # "Train a bigger network" is the course's first way to improve performance.
        Check("a bigger network generalizes better",
              "Training a bigger network is one of the two fundamental ways to improve performance (the other is "
              "more data).",
              better, 0.05, ">=",
              f"Test accuracy, mean over depths: width {ref_w} {test[:, 1 if W > 2 else 0].mean():.3f}, width "
              f"{widest} {test[:, -1].mean():.3f} (best cell {test.max():.3f})."),
    ]
    return Result(name="model-size", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"train": train, "test": test, "gap": gap, "params": params},
                  summary=f"width {narrow}->{widest}: train {train[:, 0].mean():.2f}->{train[:, -1].mean():.2f}, "
                          f"test {test[:, 0].mean():.2f}->{test[:, -1].mean():.2f}, gap "
                          f"{gap_by_width[0]:.2f}/{gap_by_width.max():.2f}/{gap_by_width[-1]:.2f} (narrow/max/wide)")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    s = result.settings
    train, test, gap = result.arrays["train"], result.arrays["test"], result.arrays["gap"]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), squeeze=False)
    for ax, m, title, cmap in ((axes[0, 0], train, "training accuracy", "Greens"),
                               (axes[0, 1], test, "test accuracy", "Blues"),
                               (axes[0, 2], gap, "gap (train - test)", "Reds")):
        im = ax.imshow(m, cmap=cmap, vmin=0, vmax=1 if "acc" in title else max(0.3, float(m.max())), aspect="auto")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if m[i, j] > 0.6 * (im.norm.vmax or 1) else "black")
        ax.set_xticks(range(len(s["widths"])), [str(w) for w in s["widths"]])
        ax.set_yticks(range(len(s["depths"])), [str(d) for d in s["depths"]])
        ax.set_xlabel("units per layer")
        ax.set_ylabel("hidden layers")
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return [Figure(fig, "accuracy over depth x width",
                   f"Every cell is a net with that many hidden layers (rows) and units per layer (columns), trained on "
                   f"the same {s['train']} images. Nets of 2 units per layer cannot even fit the training images "
                   "(little expressive power). As soon as a net can memorize them, it does (training accuracy ~1.00) "
                   "and the test accuracy falls far short: a model large for the data overfits. Wider nets still do "
                   "better on new images here, which is why a bigger network plus more data is the basic recipe.")]


EXPERIMENT = Experiment(
    name="model-size",
    title="Model size and overfitting",
    claim="More layers and units make a model more expressive, and a model too large for its data overfits; yet "
          "training a bigger network (and getting more data) is the fundamental way to better performance.",
    source="course note 000 (model size: number of layers and units, expressive power vs overfitting; the two "
           "fundamental ways: bigger networks and more data)",
    docs="training",
    run=run,
    plot=plot,
)
