"""Every new feature-map layer's backward against central differences, float64, at P=1 and P=3.

At P=3 the members differ (init_scale, drop rates, fixed masks and samples), and the
input is either one per member ``(3, N, ...)`` or shared ``(1, N, ...)`` (its gradient
summed over the members). Relative errors must stay below 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from trainlab.gradcheck import check_layer
from trainlab.nn import Sequential, Tanh
from trainlab.nn._blocks import conv_block
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._module import Module
from trainlab.nn._pool import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d, StochasticPool2d
from trainlab.population import Population

DT = torch.float64
TOL = 1e-6
N = 2


def distinct(shape: tuple[int, ...], seed: int, *, positive: bool = False) -> torch.Tensor:
    """Values at least 1e-3 apart (no near-ties for max pooling), shuffled; positive if asked."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    v = torch.randperm(n, generator=g).to(DT) * 1e-2
    v = v - v.mean() if not positive else v + 0.1
    return v.reshape(shape)


def build(layer: Module, in_shape: tuple[int, ...], P: int, seed: int = 0) -> Module:
    layer.build(in_shape, Population(P, seed=seed), dtype=DT)
    return layer


def per_member(P: int, values: list) -> object:
    return values[0] if P == 1 else values[:P]


def members(P: int, shared: bool) -> int:
    return 1 if shared else P


# ---- Conv2d ---------------------------------------------------------------------------------

CONV_GEOMETRIES = {
    "k3": dict(kernel_size=3),
    "k3x2_s2_p1": dict(kernel_size=(3, 2), stride=2, padding=1),
    "k3_d2_p2": dict(kernel_size=3, dilation=2, padding=2),
    "same": dict(kernel_size=3, padding="same"),
    "k2_s_21_nobias": dict(kernel_size=2, stride=(2, 1), bias=False),
}


@pytest.mark.parametrize("geometry", list(CONV_GEOMETRIES))
@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_conv2d(geometry: str, P: int, shared: bool) -> None:
    layer = build(Conv2d(2, 3, init_scale=per_member(P, [1.0, 0.5, 2.0]), **CONV_GEOMETRIES[geometry]), (2, 6, 5), P)
    if layer.bias is not None:
        layer.bias.data.copy_(torch.randn(layer.bias.shape, generator=torch.Generator().manual_seed(1), dtype=DT))
    x = torch.randn(members(P, shared), N, 2, 6, 5, generator=torch.Generator().manual_seed(2), dtype=DT)
    res = check_layer(layer, x)
    assert res.max_error < TOL, str(res)


#: (strategy, shared input): "wide" exists for shared inputs only
STRATEGY_INPUTS = [("loop", False), ("loop", True), ("grouped", False), ("grouped", True), ("wide", True)]


@pytest.mark.parametrize("strategy,shared", STRATEGY_INPUTS)
def test_conv2d_every_strategy(strategy: str, shared: bool) -> None:
    P = 3
    layer = build(Conv2d(2, 3, 3, stride=2, padding=1, init_scale=[1.0, 0.5, 2.0], strategy=strategy), (2, 7, 7), P)
    x = torch.randn(members(P, shared), N, 2, 7, 7, generator=torch.Generator().manual_seed(3), dtype=DT)
    res = check_layer(layer, x)
    assert layer.last_strategy == strategy
    assert res.max_error < TOL, str(res)


def test_conv2d_first_layer_skips_the_input_gradient() -> None:
    layer = build(Conv2d(1, 2, 3), (1, 5, 5), 3)
    layer.input_grad = False
    x = torch.randn(1, N, 1, 5, 5, dtype=DT)
    layer.forward(x, training=True)
    assert layer.backward(torch.ones(3, N, 2, 3, 3, dtype=DT)) is None
    res = check_layer(layer, x)
    assert "input" not in res.errors and res.max_error < TOL, str(res)


# ---- pooling, flatten ------------------------------------------------------------------------

# name -> (factory(P), per-example input shape, positive inputs)
POOLS: dict[str, tuple[Callable[[int], Module], tuple[int, int, int], bool]] = {
    "maxpool_2": (lambda P: MaxPool2d(2), (2, 6, 6), False),
    "maxpool_3_s2_p1": (lambda P: MaxPool2d(3, 2, padding=1), (2, 7, 7), False),
    "maxpool_2_d2_ceil": (lambda P: MaxPool2d(2, 2, dilation=2, ceil_mode=True), (2, 7, 7), False),
    "avgpool_2": (lambda P: AvgPool2d(2), (2, 6, 6), False),
    "avgpool_3_s2_p1": (lambda P: AvgPool2d(3, 2, padding=1), (2, 7, 7), False),
    "avgpool_3_s2_p1_exclude_pad": (lambda P: AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 7, 7), False),
    "avgpool_2_ceil": (lambda P: AvgPool2d(2, ceil_mode=True), (2, 5, 5), False),
    "global_avgpool": (lambda P: GlobalAvgPool2d(), (3, 4, 5), False),
    "flatten": (lambda P: Flatten(), (2, 3, 4), False),
    "stochastic_pool_eval": (lambda P: StochasticPool2d(2), (2, 6, 6), True),
    "stochastic_pool_eval_3_s2": (lambda P: StochasticPool2d(3, 2), (2, 7, 7), True),
}


@pytest.mark.parametrize("name", list(POOLS))
@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_pooling(name: str, P: int, shared: bool) -> None:
    factory, shape, positive = POOLS[name]
    layer = build(factory(P), shape, P)
    x = distinct((members(P, shared), N, *shape), seed=4, positive=positive)
    res = check_layer(layer, x, training=not name.startswith("stochastic"))
    assert res.max_error < TOL, str(res)


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2)])
def test_stochastic_pool_training_with_a_fixed_sample(P: int, shared: bool, kernel: int, stride: int | None) -> None:
    layer = build(StochasticPool2d(kernel, stride), (2, 7, 7), P)
    x = distinct((members(P, shared), N, 2, 7, 7), seed=5, positive=True)
    layer.forward(x, training=True)
    drawn = layer.last_sample
    assert drawn.shape == (P, N, 2, *layer._out_hw)
    layer.fix_sample(drawn)
    res = check_layer(layer, x, training=True)
    assert res.max_error < TOL, str(res)


# ---- spatial dropout -------------------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("training", [True, False])
def test_spatial_dropout(P: int, shared: bool, mode: str, training: bool) -> None:
    layer = build(SpatialDropout2d(per_member(P, [0.3, 0.5, 0.7]), mode=mode), (4, 3, 3), P)
    keep = torch.rand(P, N, 4, generator=torch.Generator().manual_seed(6)) > 0.5
    layer.fix_mask(keep)
    x = torch.randn(members(P, shared), N, 4, 3, 3, generator=torch.Generator().manual_seed(7), dtype=DT)
    res = check_layer(layer, x, training=training)
    assert res.max_error < TOL, str(res)


# ---- blocks: Conv -> norm -> activation -> dropout -> pool on feature maps -------------------


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm", "instancenorm"])
@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_conv_block_with_each_norm(norm: str, P: int, shared: bool) -> None:
    layers = conv_block(2, 4, 3, norm=norm, groups=2, activation="tanh", dropout=per_member(P, [0.2, 0.4, 0.6]),
                        pool="avg")
    model = Sequential([*layers, Flatten()])
    model.build((2, 6, 6), Population(P, seed=1), dtype=DT)
    drop = next(l for l in model.layers if isinstance(l, SpatialDropout2d))
    drop.fix_mask(torch.rand(P, 3, 4, generator=torch.Generator().manual_seed(8)) > 0.3)
    x = torch.randn(members(P, shared), 3, 2, 6, 6, generator=torch.Generator().manual_seed(9), dtype=DT)
    res = check_layer(model, x, training=True)
    assert res.max_error < TOL, str(res)


def test_conv_block_order_and_bias() -> None:
    layers = conv_block(1, 8, 3, dropout=0.25, pool="max")
    assert [type(l).__name__ for l in layers] == ["Conv2d", "BatchNorm", "ReLU", "SpatialDropout2d", "MaxPool2d"]
    assert layers[0].has_bias is False  # BN's beta is the shift; a conv bias would cancel in BN
    assert layers[0].initializer.name == "he_normal"
    plain = conv_block(1, 8, 3, norm=None, activation=Tanh())
    assert [type(l).__name__ for l in plain] == ["Conv2d", "Tanh"]
    assert plain[0].has_bias is True and plain[0].initializer.name == "xavier_normal"
