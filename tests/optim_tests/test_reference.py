"""Optimizers against ``torch.optim``, member by member, float64, atol 1e-12.

A P=3 population of a 2-layer net, with a different learning rate (and weight
decay, momentum, betas, ...) per member, takes 10 steps; member ``i`` must end where
``torch.optim`` takes a copy of member ``i`` alone with member ``i``'s settings.
trainlab decays only parameters flagged ``decay=True`` (weights), so the torch side
puts biases in a param group with ``weight_decay=0``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from trainlab.nn import Linear, MeanSquaredError, Sequential, Tanh
from trainlab.optim import (
    SGD,
    AdaGrad,
    Adadelta,
    Adam,
    Adamax,
    AdamW,
    Momentum,
    NAdam,
    Nesterov,
    Optimizer,
    RAdam,
    RMSProp,
)
from trainlab.population import Population

DT = torch.float64
ATOL, RTOL = 1e-12, 0.0
P, STEPS = 3, 10
LR = [0.1, 0.03, 0.01]
WD = [0.0, 0.05, 0.3]


def make_net(seed: int = 0) -> Sequential:
    net = Sequential([Linear(4, 5), Tanh(), Linear(5, 3)])
    net.build((4,), Population(P, seed=seed), dtype=DT)
    g = torch.Generator().manual_seed(seed + 100)
    for name, p in net.named_parameters().items():
        if name.endswith("bias"):
            p.data.copy_(torch.randn(p.shape, generator=g, dtype=DT) * 0.1)
    return net


def grad_sequence(net: Sequential, steps: int = STEPS, seed: int = 1) -> list[list[torch.Tensor]]:
    """A fixed random gradient per step and parameter (shape (P, ...))."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=DT) for p in net.parameters()] for _ in range(steps)]


# Each case: trainlab class, its per-member kwargs, and a torch factory
#   torch_factory(i, weights, biases, wd_i) -> torch.optim.Optimizer for member i.
Case = tuple[type[Optimizer], dict[str, Any], Callable[..., torch.optim.Optimizer]]


def _groups(weights, biases, wd):
    return [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}]


MOM = [0.9, 0.5, 0.0]
NEST = [0.9, 0.5, 0.3]
ALPHA = [0.99, 0.9, 0.5]
B1 = [0.9, 0.8, 0.5]
B2 = [0.999, 0.99, 0.9]
PSI = [4e-3, 1e-2, 0.0]
RHO = [0.9, 0.5, 0.99]

CASES: dict[str, Case] = {
    "sgd": (SGD, {}, lambda i, w, b, wd: torch.optim.SGD(_groups(w, b, wd), lr=LR[i], foreach=False)),
    "momentum": (
        Momentum, {"momentum": MOM},
        lambda i, w, b, wd: torch.optim.SGD(_groups(w, b, wd), lr=LR[i], momentum=MOM[i], foreach=False),
    ),
    "nesterov": (
        Nesterov, {"momentum": NEST},
        lambda i, w, b, wd: torch.optim.SGD(_groups(w, b, wd), lr=LR[i], momentum=NEST[i], nesterov=True,
                                            foreach=False),
    ),
    "adagrad": (
        AdaGrad, {},
        lambda i, w, b, wd: torch.optim.Adagrad(_groups(w, b, wd), lr=LR[i], eps=1e-10, foreach=False),
    ),
    "rmsprop": (
        RMSProp, {"alpha": ALPHA},
        lambda i, w, b, wd: torch.optim.RMSprop(_groups(w, b, wd), lr=LR[i], alpha=ALPHA[i], eps=1e-8,
                                                foreach=False),
    ),
    "adam": (
        Adam, {"beta1": B1, "beta2": B2},
        lambda i, w, b, wd: torch.optim.Adam(_groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                             foreach=False),
    ),
    "adamw": (
        AdamW, {"beta1": B1, "beta2": B2},
        lambda i, w, b, wd: torch.optim.AdamW(_groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                              foreach=False),
    ),
    "rmsprop_centered": (
        RMSProp, {"alpha": ALPHA, "centered": True},
        lambda i, w, b, wd: torch.optim.RMSprop(_groups(w, b, wd), lr=LR[i], alpha=ALPHA[i], eps=1e-8, centered=True,
                                                foreach=False),
    ),
    "nadam": (
        NAdam, {"beta1": B1, "beta2": B2, "momentum_decay": PSI},
        lambda i, w, b, wd: torch.optim.NAdam(_groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                              momentum_decay=PSI[i], foreach=False),
    ),
    "nadam_decoupled": (
        NAdam, {"beta1": B1, "beta2": B2, "decoupled": True},
        lambda i, w, b, wd: torch.optim.NAdam(_groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                              decoupled_weight_decay=True, foreach=False),
    ),
    # beta2 = 0.6 gives rho_inf = 4: that member never rectifies (torch's SGD-with-momentum branch);
    # beta2 = 0.99 switches to the rectified step at t = 6 within the 10 steps (rho_t > 5).
    "radam": (
        RAdam, {"beta1": B1, "beta2": [0.999, 0.99, 0.6]},
        lambda i, w, b, wd: torch.optim.RAdam(_groups(w, b, wd), lr=LR[i], betas=(B1[i], [0.999, 0.99, 0.6][i]),
                                              eps=1e-8, foreach=False),
    ),
    "adamax": (
        Adamax, {"beta1": B1, "beta2": B2},
        lambda i, w, b, wd: torch.optim.Adamax(_groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                               foreach=False),
    ),
    "adadelta": (
        Adadelta, {"rho": RHO},
        lambda i, w, b, wd: torch.optim.Adadelta(_groups(w, b, wd), lr=LR[i], rho=RHO[i], eps=1e-6, foreach=False),
    ),
}


def _member_copies(net: Sequential, i: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Leaf copies of member i's parameters: (all in order, weights, biases)."""
    params = [p.data[i].clone().requires_grad_() for p in net.parameters()]
    weights = [t for t, p in zip(params, net.parameters()) if p.decay]
    biases = [t for t, p in zip(params, net.parameters()) if not p.decay]
    assert len(weights) == 2 and len(biases) == 2
    return params, weights, biases


@pytest.fixture(autouse=True)
def _torch_scalar_state_in_float64():
    """torch.optim keeps scalar state (step counts, NAdam's mu_product) in the *default* dtype,
    float32 unless changed; trainlab computes them in the parameters' dtype. For a float64
    comparison torch's scalars must be float64 too (NAdam's mu_product differs at 1e-8 otherwise)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected.detach(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("decay", [False, True], ids=["no_wd", "wd"])
@pytest.mark.parametrize("name", list(CASES))
def test_fixed_gradients_match_torch_optim(name: str, decay: bool) -> None:
    cls, kwargs, torch_opt = CASES[name]
    net = make_net()
    start = [p.data.clone() for p in net.parameters()]
    wd = WD if decay else 0.0
    opt = cls(net.parameters(), lr=LR, weight_decay=wd, **kwargs)
    grads = grad_sequence(net)
    for step_grads in grads:
        for p, g in zip(net.parameters(), step_grads):
            p.grad.copy_(g)
        opt.step()
    assert opt.steps.tolist() == [STEPS] * P

    for i in range(P):
        params, weights, biases = _member_copies(net, i)
        with torch.no_grad():
            for t, s in zip(params, start):
                t.copy_(s[i])
        ref = torch_opt(i, weights, biases, WD[i] if decay else 0.0)
        for step_grads in grads:
            for t, g in zip(params, step_grads):
                t.grad = g[i].clone()
            ref.step()
        for t, p in zip(params, net.parameters()):
            _close(p.data[i], t)
        assert not torch.equal(params[0].detach(), start[0][i])  # it moved


def _loss_and_data(seed: int = 2) -> tuple[MeanSquaredError, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 8, 4, generator=g, dtype=DT)
    y = torch.randn(8, 3, generator=g, dtype=DT)
    loss = MeanSquaredError()
    loss.build(P, dtype=DT)
    return loss, x, y


def _torch_forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = params  # trainlab layout: y = x W + b
    return torch.tanh(x @ w1 + b1) @ w2 + b2


@pytest.mark.parametrize("name", list(CASES))
def test_real_loss_matches_torch_optim(name: str) -> None:
    """Same, with gradients from the model's own backward vs autograd on a real loss."""
    cls, kwargs, torch_opt = CASES[name]
    net = make_net(seed=3)
    start = [p.data.clone() for p in net.parameters()]
    loss, x, y = _loss_and_data()
    opt = cls(net.parameters(), lr=LR, weight_decay=WD, **kwargs)
    for _ in range(STEPS):
        loss.forward(net.forward(x, training=True), y)
        net.backward(loss.backward())
        opt.step()

    for i in range(P):
        params, weights, biases = _member_copies(net, i)
        with torch.no_grad():
            for t, s in zip(params, start):
                t.copy_(s[i])
        ref = torch_opt(i, weights, biases, WD[i])
        for _ in range(STEPS):
            ref.zero_grad()
            torch.nn.functional.mse_loss(_torch_forward(params, x[0]), y).backward()
            ref.step()
        for t, p in zip(params, net.parameters()):
            _close(p.data[i], t)


def test_decoupled_sgd_is_hand_written_shrink() -> None:
    net = make_net()
    start = [p.data.clone() for p in net.parameters()]
    opt = SGD(net.parameters(), lr=LR, weight_decay=WD, decoupled=True)
    grads = grad_sequence(net)
    lr = torch.tensor(LR, dtype=DT).reshape(P, 1, 1)
    wd = torch.tensor(WD, dtype=DT).reshape(P, 1, 1)
    expected = [s.clone() for s in start]
    for step_grads in grads:
        for p, g in zip(net.parameters(), step_grads):
            p.grad.copy_(g)
        opt.step()
        for w, g, p in zip(expected, step_grads, net.parameters()):
            if p.decay:
                w -= lr * wd * w
            w -= lr * g
    for w, p in zip(expected, net.parameters()):
        _close(p.data, w)


def test_coupled_sgd_decay_is_l2_penalty() -> None:
    """Coupled decay wd equals adding (wd/2) ||W||^2 (weights only) to each member's loss."""
    net = make_net(seed=4)
    start = [p.data.clone() for p in net.parameters()]
    loss, x, y = _loss_and_data(seed=5)
    opt = SGD(net.parameters(), lr=LR, weight_decay=WD)
    for _ in range(STEPS):
        loss.forward(net.forward(x, training=True), y)
        net.backward(loss.backward())
        opt.step()

    for i in range(P):
        params = [s[i].clone().requires_grad_() for s in start]
        for _ in range(STEPS):
            total = torch.nn.functional.mse_loss(_torch_forward(params, x[0]), y)
            total = total + WD[i] / 2 * (params[0].pow(2).sum() + params[2].pow(2).sum())
            grads = torch.autograd.grad(total, params)
            with torch.no_grad():
                for t, g in zip(params, grads):
                    t -= LR[i] * g
        for t, p in zip(params, net.parameters()):
            _close(p.data[i], t)


def test_coupled_and_decoupled_coincide_for_sgd_not_for_adam() -> None:
    results = {}
    for cls in (SGD, Adam):
        for decoupled in (False, True):
            net = make_net()
            opt = cls(net.parameters(), lr=LR, weight_decay=WD, decoupled=decoupled)
            for step_grads in grad_sequence(net):
                for p, g in zip(net.parameters(), step_grads):
                    p.grad.copy_(g)
                opt.step()
            results[cls, decoupled] = net.layers[0].weight.data.clone()
    _close(results[SGD, False], results[SGD, True])
    assert (results[Adam, False][1:] - results[Adam, True][1:]).abs().max() > 1e-4  # members with wd > 0
    _close(results[Adam, False][0], results[Adam, True][0])  # member 0 has wd = 0


def test_adamw_equals_adam_decoupled() -> None:
    out = []
    for make in (lambda ps: AdamW(ps, lr=LR, weight_decay=WD),
                 lambda ps: Adam(ps, lr=LR, weight_decay=WD, decoupled=True)):
        net = make_net()
        opt = make(net.parameters())
        for step_grads in grad_sequence(net):
            for p, g in zip(net.parameters(), step_grads):
                p.grad.copy_(g)
            opt.step()
        out.append([p.data.clone() for p in net.parameters()])
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_per_member_eps_and_frozen_parameter() -> None:
    """Per-member eps reaches the update; a parameter with trainable=False is skipped."""
    net = make_net()
    net.layers[2].bias.trainable = False
    frozen = net.layers[2].bias.data.clone()
    eps = [1e-8, 1e-2, 1.0]
    opt = RMSProp(net.parameters(), lr=0.01, eps=eps)
    start = net.layers[0].weight.data.clone()
    step_grads = grad_sequence(net, steps=1)[0]
    for p, g in zip(net.parameters(), step_grads):
        p.grad.copy_(g)
    opt.step()
    assert torch.equal(net.layers[2].bias.data, frozen)
    g = step_grads[0]
    s = 0.01 * g * g
    for i in range(P):
        _close(net.layers[0].weight.data[i], start[i] - 0.01 * g[i] / (s[i].sqrt() + eps[i]))
