"""Backward against central differences, float64: the layer variants the contract suite
(tests/nn_tests/test_contract.py, one example per registered layer) does not cover, and every loss.

At P=3 the members' hyperparameters differ (init_scale, slope, alpha, beta,
label_smoothing), so a backward that mixes members up or broadcasts the wrong
member's value fails. The last tests show the checker itself can fail.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from trainlab.gradcheck import check_layer, check_loss, relative_error
from trainlab.nn import (
    GELU,
    LeakyReLU,
    Linear,
    MeanSquaredError,
    Module,
    Sequential,
    Sigmoid,
    Softplus,
    SoftmaxCrossEntropy,
    Tanh,
)
from trainlab.population import Population

DT = torch.float64
TOL = 1e-6  # a correct backward gives ~1e-9 with h = 1e-6 in float64
N = 4


def away_from_kinks(shape: tuple[int, ...], seed: int, *, scale: float = 1.5, gap: float = 1e-3) -> torch.Tensor:
    """Normal draws, redrawing any entry with |x| < gap (ReLU-like kinks sit at 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=DT) * scale
    bad = x.abs() < gap
    while bad.any():
        x[bad] = torch.randn(int(bad.sum()), generator=g, dtype=DT) * scale
        bad = x.abs() < gap
    return x


def per_member(P: int, values: list[float]) -> float | list[float]:
    """One value at P=1; distinct per-member values at P=3."""
    return values[0] if P == 1 else values[:P]


def built(layer: Module, in_features: int, P: int, seed: int = 0) -> Module:
    layer.build((in_features,), Population(P, seed=seed), dtype=DT)
    return layer


# name -> (factory(P) -> layer, in_features); each registered layer's own example is in trainlab.nn.testing
LAYERS: dict[str, tuple[Callable[[int], Module], int]] = {
    "linear_nobias": (lambda P: Linear(3, 4, bias=False, init_scale=per_member(P, [1.0, 3.0, 0.25])), 3),
    "gelu_tanh": (lambda P: GELU(approximate="tanh"), 5),
    "sequential": (
        lambda P: Sequential([
            Linear(3, 5, init_scale=per_member(P, [1.0, 0.7, 1.3])),
            Tanh(),
            Linear(5, 4, init="he_normal"),
            LeakyReLU(per_member(P, [0.1, 0.3, 0.05])),
            Linear(4, 3),
            Softplus(per_member(P, [1.0, 2.0, 0.5])),
            Linear(3, 2, init_scale=per_member(P, [1.0, 0.1, 4.0])),
        ]),
        3,
    ),
}


def _randomize_biases(layer: Module, seed: int) -> None:
    # Biases start at zero; give them values so a member mix-up in db shows.
    g = torch.Generator().manual_seed(seed)
    for name, p in layer.named_parameters().items():
        if name.endswith("bias"):
            p.data.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.3)


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_backward_matches_central_differences(name: str, P: int, shared: bool) -> None:
    factory, d_in = LAYERS[name]
    layer = built(factory(P), d_in, P)
    _randomize_biases(layer, seed=1)
    x = away_from_kinks((1 if shared else P, N, d_in), seed=2)
    result = check_layer(layer, x, seed=3)
    assert "input" in result.errors
    assert set(result.errors) == {"input", *layer.named_parameters()}
    assert result.max_error < TOL, f"{name} P={P} shared={shared}: {result}"


@pytest.mark.parametrize("P", [1, 3])
def test_softplus_threshold_region(P: int) -> None:
    # beta * x > threshold takes the linear branch; both branches must have the right slope.
    layer = built(Softplus(per_member(P, [1.0, 2.0, 4.0]), threshold=5.0), 6, P)
    x = away_from_kinks((P, N, 6), seed=4, scale=4.0)
    bx = x * layer._p.reshape(-1, 1, 1)
    x = torch.where((bx - 5.0).abs() < 0.05, x + 0.2, x)  # keep off the branch switch
    assert bool((x * layer._p.reshape(-1, 1, 1) > 5.0).any())
    assert check_layer(layer, x).max_error < TOL


def test_first_layer_without_input_grad_checks_parameters_only() -> None:
    model = built(Sequential([Linear(3, 4), Tanh(), Linear(4, 2)]), 3, 3)
    model.input_grad = False
    result = check_layer(model, away_from_kinks((1, N, 3), seed=5))
    assert "input" not in result.errors
    assert set(result.errors) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert result.max_error < TOL


# ---- losses -------------------------------------------------------------------------

C = 5


def _logits(P: int, seed: int = 6) -> torch.Tensor:
    return torch.randn(P, N, C, generator=torch.Generator().manual_seed(seed), dtype=DT) * 2.0


def _soft(shape: tuple[int, ...], seed: int = 7) -> torch.Tensor:
    return torch.softmax(torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT), dim=-1)


def _labels(shape: tuple[int, ...], seed: int = 8) -> torch.Tensor:
    return torch.randint(0, C, shape, generator=torch.Generator().manual_seed(seed))


TARGETS: dict[str, Callable[[int], torch.Tensor]] = {
    "hard_shared": lambda P: _labels((N,)),
    "hard_per_member": lambda P: _labels((P, N)),
    "soft_shared": lambda P: _soft((N, C)),
    "soft_per_member": lambda P: _soft((P, N, C)),
}


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("smoothing", ["none", "per_member"])
def test_softmax_cross_entropy_backward(P: int, target: str, smoothing: str) -> None:
    eps = 0.0 if smoothing == "none" else ([0.0, 0.1, 0.3] if P == 3 else 0.1)
    loss = SoftmaxCrossEntropy(label_smoothing=eps)
    loss.build(P, dtype=DT)
    result = check_loss(loss, _logits(P), TARGETS[target](P))
    assert result.max_error < TOL, f"{target} eps={eps}: {result}"


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("target", ["dense_shared", "dense_per_member", "class_index", "class_index_per_member"])
def test_mean_squared_error_backward(P: int, target: str) -> None:
    y = _logits(P)
    t = {
        "dense_shared": lambda: torch.randn(N, C, dtype=DT),
        "dense_per_member": lambda: torch.randn(P, N, C, dtype=DT),
        "class_index": lambda: _labels((N,)),
        "class_index_per_member": lambda: _labels((P, N)),
    }[target]()
    loss = MeanSquaredError()
    loss.build(P, dtype=DT)
    assert check_loss(loss, y, t).max_error < TOL


# ---- the checker can fail -------------------------------------------------------------


class _SignFlippedTanh(Tanh):
    def backward(self, g):
        return -super().backward(g)


class _SignFlippedWeightGrad(Linear):
    def backward(self, g):
        dx = super().backward(g)
        self.weight.grad.neg_()
        return dx


class _MutatesGradient(Sigmoid):
    def backward(self, g):
        g.mul_(self._y * (1.0 - self._y))
        return g


@pytest.mark.parametrize("P", [1, 3])
def test_gradcheck_detects_wrong_input_gradient(P: int) -> None:
    layer = built(_SignFlippedTanh(), 4, P)
    result = check_layer(layer, away_from_kinks((P, N, 4), seed=9))
    assert result.errors["input"] > 1e-3


def test_gradcheck_detects_wrong_parameter_gradient() -> None:
    layer = built(_SignFlippedWeightGrad(3, 2), 3, 3)
    result = check_layer(layer, away_from_kinks((3, N, 3), seed=10))
    assert result.errors["weight"] > 1e-3
    assert result.errors["input"] < TOL and result.errors["bias"] < TOL


def test_gradcheck_detects_mutated_incoming_gradient() -> None:
    layer = built(_MutatesGradient(), 4, 2)
    with pytest.raises(AssertionError, match="mutated its incoming gradient"):
        check_layer(layer, away_from_kinks((2, N, 4), seed=11))


def test_gradcheck_detects_wrong_loss_gradient() -> None:
    class Halved(MeanSquaredError):
        def backward(self):
            return super().backward() * 0.5

    loss = Halved()
    loss.build(2, dtype=DT)
    assert check_loss(loss, _logits(2), torch.randn(N, C, dtype=DT)).max_error > 1e-3


def test_relative_error() -> None:
    a = torch.tensor([1.0, -2.0, 0.0], dtype=DT)
    assert relative_error(a, a) == 0.0
    assert relative_error(torch.zeros(3, dtype=DT), torch.zeros(3, dtype=DT)) == 0.0
    assert relative_error(a, -a) == pytest.approx(2.0)
    assert relative_error(a, a + torch.tensor([0.0, 1e-3, 0.0], dtype=DT)) == pytest.approx(1e-3 / 2.0)


def test_check_penalty_refuses_a_regularizer_without_penalty() -> None:
    # MaxNorm acts on the weights after a step; it has no penalty to differentiate (penalty() is None).
    # Before, check_penalty failed with "'NoneType' object has no attribute 'sum'".
    from trainlab.gradcheck import check_penalty
    from trainlab.nn import Sequential
    from trainlab.regularize import MaxNorm

    model = Sequential([Linear(3, 2)])
    model.build((3,), 1, dtype=torch.float64)
    reg = MaxNorm(1.0)
    reg.attach(model)
    with pytest.raises(ValueError, match="MaxNorm has no penalty to differentiate"):
        check_penalty(reg, model)
