"""Width of the first hidden layer: wider than the input, or narrower?

Course note 002 (hyperparameters of the network's layers: "the number of hidden units
-- a first hidden layer with more neurons than the input layer is effective"). Nets
784-W-100-10 (ReLU, He init) with the first hidden layer narrower than the 784 inputs
(W = 196, 392) and wider (W = 1176, 1.5 x the input) train on the same images with
the same seeds; Adam (lr 1e-3, whose step does not need retuning per width), batch 100,
the same number of steps. One population per width (width is structure), ``seeds``
members each.
"""

from __future__ import annotations

import numpy as np

from trainlab import nn
from trainlab.experiments._common import mlp, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import Adam
from trainlab.train import Trainer

SETTINGS = {
    "smoke": dict(train=300, test=200, widths=[98, 1176], second=32, lr=1e-3, batch_size=100, steps=10, seeds=1),
    "quick": dict(train=4000, test=1000, widths=[196, 392, 1176], second=100, lr=1e-3, batch_size=100, steps=400,
                  seeds=2),
    "textbook": dict(train=None, test=10000, widths=[196, 392, 784, 1176, 1568], second=100, lr=1e-3,
                     batch_size=100, steps=3000, seeds=3),
}

N_IN = 784


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=s["test"])
    rows = []
    for w in s["widths"]:
        m = mlp(s["seeds"], [w, s["second"]], activation="relu", init="he_normal", seed=preset.seed)
        h = Trainer(m, nn.SoftmaxCrossEntropy(), Adam(m.parameters(), lr=s["lr"]), steps=s["steps"],
                    batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9).fit(data.train, test=data.test)
        te, tr = np.array(h.final["test_acc"]), np.array(h.final["train_acc"])
        rows.append({"width": w, "test_acc": float(te.mean()), "test_sd": float(te.std()),
                     "train_acc": float(tr.mean()), "test_per_seed": te.tolist()})
    narrow = [r for r in rows if r["width"] < N_IN]
    wide = [r for r in rows if r["width"] > N_IN]
    best_narrow = max(narrow, key=lambda r: r["test_acc"])
    best_wide = max(wide, key=lambda r: r["test_acc"])
    diff = best_wide["test_acc"] - best_narrow["test_acc"]
    table = ", ".join(f"{r['width']}: {r['test_acc']:.3f} (train {r['train_acc']:.3f})" for r in rows)
    checks = [
        # Half a point of 1,000 test images, on the same seeds and batches: a small but real gain (the seed sd of
        # one width is ~0.3 point).
        Check("a first hidden layer wider than the input works better",
              "A first hidden layer with more units than the input layer (here 784 pixels) gives better results "
              "than a narrower one.",
              diff, 0.005, ">=",
              f"Test accuracy by first-layer width ({s['train']} images, {s['steps']} Adam steps, {s['seeds']} seeds): "
              f"{table}. Best wider than the input ({best_wide['width']}) - best narrower ({best_narrow['width']}): "
              f"{diff * 100:+.1f} points."
              + ("" if diff >= 0.005 else
                 " Here the wider layer did not pay: with a few thousand digits the narrower layers already fit the "
                 "training set, so the extra units add capacity that the data cannot use.")),
    ]
    numbers = {"rows": tolist(rows), "best_wide_minus_best_narrow": diff}
    return Result(name="width", preset=preset.name, settings=s, numbers=numbers, checks=checks, arrays={"rows": rows},
                  summary="test acc by first-layer width: "
                          + ", ".join(f"{r['width']} {r['test_acc']:.3f}" for r in rows))


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    rows = result.arrays["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    w = [r["width"] for r in rows]
    ax.errorbar(w, [r["test_acc"] for r in rows], yerr=[r["test_sd"] for r in rows], fmt="o-", label="test")
    ax.plot(w, [r["train_acc"] for r in rows], "s--", label="train")
    ax.axvline(N_IN, color="gray", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("units in the first hidden layer (log scale; dotted: 784 inputs)")
    ax.set_ylabel("accuracy")
    ax.legend()
    fig.tight_layout()
    return [Figure(fig, "first hidden layer: narrower or wider than the input",
                   "Train and test accuracy (mean over seeds, bars: sd) of 784-W-100-10 nets for first-layer widths W "
                   "on both sides of the input's 784 pixels (dotted line), same data, seeds and number of steps. The "
                   "note's rule of thumb is that the first hidden layer should be wider than the input.")]


EXPERIMENT = Experiment(
    name="width",
    title="Width of the first hidden layer",
    claim="A first hidden layer with more units than the input layer works better than a narrower one.",
    source="course note 002 (hyperparameters: the number of hidden units; the first hidden layer larger than the "
           "input layer)",
    docs="training",
    run=run,
    plot=plot,
)
