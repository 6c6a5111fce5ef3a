"""BatchNorm conventions: the textbook's BatchNormalization exactly, Keras' biased running
variance, per-activation statistics for conv maps (issue 18, conventions)."""

from __future__ import annotations

import pytest
import torch

from trainlab.build import build_model
from trainlab.config import resolve_config
from trainlab.errors import ConfigError
from trainlab.export import to_torch
from trainlab.gradcheck import check_layer
from trainlab.nn import BatchNorm, Conv2d, Sequential, textbook_batch_norm
from trainlab.population import Population

DT = torch.float64


def randn(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT) * scale + shift


class TextbookBatchNormalization:
    """Saito, Deep Learning from Scratch, common/layers.py ``BatchNormalization``, transcribed
    line by line (numpy -> torch float64; its ``10e-7`` is kept as written)."""

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma, self.beta, self.momentum = gamma, beta, momentum
        self.input_shape = None
        self.running_mean, self.running_var = running_mean, running_var
        self.batch_size = self.xc = self.std = None
        self.dgamma = self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            N, C, H, W = x.shape
            x = x.reshape(N, -1)
        out = self.__forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def __forward(self, x, train_flg):
        if self.running_mean is None:
            N, D = x.shape
            self.running_mean = torch.zeros(D, dtype=DT)
            self.running_var = torch.zeros(D, dtype=DT)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = torch.mean(xc ** 2, axis=0)
            std = torch.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc, self.xn, self.std = xc, xn, std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / (torch.sqrt(self.running_var + 10e-7))
        return self.gamma * xn + self.beta

    def backward(self, dout):
        if dout.ndim != 2:
            N, C, H, W = dout.shape
            dout = dout.reshape(N, -1)
        dx = self.__backward(dout)
        return dx.reshape(*self.input_shape)

    def __backward(self, dout):
        dbeta = dout.sum(axis=0)
        dgamma = torch.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -torch.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = torch.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size
        self.dgamma, self.dbeta = dgamma, dbeta
        return dx


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("in_shape", [(7,), (2, 3, 3)], ids=["flat", "conv_maps"])
def test_textbook_preset_bn_equals_the_textbooks_formulas(P: int, in_shape: tuple[int, ...]) -> None:
    D = 1
    for s in in_shape:
        D *= s
    layer = textbook_batch_norm()
    layer.build(in_shape, Population(P, seed=0), dtype=DT)
    # distinct gamma/beta per member and per activation
    layer.gamma.data.copy_(randn(P, *layer.gamma.shape[1:], seed=1, scale=0.3, shift=1.0))
    layer.beta.data.copy_(randn(P, *layer.beta.shape[1:], seed=2, scale=0.3))
    assert layer.gamma.shape == (P,) + in_shape  # per activation, as the textbook's gamma of size D
    assert torch.all(layer.running_var == 0) and torch.all(layer.running_mean == 0)
    books = [TextbookBatchNormalization(layer.gamma.data[i].reshape(-1).clone(), layer.beta.data[i].reshape(-1).clone())
             for i in range(P)]
    for step in range(4):
        x = randn(P, 5, *in_shape, seed=10 + step, scale=2.0, shift=0.5)
        g = randn(P, 5, *in_shape, seed=20 + step)
        y = layer.forward(x, training=True)
        dx = layer.backward(g)
        for i, book in enumerate(books):
            torch.testing.assert_close(y[i], book.forward(x[i], train_flg=True), atol=1e-12, rtol=1e-12)
            torch.testing.assert_close(dx[i], book.backward(g[i]), atol=1e-11, rtol=1e-11)
            torch.testing.assert_close(layer.gamma.grad[i].reshape(-1), book.dgamma, atol=1e-11, rtol=1e-11)
            torch.testing.assert_close(layer.beta.grad[i].reshape(-1), book.dbeta, atol=1e-12, rtol=1e-12)
            torch.testing.assert_close(layer.running_mean[i].reshape(-1), book.running_mean, atol=1e-15, rtol=1e-13)
            torch.testing.assert_close(layer.running_var[i].reshape(-1), book.running_var, atol=1e-15, rtol=1e-13)
    xt = randn(P, 4, *in_shape, seed=30, scale=2.0)
    yt = layer.forward(xt, training=False)
    for i, book in enumerate(books):
        torch.testing.assert_close(yt[i], book.forward(xt[i], train_flg=False), atol=1e-12, rtol=1e-12)


def test_textbook_settings_and_their_defaults_differ_from_torchs() -> None:
    bn = textbook_batch_norm()
    assert (bn.eps, bn.momentum, bn.running_variance, bn.running_var_init, bn.statistics) == (
        1e-6, 0.1, "biased", 0.0, "activation")
    assert 10e-7 == 1e-6  # the textbook's literal
    torch_like = BatchNorm()
    assert (torch_like.eps, torch_like.running_variance, torch_like.running_var_init, torch_like.statistics) == (
        1e-5, "unbiased", 1.0, "channel")
    assert textbook_batch_norm(eps=1e-3).eps == 1e-3


@pytest.mark.parametrize("kind", ["biased", "unbiased"])
def test_running_variance_biased_is_keras_unbiased_is_torch(kind: str) -> None:
    P, C, N = 2, 4, 6
    layer = BatchNorm(momentum=[0.01, 0.3], running_variance=kind)
    layer.build((C,), Population(P), dtype=DT)
    torch_bn = [torch.nn.BatchNorm1d(C, momentum=m, dtype=DT) for m in (0.01, 0.3)]
    keras_var = torch.ones(P, C, dtype=DT)  # Keras: moving_variance starts at ones
    for step in range(3):
        x = randn(P, N, C, seed=step, scale=3.0, shift=1.0)
        layer.forward(x, training=True)
        for i, m in enumerate((0.01, 0.3)):
            torch_bn[i].train()(x[i])
            # Keras BatchNormalization(momentum=1 - m): moving = moving * momentum + var * (1 - momentum), var biased
            keras_var[i] = keras_var[i] * (1 - m) + x[i].var(dim=0, unbiased=False) * m
    for i in range(P):
        want = keras_var[i] if kind == "biased" else torch_bn[i].running_var
        torch.testing.assert_close(layer.running_var[i], want, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(layer.running_mean[i], torch_bn[i].running_mean, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("training", [True, False])
def test_per_activation_statistics_gradcheck_and_torch_export(P: int, training: bool) -> None:
    model = Sequential([Conv2d(1, 2, 3, padding=1), BatchNorm(statistics="activation", momentum=0.5)])
    model.build((1, 4, 4), Population(P, seed=0), dtype=DT)
    bn = model.layers[1]
    assert bn.running_mean.shape == (P, 2, 4, 4) and bn.gamma.shape == (P, 2, 4, 4)
    x = randn(P, 5, 1, 4, 4, seed=3)
    model.forward(x, training=True)  # give the running statistics values
    bn.gamma.data.copy_(randn(P, 2, 4, 4, seed=4, scale=0.2, shift=1.0))
    bn.beta.data.copy_(randn(P, 2, 4, 4, seed=5, scale=0.2))
    res = check_layer(bn, randn(P, 5, 2, 4, 4, seed=6), seed=7, training=training)
    assert res.max_error < 1e-6, res
    # per activation: each (c, h, w) over N only -- torch's BatchNorm1d over the flattened features
    xt = randn(P, 6, 1, 4, 4, seed=8)
    y = model.forward(xt, training=False)
    for i in range(P):
        with torch.no_grad():
            torch.testing.assert_close(to_torch(model, i)(xt[i]), y[i], atol=1e-12, rtol=1e-12)
    h = model.layers[0].forward(xt, training=True)
    z = bn.forward(h, training=True)
    ref = torch.nn.functional.batch_norm(h[0].reshape(6, -1), None, None, bn.gamma.data[0].reshape(-1),
                                         bn.beta.data[0].reshape(-1), training=True, eps=bn.eps)
    torch.testing.assert_close(z[0].reshape(6, -1), ref, atol=1e-12, rtol=1e-12)


def test_bad_options_and_config_keys() -> None:
    with pytest.raises(ConfigError, match="running_variance must be 'unbiased'"):
        BatchNorm(running_variance="keras")
    with pytest.raises(ConfigError, match="statistics must be 'channel'"):
        BatchNorm(statistics="pixel")
    with pytest.raises(ConfigError, match="running_var_init must be a number >= 0"):
        BatchNorm(running_var_init=-1)
    cfg = resolve_config({"model": {"norm": "batchnorm", "bn_running_var": "biased", "bn_eps": 1e-6,
                                    "bn_running_var_init": 0.0, "hidden": [8]}})
    bn = build_model(cfg["model"], 10).layers[1]
    assert (bn.running_variance, bn.eps, bn.running_var_init) == ("biased", 1e-6, 0.0)
    with pytest.raises(ConfigError, match="bn_running_var"):
        resolve_config({"model": {"bn_running_var": "keras"}})


def test_the_textbook_preset_builds_the_textbooks_bn_and_quick_builds_torchs() -> None:
    from trainlab.experiments import Preset
    from trainlab.experiments._common import batch_norm_settings, mlp

    tb = mlp(1, [6], batchnorm=batch_norm_settings(Preset("textbook"))).layers[1]
    ref = textbook_batch_norm()
    assert tb.settings() == ref.settings() | {"num_features": None}
    quick = mlp(1, [6], batchnorm=batch_norm_settings(Preset("quick"))).layers[1]
    assert quick.settings() == BatchNorm().settings()
