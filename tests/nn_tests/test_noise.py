"""Noise robustness: GaussianNoise (input noise) and NoisyLinear (weight noise).

Gradient checks hold the noise fixed (``fix_noise``) so the central differences see
one function. At P=3 the members' noise levels differ.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.gradcheck import check_layer
from trainlab.nn import Linear, Module, Sequential, Tanh
from trainlab.nn._noise import GaussianNoise, NoisyLinear
from trainlab.population import Population
from trainlab.export import converter_for


def converter_for_layer(layer, member):
    return converter_for(layer)(layer, member)


DT = torch.float64
TOL = 1e-6
N = 4
STDS = [0.1, 0.5, 2.0]


def stds(P: int) -> float | list[float]:
    return STDS[0] if P == 1 else STDS[:P]


def built(layer: Module, in_shape: tuple[int, ...], P: int, *, seed: int = 0, seeds: list[int] | None = None) -> Module:
    layer.build(in_shape, Population(P, seed=seed, seeds=seeds), dtype=DT)
    return layer


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def randomize_biases(layer: Linear, seed: int) -> None:
    if layer.bias is not None:
        layer.bias.data.copy_(randn(*layer.bias.shape, seed=seed) * 0.3)


def draw_and_fix(layer, x: torch.Tensor) -> torch.Tensor:
    layer.forward(x, training=True)
    eps = layer.last_noise
    layer.fix_noise(eps)
    return eps


# ---- gradient checks -----------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gaussian_noise_backward_matches_central_differences(P: int, shared: bool, training: bool) -> None:
    layer = built(GaussianNoise(stds(P)), (5,), P)
    x = randn(1 if shared else P, N, 5, seed=1)
    if training:
        assert draw_and_fix(layer, x).shape == (P, N, 5)
    result = check_layer(layer, x, training=training, seed=2)
    assert set(result.errors) == {"input"}
    assert result.max_error < TOL, f"P={P} shared={shared} training={training}: {result}"


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("bias", [True, False])
def test_noisy_linear_backward_matches_central_differences(P: int, shared: bool, bias: bool) -> None:
    layer = built(NoisyLinear(3, 4, std=stds(P), bias=bias, init_scale=[1.0, 0.5, 2.0][:P]), (3,), P)
    randomize_biases(layer, seed=3)
    x = randn(1 if shared else P, N, 3, seed=4)
    assert draw_and_fix(layer, x).shape == (P, 3, 4)
    result = check_layer(layer, x, seed=5)
    assert set(result.errors) == {"input", "weight", *(["bias"] if bias else [])}
    assert result.max_error < TOL, f"P={P} shared={shared} bias={bias}: {result}"
    assert check_layer(layer, x, training=False, seed=5).max_error < TOL


def test_noisy_linear_gradient_is_taken_at_the_noisy_weights() -> None:
    P = 3
    layer = built(NoisyLinear(5, 3, std=STDS), (5,), P, seed=6)
    randomize_biases(layer, seed=7)
    x, g = randn(1, N, 5, seed=8), randn(P, N, 3, seed=9)
    y = layer.forward(x, training=True)
    eps = layer.last_noise
    dx = layer.backward(g)

    W = layer.weight.data.clone().requires_grad_()
    b = layer.bias.data.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    W_noisy = W + torch.tensor(STDS, dtype=DT).reshape(P, 1, 1) * eps
    y_ref = torch.baddbmm(b, xr.expand(P, N, 5), W_noisy)
    (y_ref * g).sum().backward()
    for ours, ref in ((y, y_ref), (dx, xr.grad), (layer.weight.grad, W.grad), (layer.bias.grad, b.grad)):
        torch.testing.assert_close(ours, ref.detach(), atol=1e-12, rtol=1e-12)
    # dW = x^T g whatever the noise; dx goes through the noisy weights, not W
    clean = torch.bmm(g, layer.weight.data.transpose(1, 2)).sum(0, keepdim=True)
    assert not torch.allclose(dx, clean)


# ---- behaviour -------------------------------------------------------------------------


def test_gaussian_noise_statistics_per_member() -> None:
    P = 3
    layer = built(GaussianNoise(STDS), (50,), P, seed=10)
    x = randn(1, 400, 50, seed=11)
    noise = layer.forward(x, training=True) - x  # (P, 400, 50)
    n = 400 * 50
    for i, s in enumerate(STDS):
        assert abs(noise[i].mean().item()) < 3 * s / math.sqrt(n)
        # the sample std of n normals has standard error ~ s / sqrt(2n)
        assert abs(noise[i].std().item() - s) < 3 * s / math.sqrt(2 * n)
    torch.testing.assert_close(noise, layer.last_noise * torch.tensor(STDS, dtype=DT).reshape(P, 1, 1),
                               atol=1e-15, rtol=0)


def test_eval_is_the_identity_and_deterministic() -> None:
    x = randn(1, N, 6, seed=12)
    gn = built(GaussianNoise(STDS), (6,), 3)
    assert gn.forward(x, training=False) is x
    assert torch.equal(gn.backward(x), x)
    nl = built(NoisyLinear(6, 2, std=STDS), (6,), 3, seed=13)
    ref = built(Linear(6, 2), (6,), 3, seed=13)
    a = nl.forward(x, training=False)
    nl.forward(x, training=True)
    assert torch.equal(a, nl.forward(x, training=False))
    assert torch.equal(a, ref.forward(x, training=False))
    assert nl.last_noise is None


def test_noise_is_redrawn_every_step_and_std_zero_is_noise_free() -> None:
    x = randn(1, N, 6, seed=14)
    nl = built(NoisyLinear(6, 2, std=[0.0, 0.3]), (6,), 2, seed=15)
    ref = built(Linear(6, 2), (6,), 2, seed=15)
    a, b = nl.forward(x, training=True), nl.forward(x, training=True)
    assert not torch.equal(a[1], b[1])
    torch.testing.assert_close(a[0], ref.forward(x, training=False)[0], atol=1e-15, rtol=0)
    gn = built(GaussianNoise([0.0, 1.0]), (6,), 2)
    y = gn.forward(x, training=True)
    assert torch.equal(y[0], x[0]) and not torch.equal(y[1], x[0])


def test_shared_input_gets_per_member_noise_and_summed_gradient() -> None:
    layer = built(GaussianNoise(0.5), (6,), 3)
    x = randn(1, N, 6, seed=16)
    y = layer.forward(x, training=True)
    assert y.shape == (3, N, 6) and not torch.equal(y[0], y[1])
    g = randn(3, N, 6, seed=17)
    torch.testing.assert_close(layer.backward(g), g.sum(0, keepdim=True), atol=0, rtol=0)
    layer.input_grad = False
    layer.forward(x, training=True)
    assert layer.backward(g) is None


def test_a_fixed_noise_draws_nothing() -> None:
    a, b = built(GaussianNoise(1.0), (3,), 2, seed=1), built(GaussianNoise(1.0), (3,), 2, seed=1)
    x = randn(1, N, 3, seed=2)
    a.fix_noise(torch.zeros(2, N, 3))
    assert torch.equal(a.forward(x, training=True), x.expand(2, N, 3))
    a.release_noise()
    assert torch.equal(a.forward(x, training=True), b.forward(x, training=True))
    a.fix_noise(torch.zeros(1, N, 3))
    with pytest.raises(ConfigError, match=r"the fixed noise has shape \(1, 4, 3\), this forward needs \(2, 4, 3\)"):
        a.forward(x, training=True)


def test_input_noise_in_a_model_trains_every_member() -> None:
    model = Sequential([GaussianNoise(STDS), Linear(6, 8), Tanh(), NoisyLinear(8, 2, std=[0.0, 0.05, 0.2])])
    model.build((6,), Population(3, seed=30), dtype=DT)
    model.input_grad = False
    out = model.forward(randn(1, 10, 6, seed=31), training=True)
    assert out.shape == (3, 10, 2)
    assert model.backward(torch.ones_like(out)) is None
    assert all(bool((p.grad.flatten(1).abs().sum(1) > 0).all()) for p in model.parameters())


# ---- errors, settings, export -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GaussianNoise(-0.1), "GaussianNoise std must be >= 0.0, got -0.1"),
        (lambda: GaussianNoise([0.1, float("inf")]), "GaussianNoise std must be finite, got inf"),
        (lambda: NoisyLinear(3, 2, std=-1), "NoisyLinear std must be >= 0.0, got -1.0"),
        (lambda: NoisyLinear(3, 2, std=None),
         "NoisyLinear std must be a number or a list of numbers (one per member), got None"),
        (lambda: built(GaussianNoise([0.1, 0.2]), (3,), 3),
         "GaussianNoise std must be one number or a list of 3 numbers (one per member), got 2 values"),
    ],
)
def test_errors_state_the_rule_and_the_value(make, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value)


def test_std_is_required_and_settings_are_verbatim() -> None:
    with pytest.raises(TypeError):
        NoisyLinear(3, 2)  # type: ignore[call-arg]
    assert GaussianNoise([0.1, 0.2]).settings() == {"std": [0.1, 0.2]}
    assert NoisyLinear(None, 4, std=0.05).settings() == {"in_features": None, "out_features": 4, "std": 0.05,
                                                         "init": "xavier_uniform", "init_scale": 1.0, "bias": True}


def test_converters_match_the_eval_function() -> None:
    x = randn(1, N, 5, seed=40)
    gn = built(GaussianNoise(STDS), (5,), 3)
    assert isinstance(converter_for_layer(gn, 1), torch.nn.Identity)
    nl = built(NoisyLinear(5, 3, std=STDS), (5,), 3)
    randomize_biases(nl, seed=41)
    ev = nl.forward(x, training=False)
    for member in range(3):
        mod = converter_for_layer(nl, member)
        assert isinstance(mod, torch.nn.Linear)
        torch.testing.assert_close(mod(x[0]), ev[member], atol=1e-14, rtol=1e-14)
