"""Maxout and PReLU: float64 gradient checks at P=1 and P=3, references against torch,
export, config support and the population rule."""

from __future__ import annotations

import pytest
import torch

from trainlab.build import build_model
from trainlab.config import resolve_config
from trainlab.errors import ConfigError
from trainlab.export import TorchMaxout, to_torch
from trainlab.gradcheck import check_layer
from trainlab.nn import Conv2d, Linear, Maxout, PReLU, Sequential
from trainlab.population import Population

DT = torch.float64
TOL = 1e-6
N = 4


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT) * scale


def away_from_ties_and_kinks(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Distinct, non-zero values spaced >= 1e-2 apart (central differences with h=1e-6 never cross a tie)."""
    n = 1
    for s in shape:
        n *= s
    g = torch.Generator().manual_seed(seed)
    vals = (torch.arange(n, dtype=DT) - n / 2 + 0.5) * 0.05  # distinct, none at 0
    return vals[torch.randperm(n, generator=g)].reshape(shape)


def built(layer, in_shape, P, seed=0):
    layer.build(in_shape, Population(P, seed=seed), dtype=DT)
    return layer


# ---- gradient checks -----------------------------------------------------------------

@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_backward_matches_central_differences(P: int, shared: bool, pieces: int) -> None:
    layer = built(Maxout(pieces), (4 * pieces,), P)
    x = away_from_ties_and_kinks((1 if shared else P, N, 4 * pieces), seed=1)
    result = check_layer(layer, x, seed=2)
    assert result.max_error < TOL, result


@pytest.mark.parametrize("P", [1, 3])
def test_maxout_in_a_net_with_conv_maps(P: int) -> None:
    model = built(Sequential([Conv2d(2, 6, 3, padding=1), Maxout(3)]), (2, 4, 4), P)
    x = away_from_ties_and_kinks((P, 2, 2, 4, 4), seed=3)
    res = check_layer(model, x, seed=4)
    assert res.max_error < TOL, res
    assert model.forward(x, training=False).shape == (P, 2, 2, 4, 4)


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("num", ["shared_slope", "per_channel"])
@pytest.mark.parametrize("maps", [False, True], ids=["flat", "conv_maps"])
def test_prelu_backward_matches_central_differences(P: int, shared: bool, num: str, maps: bool) -> None:
    in_shape = (3, 2, 2) if maps else (5,)
    init = 0.25 if P == 1 else [0.25, -0.1, 0.6]
    layer = built(PReLU(1 if num == "shared_slope" else None, init=init), in_shape, P)
    layer.weight.data.add_(randn(*layer.weight.shape, seed=5, scale=0.1))  # distinct slopes per channel
    x = away_from_ties_and_kinks((1 if shared else P, N) + in_shape, seed=6)
    result = check_layer(layer, x, seed=7)
    assert set(result.errors) == {"input", "weight"}
    assert result.max_error < TOL, result


# ---- references ---------------------------------------------------------------------

@pytest.mark.parametrize("maps", [False, True], ids=["flat", "conv_maps"])
@pytest.mark.parametrize("num", [1, None])
def test_prelu_matches_torch_nn_prelu_forward_backward_and_slope_gradient(maps: bool, num: int | None) -> None:
    P = 3
    in_shape = (3, 2, 2) if maps else (3,)
    layer = built(PReLU(num, init=[0.25, 0.1, 0.5]), in_shape, P)
    layer.weight.data.add_(randn(*layer.weight.shape, seed=8, scale=0.1))
    x = randn(P, N, *in_shape, seed=9, scale=2.0)
    x[:, 0, 0] = 0.0  # the kink: follow torch (slope a at 0)
    g = randn(P, N, *in_shape, seed=10)
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    for i in range(P):
        ref = torch.nn.PReLU(num_parameters=layer.weight.shape[1], dtype=DT)
        with torch.no_grad():
            ref.weight.copy_(layer.weight.data[i])
        xi = x[i].clone().requires_grad_()
        yi = ref(xi)
        yi.backward(g[i])
        torch.testing.assert_close(y[i], yi, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(dx[i], xi.grad, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(layer.weight.grad[i], ref.weight.grad, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("pieces", [2, 4])
def test_maxout_matches_its_definition_and_routes_to_the_first_argmax(pieces: int) -> None:
    P = 2
    layer = built(Maxout(pieces), (3 * pieces,), P)
    x = randn(P, N, 3 * pieces, seed=11)
    x[:, 0, :pieces] = 1.5  # a tie: all pieces of unit 0, example 0
    y = layer.forward(x, training=True)
    torch.testing.assert_close(y, x.reshape(P, N, 3, pieces).max(dim=-1).values, atol=0, rtol=0)
    g = randn(P, N, 3, seed=12)
    dx = layer.backward(g)
    xr = x.clone().requires_grad_()
    xr.reshape(P, N, 3, pieces).max(dim=-1).values.backward(g)  # torch.max's backward: the index it returns
    torch.testing.assert_close(dx, xr.grad, atol=0, rtol=0)
    assert dx[:, 0, 0] .eq(g[:, 0, 0]).all() and (dx[:, 0, 1:pieces] == 0).all()
    # exactly one piece per unit receives the gradient
    assert ((dx.reshape(P, N, 3, pieces) != 0).sum(-1) <= 1).all()


def test_population_member_equals_member_alone() -> None:
    x = randn(1, 6, 5, seed=13)

    def run(P: int, seeds: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        m = Sequential([Linear(5, 8), PReLU(None, init=[0.25, 0.4][:P] if P > 1 else 0.4), Linear(8, 6), Maxout(3)])
        m.build((5,), Population(P, seeds=seeds), dtype=DT)
        y = m.forward(x, training=True)
        m.backward(torch.ones_like(y))
        return y, [p.grad.clone() for p in m.parameters()]

    y2, g2 = run(2, [3, 4])
    y1, g1 = run(1, [4])
    torch.testing.assert_close(y2[1:], y1, atol=1e-12, rtol=0)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a[1:], b, atol=1e-12, rtol=0)


# ---- export ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_export_prelu_and_maxout_match_every_member(dtype: torch.dtype) -> None:
    model = Sequential([Linear(6, 12), Maxout(3), PReLU(None, init=[0.25, 0.05, 0.5]), Linear(4, 6), Maxout(2),
                        PReLU(1, init=[0.1, 0.2, 0.3])])
    model.build((6,), Population(3, seed=1), dtype=dtype)
    x = randn(1, 7, 6, seed=14, scale=2.0).to(dtype)
    y = model.forward(x, training=False)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for i in range(3):
        t = to_torch(model, i)
        assert isinstance(t[1], TorchMaxout) and isinstance(t[2], torch.nn.PReLU)
        assert t[2].weight.shape == (4,) and t[5].weight.shape == (1,)
        with torch.no_grad():
            torch.testing.assert_close(t(x[0]), y[i], atol=tol, rtol=tol)


def test_torch_maxout_on_conv_maps_and_its_gradient_routing() -> None:
    x = randn(2, 6, 3, 3, seed=15).requires_grad_()
    y = TorchMaxout(2)(x)
    assert y.shape == (2, 3, 3, 3)
    layer = built(Maxout(2), (6, 3, 3), 1)
    torch.testing.assert_close(layer.forward(x.detach()[None], training=True)[0], y.detach(), atol=0, rtol=0)
    g = randn(2, 3, 3, 3, seed=16)
    y.backward(g)
    torch.testing.assert_close(layer.backward(g[None])[0], x.grad, atol=0, rtol=0)


# ---- errors and config -----------------------------------------------------------

def test_bad_settings_get_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="Maxout pieces must be an integer >= 2"):
        Maxout(1)
    with pytest.raises(ConfigError, match="divisible by 3"):
        built(Maxout(3), (8,), 1)
    with pytest.raises(ConfigError, match="num_parameters must be 1 or the number of channels"):
        built(PReLU(4), (5,), 1)
    with pytest.raises(ConfigError, match="PReLU num_parameters"):
        PReLU(0)


def test_config_activation_prelu_and_maxout_build_the_expected_layers() -> None:
    cfg = resolve_config({"model": {"activation": "maxout", "maxout_pieces": 3, "hidden": [10, 7]}})
    model = build_model(cfg["model"], 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Linear", "Maxout", "Linear", "Maxout", "Linear"]
    assert model.layers[0].out_features == 30 and model.layers[2].out_features == 21
    model.build((784,), Population(2), dtype=DT)
    assert model.forward(randn(1, 3, 784, seed=17), training=True).shape == (2, 3, 10)

    cfg = resolve_config({"model": {"activation": "prelu", "hidden": [10], "prelu_init": [0.1, 0.3]},
                          "population": {"size": 2}})
    model = build_model(cfg["model"], 10)
    model.build((784,), Population(2), dtype=DT)
    assert isinstance(model.layers[1], PReLU) and model.layers[1].weight.shape == (2, 10)
    assert model.layers[1].weight.data[:, 0].tolist() == [0.1, 0.3]
    cfg = resolve_config({"model": {"activation": "prelu", "hidden": [10], "prelu_shared": True}})
    model = build_model(cfg["model"], 10)
    model.build((784,), Population(1), dtype=DT)
    assert model.layers[1].weight.shape == (1, 1)
    with pytest.raises(ConfigError, match="maxout_pieces"):
        resolve_config({"model": {"activation": "maxout", "maxout_pieces": 1}})


def test_prelu_slope_is_not_decayed_by_default_and_learns() -> None:
    from trainlab.optim import SGD
    from trainlab.regularize import select_parameters

    model = Sequential([Linear(3, 4), PReLU(None)])
    model.build((3,), Population(1), dtype=DT)
    names = [n for n, _ in select_parameters(model, include_1d=True)]  # what L1/L2 penalize
    assert "1.weight" not in names and "0.weight" in names
    assert model.layers[1].weight.kind == "slope" and not model.layers[1].weight.decay
    before = model.layers[1].weight.data.clone()
    x = -torch.ones(1, 2, 3, dtype=DT)
    model.layers[0].weight.data.fill_(1.0)  # all pre-activations negative: the slope gets a gradient
    y = model.forward(x, training=True)
    model.backward(torch.ones_like(y))
    SGD(model.parameters(), lr=0.1, weight_decay=0.5).step()
    assert not torch.equal(model.layers[1].weight.data, before)
    # coupled decay skips it (decay=False): the step is exactly -lr * grad
    torch.testing.assert_close(model.layers[1].weight.data, before - 0.1 * model.layers[1].weight.grad)


def test_save_and_load_a_model_with_maxout_prelu_and_textbook_bn(tmp_path) -> None:
    from trainlab.io import load_model, save_model
    from trainlab.nn import Flatten, textbook_batch_norm

    m = Sequential([Conv2d(1, 4, 3, padding=1), textbook_batch_norm(), Maxout(2), PReLU(None, init=[0.1, 0.2]),
                    Flatten(), Linear(None, 6), PReLU(1)])
    m.build((1, 4, 4), Population(2), dtype=DT)
    m.forward(randn(1, 5, 1, 4, 4, seed=20), training=True)  # running statistics with values
    save_model(tmp_path, m)
    loaded = load_model(tmp_path).model
    x = randn(1, 3, 1, 4, 4, seed=21)
    assert torch.equal(loaded.forward(x, training=False), m.forward(x, training=False))
    assert loaded.layers[1].settings() == m.layers[1].settings()


def test_conv_block_with_a_prelu_layer_uses_he_init() -> None:
    from trainlab.nn import conv_block

    layers = conv_block(1, 4, activation=PReLU(None))
    assert layers[0].initializer.name == "he_normal" and isinstance(layers[2], PReLU)
