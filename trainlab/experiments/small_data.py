"""Small data: a random forest against an MLP as the training set grows.

Course note 003 (data augmentation, with its figure): "with little data, classical
methods such as a random forest often work better than deep learning"; with more data
the network's capacity wins. Both learners see the same stratified training splits of
each size and are scored on the same 1,000 held-out test images:

* MLP: 784-100-100-10 ReLU (He), momentum SGD (0.02, 0.9), batch ``min(50, n)``, at
  least ``steps`` steps and at least ``epochs`` passes over the training set (so small
  sets are fitted and large ones are not cut short), ``seeds`` initializations as one
  population;
* random forest: scikit-learn's ``RandomForestClassifier`` (100 trees, its defaults
  otherwise, one per seed), on the same min-max pixels.

The curves *cross* between two neighbouring sizes where the sign of (MLP - forest)
changes; the report says where, or that they do not.
"""

from __future__ import annotations

import numpy as np

from trainlab import nn
from trainlab.experiments._common import mlp, pool_train, present, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import Momentum
from trainlab.train import Trainer

SETTINGS = {
    "smoke": dict(sizes=[20, 100], test=200, hidden=[32], lr=0.02, momentum=0.9, steps=20, epochs=1, seeds=1,
                  trees=10),
    "quick": dict(sizes=[20, 50, 200, 1000, 4000], test=1000, hidden=[100, 100], lr=0.02, momentum=0.9, steps=300,
                  epochs=20, seeds=2, trees=100),
    "textbook": dict(sizes=[20, 50, 100, 200, 500, 1000, 5000, 20000, 59000], test=10000, hidden=[100, 100],
                     lr=0.02, momentum=0.9, steps=1000, epochs=20, seeds=3, trees=100),
}


def _available() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        return False, "scikit-learn is not installed (pip install scikit-learn): the random forest comes from it"
    return True, ""


def crossing(sizes: list[int], diff: list[float]) -> tuple[int, int] | None:
    """The first pair of neighbouring sizes between which ``diff`` changes sign (0 counts as a sign of its own)."""
    for i in range(len(diff) - 1):
        if np.sign(diff[i]) != np.sign(diff[i + 1]):
            return sizes[i], sizes[i + 1]
    return None


def run(preset: Preset) -> Result:
    from sklearn.ensemble import RandomForestClassifier

    s = dict(preset.pick(SETTINGS))
    S = s["seeds"]
    sizes = sorted({min(n, pool_train(preset, test=s["test"])) for n in s["sizes"]})
    rows = []
    for n in sizes:
        d = splits(preset, train=n, test=s["test"])
        m = mlp(S, s["hidden"], activation="relu", init="he_normal", seed=preset.seed)
        h = Trainer(m, nn.SoftmaxCrossEntropy(), Momentum(m.parameters(), lr=s["lr"], momentum=s["momentum"]),
                    steps=max(s["steps"], s["epochs"] * -(-n // min(50, n))), batch_size=min(50, n),
                    seed=preset.seed, eval_every=10**9
                    ).fit(d.train, test=d.test)
        mlp_acc = np.array(h.final["test_acc"], dtype=float)
        test = present(d.test, "test")
        xtr, ytr, xte, yte = (t.numpy() for t in (d.train.x, d.train.y, test.x, test.y))
        rf_acc = np.array([float((RandomForestClassifier(n_estimators=s["trees"], n_jobs=1,
                                                         random_state=preset.seed * 1000 + k)
                                  .fit(xtr, ytr).predict(xte) == yte).mean()) for k in range(S)])
        rows.append({"size": n, "mlp": float(mlp_acc.mean()), "forest": float(rf_acc.mean()),
                     "mlp_train": float(np.mean(h.final["train_acc"])), "diff": float((mlp_acc - rf_acc).mean()),
                     "diff_sd": float((mlp_acc - rf_acc).std())})
    diff = [r["diff"] for r in rows]
    cross = crossing(sizes, diff)
    small = rows[0]
    curve = "; ".join(f"{r['size']}: MLP {r['mlp']:.3f} vs forest {r['forest']:.3f}" for r in rows)
    if cross is None:
        where = ("The curves do not cross: the " + ("forest" if diff[0] < 0 else "MLP") + " is ahead at every size "
                 f"from {sizes[0]} to {sizes[-1]} images.")
    else:
        where = (f"The curves cross between {cross[0]} and {cross[1]} training images "
                 f"({'forest' if diff[0] < 0 else 'MLP'} ahead below, "
                 f"{'MLP' if diff[0] < 0 else 'forest'} above).")
    checks = [
        # "Beats" = ahead by at least 1 point of 1,000 test images at the smallest size (2 images per class).
        Check("with very little data a random forest beats the MLP",
              "With little data a classical method such as a random forest does better than a neural network.",
              small["forest"] - small["mlp"], 0.01, ">=",
              f"Test accuracy at {small['size']} training images ({S} seeds): forest {small['forest']:.3f}, MLP "
              f"{small['mlp']:.3f}. By size: {curve}. {where}"
              + ("" if small["forest"] - small["mlp"] >= 0.01 else
                 f" On these digits the claim did not hold: with {small['size'] // 10} images per class the MLP, "
                 "trained until it fits them, was ahead of the forest of 100 trees.")),
        # The other half of the note's picture: with plenty of data the network wins (by at least a point).
        Check("with more data the MLP overtakes the random forest",
              "As the training set grows, the network's capacity pays off and it ends ahead of the random forest.",
              rows[-1]["mlp"] - rows[-1]["forest"], 0.01, ">=",
              f"At {rows[-1]['size']} images: MLP {rows[-1]['mlp']:.3f}, forest {rows[-1]['forest']:.3f}. {where}"
              + ("" if rows[-1]["mlp"] - rows[-1]["forest"] >= 0.01 else
                 f" It did not hold up to {rows[-1]['size']} images, the most the embedded pool leaves: the two are "
                 f"within {abs(rows[-1]['diff']) * 100:.1f} points there, after the forest led at the middle sizes. "
                 "The textbook preset (full MNIST) goes to 59,000.")),
    ]
    numbers = {"sizes": sizes, "rows": tolist(rows), "crossing": list(cross) if cross else None}
    return Result(name="small-data", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"rows": rows, "cross": cross},
                  summary=f"at {small['size']} images forest {small['forest']:.3f} vs MLP {small['mlp']:.3f}; "
                          + (f"cross between {cross[0]} and {cross[1]}" if cross else "no crossing"))


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    rows = result.arrays["rows"]
    sizes = [r["size"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.semilogx(sizes, [r["mlp"] for r in rows], "o-", label="MLP 784-100-100-10")
    ax.semilogx(sizes, [r["forest"] for r in rows], "s--", label="random forest (100 trees)")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    cross = result.arrays["cross"]
    return [Figure(fig, "accuracy vs training-set size",
                   "Both learners are trained on the same stratified training sets of each size and tested on the "
                   "same held-out images. The note's claim is that a random forest wins with little data and the "
                   "network with much; "
                   + (f"here the curves cross between {cross[0]} and {cross[1]} images." if cross else
                      "here the curves do not cross in this range."))]


EXPERIMENT = Experiment(
    name="small-data",
    title="Small data: random forest vs MLP",
    claim="With little data a classical method such as a random forest often beats a neural network; with more data "
          "the network wins.",
    source="course note 003 (data augmentation: \"with little data, methods such as random forests often work better "
           "than deep learning\")",
    docs="training",
    run=run,
    plot=plot,
    available=_available,
)
