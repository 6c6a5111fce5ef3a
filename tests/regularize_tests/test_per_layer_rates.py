"""Every per-parameter step honours the parameter's per-layer rate (``lr_scale``).

Issue 18, defect 1: the proximal L1 step thresholded at ``lr * alpha`` whatever the
layer's rate, so a layer set to learn at 0x was still shrunk to exact zeros. The
audit of the other per-parameter steps: decoupled weight decay (already used the
scaled rate; guarded here), max-norm (projected a layer set to learn at 0x; fixed),
and the noise layers (GaussianNoise, NoisyLinear: noise is drawn in the forward pass,
no step of their own, so there is nothing to scale).
"""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.optim import SGD, Adam
from trainlab.population import Population
from trainlab.regularize import L1, ElasticNet, MaxNorm
from trainlab.transfer import set_layer_lr

DT = torch.float64


def model(P: int = 2) -> nn.Sequential:
    m = nn.Sequential([nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)])
    m.build((6,), Population(P, seed=0), dtype=DT)
    g = torch.Generator().manual_seed(1)
    for p in m.parameters():
        p.data.copy_(torch.randn(p.data.shape, dtype=DT, generator=g) * 0.1)
    return m


def step(m: nn.Sequential, opt, reg) -> None:
    x = torch.randn(1, 8, 6, dtype=DT, generator=torch.Generator().manual_seed(2))
    y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(3))
    loss = nn.SoftmaxCrossEntropy()
    loss.forward(m.forward(x, training=True), y)
    m.backward(loss.backward())
    if reg is not None:
        reg.add_grad()
    opt.step()
    if reg is not None:
        reg.after_step(opt)


def soft(w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.sign(w) * torch.clamp(w.abs() - t, min=0.0)


@pytest.mark.parametrize("make", [lambda a: L1(a, proximal=True), lambda a: ElasticNet(a, 0.0, proximal=True)],
                         ids=["l1", "elastic_net"])
def test_proximal_l1_leaves_a_layer_at_rate_zero_alone(make) -> None:
    m = model()
    m.layers[0].weight.data.fill_(0.04)  # the example: weights of 0.04, alpha large enough to zero them
    set_layer_lr(m, {0: 0.0})
    reg = make(0.5)
    reg.attach(m)
    opt = SGD(m.parameters(), lr=0.1)
    step(m, opt, reg)
    assert torch.all(m.layers[0].weight.data == 0.04), "a layer learning at 0x the rate was shrunk"
    # the other layer (rate 1) is thresholded as before: some exact zeros
    assert int((m.layers[2].weight.data == 0).sum()) > 0


def test_proximal_l1_threshold_is_lr_times_lr_scale_times_alpha_per_member() -> None:
    lr, alpha, scale = torch.tensor([0.1, 0.3], dtype=DT), torch.tensor([0.2, 0.05], dtype=DT), 0.25
    a, b = model(), model()
    set_layer_lr(a, {0: scale})
    reg = L1(alpha.tolist(), proximal=True)
    reg.attach(a)
    opt_a = SGD(a.parameters(), lr=lr.tolist())
    # b: the same SGD step without the regularizer, then the expected soft-thresholding by hand
    set_layer_lr(b, {0: scale})
    opt_b = SGD(b.parameters(), lr=lr.tolist())
    step(a, opt_a, reg)
    step(b, opt_b, None)
    thr = lr * alpha
    torch.testing.assert_close(a.layers[0].weight.data, soft(b.layers[0].weight.data, (thr * scale).view(2, 1, 1)),
                               atol=1e-15, rtol=0)
    torch.testing.assert_close(a.layers[2].weight.data, soft(b.layers[2].weight.data, thr.view(2, 1, 1)),
                               atol=1e-15, rtol=0)


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_decoupled_decay_uses_the_parameters_effective_rate(opt_cls) -> None:
    # w <- w - lr * lr_scale * wd * w: a layer at rate 0 is not decayed; at rate s it decays as lr * s
    m = model()
    set_layer_lr(m, {0: 0.0, 2: 0.5})
    before0, before2 = m.layers[0].weight.data.clone(), m.layers[2].weight.data.clone()
    opt = opt_cls(m.parameters(), lr=0.1, weight_decay=0.3, decoupled=True)
    for p in m.parameters():
        p.grad.zero_()
    opt.step()  # zero gradients: only the decay moves the weights
    assert torch.equal(m.layers[0].weight.data, before0)
    torch.testing.assert_close(m.layers[2].weight.data, before2 * (1 - 0.1 * 0.5 * 0.3), atol=1e-15, rtol=0)


def test_max_norm_leaves_a_layer_at_rate_zero_alone_and_projects_the_others() -> None:
    m = model()
    m.layers[0].weight.data.mul_(100)
    m.layers[2].weight.data.mul_(100)
    set_layer_lr(m, {0: 0.0, 2: 0.5})
    before = m.layers[0].weight.data.clone()
    reg = MaxNorm(1.0)
    reg.attach(m)
    reg.after_step(SGD(m.parameters(), lr=0.1))
    assert torch.equal(m.layers[0].weight.data, before)
    # the projection is independent of the step size: rate 0.5 is projected onto the ball all the same
    torch.testing.assert_close(MaxNorm.unit_norms(m.layers[2].weight.data),
                               torch.ones(2, 1, 3, dtype=DT), atol=1e-12, rtol=0)
