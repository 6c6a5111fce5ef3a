"""Feature-map layers against torch.nn.functional (float64, forward and autograd gradients),
the population invariant, export to torch, and the error messages."""

from __future__ import annotations

import pytest
import torch

from trainlab.nn.testing import assert_members_match_single_models
import torch.nn.functional as F

from trainlab.errors import ConfigError
from trainlab.export import to_torch
from trainlab.nn import BatchNorm, GroupNorm, InstanceNorm, Linear, ReLU, Sequential
from trainlab.nn._blocks import conv_block
from trainlab.nn._conv import Conv2d, SpatialDropout2d
from trainlab.nn._pool import AvgPool2d, Flatten, GlobalAvgPool2d, MaxPool2d, StochasticPool2d
from trainlab.population import Population

DT = torch.float64
ATOL = 1e-12


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def autograd_reference(fn, x: torch.Tensor, params: list[torch.Tensor], g: torch.Tensor):
    """Output of ``fn(x, *params)`` and the gradients of ``sum(out * g)`` by autograd."""
    x = x.clone().requires_grad_()
    ps = [p.clone().requires_grad_() for p in params]
    out = fn(x, *ps)
    (out * g).sum().backward()
    return out.detach(), x.grad, [p.grad for p in ps]


# ---- Conv2d vs F.conv2d ------------------------------------------------------------------------

CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=5, stride=2, padding=2),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1)),
    dict(kernel_size=3, padding="same", dilation=2),
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("strategy,shared", [("auto", False), ("auto", True), ("loop", False), ("loop", True),
                                             ("grouped", False), ("grouped", True), ("wide", True)])
def test_conv2d_matches_functional(case: int, strategy: str, shared: bool) -> None:
    P, N, C = 3, 4, 3
    kw = CONV_CASES[case]
    layer = Conv2d(C, 5, strategy=strategy, **kw)
    layer.build((C, 11, 9), Population(P), dtype=DT)
    layer.bias.data.normal_(generator=gen(1))
    x = torch.randn(1 if shared else P, N, C, 11, 9, generator=gen(2), dtype=DT)
    y = layer.forward(x, training=True)
    g = torch.randn(y.shape, generator=gen(3), dtype=DT)
    dx = layer.backward(g)
    pad = layer.padding
    for m in range(P):
        xm = x[0 if shared else m]

        def f(xx, w, b):
            return F.conv2d(xx, w, b, layer.stride, pad, layer.dilation)

        ref, rdx, (rdw, rdb) = autograd_reference(f, xm, [layer.weight.data[m], layer.bias.data[m]], g[m])
        torch.testing.assert_close(y[m], ref, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.weight.grad[m], rdw, atol=ATOL, rtol=0)
        torch.testing.assert_close(layer.bias.grad[m], rdb, atol=ATOL, rtol=0)
        if not shared:
            torch.testing.assert_close(dx[m], rdx, atol=ATOL, rtol=0)
    if shared:
        # the shared input's gradient is the sum of the members' gradients
        total = sum(autograd_reference(lambda xx, w, b: F.conv2d(xx, w, b, layer.stride, pad, layer.dilation),
                                       x[0], [layer.weight.data[m], layer.bias.data[m]], g[m])[1] for m in range(P))
        assert dx.shape == x.shape
        torch.testing.assert_close(dx[0], total, atol=ATOL, rtol=0)


def test_conv2d_output_shape_and_layout() -> None:
    layer = Conv2d(None, 30, 5)
    assert layer.build((1, 28, 28), Population(2)) == (30, 24, 24)
    assert layer.in_channels == 1
    assert layer.weight.shape == (2, 30, 1, 5, 5) and layer.bias.shape == (2, 30)
    assert layer.weight.kind == "weight" and layer.weight.decay
    assert layer.bias.kind == "bias" and not layer.bias.decay
    assert Conv2d(3, 8, 3, stride=2, padding=1).build((3, 28, 28), Population(1)) == (8, 14, 14)
    assert Conv2d(3, 8, 3, padding="same").build((3, 28, 27), Population(1)) == (8, 28, 27)


def test_conv2d_init_uses_conv_fans() -> None:
    layer = Conv2d(16, 32, 3, init="he_normal")
    layer.build((16, 8, 8), Population(1, seed=0), dtype=DT)
    std = float(layer.weight.data.std())
    assert abs(std - (2.0 / (16 * 9)) ** 0.5) < 0.01  # fan_in = in * kh * kw


# ---- the population invariant -----------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["auto", "loop", "grouped"])
def test_member_i_of_a_population_equals_a_single_model(strategy: str) -> None:
    """Member i of a P=3 net (conv, BN, spatial dropout, stochastic pool) == the P=1 net seeded s+i."""
    def net(P: int, seed: int) -> Sequential:
        m = Sequential([Conv2d(1, 4, 3, init="he_normal", strategy=strategy), BatchNorm(), ReLU(),
                        SpatialDropout2d(0.3), StochasticPool2d(2), Conv2d(4, 6, 3, padding=1, strategy=strategy),
                        ReLU(), MaxPool2d(2), Flatten(), Linear(None, 5)])
        m.build((1, 12, 12), Population(P, seed=seed), dtype=DT)
        return m

    assert_members_match_single_models(net, torch.rand(1, 6, 1, 12, 12, generator=gen(0), dtype=DT))


# ---- pooling vs F.max_pool2d / F.avg_pool2d -------------------------------------------------------

POOL_CASES = [
    ("max", dict(kernel_size=2)),
    ("max", dict(kernel_size=3, stride=2, padding=1)),
    ("max", dict(kernel_size=2, stride=1, dilation=2, ceil_mode=True)),
    ("avg", dict(kernel_size=2)),
    ("avg", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("avg", dict(kernel_size=3, stride=2, ceil_mode=True)),
]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pooling_matches_functional(case: int) -> None:
    kind, kw = POOL_CASES[case]
    P, N, C, H, W = 3, 4, 2, 9, 8
    layer = (MaxPool2d if kind == "max" else AvgPool2d)(**kw)
    out_shape = layer.build((C, H, W), Population(P), dtype=DT)
    x = torch.randn(P, N, C, H, W, generator=gen(4), dtype=DT)
    y = layer.forward(x, training=True)
    assert tuple(y.shape[2:]) == out_shape
    g = torch.randn(y.shape, generator=gen(5), dtype=DT)
    dx = layer.backward(g)
    kw = dict(kw)
    k = kw.pop("kernel_size")
    s = kw.pop("stride", None)
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    ref, rdx, _ = autograd_reference(lambda xx: fn(xx.reshape(P * N, C, H, W), k, s, **kw), x, [],
                                     g.reshape(P * N, *g.shape[2:]))
    torch.testing.assert_close(y.reshape(ref.shape), ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(dx, rdx, atol=ATOL, rtol=0)


def test_shared_input_stays_shared_through_pooling() -> None:
    layer = MaxPool2d(2)
    layer.build((1, 4, 4), Population(3))
    x = torch.randn(1, 2, 1, 4, 4)
    assert layer.forward(x, training=True).shape == (1, 2, 1, 2, 2)
    assert layer.backward(torch.ones(1, 2, 1, 2, 2)).shape == x.shape


def test_global_avgpool_and_flatten() -> None:
    gp, fl = GlobalAvgPool2d(), Flatten()
    assert gp.build((3, 4, 5), Population(2)) == (3,)
    assert fl.build((3, 4, 5), Population(2)) == (60,)
    x = torch.randn(2, 6, 3, 4, 5, dtype=DT)
    torch.testing.assert_close(gp.forward(x, training=True), F.adaptive_avg_pool2d(x.reshape(12, 3, 4, 5), 1)
                               .reshape(2, 6, 3))
    torch.testing.assert_close(fl.forward(x, training=True), torch.flatten(x.reshape(12, 3, 4, 5), 1)
                               .reshape(2, 6, 60))


# ---- stochastic pooling -------------------------------------------------------------------------


def test_stochastic_pool_eval_is_the_probability_weighted_average() -> None:
    layer = StochasticPool2d(2)
    layer.build((1, 2, 4), Population(1), dtype=DT)
    x = torch.tensor([[1.0, 3.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]], dtype=DT).reshape(1, 1, 1, 2, 4)
    y = layer.forward(x, training=False)
    # window 1: (1*1 + 3*3 + 4*4) / (1 + 3 + 4) = 26/8; window 2: all zeros -> 0
    torch.testing.assert_close(y.flatten(), torch.tensor([26 / 8, 0.0], dtype=DT))
    dx = layer.backward(torch.ones_like(y))
    torch.testing.assert_close(dx.flatten()[:2], torch.tensor([(2 - 26 / 8) / 8, (6 - 26 / 8) / 8], dtype=DT))
    assert float(dx.flatten()[2:4].abs().sum()) == 0.0


def test_stochastic_pool_draws_positions_with_probability_proportional_to_activation() -> None:
    layer = StochasticPool2d(2)
    layer.build((1, 2, 2), Population(1, seed=3))
    a = torch.tensor([1.0, 2.0, 0.0, 5.0])
    x = a.reshape(1, 1, 1, 2, 2).expand(1, 20000, 1, 2, 2).contiguous()
    y = layer.forward(x, training=True)
    counts = torch.bincount(layer.last_sample.flatten(), minlength=4).double() / 20000
    torch.testing.assert_close(counts, a.double() / 8, atol=0.015, rtol=0)
    assert counts[2] == 0  # a zero activation is never drawn
    assert set(y.flatten().tolist()) <= {1.0, 2.0, 5.0}
    dx = layer.backward(torch.ones_like(y))
    # the gradient goes to the drawn position only
    assert torch.equal(dx.reshape(20000, 4).argmax(dim=1), layer.last_sample.flatten())


def test_stochastic_pool_members_draw_independently_from_a_shared_input() -> None:
    layer = StochasticPool2d(2)
    layer.build((1, 4, 4), Population(3, seed=0))
    x = torch.rand(1, 50, 1, 4, 4)
    y = layer.forward(x, training=True)
    assert y.shape == (3, 50, 1, 2, 2)
    assert not torch.equal(layer.last_sample[0], layer.last_sample[1])
    assert layer.backward(torch.ones_like(y)).shape == x.shape
    assert layer.forward(x, training=False).shape == (1, 50, 1, 2, 2)


def test_stochastic_pool_refuses_negative_inputs() -> None:
    layer = StochasticPool2d(2)
    layer.build((1, 2, 2), Population(1))
    with pytest.raises(ConfigError, match="non-negative inputs .* after a ReLU"):
        layer.forward(-torch.ones(1, 1, 1, 2, 2), training=True)


# ---- spatial dropout ------------------------------------------------------------------------------


def test_spatial_dropout_drops_whole_channels_per_member() -> None:
    layer = SpatialDropout2d([0.2, 0.5, 0.8 - 1e-9])
    layer.build((64, 3, 3), Population(3, seed=0))
    x = torch.ones(1, 200, 64, 3, 3)
    y = layer.forward(x, training=True)
    assert y.shape == (3, 200, 64, 3, 3)
    flat = y.reshape(3, 200, 64, 9)
    assert torch.all(flat == flat[..., :1])  # one decision per channel, for all positions
    kept = (flat[..., 0] > 0).double().mean(dim=(1, 2))
    torch.testing.assert_close(kept, torch.tensor([0.8, 0.5, 0.2], dtype=DT), atol=0.02, rtol=0)
    torch.testing.assert_close(flat[0][flat[0] > 0].unique(), torch.tensor([1 / 0.8]))
    assert torch.equal(layer.forward(x, training=False), x)


# ---- export ---------------------------------------------------------------------------------------


def test_export_convnet_to_torch() -> None:
    model = Sequential([*conv_block(1, 4, 3, norm="batchnorm", dropout=0.3), StochasticPool2d(2),
                        *conv_block(4, 6, 3, norm=GroupNorm(2), activation="elu", dropout=0.2, spatial=True),
                        AvgPool2d(2), Conv2d(6, 8, 1), InstanceNorm(8, affine=True), ReLU(), GlobalAvgPool2d(),
                        Linear(None, 3)])
    model.build((1, 12, 12), Population(2, seed=0), dtype=DT)
    x = torch.rand(16, 1, 12, 12, generator=gen(0), dtype=DT)
    model.forward(x.unsqueeze(0), training=True)  # move BN's running statistics away from (0, 1)
    ours = model.forward(x.unsqueeze(0), training=False)
    for m in range(2):
        ref = to_torch(model, m)(x)
        torch.testing.assert_close(ours[m], ref, atol=1e-10, rtol=0)
    flat = Sequential([Conv2d(1, 2, 3), MaxPool2d(2), Flatten(), Linear(None, 2)])
    flat.build((1, 8, 8), Population(1), dtype=DT)
    torch.testing.assert_close(flat.forward(x[:, :, :8, :8].unsqueeze(0), training=False)[0],
                               to_torch(flat)(x[:, :, :8, :8]))
    assert isinstance(to_torch(flat)[0], torch.nn.Conv2d)


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("make,text", [
    (lambda: Conv2d(1, 0, 3), "Conv2d out_channels must be an integer >= 1, got 0"),
    (lambda: Conv2d(1, 4), "Conv2d kernel_size must be an integer >= 1 or a pair of them, got None"),
    (lambda: Conv2d(1, 4, 3, stride=0), "Conv2d stride must be an integer >= 1 or a pair of them, got 0"),
    (lambda: Conv2d(1, 4, 3, padding=-1), "Conv2d padding must be an integer >= 0 or a pair of them, got -1"),
    (lambda: Conv2d(1, 4, 2, padding="same"), "padding='same' needs an odd effective kernel size"),
    (lambda: Conv2d(1, 4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
    (lambda: Conv2d(1, 4, 3, strategy="fast"), "Conv2d strategy must be one of auto, loop, grouped, wide"),
    (lambda: MaxPool2d(2, padding=2), "MaxPool2d padding must be at most half the kernel size"),
    (lambda: SpatialDropout2d(1.0), "SpatialDropout2d p is the drop probability and must satisfy 0 <= p < 1"),
    (lambda: conv_block(1, 4, norm="layernorm"), "conv_block norm must be one of batchnorm, groupnorm"),
])
def test_bad_settings_are_one_clear_error(make, text: str) -> None:
    with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_shape_errors() -> None:
    with pytest.raises(ConfigError, match="Conv2d expects feature maps .* load images with flatten=False"):
        Conv2d(1, 4, 3).build((784,), Population(1))
    with pytest.raises(ConfigError, match=r"Conv2d\(3, 4\) got inputs with 1 channels"):
        Conv2d(3, 4, 3).build((1, 8, 8), Population(1))
    with pytest.raises(ConfigError, match="does not fit inputs of 4x4"):
        Conv2d(1, 4, 5).build((1, 4, 4), Population(1))
    layer = Conv2d(1, 4, 3, strategy="wide")
    layer.build((1, 8, 8), Population(2))
    with pytest.raises(ConfigError, match="strategy='wide' needs an input shared by all members"):
        layer.forward(torch.zeros(2, 1, 1, 8, 8), training=True)
    with pytest.raises(ConfigError, match="expects inputs"):
        layer.forward(torch.zeros(3, 1, 1, 8, 8), training=True)
