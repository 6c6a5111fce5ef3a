"""Optimizers against ``torch.optim`` on a real loss, and the weight-decay conventions.

The fixed-gradient trajectories, member independence and state round trips of every registered
optimizer are the contract suite's (tests/optim_tests/test_contract.py). Here a P=3 population of a 2-layer net, with a different learning rate (and weight
decay, momentum, betas, ...) per member, takes 10 steps; member ``i`` must end where
``torch.optim`` takes a copy of member ``i`` alone with member ``i``'s settings.
trainlab decays only parameters flagged ``decay=True`` (weights), so the torch side
puts biases in a param group with ``weight_decay=0``.
"""

from __future__ import annotations

import pytest
import torch

from trainlab.nn import MeanSquaredError, Sequential
from trainlab.optim import OPTIMIZERS, SGD, Adam, AdamW, NAdam, RMSProp
from trainlab.optim import testing as contract

DT = torch.float64
ATOL, RTOL = 1e-12, 0.0
P, STEPS = contract.P, contract.STEPS
LR, WD = contract.LR, contract.WD
make_net, grad_sequence = contract.make_net, contract.grad_sequence

# name -> (class, per-member kwargs, torch factory): the contract suite's examples (one table), and
# the variants of a class that a setting shared by all members switches on
VARIANTS: dict[str, tuple[type, contract.OptimizerExample]] = {
    "rmsprop_centered": (RMSProp, contract.OptimizerExample(
        {"alpha": contract.ALPHA},
        lambda i, w, b, wd: torch.optim.RMSprop(contract.groups(w, b, wd), lr=LR[i], alpha=contract.ALPHA[i], eps=1e-8,
                                                centered=True, foreach=False),
        fixed={"centered": True})),
    "nadam_decoupled": (NAdam, contract.OptimizerExample(
        {"beta1": contract.B1, "beta2": contract.B2},
        lambda i, w, b, wd: torch.optim.NAdam(contract.groups(w, b, wd), lr=LR[i], betas=(contract.B1[i], contract.B2[i]),
                                              eps=1e-8, decoupled_weight_decay=True, foreach=False),
        fixed={"decoupled": True})),
}
CASES = {name: (cls, {**contract.EXAMPLES[cls].hparams, **contract.EXAMPLES[cls].fixed},
                contract.EXAMPLES[cls].torch_factory)
         for name, cls in OPTIMIZERS.items() if contract.EXAMPLES[cls].torch_factory is not None}
CASES.update({name: (cls, {**ex.hparams, **ex.fixed}, ex.torch_factory) for name, (cls, ex) in VARIANTS.items()})


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_match_torch_optim(name: str) -> None:
    """The fixed-gradient trajectory (the contract's check) for settings the contract's example leaves off."""
    cls, example = VARIANTS[name]
    contract.check_torch_trajectory(cls, example)


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
