"""The optimizer contract suite: checks every registered optimizer must pass.

Each class of :data:`trainlab.optim.OPTIMIZERS` has an :class:`OptimizerExample`: per-member
hyperparameters (three *different* values each) and, where PyTorch has the same rule, a factory
of the ``torch.optim`` optimizer for one member. :func:`check_optimizer_contract` runs:

1. **torch trajectory** -- a ``P = 3`` population of a small net takes 10 steps from a fixed
   random gradient sequence, with and without weight decay; member ``i`` must end where
   ``torch.optim`` takes a copy of member ``i`` alone with member ``i``'s settings (float64,
   ``atol = 1e-12``). trainlab decays only ``decay=True`` parameters (weights), so the torch side
   puts biases in a group with ``weight_decay = 0``.
2. **members are independent** -- member ``i`` of the population ends where a ``P = 1`` optimizer
   with member ``i``'s hyperparameters ends, bit for bit.
3. **state save/load** -- 5 steps, ``state_dict`` into a fresh optimizer, 5 more steps: the same
   weights as 10 uninterrupted steps, bit for bit.

A new optimizer joins by registering in :data:`~trainlab.optim.OPTIMIZERS` and adding its example
with :func:`register_example`; ``tests/optim_tests/test_contract.py`` fails for a public optimizer
missing from either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.nn import Linear, Sequential, Tanh
from trainlab.optim._base import Optimizer
from trainlab.optim._adaptive import Adadelta, Adamax, NAdam, RAdam
from trainlab.optim._first_order import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from trainlab.population import Population

__all__ = ["OptimizerExample", "EXAMPLES", "register_example", "example_for", "check_optimizer_contract",
           "check_torch_trajectory", "check_member_independence", "check_state_roundtrip", "CHECKS",
           "LR", "WD", "make_net", "grad_sequence", "groups"]

DT = torch.float64
P, STEPS = 3, 10
LR = [0.1, 0.03, 0.01]
WD = [0.0, 0.05, 0.3]

#: ``torch_factory(i, weights, biases, wd_i)`` -> the torch optimizer for member ``i`` alone
TorchFactory = Callable[[int, list[torch.Tensor], list[torch.Tensor], float], torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimizerExample:
    """Per-member hyperparameters (``name -> [v0, v1, v2]``, besides lr and weight_decay) and the
    torch equivalent of member ``i`` (``None`` where torch has no such rule)."""

    hparams: dict[str, list[Any]] = field(default_factory=dict)
    torch_factory: TorchFactory | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # settings shared by all members (e.g. decoupled)


EXAMPLES: dict[type[Optimizer], OptimizerExample] = {}


def register_example(cls: type[Optimizer], example: OptimizerExample) -> None:
    EXAMPLES[cls] = example


def example_for(cls: type[Optimizer]) -> OptimizerExample:
    if cls not in EXAMPLES:
        raise AssertionError(f"optimizer {cls.__name__} has no contract example: call "
                             f"trainlab.optim.testing.register_example({cls.__name__}, OptimizerExample(...))")
    return EXAMPLES[cls]


def groups(weights: list[torch.Tensor], biases: list[torch.Tensor], wd: float) -> list[dict[str, Any]]:
    """torch param groups matching trainlab's decay rule: weights decayed, biases not."""
    return [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}]


def make_net(size: int = P, seed: int = 0, seeds: Sequence[int] | None = None) -> Sequential:
    """A 4-5-3 tanh net in float64 with non-zero biases; member m's values come from its seed."""
    seeds = list(seeds) if seeds is not None else [seed + m for m in range(size)]
    net = Sequential([Linear(4, 5), Tanh(), Linear(5, 3)])
    net.build((4,), Population(len(seeds), seeds=seeds), dtype=DT)
    for m, s in enumerate(seeds):
        g = torch.Generator().manual_seed(s + 100)
        for name, p in net.named_parameters().items():
            if name.endswith("bias"):
                p.data[m].copy_(torch.randn(p.shape[1:], generator=g, dtype=DT) * 0.1)
    return net


def grad_sequence(net: Sequential, steps: int = STEPS, seed: int = 1) -> list[list[torch.Tensor]]:
    """A fixed random gradient per step and parameter (shape (P, ...))."""
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=DT) for p in net.parameters()] for _ in range(steps)]


def _make(cls: type[Optimizer], example: OptimizerExample, net: Sequential, members: Sequence[int], *,
          decay: bool) -> Optimizer:
    def pick(values: Sequence[Any]) -> list[Any]:
        return [values[m] for m in members]

    kwargs: dict[str, Any] = {k: pick(v) for k, v in example.hparams.items()}
    return cls(net.parameters(), lr=pick(LR), weight_decay=pick(WD) if decay else 0.0, **example.fixed, **kwargs)


def _steps(opt: Optimizer, net: Sequential, grads: list[list[torch.Tensor]], members: Sequence[int]) -> None:
    for step_grads in grads:
        for p, g in zip(net.parameters(), step_grads):
            p.grad.copy_(g[list(members)])
        opt.step()


def check_torch_trajectory(cls: type[Optimizer], example: OptimizerExample) -> None:
    """Member i after 10 steps equals torch.optim on member i alone (float64, atol 1e-12)."""
    if example.torch_factory is None:
        return
    old = torch.get_default_dtype()
    torch.set_default_dtype(DT)  # torch.optim keeps some scalar state (NAdam's mu product) in the default dtype
    try:
        _torch_trajectory(cls, example)
    finally:
        torch.set_default_dtype(old)


def _torch_trajectory(cls: type[Optimizer], example: OptimizerExample) -> None:
    assert example.torch_factory is not None
    for decay in (False, True):
        net = make_net()
        start = [p.data.clone() for p in net.parameters()]
        grads = grad_sequence(net)
        _steps(_make(cls, example, net, range(P), decay=decay), net, grads, range(P))
        for i in range(P):
            params = [s[i].clone().requires_grad_() for s in start]
            weights = [t for t, p in zip(params, net.parameters()) if p.decay]
            biases = [t for t, p in zip(params, net.parameters()) if not p.decay]
            ref = example.torch_factory(i, weights, biases, WD[i] if decay else 0.0)
            for step_grads in grads:
                for t, g in zip(params, step_grads):
                    t.grad = g[i].clone()
                ref.step()
            for (name, p), t in zip(net.named_parameters().items(), params):
                err = (p.data[i] - t.detach()).abs().max().item()
                if not err <= 1e-12:
                    raise AssertionError(f"{cls.__name__}: member {i}'s {name} after {STEPS} steps differs from "
                                         f"{type(ref).__name__} by {err:.3g} (weight decay {'on' if decay else 'off'})")
            if torch.equal(params[0].detach(), start[0][i]):
                raise AssertionError(f"{cls.__name__}: the torch reference did not move member {i}")


def check_member_independence(cls: type[Optimizer], example: OptimizerExample) -> None:
    """Member i of a P=3 population ends exactly where member i alone ends."""
    seeds = [0, 1, 2]
    net = make_net(seeds=seeds)
    grads = grad_sequence(net)
    _steps(_make(cls, example, net, range(P), decay=True), net, grads, range(P))
    for i in range(P):
        one = make_net(seeds=[seeds[i]])
        _steps(_make(cls, example, one, [i], decay=True), one, grads, [i])
        for (name, p), q in zip(net.named_parameters().items(), one.parameters()):
            if not torch.allclose(p.data[i:i + 1], q.data, rtol=0.0, atol=1e-14):
                err = (p.data[i:i + 1] - q.data).abs().max().item()
                raise AssertionError(f"{cls.__name__}: member {i}'s {name} in a population differs from member {i} "
                                     f"alone by {err:.3g}")


def check_state_roundtrip(cls: type[Optimizer], example: OptimizerExample) -> None:
    """5 steps, state_dict into a fresh optimizer, 5 more == 10 uninterrupted steps, bit for bit."""
    grads = grad_sequence(make_net())
    straight = make_net()
    _steps(_make(cls, example, straight, range(P), decay=True), straight, grads, range(P))
    net = make_net()
    first = _make(cls, example, net, range(P), decay=True)
    _steps(first, net, grads[:5], range(P))
    state = {k: v.clone() for k, v in first.state_dict().items()}
    second = _make(cls, example, net, range(P), decay=True)
    second.load_state_dict(state)
    _steps(second, net, grads[5:], range(P))
    for (name, a), b in zip(straight.named_parameters().items(), net.parameters()):
        if not torch.equal(a.data, b.data):
            raise AssertionError(f"{cls.__name__}: {name} after a state_dict round trip at step 5 differs from an "
                                 f"uninterrupted run by {(a.data - b.data).abs().max().item():.3g}")


CHECKS: dict[str, Callable[[type[Optimizer], OptimizerExample], None]] = {
    "torch_trajectory": check_torch_trajectory,
    "member_independence": check_member_independence,
    "state_roundtrip": check_state_roundtrip,
}


def check_optimizer_contract(cls: type[Optimizer]) -> None:
    example = example_for(cls)
    for check in CHECKS.values():
        check(cls, example)


# ---- the examples of trainlab's own optimizers -----------------------------------------------

MOM = [0.9, 0.5, 0.0]
NEST = [0.9, 0.5, 0.3]
ALPHA = [0.99, 0.9, 0.5]
B1 = [0.9, 0.8, 0.5]
B2 = [0.999, 0.99, 0.9]
PSI = [4e-3, 1e-2, 0.0]
RHO = [0.9, 0.5, 0.99]
#: beta2 = 0.6 gives rho_inf = 4: that member never rectifies (torch's SGD-with-momentum branch);
#: beta2 = 0.99 switches to the rectified step at t = 6 within the 10 steps (rho_t > 5)
RADAM_B2 = [0.999, 0.99, 0.6]

for _cls, _ex in {
    SGD: OptimizerExample({}, lambda i, w, b, wd: torch.optim.SGD(groups(w, b, wd), lr=LR[i], foreach=False)),
    Momentum: OptimizerExample(
        {"momentum": MOM},
        lambda i, w, b, wd: torch.optim.SGD(groups(w, b, wd), lr=LR[i], momentum=MOM[i], foreach=False)),
    Nesterov: OptimizerExample(
        {"momentum": NEST},
        lambda i, w, b, wd: torch.optim.SGD(groups(w, b, wd), lr=LR[i], momentum=NEST[i], nesterov=True,
                                            foreach=False)),
    AdaGrad: OptimizerExample(
        {}, lambda i, w, b, wd: torch.optim.Adagrad(groups(w, b, wd), lr=LR[i], eps=1e-10, foreach=False)),
    RMSProp: OptimizerExample(
        {"alpha": ALPHA},
        lambda i, w, b, wd: torch.optim.RMSprop(groups(w, b, wd), lr=LR[i], alpha=ALPHA[i], eps=1e-8, foreach=False)),
    Adam: OptimizerExample(
        {"beta1": B1, "beta2": B2},
        lambda i, w, b, wd: torch.optim.Adam(groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                             foreach=False)),
    AdamW: OptimizerExample(
        {"beta1": B1, "beta2": B2},
        lambda i, w, b, wd: torch.optim.AdamW(groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                              foreach=False)),
    NAdam: OptimizerExample(
        {"beta1": B1, "beta2": B2, "momentum_decay": PSI},
        lambda i, w, b, wd: torch.optim.NAdam(groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                              momentum_decay=PSI[i], foreach=False)),
    RAdam: OptimizerExample(
        {"beta1": B1, "beta2": RADAM_B2},
        lambda i, w, b, wd: torch.optim.RAdam(groups(w, b, wd), lr=LR[i], betas=(B1[i], RADAM_B2[i]), eps=1e-8,
                                              foreach=False)),
    Adamax: OptimizerExample(
        {"beta1": B1, "beta2": B2},
        lambda i, w, b, wd: torch.optim.Adamax(groups(w, b, wd), lr=LR[i], betas=(B1[i], B2[i]), eps=1e-8,
                                               foreach=False)),
    Adadelta: OptimizerExample(
        {"rho": RHO},
        lambda i, w, b, wd: torch.optim.Adadelta(groups(w, b, wd), lr=LR[i], rho=RHO[i], eps=1e-6, foreach=False)),
}.items():
    register_example(_cls, _ex)
