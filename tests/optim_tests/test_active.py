"""The active mask, saving/restoring optimizer state, and validation messages."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.nn import Linear, Sequential, Tanh
from trainlab.optim import OPTIMIZERS, SGD, Adam, Momentum, Optimizer
from trainlab.population import Population

DT = torch.float64
P = 3

# Per-member settings for every optimizer; coupled weight decay everywhere (AdamW: decoupled).
KWARGS: dict[str, dict[str, Any]] = {
    "sgd": {},
    "momentum": {"momentum": [0.9, 0.5, 0.7]},
    "nesterov": {"momentum": [0.9, 0.5, 0.7]},
    "adagrad": {},
    "rmsprop": {"alpha": [0.99, 0.9, 0.8]},
    "adam": {"beta1": [0.9, 0.8, 0.7], "beta2": [0.999, 0.99, 0.9]},
    "adamw": {"beta1": [0.9, 0.8, 0.7], "beta2": [0.999, 0.99, 0.9]},
    "nadam": {"beta1": [0.9, 0.8, 0.7], "beta2": [0.999, 0.99, 0.9], "momentum_decay": [4e-3, 1e-2, 0.0]},
    "radam": {"beta1": [0.9, 0.8, 0.7], "beta2": [0.999, 0.99, 0.6]},
    "adamax": {"beta1": [0.9, 0.8, 0.7], "beta2": [0.999, 0.99, 0.9]},
    "adadelta": {"rho": [0.9, 0.5, 0.99]},
}


def make(name: str, seed: int = 0, P: int = P) -> tuple[Sequential, Optimizer]:
    net = Sequential([Linear(4, 5), Tanh(), Linear(5, 2)])
    net.build((4,), Population(P, seed=seed), dtype=DT)
    opt = OPTIMIZERS[name](net.parameters(), lr=[0.1, 0.05, 0.02][:P], weight_decay=[0.01, 0.1, 0.0][:P],
                           **{k: v[:P] for k, v in KWARGS[name].items()})
    return net, opt


def grads(net: Sequential, steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=DT) for p in net.parameters()] for _ in range(steps)]


def run(net: Sequential, opt: Optimizer, seq: list[list[torch.Tensor]]) -> None:
    for step_grads in seq:
        for p, g in zip(net.parameters(), step_grads):
            p.grad.copy_(g)
        opt.step()


def snapshot(net: Sequential, opt: Optimizer) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v.clone() for k, v in net.state_dict().items()}
    out.update({f"opt.{k}": v.clone() for k, v in opt.state_dict().items()})
    return out


def member(state: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {k: v[i] for k, v in state.items() if not k.startswith("opt.hparam") and k != "opt.active"}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_inactive_member_is_frozen_even_with_nan_gradients(name: str) -> None:
    net, opt = make(name)
    run(net, opt, grads(net, 2, seed=5))  # some state to protect
    before = snapshot(net, opt)
    ref_net, ref_opt = make(name)
    run(ref_net, ref_opt, grads(ref_net, 2, seed=5))

    seq = grads(net, 4)
    opt.set_active(torch.tensor([True, False, True]))
    nan_seq = [[g.clone() for g in step] for step in seq]
    for step in nan_seq:
        for g in step:
            g[1] = float("nan")
    run(net, opt, nan_seq)
    run(ref_net, ref_opt, seq)  # everyone active, finite gradients

    after = snapshot(net, opt)
    ref = snapshot(ref_net, ref_opt)
    for k, v in member(before, 1).items():
        assert torch.equal(member(after, 1)[k], v), f"inactive member's {k} changed"
    for i in (0, 2):
        for k, v in member(ref, i).items():
            assert torch.equal(member(after, i)[k], v), f"member {i}'s {k} differs from the all-active run"
    assert opt.steps.tolist() == [6, 2, 6]
    assert all(torch.isfinite(p.data).all() for p in net.parameters())


def test_adam_step_count_stops_and_resumes_per_member() -> None:
    """Member 1 is off for steps 3-5: afterwards it must equal a single model that only saw
    the gradients of the steps it was active for (its bias correction counts its own steps)."""
    net, opt = make("adam")
    seq = grads(net, 8)
    run(net, opt, seq[:3])
    opt.set_active(torch.tensor([True, False, True]))
    run(net, opt, seq[3:6])
    assert opt.steps.tolist() == [6, 3, 6]
    opt.set_active(torch.ones(P, dtype=torch.bool))
    run(net, opt, seq[6:])
    assert opt.steps.tolist() == [8, 5, 8]

    single = Sequential([Linear(4, 5), Tanh(), Linear(5, 2)])
    single.build((4,), Population(3, seed=0).select([1]), dtype=DT)
    sopt = Adam(single.parameters(), lr=0.05, weight_decay=0.1, beta1=0.8, beta2=0.99)
    seen = seq[:3] + seq[6:]
    run(single, sopt, [[g[1:2] for g in step] for step in seen])
    for p, s in zip(net.parameters(), single.parameters()):
        torch.testing.assert_close(p.data[1], s.data[0], atol=1e-15, rtol=0)


def test_all_members_inactive_is_a_no_op() -> None:
    net, opt = make("adam")
    run(net, opt, grads(net, 1))
    before = snapshot(net, opt)
    opt.set_active(torch.zeros(P, dtype=torch.bool))
    run(net, opt, grads(net, 2, seed=9))
    after = snapshot(net, opt)
    assert all(torch.equal(after[k], v) for k, v in before.items() if k != "opt.active")


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_continues_bitwise(name: str) -> None:
    net, opt = make(name)
    seq = grads(net, 6)
    run(net, opt, seq[:3])
    opt.set_active(torch.tensor([True, True, False]))
    saved_model = {k: v.clone() for k, v in net.state_dict().items()}
    saved_opt = {k: v.clone() for k, v in opt.state_dict().items()}
    run(net, opt, seq[3:])

    net2, opt2 = make(name, seed=42)  # different start, same structure
    opt2.set_hparam("lr", 0.5)  # overwritten by the load
    net2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    assert opt2.active.tolist() == [True, True, False]
    run(net2, opt2, seq[3:])
    for k, v in snapshot(net, opt).items():
        assert torch.equal(snapshot(net2, opt2)[k], v), k


def test_load_state_dict_mismatch() -> None:
    _, opt = make("adam")
    state = dict(opt.state_dict())
    del state["0.m"]
    state["hparam.momentum"] = torch.zeros(P)
    state["steps"] = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(CheckpointError) as info:
        opt.load_state_dict(state)
    msg = str(info.value)
    assert "optimizer state does not fit Adam" in msg
    assert "missing ['0.m']" in msg and "unexpected ['hparam.momentum']" in msg and "wrong shape ['steps']" in msg
    _, sgd = make("sgd")
    with pytest.raises(CheckpointError, match="does not fit SGD"):
        sgd.load_state_dict(opt.state_dict())


# ---- validation ----------------------------------------------------------------------


def _params():
    layer = Linear(3, 2)
    layer.build((3,), Population(P), dtype=DT)
    return layer.parameters()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SGD(_params(), lr=0.0), "SGD lr must be > 0.0, got 0.0"),
        (lambda: SGD(_params(), lr=-0.1), "SGD lr must be > 0.0, got -0.1"),
        (lambda: SGD(_params(), lr=[0.1, 0.2]),
         "SGD lr must be one number or a list of 3 numbers (one per member), got 2 values"),
        (lambda: SGD(_params(), lr=[0.1, float("nan"), 0.1]), "SGD lr must be finite, got nan"),
        (lambda: SGD(_params(), weight_decay=-1e-4), "SGD weight_decay must be >= 0.0, got -0.0001"),
        (lambda: Momentum(_params(), momentum=1.0), "Momentum momentum must be < 1.0, got 1.0"),
        (lambda: Momentum(_params(), momentum=[0.9, 1.5, 0.9]), "Momentum momentum must be < 1.0, got 1.5"),
        (lambda: Momentum(_params(), momentum=-0.1), "Momentum momentum must be >= 0.0, got -0.1"),
        (lambda: Adam(_params(), beta2=1.0), "Adam beta2 must be < 1.0, got 1.0"),
        (lambda: Adam(_params(), eps=0.0), "Adam eps must be > 0.0, got 0.0"),
        (lambda: OPTIMIZERS["rmsprop"](_params(), alpha=[0.9, 0.9]),
         "RMSProp alpha must be one number or a list of 3 numbers (one per member), got 2 values"),
        (lambda: SGD([]), "SGD got no parameters to optimize"),
    ],
)
def test_constructor_validation(build, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in str(info.value)


def test_settings_stored_verbatim() -> None:
    opt = Momentum(_params(), lr=[0.1, 0.2, 0.3], momentum=0.8)
    assert opt.settings() == {"lr": [0.1, 0.2, 0.3], "weight_decay": 0.0, "decoupled": False, "momentum": 0.8}
    assert opt.lr.tolist() == [0.1, 0.2, 0.3]


def test_set_hparam_validates() -> None:
    opt = Adam(_params(), lr=0.01)
    with pytest.raises(ConfigError, match="Adam lr must be > 0.0, got 0.0"):
        opt.set_hparam("lr", 0.0)
    with pytest.raises(ConfigError, match=r"Adam beta1 must be < 1.0, got 1.0"):
        opt.set_hparam("beta1", [0.9, 1.0, 0.9])
    with pytest.raises(ConfigError, match=r"one number or a list of 3 numbers"):
        opt.set_hparam("lr", [0.1, 0.2])
    with pytest.raises(ConfigError, match=r"Adam has no hyperparameter 'momentum' \(allowed: lr, weight_decay, "):
        opt.set_hparam("momentum", 0.9)
    assert opt.lr.tolist() == [0.01] * P  # failed calls changed nothing


def test_set_hparam_reaches_the_update() -> None:
    layer = Linear(3, 2)
    layer.build((3,), Population(P), dtype=DT)
    opt = SGD(layer.parameters(), lr=0.1)
    g = [torch.randn(p.shape, dtype=DT) for p in layer.parameters()]
    for p, gi in zip(layer.parameters(), g):
        p.grad.copy_(gi)
    opt.step()  # with weight_decay = 0
    opt.set_hparam("lr", [0.1, 0.2, 0.3])
    opt.set_hparam("weight_decay", 0.5)  # from zero to non-zero after a step
    w = layer.weight.data.clone()
    opt.step()
    lr = torch.tensor([0.1, 0.2, 0.3], dtype=DT).reshape(P, 1, 1)
    torch.testing.assert_close(layer.weight.data, w - lr * (g[0] + 0.5 * w), atol=1e-14, rtol=0)
