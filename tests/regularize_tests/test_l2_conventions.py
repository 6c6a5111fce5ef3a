"""The L2 converters give equal trajectories: trainlab's 1/2 lam sum W^2 penalty, torch's
SGD(weight_decay=), and Keras' l2(lam) (lam sum W^2) written out in torch autograd."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.export import to_torch
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.regularize import (
    L2,
    half_l2_to_keras_l2,
    half_l2_to_weight_decay,
    keras_l2_to_half_l2,
    keras_l2_to_weight_decay,
    weight_decay_to_half_l2,
    weight_decay_to_keras_l2,
)

DT = torch.float64
LR, STEPS = 0.2, 8
X = torch.randn(16, 6, dtype=DT, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(1))


def model() -> nn.Sequential:
    m = nn.Sequential([nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)])
    m.build((6,), Population(1, seed=2), dtype=DT)
    return m


def trajectory(convention: str, value: float) -> list[torch.Tensor]:
    """Every step's weights (torch layout) for SGD with the L2 strength ``value`` in ``convention``."""
    out: list[torch.Tensor] = []
    if convention == "half":  # trainlab: the textbook's 1/2 lam sum W^2
        m = model()
        reg = L2(value, form="half")
        reg.attach(m)
        opt = SGD(m.parameters(), lr=LR)
        loss = nn.SoftmaxCrossEntropy()
        for _ in range(STEPS):
            loss.forward(m.forward(X[None], training=True), Y)
            m.backward(loss.backward())
            reg.add_grad()
            opt.step()
            out.append(torch.cat([m.layers[0].weight.data[0].T.flatten(), m.layers[2].weight.data[0].T.flatten()]))
        return out
    t = to_torch(model(), 0)
    weights = [t[0].weight, t[2].weight]
    biases = [t[0].bias, t[2].bias]
    if convention == "weight_decay":  # torch.optim.SGD's coupled decay on the weights only (as trainlab's L2)
        opt = torch.optim.SGD([{"params": weights, "weight_decay": value}, {"params": biases, "weight_decay": 0.0}],
                              lr=LR)
    else:  # Keras: kernel_regularizer=l2(value) adds value * sum W^2 to the loss
        opt = torch.optim.SGD(weights + biases, lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        obj = torch.nn.functional.cross_entropy(t(X), Y)
        if convention == "keras":
            obj = obj + value * sum((w * w).sum() for w in weights)
        obj.backward()
        opt.step()
        out.append(torch.cat([w.detach().flatten() for w in weights]))
    return out


CONVERTERS = [
    (half_l2_to_weight_decay, "half", "weight_decay"),
    (weight_decay_to_half_l2, "weight_decay", "half"),
    (keras_l2_to_weight_decay, "keras", "weight_decay"),
    (weight_decay_to_keras_l2, "weight_decay", "keras"),
    (half_l2_to_keras_l2, "half", "keras"),
    (keras_l2_to_half_l2, "keras", "half"),
]


@pytest.mark.parametrize(("convert", "src", "dst"), CONVERTERS, ids=[c[0].__name__ for c in CONVERTERS])
def test_converted_strength_gives_the_same_trajectory(convert, src, dst) -> None:
    value = 0.3
    a, b = trajectory(src, value), trajectory(dst, convert(value))
    for step, (wa, wb) in enumerate(zip(a, b)):
        torch.testing.assert_close(wa, wb, atol=1e-12, rtol=1e-12, msg=f"step {step}")
    # and the unconverted number gives another trajectory where the factor is not 1 (the test can fail)
    if convert(value) != value:
        assert (trajectory(dst, value)[-1] - b[-1]).abs().max() > 1e-4


def test_trainlab_full_form_is_keras_and_the_factors() -> None:
    m = model()
    for a, b in zip(trajectory("keras", 0.1), trajectory("half", keras_l2_to_half_l2(0.1))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert keras_l2_to_weight_decay(0.05) == 0.1 and weight_decay_to_keras_l2(0.1) == 0.05
    assert half_l2_to_weight_decay(0.1) == 0.1 and half_l2_to_keras_l2([0.2, 0.4]) == [0.1, 0.2]
    for f, g in ((half_l2_to_weight_decay, weight_decay_to_half_l2), (keras_l2_to_weight_decay,
                 weight_decay_to_keras_l2), (half_l2_to_keras_l2, keras_l2_to_half_l2)):
        assert g(f(0.37)) == pytest.approx(0.37) and f(g(0.37)) == pytest.approx(0.37)
    # L2(form="full") is Keras' l2 with the same number
    full = L2(0.1, form="full")
    full.attach(m)
    half = L2(keras_l2_to_half_l2(0.1), form="half")
    half.attach(m)
    torch.testing.assert_close(full.penalty(), half.penalty())
    with pytest.raises(ConfigError, match="weight_decay must be a number >= 0"):
        weight_decay_to_keras_l2(-1.0)
