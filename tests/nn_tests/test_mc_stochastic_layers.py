"""Monte-Carlo prediction samples every stochastic layer, or the kinds the caller chooses
(issue 18, defect 4: StochasticPool2d and the noise layers stayed deterministic)."""

from __future__ import annotations

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.nn import (
    Conv2d,
    Dropout,
    Flatten,
    GaussianNoise,
    Linear,
    NoisyLinear,
    ReLU,
    Sequential,
    StochasticPool2d,
    mc_dropout,
    mc_dropout_predict,
    mc_dropout_samples,
)
from trainlab.population import Population

DT = torch.float64


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def conv_net() -> Sequential:
    m = Sequential([Conv2d(1, 3, 3, padding=1), ReLU(), StochasticPool2d(2), Flatten(), Linear(None, 4)])
    m.build((1, 6, 6), Population(2, seed=0), dtype=DT)
    return m


@pytest.mark.parametrize("make", [
    lambda: conv_net(),
    lambda: Sequential([GaussianNoise(0.5), Linear(6, 4)]),
    lambda: Sequential([Linear(6, 5), ReLU(), NoisyLinear(5, 4, std=0.3)]),
], ids=["stochastic_pool", "gaussian_noise", "noisy_linear"])
def test_each_stochastic_layer_samples_under_mc_and_its_flag_comes_back(make) -> None:
    model = make()
    if isinstance(model.layers[0], GaussianNoise) or isinstance(model.layers[-1], NoisyLinear):
        model.build((6,), Population(2, seed=0), dtype=DT)
        x = randn(5, 6, seed=1)
    else:
        x = randn(5, 1, 6, 6, seed=1)
    outs = mc_dropout_samples(model, x, samples=6)
    assert outs.shape[:3] == (6, 2, 5)
    assert not torch.equal(outs[0], outs[1]), "the passes did not sample"
    _, unc = mc_dropout_predict(model, x, samples=6)
    assert bool((unc.variance > 0).any())
    eval_out = model.forward(x.unsqueeze(0), training=False)
    assert torch.equal(eval_out, model.forward(x.unsqueeze(0), training=False))  # flags restored: deterministic
    assert all(not getattr(layer, "mc", False) for layer in model.layers)


def test_include_chooses_the_kinds_and_all_is_the_default() -> None:
    model = Sequential([GaussianNoise(0.5), Linear(6, 8), ReLU(), Dropout(0.5), NoisyLinear(8, 4, std=0.3)])
    model.build((6,), Population(1, seed=0), dtype=DT)
    noise, drop, noisy = model.layers[0], model.layers[3], model.layers[4]
    with mc_dropout(model) as switched:
        assert switched == [noise, drop, noisy]
    with mc_dropout(model, include="dropout") as switched:
        assert switched == [drop] and not noise.mc and not noisy.mc
    with mc_dropout(model, include=["noise"]) as switched:
        assert switched == [noise, noisy] and not drop.mc
    # dropout only: the noise layers stay deterministic, so a net without dropout gives equal passes
    x = randn(4, 6, seed=2)
    only_noise = Sequential([GaussianNoise(0.5), Linear(6, 4)])
    only_noise.build((6,), Population(1, seed=0), dtype=DT)
    with pytest.raises(ConfigError, match="MC dropout needs stochastic layers \\(Dropout, DropConnectLinear\\)"):
        mc_dropout_predict(only_noise, x, include="dropout")
    with pytest.raises(ConfigError, match="MC include must be 'all' or some of 'dropout', 'pool', 'noise'"):
        mc_dropout_predict(model, x, include="batchnorm")


def test_mc_over_all_layers_restores_generators_and_repeats_draws() -> None:
    a, b = conv_net(), conv_net()
    x = randn(4, 1, 6, 6, seed=3)
    first = mc_dropout_samples(a, x, samples=3)
    second = mc_dropout_samples(a, x, samples=3)
    assert torch.equal(first, second)
    # the next training draws are those of a model that never ran MC
    assert torch.equal(a.forward(x.unsqueeze(0), training=True), b.forward(x.unsqueeze(0), training=True))
