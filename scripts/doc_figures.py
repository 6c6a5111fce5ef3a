"""Draw the figures of docs/regularization.md and docs/early_stopping.md (real runs, ~1 min).

    python scripts/doc_figures.py            # writes docs/figures/*.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainlab import nn  # noqa: E402
from trainlab.data import load_splits  # noqa: E402
from trainlab.optim import SGD  # noqa: E402
from trainlab.population import Population  # noqa: E402
from trainlab.regularize import L1, L2, MaxNorm  # noqa: E402
from trainlab.train import EarlyStopping, Trainer  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"


def net(P: int, hidden: int = 6) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(hidden):
        layers += [nn.Linear(None, 100, init="he_normal"), nn.ReLU()]
    layers.append(nn.Linear(None, 10, init="he_normal"))
    m = nn.Sequential(layers)
    m.build((784,), Population(P, seed=0))
    return m


def regularization_figure(data) -> None:
    """Weights after training under no penalty, L2, L1, L1 proximal (one population of 4)."""
    m = net(4)
    l2 = L2([0.0, 3e-2, 0.0, 0.0])
    l1 = L1([0.0, 0.0, 3e-3, 0.0])
    l1p = L1([0.0, 0.0, 0.0, 3e-3], proximal=True)
    Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.01), epochs=200, batch_size=100,
            eval_every=600, regularizers=[l2, l1, l1p]).fit(data.train)
    w = torch.cat([p.data.reshape(4, -1) for n, p in m.named_parameters().items() if n.endswith("weight")], 1)
    names = ["no penalty", "L2 (lambda 0.03)", "L1 (alpha 0.003)", "L1 proximal (alpha 0.003)"]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
    for i, ax in enumerate(axes):
        v = w[i].numpy()
        ax.hist(v, bins=np.linspace(-0.3, 0.3, 61), color="C%d" % i)
        ax.set_title(f"{names[i]}\n{(v == 0).mean():.0%} exactly 0, {(np.abs(v) < 1e-3).mean():.0%} |w|<1e-3",
                     fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("weight")
    axes[0].set_ylabel("count (log)")
    fig.suptitle("784-100x6-10 ReLU net, 300 MNIST images, 200 epochs of SGD 0.01")
    fig.tight_layout()
    fig.savefig(OUT / "regularization_weights.png", dpi=90)
    plt.close(fig)


def max_norm_figure(data) -> None:
    m = net(2, hidden=2)
    mn = MaxNorm([1.0, 1e6])
    Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), epochs=50, batch_size=100,
            eval_every=150, regularizers=[mn]).fit(data.train)
    norms = MaxNorm.unit_norms(m.layers[0].weight.data).reshape(2, -1).numpy()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist([norms[1], norms[0]], bins=30, label=["unconstrained", "max-norm c = 1"])
    ax.axvline(1.0, color="k", ls="--", lw=1)
    ax.set_xlabel("norm of a unit's incoming weights (first layer)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "max_norm.png", dpi=90)
    plt.close(fig)


def early_stopping_figure(data) -> None:
    m = net(1, hidden=2)
    es = EarlyStopping("val_loss", patience=11)
    h = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), epochs=150, batch_size=100,
                callbacks=[es]).fit(data.train, val=data.val)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot(h["epoch"], h["train_loss"][:, 0], label="training loss")
    ax.plot(h["epoch"], h["val_loss"][:, 0], label="validation loss")
    best = es.best_step[0].item() / h.info["steps_per_epoch"]
    ax.axvline(best, color="g", ls="--", label=f"best epoch {best:g} (weights restored)")
    if h.stopped:
        ax.axvline(h.stopped[0]["epoch"], color="r", ls=":", label=f"stopped at epoch {h.stopped[0]['epoch']:g} (patience 11)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "early_stopping.png", dpi=90)
    plt.close(fig)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = load_splits("mnist-5k", train=300, val=500, test=0, seed=0)
    regularization_figure(data)
    max_norm_figure(data)
    early_stopping_figure(data)


if __name__ == "__main__":
    main()
