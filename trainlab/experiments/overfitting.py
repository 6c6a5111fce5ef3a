"""Overfitting on 300 images, and what weight decay and dropout do about it.

The textbook's ``overfit_weight_decay.py`` and ``overfit_dropout.py`` (Saito ch. 6.4):
300 MNIST training images, a 784-100x6-10 ReLU net with He init, SGD lr 0.01, batch
100; weight decay ``lambda = 0.1`` in the textbook's form ``0.5 * lambda * sum W^2``
(all weights, not biases); dropout after every hidden layer at rate 0.2. Four
variants (none, L2, dropout, both) x ``seeds`` are the members of one population
(per-member ``lambda`` and dropout rate); the textbook preset runs the two scripts'
exact lengths (201 epochs for weight decay, 301 for dropout) as two populations.
"""

from __future__ import annotations

import numpy as np

from trainlab import nn
from trainlab.experiments._common import mlp, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.regularize import L2
from trainlab.train import Trainer

VARIANTS = {"none": (0.0, 0.0), "L2": (0.1, 0.0), "dropout": (0.0, 0.2), "both": (0.1, 0.2)}

SETTINGS = {
    "smoke": dict(train=300, test=200, hidden=[100] * 6, lr=0.01, batch_size=100, seeds=1, lam=0.1, rate=0.2,
                  dropout_mode="inverted", eval_every_epochs=5, runs=[dict(epochs=10, variants=list(VARIANTS))]),
    "quick": dict(train=300, test=1000, hidden=[100] * 6, lr=0.01, batch_size=100, seeds=3, lam=0.1, rate=0.2,
                  dropout_mode="inverted", eval_every_epochs=10, runs=[dict(epochs=200, variants=list(VARIANTS))]),
    # overfit_weight_decay.py: 201 epochs; overfit_dropout.py: 301 epochs, dropout_ratio 0.2; the textbook's
    # Dropout is the classic kind (test outputs scaled by 1 - ratio); the test set is the full 10,000.
    "textbook": dict(train=300, test=10000, hidden=[100] * 6, lr=0.01, batch_size=100, seeds=3, lam=0.1, rate=0.2,
                     dropout_mode="classic", eval_every_epochs=1,
                     runs=[dict(epochs=201, variants=["none", "L2"]),
                           dict(epochs=301, variants=["dropout", "both"])]),
}


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=s["test"])
    S = s["seeds"]
    spe = -(-s["train"] // s["batch_size"])
    final: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    per_seed_gap: dict[str, list[float]] = {}
    for r in s["runs"]:
        names = r["variants"]
        lam = [VARIANTS[v][0] * (s["lam"] / 0.1) for v in names] * S
        rate = [VARIANTS[v][1] * (s["rate"] / 0.2) for v in names] * S
        model = mlp(len(names) * S, s["hidden"], activation="relu", init="he_normal", dropout=rate,
                    dropout_mode=s["dropout_mode"], seed=preset.seed)
        h = Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=s["lr"]), epochs=r["epochs"],
                    batch_size=s["batch_size"], seed=preset.seed, eval_every=s["eval_every_epochs"] * spe,
                    regularizers=[L2(lam, form="half")]).fit(data.train, test=data.test)
        tr = np.array(h.final["train_acc"]).reshape(S, len(names))
        te = np.array(h.final["test_acc"]).reshape(S, len(names))
        ctr = h["train_acc"].reshape(-1, S, len(names)).mean(axis=1)
        cte = h["test_acc"].reshape(-1, S, len(names)).mean(axis=1)
        for j, v in enumerate(names):
            final[v] = {"train_acc": float(tr[:, j].mean()), "test_acc": float(te[:, j].mean()),
                        "gap": float((tr[:, j] - te[:, j]).mean()), "gap_sd": float((tr[:, j] - te[:, j]).std()),
                        "epochs": r["epochs"]}
            per_seed_gap[v] = (tr[:, j] - te[:, j]).tolist()
            curves[v] = {"epoch": h["epoch"], "train": ctr[:, j], "test": cte[:, j]}
    if "none" not in final:
        raise AssertionError("the 'none' variant must be in a run")
    g = {v: final[v]["gap"] for v in final}
    numbers = {"final": tolist(final), "gap_per_seed": tolist(per_seed_gap)}
    none = final["none"]
    checks = [
        # 300 images and ~50,000 weights: the net can memorize the training set (100%)
        # while test accuracy stays near 75-80%; a gap of 15 points is unmistakable.
        Check("without regularization the net overfits",
              "A big net trained on only 300 images fits them perfectly but does much worse on new images.",
              none["gap"], 0.15, ">=",
              f"Train accuracy {none['train_acc']:.3f}, test accuracy {none['test_acc']:.3f}: gap {none['gap']:.3f} "
              f"(mean of {S} seeds, sd {none['gap_sd']:.3f})."),
        # The per-seed sd of the gap is ~0.01; 3 points is several standard errors.
        Check("weight decay shrinks the gap",
              "Weight decay (L2, lambda = 0.1) keeps the weights small and narrows the train/test gap.",
              g["none"] - g["L2"], 0.03, ">=",
              f"Gap without: {g['none']:.3f}; with L2: {g['L2']:.3f} (train {final['L2']['train_acc']:.3f}, test "
              f"{final['L2']['test_acc']:.3f})."),
        # Dropout's per-seed sd is larger (~0.03); 2 points over 3 seeds is ~1.5 standard errors.
        Check("dropout shrinks the gap",
              "Dropout (rate 0.2) narrows the train/test gap.",
              g["none"] - g["dropout"], 0.02, ">=",
              f"Gap without: {g['none']:.3f}; with dropout: {g['dropout']:.3f} (train "
              f"{final['dropout']['train_acc']:.3f}, test {final['dropout']['test_acc']:.3f}). With both L2 and "
              f"dropout: train {final['both']['train_acc']:.3f}, test {final['both']['test_acc']:.3f} -- at this "
              f"data size two regularizers together are too much and the net underfits."
              if "both" in final else ""),
    ]
    return Result(name="overfitting", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"curves": curves, "final": final},
                  summary=f"train/test gap: none {g['none']:.2f}, L2 {g['L2']:.2f}, dropout {g['dropout']:.2f}"
                          + (f", both {g['both']:.2f}" if "both" in g else ""))


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    curves, final = result.arrays["curves"], result.arrays["final"]
    names = list(curves)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.4), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], names):
        c = curves[v]
        ax.plot(c["epoch"], c["train"], label="train")
        ax.plot(c["epoch"], c["test"], "--", label="test")
        ax.set_title(f"{v}: gap {final[v]['gap']:.2f}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1.02)
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    s = result.settings
    return [Figure(fig, "train vs test accuracy",
                   f"Accuracy on the {s['train']} training images (solid) and on {s['test']} new test images (dashed) "
                   "during training, mean over seeds. Without regularization the net reaches 100% on its training "
                   "images but far less on new ones: it memorized instead of generalizing (overfitting). Weight "
                   f"decay (lambda {s['lam']}) and dropout (rate {s['rate']}) each narrow the gap; both together hold "
                   "the net back so much that it underfits.")]


EXPERIMENT = Experiment(
    name="overfitting",
    title="Overfitting, weight decay and dropout",
    claim="A network with many parameters trained on little data overfits (high training, much lower test accuracy); "
          "weight decay and dropout reduce the gap.",
    source="course notes 000 (regularization, dropout) and 002 (the 300-image overfitting experiment with weight "
           "decay); Saito ch. 6.4, overfit_weight_decay.py and overfit_dropout.py",
    docs="regularization",
    run=run,
    plot=plot,
)
