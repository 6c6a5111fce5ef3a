"""The layer contract suite: checks every registered layer must pass (like optuna's sampler tests).

Each layer class has a :class:`LayerExample`: how to make one with *different* hyperparameters
per member, and the per-example input shape. :func:`check_layer_contract` then runs, and raises
``AssertionError`` naming the layer and the worst value on the first broken rule:

1. **gradients** -- float64 central differences (:func:`trainlab.gradcheck.assert_gradients`) at
   ``P = 1`` and ``P = 3``, with an input per member ``(P, N, ...)`` and a shared one
   ``(1, N, ...)``. Stochastic layers are checked in training mode with their members' random
   generators rewound before every forward, so each evaluation sees the same masks and noise.
2. **members are independent** -- member ``i`` of a ``P = 3`` population (forward in training
   and eval mode, input and parameter gradients) equals a ``P = 1`` model made with member
   ``i``'s hyperparameters and seed, fed member ``i``'s input.
3. **settings round-trip** -- ``type(layer)(**layer.settings())`` has the same settings.
4. **save/load round-trip** -- :func:`trainlab.io.save_model` then :func:`~trainlab.io.load_model`
   gives the same outputs (needs the layer in :data:`trainlab.nn.LAYERS`).
5. **export** -- where the example says torch has an equivalent, :func:`trainlab.export.to_torch`
   of member ``i`` computes member ``i``'s eval-mode function.

A new layer becomes part of the suite by registering its config name in :data:`trainlab.nn.LAYERS`
and its example with :func:`register_example`; ``tests/nn_tests/test_contract.py`` fails for a
public layer that has neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
import tempfile
from typing import Any

import torch

from trainlab.gradcheck import assert_gradients
from trainlab.nn._activations import ELU, GELU, SELU, Hardswish, Identity, LeakyReLU, Mish, ReLU, SiLU, Sigmoid, Softplus, Tanh
from trainlab.nn._alpha_dropout import AlphaDropout
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._dropout import DropConnectLinear, Dropout
from trainlab.nn._learned_activations import Maxout, PReLU
from trainlab.nn._linear import Linear
from trainlab.nn._module import Module
from trainlab.nn._noise import GaussianNoise, NoisyLinear
from trainlab.nn._norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm
from trainlab.nn._pool import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d, StochasticPool2d
from trainlab.nn._registry import LAYERS
from trainlab.nn._residual import Residual
from trainlab.nn._sequential import Sequential
from trainlab.population import Population

__all__ = ["LayerExample", "EXAMPLES", "register_example", "example_for", "check_layer_contract",
           "check_gradients", "check_member_independence", "check_settings_roundtrip", "check_save_load",
           "check_export", "Pick", "assert_members_match_single_models"]

DT = torch.float64
N = 3
SEEDS = (11, 12, 13)

#: ``pick([a, b, c])``: the per-member values of one hyperparameter for the population being built
#: (all three at P=3, ``[b]`` when member 1 is built alone).
Pick = Callable[[Sequence[Any]], Any]


@dataclass(frozen=True)
class LayerExample:
    """How to make and feed one layer for the contract suite.

    ``make(pick)`` returns an unbuilt layer; every per-member hyperparameter is given as
    ``pick([v0, v1, v2])`` with three *different* values. ``in_shape`` is the per-example input
    shape. ``positive`` feeds inputs > 0 (stochastic pooling needs them). ``train_gradcheck``:
    check gradients in training mode too (off for a layer whose random draw depends on its input,
    such as stochastic pooling, which has its own fixed-sample test). ``export``: torch has an
    equivalent of the eval-mode function.
    """

    make: Callable[[Pick], Module]
    in_shape: tuple[int, ...]
    positive: bool = False
    train_gradcheck: bool = True
    export: bool = True
    tol: float = 1e-6


#: layer class -> its example (a layer class may be registered under several config names)
EXAMPLES: dict[type[Module], LayerExample] = {}


def register_example(cls: type[Module], example: LayerExample) -> None:
    """Add (or replace) the contract example of ``cls``."""
    EXAMPLES[cls] = example


def example_for(cls: type[Module]) -> LayerExample:
    """The example of ``cls``; ``AssertionError`` naming the class when there is none."""
    if cls not in EXAMPLES:
        raise AssertionError(f"layer {cls.__name__} has no contract example: call "
                             f"trainlab.nn.testing.register_example({cls.__name__}, LayerExample(...))")
    return EXAMPLES[cls]


# ---- inputs and builds ------------------------------------------------------------------------


def _input(example: LayerExample, members: int, seed: int) -> torch.Tensor:
    """Distinct values (no ties for max pooling), away from 0 (the kinks of ReLU-like units)."""
    g = torch.Generator().manual_seed(seed)
    shape = (members, N, *example.in_shape)
    x = torch.randn(shape, generator=g, dtype=DT) * 1.5
    x = torch.where(x.abs() < 1e-2, x.sign() * 1e-2 + x, x)
    x = x + torch.randperm(x.numel(), generator=g).reshape(shape).to(DT) * 1e-7  # break exact ties
    return x.abs() + 0.1 if example.positive else x


def _all(values: Sequence[Any]) -> list[Any]:
    return list(values)


def _build(example: LayerExample, pick: Pick, seeds: Sequence[int]) -> Module:
    layer = example.make(pick)
    layer.build(example.in_shape, Population(len(seeds), seeds=list(seeds)), dtype=DT)
    _randomize_biases(layer, seeds)
    return layer


def _randomize_biases(layer: Module, seeds: Sequence[int]) -> None:
    """Biases start at 0: give every member different values so a member mix-up shows. Member m's
    values come from its own seed, so member i gets the same values alone and in a population."""
    for name, p in layer.named_parameters().items():
        if name.endswith("bias"):
            for m, s in enumerate(seeds):
                g = torch.Generator().manual_seed(1000 + s)
                p.data[m].copy_(torch.randn(p.shape[1:], generator=g, dtype=DT) * 0.3)


def _alone(i: int) -> Pick:
    return lambda values: [values[i]]


def _rewinder(layer: Module) -> Callable[[], None]:
    """Restore every member generator the layer (or a layer nested in it) draws from, before each forward."""
    populations: list[Population] = []
    for m in layer.modules():
        pop = getattr(m, "population", None)
        if isinstance(pop, Population) and all(pop is not q for q in populations):
            populations.append(pop)
    states = []
    for pop in populations:
        pop.generators("cpu")
        states.append((pop, pop.get_state()))

    def rewind() -> None:
        for pop, state in states:
            pop.set_state(state)

    return rewind


def _name(example: LayerExample) -> str:
    return type(example.make(_all)).__name__


# ---- the checks -------------------------------------------------------------------------------


def check_gradients(example: LayerExample) -> None:
    """Float64 gradient check at P=1 and P=3, per-member and shared input, eval and training mode."""
    modes = (False, True) if example.train_gradcheck else (False,)
    for P in (1, 3):
        pick: Pick = _all if P == 3 else _alone(0)
        for shared in (False, True):
            for training in modes:
                layer = _build(example, pick, SEEDS[:P])
                x = _input(example, 1 if shared else P, seed=5)
                where = f"{_name(example)} P={P} {'shared' if shared else 'per-member'} input, " \
                        f"{'training' if training else 'eval'}"
                assert_gradients(layer, x, training=training, atol=example.tol, what=where,
                                 before_forward=_rewinder(layer) if training else None)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-12, atol=1e-13)


def check_member_independence(example: LayerExample) -> None:
    """Member i of P=3 equals member i made alone (its hyperparameters, seed and input), over four
    consecutive steps (so random streams must stay in step): per-member and shared inputs, training
    and eval; outputs, input gradients (summed over members for a shared input) and parameter
    gradients."""
    pop = _build(example, _all, SEEDS)
    alone = [_build(example, _alone(i), SEEDS[i:i + 1]) for i in range(3)]
    name = _name(example)
    for step, (shared, training) in enumerate([(False, True), (True, True), (False, False), (True, False)]):
        where = f"step {step + 1}, {'shared' if shared else 'per-member'} input, {'training' if training else 'eval'}"
        x = _input(example, 1 if shared else 3, seed=20 + step)
        out = pop.forward(x, training=training)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(30 + step), dtype=DT)
        dx = pop.backward(g)
        dxs: list[torch.Tensor] = []
        for i, one in enumerate(alone):
            rows = slice(i, i + 1) if out.shape[0] == 3 else slice(0, 1)  # a shared input may stay shared
            y = one.forward(x if shared else x[i:i + 1], training=training)
            if not _close(out[rows], y):
                err = (out[rows] - y).abs().max().item() if out[rows].shape == y.shape else float("nan")
                raise AssertionError(f"{name}: member {i} of a population differs from member {i} alone "
                                     f"({where}: output, max |diff| {err:.3g})")
            dx_one = one.backward(g[rows])
            if dx_one is not None:
                dxs.append(dx_one)
            for (pname, p), q in zip(pop.named_parameters().items(), one.parameters()):
                if not _close(p.grad[i:i + 1], q.grad):
                    raise AssertionError(f"{name}: member {i}'s {pname}.grad in a population differs from member "
                                         f"{i} alone ({where}, max |diff| "
                                         f"{(p.grad[i:i + 1] - q.grad).abs().max().item():.3g})")
        if dx is None:
            continue
        if len(dxs) != len(alone):
            raise AssertionError(f"{name}: the population returns an input gradient but a member alone does not "
                                 f"({where})")
        if out.shape[0] != 3:
            want = dxs[0]
        elif shared:
            want = torch.stack(dxs).sum(0)
        else:
            want = torch.cat(dxs)
        if not _close(dx, want):
            raise AssertionError(f"{name}: the input gradient of a population differs from its members' alone "
                                 f"({where}, max |diff| {(dx - want).abs().max().item():.3g})")


def check_settings_roundtrip(example: LayerExample) -> None:
    """``type(layer)(**layer.settings())`` has the same settings."""
    layer = example.make(_all)
    again = type(layer)(**layer.settings())
    if again.settings() != layer.settings():
        raise AssertionError(f"{type(layer).__name__}: settings do not round-trip: {layer.settings()} -> "
                             f"{again.settings()}")


def _config_name(cls: type[Module]) -> str | None:
    return next((name for name, c in LAYERS.items() if c is cls), None)


def check_save_load(example: LayerExample) -> None:
    """save_model/load_model reproduce the eval-mode outputs and every parameter and buffer."""
    from trainlab.io import load_model, save_model

    model = _model(example)
    name = type(model.layers[0]).__name__
    if _config_name(type(model.layers[0])) is None:
        raise AssertionError(f"{name} is not in trainlab.nn.LAYERS, so a saved model holding it cannot be loaded")
    x = _input(example, 3, seed=9)
    model.forward(x, training=True)  # move running statistics away from their initial values
    want = model.forward(x, training=False)
    with tempfile.TemporaryDirectory() as d:
        save_model(Path(d), model)
        loaded = load_model(Path(d), device="cpu").model
    got = loaded.forward(x, training=False)
    if not torch.equal(want, got):
        raise AssertionError(f"{name}: a saved and loaded model computes something else "
                             f"(max |diff| {(want - got).abs().max().item():.3g})")
    for k, v in model.state_dict().items():
        if not torch.equal(v, loaded.state_dict()[k]):
            raise AssertionError(f"{name}: {k} changes through save/load")


def _model(example: LayerExample) -> Sequential:
    """The P=3 example inside a one-layer Sequential (what save_model and to_torch take)."""
    model = Sequential([example.make(_all)])
    model.build(example.in_shape, Population(3, seeds=list(SEEDS)), dtype=DT)
    _randomize_biases(model, SEEDS)
    return model


def check_export(example: LayerExample) -> None:
    """to_torch(member i) computes member i's eval-mode output."""
    from trainlab.export import to_torch

    if not example.export:
        return
    model = _model(example)
    x = _input(example, 3, seed=10)
    model.forward(x, training=True)
    want = model.forward(x, training=False)
    for i in range(3):
        net = to_torch(model, member=i)
        with torch.no_grad():
            got = net(x[i])
        if not torch.allclose(got, want[i], rtol=1e-9, atol=1e-10):
            raise AssertionError(f"{type(model.layers[0]).__name__}: to_torch(member={i}) differs from member {i} "
                                 f"(max |diff| {(got - want[i]).abs().max().item():.3g})")


def assert_members_match_single_models(net: Callable[[int, int], Module], x: torch.Tensor, *, seed: int = 10,
                                       size: int = 3, atol: float = 1e-12) -> None:
    """Member i of ``net(size, seed)`` equals ``net(1, seed + i)`` in one training step on the shared input
    ``x``: output, every parameter gradient and every buffer (BN running statistics). ``net(P, seed)``
    returns a built model; used for whole models (a ResNet, a conv net) beside the per-layer contract."""
    pop = net(size, seed)
    y = pop.forward(x, training=True)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    pop.backward(g)
    grads, buffers = pop.named_parameters(), pop.buffers()
    for i in range(size):
        one = net(1, seed + i)
        yi = one.forward(x, training=True)
        one.backward(g[i:i + 1])
        torch.testing.assert_close(yi[0], y[i], atol=atol, rtol=0)
        for name, p in one.named_parameters().items():
            torch.testing.assert_close(p.grad[0], grads[name].grad[i], atol=atol, rtol=0)
        for name, b in one.buffers().items():
            torch.testing.assert_close(b[0], buffers[name][i], atol=atol, rtol=0)


CHECKS: dict[str, Callable[[LayerExample], None]] = {
    "gradients": check_gradients,
    "member_independence": check_member_independence,
    "settings_roundtrip": check_settings_roundtrip,
    "save_load": check_save_load,
    "export": check_export,
}


def check_layer_contract(cls: type[Module]) -> None:
    """Every check of the contract for ``cls``; the first broken rule raises ``AssertionError``."""
    example = example_for(cls)
    for check in CHECKS.values():
        check(example)


def registered_classes() -> Iterator[type[Module]]:
    """Each class of :data:`trainlab.nn.LAYERS` once, in registry order."""
    seen: list[type[Module]] = []
    for cls in LAYERS.values():
        if cls not in seen:
            seen.append(cls)
            yield cls


# ---- the examples of trainlab's own layers ----------------------------------------------------

_VEC = (4,)
_MAP = (2, 5, 5)
for _cls, _ex in {
    Linear: LayerExample(lambda pk: Linear(4, 3, init_scale=pk([1.0, 0.5, 2.0])), _VEC),
    Identity: LayerExample(lambda pk: Identity(), _VEC),
    Sigmoid: LayerExample(lambda pk: Sigmoid(), _VEC),
    Tanh: LayerExample(lambda pk: Tanh(), _VEC),
    ReLU: LayerExample(lambda pk: ReLU(), _VEC),
    LeakyReLU: LayerExample(lambda pk: LeakyReLU(pk([0.01, 0.2, 0.5])), _VEC),
    ELU: LayerExample(lambda pk: ELU(pk([1.0, 0.5, 2.0])), _VEC),
    GELU: LayerExample(lambda pk: GELU(), _VEC),
    Softplus: LayerExample(lambda pk: Softplus(pk([1.0, 0.5, 3.0])), _VEC),
    PReLU: LayerExample(lambda pk: PReLU(None, init=pk([0.25, 0.1, 0.5])), _VEC),
    Maxout: LayerExample(lambda pk: Maxout(2), (6,)),
    SiLU: LayerExample(lambda pk: SiLU(), _VEC),
    Mish: LayerExample(lambda pk: Mish(), _VEC),
    SELU: LayerExample(lambda pk: SELU(), _VEC),
    Hardswish: LayerExample(lambda pk: Hardswish(), _VEC),
    # a block that changes the width, so "auto" adds a projection shortcut (both branches checked)
    Residual: LayerExample(lambda pk: Residual([Linear(4, 3, init_scale=pk([1.0, 0.5, 2.0])), Tanh(),
                                                Dropout(pk([0.1, 0.3, 0.5]))]), _VEC),
    AlphaDropout: LayerExample(lambda pk: AlphaDropout(pk([0.05, 0.1, 0.2])), _VEC),
    Dropout: LayerExample(lambda pk: Dropout(pk([0.2, 0.5, 0.7])), _VEC),
    DropConnectLinear: LayerExample(lambda pk: DropConnectLinear(4, 3, p=pk([0.2, 0.4, 0.6])), _VEC),
    GaussianNoise: LayerExample(lambda pk: GaussianNoise(pk([0.1, 0.5, 1.0])), _VEC),
    NoisyLinear: LayerExample(lambda pk: NoisyLinear(4, 3, std=pk([0.05, 0.1, 0.3])), _VEC),
    BatchNorm: LayerExample(lambda pk: BatchNorm(momentum=pk([0.1, 0.3, 0.05])), _VEC),
    LayerNorm: LayerExample(lambda pk: LayerNorm(), _VEC),
    GroupNorm: LayerExample(lambda pk: GroupNorm(2), _MAP),
    InstanceNorm: LayerExample(lambda pk: InstanceNorm(affine=True), _MAP),
    Conv2d: LayerExample(lambda pk: Conv2d(2, 3, 3, padding=1, init_scale=pk([1.0, 0.5, 2.0])), _MAP),
    MaxPool2d: LayerExample(lambda pk: MaxPool2d(2), (2, 4, 4)),
    AvgPool2d: LayerExample(lambda pk: AvgPool2d(3, 2, padding=1), _MAP),
    GlobalAvgPool2d: LayerExample(lambda pk: GlobalAvgPool2d(), _MAP),
    StochasticPool2d: LayerExample(lambda pk: StochasticPool2d(2), (2, 4, 4), positive=True, train_gradcheck=False),
    Flatten: LayerExample(lambda pk: Flatten(), _MAP),
    SpatialDropout2d: LayerExample(lambda pk: SpatialDropout2d(pk([0.2, 0.5, 0.7])), _MAP),
}.items():
    register_example(_cls, _ex)
