"""The course's overfitting claims, measured on real MNIST (the textbook's set-up, Saito ch. 6.4).

300 training images, a 784-100x6-10 ReLU net with He init, SGD lr 0.01, batch 100,
200 epochs; the test split is 1,000 held-out embedded MNIST images. One population
trains every variant at once, each for six seeds (P = 24, ~20 s on 2 CPU cores):

    member:   none  L2  dropout  L2+dropout   (x 6 seeds)
    lambda:   0     0.1 0        0.1          (textbook form: 0.5 * lambda * sum W^2)
    dropout:  0     0   0.2      0.2          (after each hidden layer; the textbook's overfit_dropout rate)

Measured (means over the 6 seeds; per-seed sd of the gap in brackets):

    variant      train   test    gap
    none         1.000   0.776   0.224 (0.010)
    L2 0.1       0.917   0.753   0.164 (0.008)
    dropout 0.2  0.871   0.688   0.183 (0.029)
    both         0.308   0.285   0.022 (0.016)   -- too much regularization: the net underfits

At 300 images dropout shrinks the gap mostly by lowering training accuracy; the
course notes say as much (dropout hurts at very small data sizes, helps at medium ones).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlab import nn
from trainlab.data import load_splits
from trainlab.nn._dropout import Dropout
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.regularize import L1, L2
from trainlab.train import Trainer

pytestmark = pytest.mark.slow

EPOCHS = 200
SEEDS = 6


def textbook_net(P: int, dropout: list[float] | float = 0.0, seed: int = 0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(None, 100, init="he_normal"), nn.ReLU(), Dropout(dropout)]
    layers.append(nn.Linear(None, 10, init="he_normal"))
    m = nn.Sequential(layers)
    m.build((784,), Population(P, seed=seed))
    return m


@pytest.fixture(scope="module")
def data():
    return load_splits("mnist-5k", train=300, val=0, test=1000, seed=0)


@pytest.fixture(scope="module")
def overfitting(data):
    lam = [0.0, 0.1, 0.0, 0.1] * SEEDS
    drop = [0.0, 0.0, 0.2, 0.2] * SEEDS
    m = textbook_net(4 * SEEDS, drop)
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.01), epochs=EPOCHS, batch_size=100,
                 eval_every=3 * EPOCHS, regularizers=[L2(lam, form="half")])
    h = tr.fit(data.train, test=data.test)
    train, test = h.final["train_acc"], h.final["test_acc"]
    train = np.array(train).reshape(SEEDS, 4).mean(0)
    test = np.array(test).reshape(SEEDS, 4).mean(0)
    return {name: (float(train[i]), float(test[i]), float(train[i] - test[i]))
            for i, name in enumerate(["none", "l2", "dropout", "both"])}


def test_unregularized_net_memorizes_and_leaves_a_large_gap(overfitting):
    train, test, gap = overfitting["none"]
    assert train >= 0.99  # measured 1.000
    assert gap >= 0.15    # measured 0.224


def test_weight_decay_shrinks_the_gap(overfitting):
    # measured: 0.164 vs 0.224 (6-seed means; the per-seed sd is ~0.01)
    assert overfitting["l2"][2] <= overfitting["none"][2] - 0.03


def test_dropout_shrinks_the_gap(overfitting):
    # measured: 0.183 vs 0.224; per-seed sd 0.029, so the 6-seed mean has an SE of ~0.012
    assert overfitting["dropout"][2] <= overfitting["none"][2] - 0.02


def test_l1_drives_many_more_weights_to_zero_than_l2(data):
    """Same penalty size on the initial weights: L1 (alpha) vs L2 (lambda, 'full' form)."""
    m = textbook_net(2)
    l1 = L1([3e-3, 0.0])
    l2 = L2([0.0, 3e-2])
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.01), epochs=EPOCHS, batch_size=100,
                 eval_every=3 * EPOCHS, regularizers=[l1, l2])
    tr.fit(data.train)
    w = torch.cat([p.data.reshape(2, -1) for n, p in m.named_parameters().items() if n.endswith("weight")], 1)
    near_zero = (w.abs() < 1e-3).double().mean(1)
    # measured: L1 ~0.2 of weights below 1e-3, L2 ~0.02
    assert near_zero[0] >= 4 * near_zero[1]
    assert near_zero[0] >= 0.1
