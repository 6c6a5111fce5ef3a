"""Training speed under three initial weight scales (Saito ch. 6.2.4, ``weight_init_compare.py``).

A 784-100-100-100-100-10 ReLU net, SGD lr 0.01, batch 128, trained from weights drawn
with std 0.01, "Xavier" (the textbook's ``1/sqrt(n)``, ``lecun_normal`` in trainlab)
and He (``sqrt(2/n)``), ``n`` the layer's fan-in. The inits are members of one
population (``init="normal"`` with a per-member, per-layer ``init_scale``), and
``seeds`` copies of each train together, so the curves are means over seeds.
"""

from __future__ import annotations

import math

import numpy as np

from trainlab import nn
from trainlab.experiments._common import StepLoss, mlp, smooth, splits, steps_to_reach, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.train import Trainer

INITS = ("std 0.01", "Xavier 1/sqrt(n)", "He sqrt(2/n)")

SETTINGS = {
    "smoke": dict(train=500, hidden=[100] * 4, batch_size=128, lr=0.01, iterations=60, seeds=1),
    "quick": dict(train=4000, hidden=[100] * 4, batch_size=128, lr=0.01, iterations=2000, seeds=1),
    # weight_init_compare.py: full MNIST training set, 2,000 iterations, batch 128, SGD 0.01
    "textbook": dict(train=None, hidden=[100] * 4, batch_size=128, lr=0.01, iterations=2000, seeds=3),
}


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=0) if s["train"] else splits(preset, train=None, test=0)
    fans = [784] + s["hidden"]
    per_layer = [[0.01, 1 / math.sqrt(n), math.sqrt(2 / n)] * s["seeds"] for n in fans]
    P = 3 * s["seeds"]
    model = mlp(P, s["hidden"], activation="relu", init="normal", init_scale=per_layer, seed=preset.seed)
    rec = StepLoss()
    Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=s["lr"]), steps=s["iterations"],
            batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9, eval_train=False,
            callbacks=[rec]).fit(data.train)
    losses = rec.values.reshape(-1, s["seeds"], 3).mean(axis=1)  # (steps, init): mean over seeds
    tail = max(1, len(losses) // 10)
    final = losses[-tail:].mean(axis=0)
    smoothed = smooth(losses, max(1, min(50, len(losses) // 20)))
    reach = [steps_to_reach(smoothed[:, j], 1.0) for j in range(3)]
    ln10 = math.log(10)
    numbers = {"inits": list(INITS), "final_loss": tolist(final), "steps_to_loss_1": reach,
               "ln10": ln10, "train_size": len(data.train)}
    xavier, he = float(final[1]), float(final[2])
    reach_text = ", ".join(f"{n}: {'never' if math.isinf(r) else int(r)}" for n, r in zip(INITS, reach))
    checks = [
        # ln 10 = 2.303 is the loss of a uniform guess over 10 classes; std 0.01 in 5
        # layers shrinks the signal by ~0.07 per layer (1e-6 at the output), so the
        # logits stay ~0 and the gradient ~0. +-0.05 is 2% of ln 10.
        Check("std 0.01: the loss stays at ln 10",
              "With std 0.01 the signal vanishes in the deep ReLU net and the loss does not move from ln 10 "
              "(a uniform guess).",
              float(final[0]), (ln10 - 0.05, ln10 + 0.05), "between",
              f"Mean training loss over the last {tail} iterations: {final[0]:.4f} (ln 10 = {ln10:.4f})."),
        # Compared on the mean loss of the last 10% of iterations (mean over seeds):
        # He must be lower than Xavier. The measured value is Xavier - He.
        Check("He learns fastest",
              "He initialization, made for ReLU, trains fastest: its loss falls below Xavier's.",
              xavier - he, 0.0, ">=",
              f"Final training loss (last {tail} iterations): Xavier {xavier:.3f}, He {he:.3f} (difference "
              f"{xavier - he:+.3f}). Iterations until the smoothed loss first reaches 1.0: {reach_text}."),
    ]
    return Result(name="init-compare", preset=preset.name, settings={**s, "train_size": len(data.train)},
                  numbers=numbers, checks=checks, arrays={"loss": losses},
                  summary=f"final loss: std 0.01 {final[0]:.2f}, Xavier {xavier:.2f}, He {he:.2f}")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    loss = result.arrays["loss"]
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(loss) + 1)
    w = max(1, min(50, len(loss) // 20))
    for j, name in enumerate(INITS):
        ax.plot(x, loss[:, j], color=f"C{j}", alpha=0.2, lw=0.8)
        ax.plot(x, smooth(loss[:, j], w), color=f"C{j}", label=name)
    ax.axhline(math.log(10), color="gray", ls=":", lw=1, label="ln 10 (uniform guess)")
    ax.set_xlabel("iteration"), ax.set_ylabel("training loss (cross-entropy)")
    ax.set_ylim(0, 2.6)
    ax.legend()
    ax.set_title("784-100x4-10 ReLU net, SGD lr 0.01, batch 128")
    fig.tight_layout()
    return [Figure(fig, "training loss by initialization",
                   "Training loss per iteration (faint) and its moving average (bold) for the same net started "
                   "from three weight scales. With std 0.01 the signal shrinks at every layer, the output is ~0 and "
                   "the loss stays at ln 10, the loss of guessing uniformly. Xavier's 1/sqrt(n) learns; He's "
                   "sqrt(2/n), designed for ReLU, keeps the signal's size through all layers and learns fastest.")]


EXPERIMENT = Experiment(
    name="init-compare",
    title="Initialization and training speed",
    claim="In a deep ReLU net, weights with std 0.01 do not learn at all (the loss stays at ln 10), Xavier learns, "
          "and He learns fastest.",
    source="course note 000 (weight initialization: Xavier for sigmoid/tanh, He for ReLU); "
           "Saito ch. 6.2.4, weight_init_compare.py",
    docs="init",
    run=run,
    plot=plot,
)
