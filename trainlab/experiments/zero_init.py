"""Zero and constant initialization never break the symmetry between units.

If every weight of a layer starts equal, every unit of that layer computes the same
output, receives the same gradient and takes the same step -- forever: the layer is
one unit repeated. Three members of one population train together on MNIST:
weights all 0, weights all equal to a constant, and small random weights
(``N(0, 0.1^2)``). After training, the units of each hidden layer are compared.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import linear_layers, mlp, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.train import Trainer

MEMBERS = ("zeros", "constant", "random std 0.1")

SETTINGS = {
    "smoke": dict(train=300, test=200, hidden=[20, 20], activation="sigmoid", constant=0.01, lr=0.5,
                  epochs=3, batch_size=100),
    "quick": dict(train=2000, test=1000, hidden=[50, 50], activation="sigmoid", constant=0.01, lr=0.5,
                  epochs=20, batch_size=100),
    # The textbook only argues this case (Saito ch. 6.2.1); the sizes follow its other nets.
    "textbook": dict(train=10000, test=10000, hidden=[100, 100], activation="sigmoid", constant=0.01, lr=0.5,
                     epochs=20, batch_size=100),
}


def _unit_stats(w: torch.Tensor) -> tuple[float, int]:
    """For one member's weight ``(in, units)``: relative spread of the units' incoming weight
    vectors (std across units / RMS of the weights) and the number of distinct units."""
    w = w.double()
    rms = float(w.pow(2).mean().sqrt())
    if rms == 0.0:
        return 0.0, 1
    spread = float(w.std(dim=1, unbiased=False).pow(2).mean().sqrt()) / rms
    # units whose incoming weights agree to 1e-6 of the weights' scale count as one
    keys = torch.round(w.T / (1e-6 * rms))
    return spread, int(torch.unique(keys, dim=0).shape[0])


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=s["test"])
    model = mlp(3, s["hidden"], activation=s["activation"], init="normal", init_scale=[0.0, 0.0, 0.1],
                seed=preset.seed)
    for layer in linear_layers(model):  # member 1: every weight equal to the constant
        layer.weight.data[1].fill_(s["constant"])
    opt = SGD(model.parameters(), lr=s["lr"])
    hist = Trainer(model, nn.SoftmaxCrossEntropy(), opt, epochs=s["epochs"], batch_size=s["batch_size"],
                   seed=preset.seed, eval_every=10**9).fit(data.train, test=data.test)
    hidden = linear_layers(model)[:-1]
    spread = np.zeros((3, len(hidden)))
    distinct = np.zeros((3, len(hidden)), dtype=int)
    for m in range(3):
        for k, layer in enumerate(hidden):
            spread[m, k], distinct[m, k] = _unit_stats(layer.weight.data[m])
    test_acc = hist.final["test_acc"]
    train_acc = hist.final["train_acc"]
    first = hidden[0].weight.data[:, :, :8].permute(0, 2, 1).reshape(3, 8, 28, 28).numpy()
    sym_spread = float(spread[:2].max())
    rnd_spread = float(spread[2].min())
    numbers = {
        "members": list(MEMBERS),
        "unit_spread": tolist(spread), "distinct_units": distinct.tolist(), "units_per_layer": s["hidden"],
        "train_acc": tolist(np.array(train_acc)), "test_acc": tolist(np.array(test_acc)),
    }
    checks = [
        # Identical units give a spread of exactly 0 (up to float32 rounding, ~1e-7);
        # 1e-4 leaves room for rounding and is 4 orders of magnitude below random init.
        Check("zero/constant init: units stay identical",
              "With zero or constant initial weights, all units of a layer stay identical after training "
              "(the symmetry never breaks).",
              sym_spread, 1e-4, "<=",
              f"Largest relative spread between the units of a hidden layer (std across units / RMS weight) "
              f"after training, zero and constant init: {sym_spread:.1e}; distinct units per layer: "
              f"{distinct[0].tolist()} (zeros), {distinct[1].tolist()} (constant) out of {s['hidden']}."),
        # Independent random draws differ by about their own size: spread ~1.
        Check("small random init: the symmetry is broken",
              "Small random initial weights make the units differ, so each can learn its own feature.",
              rnd_spread, 0.5, ">=",
              f"Smallest relative spread over the hidden layers with N(0, 0.1^2) init: {rnd_spread:.2f}; "
              f"distinct units: {distinct[2].tolist()}. Test accuracy: zeros {test_acc[0]:.3f}, constant "
              f"{test_acc[1]:.3f}, random {test_acc[2]:.3f}."),
    ]
    return Result(name="zero-init", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"first_layer": first, "spread": spread, "distinct": distinct},
                  summary=f"distinct units per layer: zeros {distinct[0].tolist()}, random {distinct[2].tolist()}; "
                          f"test acc {test_acc[0]:.2f} vs {test_acc[2]:.2f}")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    imgs = result.arrays["first_layer"]
    fig, axes = plt.subplots(3, 8, figsize=(10, 4.2), squeeze=False)
    for m in range(3):
        for j in range(8):
            ax = axes[m, j]
            im = imgs[m, j]
            v = float(np.abs(imgs[m]).max()) or 1.0
            ax.imshow(im, cmap="RdBu_r", vmin=-v, vmax=v)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(MEMBERS[m], fontsize=8)
    fig.suptitle("incoming weights of the first 8 units of hidden layer 1, after training", fontsize=10)
    fig.tight_layout()
    acc = result.numbers["test_acc"]
    distinct = result.numbers["distinct_units"]
    return [Figure(fig, "units after training",
                   "Each small image shows the 784 weights one hidden unit learned, arranged as the 28 x 28 input "
                   "image (red positive, blue negative). Started from all-zero or all-equal weights, every unit "
                   "learned exactly the same picture: they received the same gradient at every step, so the layer "
                   f"works like a single unit ({distinct[0][0]} distinct unit(s) in layer 1). Small random weights "
                   f"break the tie: every unit starts, and stays, different, so the layer can learn many features. "
                   f"Test accuracy: "
                   f"zeros {acc[0]:.2f}, constant {acc[1]:.2f}, random {acc[2]:.2f}.")]


EXPERIMENT = Experiment(
    name="zero-init",
    title="Zero initialization: the symmetry never breaks",
    claim="If all weights start at 0 (or any one constant), backpropagation updates them all identically, so the "
          "units of a layer stay copies of each other; random initial values are needed to break the symmetry.",
    source="course note 000 (weight initialization: why initial values must not all be 0); Saito ch. 6.2.1",
    docs="init",
    run=run,
    plot=plot,
)
