"""SiLU/Swish, Mish, SELU, Hardswish and AlphaDropout: gradient checks, torch references,
the AlphaDropout formula of Klambauer et al. (2017), export, config, self-normalization."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.build import build_model
from trainlab.config import load_config
from trainlab.export import to_torch
from trainlab.gradcheck import check_layer
from trainlab.init import LecunNormal
from trainlab.nn import SELU, AlphaDropout, Hardswish, Linear, Mish, Sequential, SiLU
from trainlab.nn._activations import SELU_ALPHA, SELU_SCALE
from trainlab.nn._alpha_dropout import ALPHA_PRIME, alpha_dropout_affine
from trainlab.population import Population

DT = torch.float64
TOL = 1e-6
N = 4

ACTS = {"silu": (SiLU, torch.nn.SiLU), "mish": (Mish, torch.nn.Mish), "selu": (SELU, torch.nn.SELU),
        "hardswish": (Hardswish, torch.nn.Hardswish)}


def _x(shape: tuple[int, ...], seed: int, scale: float = 2.5) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT) * scale
    # keep central differences off the kinks (SELU at 0, Hardswish at +-3)
    for k in (0.0, -3.0, 3.0):
        x = torch.where((x - k).abs() < 1e-3, x + 0.01, x)
    return x


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_gradcheck(name: str, P: int, shared: bool) -> None:
    layer = ACTS[name][0]()
    layer.build((6,), Population(P), dtype=DT)
    x = _x((1 if shared else P, N, 6), seed=1)
    assert check_layer(layer, x).max_error < TOL


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_matches_torch(name: str) -> None:
    ours, ref = ACTS[name]
    P = 3
    layer = ours()
    layer.build((9,), Population(P), dtype=DT)
    x = _x((P, 6, 9), seed=2, scale=3.0)
    x[:, 0, :5] = torch.tensor([0.0, -3.0, 3.0, 40.0, -40.0], dtype=DT)  # kinks, saturation
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=DT)
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    xr = x.clone().requires_grad_()
    yr = ref()(xr)
    yr.backward(g)
    torch.testing.assert_close(y, yr.detach(), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(dx, xr.grad, atol=1e-12, rtol=1e-12)


def test_selu_constants_are_torchs() -> None:
    x = torch.tensor([-1e3, 1.0], dtype=DT)
    y = torch.nn.functional.selu(x)
    assert math.isclose(float(y[1]), SELU_SCALE, rel_tol=1e-15)
    assert math.isclose(float(y[0]), -SELU_SCALE * SELU_ALPHA, rel_tol=1e-15)


# ---- AlphaDropout -------------------------------------------------------------------------------


def _paper_alpha_dropout(x: torch.Tensor, keep: torch.Tensor, q: float) -> torch.Tensor:
    """Klambauer et al. 2017, section 4, written with the KEEP probability q as in the paper."""
    alpha_p = -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717
    a = (q + alpha_p ** 2 * q * (1 - q)) ** -0.5
    b = -a * (1 - q) * alpha_p
    return a * (x * keep + alpha_p * (1 - keep)) + b


def _torch_alpha_dropout(x: torch.Tensor, keep: torch.Tensor, p: float) -> torch.Tensor:
    """torch's aten kernel (_dropout_impl, alpha=true) with its Bernoulli mask replaced by ``keep``."""
    alpha = 1.7580993408473766
    a = 1.0 / math.sqrt((alpha * alpha * p + 1) * (1 - p))
    b = (keep - 1) * (alpha * a) + alpha * a * p
    return x * (keep * a) + b


@pytest.mark.parametrize("shared", [False, True])
def test_alpha_dropout_formula_with_a_fixed_mask(shared: bool) -> None:
    P, rates = 3, [0.05, 0.2, 0.5]
    layer = AlphaDropout(rates)
    layer.build((8,), Population(P), dtype=DT)
    keep = torch.rand(P, N, 8, generator=torch.Generator().manual_seed(4)) > torch.tensor(rates).reshape(3, 1, 1)
    layer.fix_mask(keep)
    x = _x((1 if shared else P, N, 8), seed=5)
    y = layer.forward(x, training=True)
    k = keep.to(DT)
    for i, p in enumerate(rates):
        xi = x[0 if shared else i]
        torch.testing.assert_close(y[i], _paper_alpha_dropout(xi, k[i], 1 - p), atol=1e-13, rtol=1e-13)
        torch.testing.assert_close(y[i], _torch_alpha_dropout(xi, k[i], p), atol=1e-13, rtol=1e-13)
    assert torch.equal(layer.forward(x, training=False), x)  # identity at inference
    assert check_layer(layer, x).max_error < TOL  # mask fixed: exact backward g * a * m


def test_alpha_dropout_constants() -> None:
    assert math.isclose(-ALPHA_PRIME, 1.7580993408473766, rel_tol=1e-15)  # the constant in torch's kernel
    a, b = alpha_dropout_affine(torch.tensor([0.1], dtype=DT))
    q = 0.9
    assert math.isclose(float(a), (q + ALPHA_PRIME ** 2 * q * (1 - q)) ** -0.5, rel_tol=1e-14)
    assert math.isclose(float(b), -float(a) * (1 - q) * ALPHA_PRIME, rel_tol=1e-14)


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_alpha_dropout_keeps_mean_and_variance_like_torch(p: float) -> None:
    # x ~ N(0, 1); after alpha dropout mean 0 and variance 1 (the paper's design). With n = 400k
    # draws the sample mean's standard error is 1/sqrt(n) ~ 0.0016 and the variance's ~ 0.0022,
    # so 0.01 is > 4 standard errors; torch.nn.AlphaDropout on the same x passes the same test.
    n = 400_000
    x = torch.randn(1, 1, n, generator=torch.Generator().manual_seed(6), dtype=DT)
    layer = AlphaDropout(p)
    layer.build((n,), Population(1, seed=7), dtype=DT)
    y = layer.forward(x, training=True)
    torch.manual_seed(8)
    yt = torch.nn.AlphaDropout(p).train()(x[0, 0])
    for out in (y.flatten(), yt):
        assert abs(float(out.mean())) < 0.01
        assert abs(float(out.var()) - 1.0) < 0.01
    dropped = 1.0 - layer.last_mask.to(DT).mean()
    assert abs(float(dropped) - p) < 0.005


def test_alpha_dropout_population_invariant() -> None:
    pop = Population(3, seed=11)
    layer = AlphaDropout([0.1, 0.2, 0.3])
    layer.build((10,), pop, dtype=DT)
    x = _x((1, N, 10), seed=9)
    y = layer.forward(x, training=True)
    for i in range(3):
        alone = AlphaDropout([0.1, 0.2, 0.3][i])
        alone.build((10,), Population(1, seeds=[pop.seeds[i]]), dtype=DT)
        torch.testing.assert_close(alone.forward(x, training=True)[0], y[i], atol=0, rtol=0)


# ---- export, config, self-normalization ---------------------------------------------------------


def test_export_new_activations() -> None:
    model = Sequential([Linear(5, 8), SiLU(), Linear(8, 8), Mish(), Linear(8, 8), SELU(), AlphaDropout([0.1, 0.2]),
                        Linear(8, 8), Hardswish(), Linear(8, 3)])
    model.build((5,), Population(2, seed=1), dtype=DT)
    x = _x((1, 7, 5), seed=10)
    y = model.forward(x, training=False)
    for i in range(2):
        t = to_torch(model, i)
        assert isinstance(t[6], torch.nn.AlphaDropout) and t[6].p == [0.1, 0.2][i]
        with torch.no_grad():
            torch.testing.assert_close(t(x[0]), y[i], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("act", ["silu", "swish", "mish", "selu", "hardswish"])
def test_config_builds_each_activation(act: str) -> None:
    cfg = load_config(None, [f"model.activation='{act}'", "model.dropout=0.1", "model.dropout_mode='alpha'"])
    model = build_model(cfg["model"], 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Linear", ACTS["silu" if act == "swish" else act][0].__name__, "AlphaDropout"] * 2 + ["Linear"]
    want = "lecun_normal" if act == "selu" else "he_normal"
    assert model.layers[0]._settings["init"] == want


def test_selu_with_lecun_normal_is_self_normalizing_on_mnist() -> None:
    # Klambauer et al. 2017: with LeCun-normal weights, (mean, variance) = (0, 1) is an attracting
    # fixed point of a SELU layer. Measured here on 2000 real MNIST digits (mnist-5k, standardized
    # per pixel: mean 0, variance 0.82 since constant border pixels stay 0), 16 layers of width 256,
    # one seed: SELU's |mean| stayed <= 0.023 and its variance went 0.79 -> 0.998 (pulled towards 1);
    # ReLU's second moment fell from 0.41 to 1e-5 and tanh's variance to 0.032. Thresholds: SELU mean
    # within 0.05 of 0 and variance in [0.7, 1.1] at every layer, and ending within 0.05 of 1;
    # ReLU's second moment below 1e-3 and tanh's variance below 0.05 at the end.
    from trainlab.data import load_splits

    splits = load_splits("mnist-5k", val=0, test=0, preprocess="standardize", dtype=DT)
    x = splits.train.x[:2000].reshape(1, 2000, -1).to(DT)
    init = LecunNormal()
    h_selu = h_relu = h_tanh = x
    fan = x.shape[-1]
    selu = SELU()
    selu.build((256,), Population(1), dtype=DT)
    for layer in range(16):
        w = init.sample((fan, 256), torch.Generator().manual_seed(layer)).to(DT)
        fan = 256
        h_selu = selu.forward(h_selu @ w, training=False)
        h_relu, h_tanh = torch.relu(h_relu @ w), torch.tanh(h_tanh @ w)
        m, v = float(h_selu.mean()), float(h_selu.var())
        assert abs(m) < 0.05 and 0.7 < v < 1.1, (layer, m, v)
    assert abs(float(h_selu.var()) - 1.0) < 0.05
    assert float(h_relu.pow(2).mean()) < 1e-3 and float(h_tanh.var()) < 0.05
