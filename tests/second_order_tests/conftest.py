"""Fixtures for the second-order tests (float64): small models, their autograd twins
(the reference), and the small softmax-regression problem on embedded MNIST.

Builders are handed out as factory fixtures (``make_tanh(P=2)``) so tests can vary
the population and the penalties."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.population import Population
from trainlab.regularize import L2
from trainlab.second_order import ModelObjective

DT = torch.float64


def toy_data(n: int = 30, d: int = 4, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


def tanh_mlp_objective(P: int = 2, *, lam=(1e-2, 1e-1), seeds=None, d: int = 4, hidden: int = 5, classes: int = 3,
                       x=None, y=None) -> ModelObjective:
    if x is None:
        x, y = toy_data(d=d, classes=classes)
    model = nn.Sequential([nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, classes)])
    model.build((d,), Population(P, seeds=seeds) if seeds else Population(P), dtype=DT)
    for k, seed in enumerate(model.population.seeds):
        # Non-zero biases (every second-derivative term is exercised), drawn per member from its seed.
        g = torch.Generator().manual_seed(1000 + seed)
        for p in model.parameters():
            p.data[k] += 0.1 * torch.randn(p.shape[1:], generator=g, dtype=DT)
    return ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y, regularizers=[L2(list(lam)[:P])])


def tanh_mlp_reference(theta: torch.Tensor, x, y, lam: float, d: int = 4, hidden: int = 5, classes: int = 3):
    """The same loss written with torch ops on trainlab's flat layout (weight (in, out) row-major, then bias)."""
    sizes = [d * hidden, hidden, hidden * classes, classes]
    W1, b1, W2, b2 = torch.split(theta, sizes)
    W1, W2 = W1.reshape(d, hidden), W2.reshape(hidden, classes)
    z = torch.tanh(x @ W1 + b1) @ W2 + b2
    return torch.nn.functional.cross_entropy(z, y) + lam * ((W1 ** 2).sum() + (W2 ** 2).sum())


def softmax_objective(P: int = 1, *, lam=1e-3, x=None, y=None, seeds=None, include_1d: bool = True) -> ModelObjective:
    if x is None:
        x, y = toy_data()
    d, classes = x.shape[1], int(y.max()) + 1
    model = nn.Sequential([nn.Linear(d, classes)])
    model.build((d,), Population(P, seeds=seeds) if seeds else Population(P), dtype=DT)
    return ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y, regularizers=[L2(lam, include_1d=include_1d)])


def softmax_reference(theta: torch.Tensor, x, y, lam: float, classes: int):
    d = x.shape[1]
    W, b = theta[: d * classes].reshape(d, classes), theta[d * classes:]
    return torch.nn.functional.cross_entropy(x @ W + b, y) + lam * ((W ** 2).sum() + (b ** 2).sum())


def mnist_small(n: int = 200, features: int = 64):
    """``n`` embedded MNIST images average-pooled to 8x8 = 64 features, float64."""
    from trainlab.data import load_splits

    s = load_splits("mnist-5k", train=n, val=0, test=0, seed=0, dtype=DT)
    k = int(features ** 0.5)
    x = torch.nn.functional.adaptive_avg_pool2d(s.train.x.reshape(-1, 1, 28, 28), k).reshape(-1, features)
    return x, s.train.y


@pytest.fixture
def make_tanh():
    return tanh_mlp_objective


@pytest.fixture
def tanh_reference():
    return tanh_mlp_reference


@pytest.fixture
def make_softmax():
    return softmax_objective


@pytest.fixture
def softmax_ref():
    return softmax_reference


@pytest.fixture(scope="session")
def mnist64():
    return mnist_small()


@pytest.fixture(autouse=True)
def _single_thread():
    """These problems are tiny (m <= 650): intra-op threads only add synchronization, and on a
    machine busy with other work (or pytest-xdist workers) their spin-waits cost 10-100x. The
    previous setting is restored after each test."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
