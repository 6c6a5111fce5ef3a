"""Penalties and constraints: gradients, conventions, equivalences, exact zeros."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.gradcheck import check_penalty
from trainlab.optim import SGD, AdamW, Adam
from trainlab.population import Population
from trainlab.regularize import L1, L2, ElasticNet, MaxNorm, select_parameters


def model(P=1, dtype=torch.float64, seed=0):
    m = nn.Sequential([nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)])
    m.build((6,), Population(P, seed=seed), dtype=dtype)
    for p in m.parameters():  # non-zero biases, away from |w| = 0 kinks
        p.data.copy_(torch.randn(p.data.shape, dtype=dtype, generator=torch.Generator().manual_seed(1)) + 0.05)
    return m


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("make", [
    lambda P: L2([0.1, 0.3, 0.02][:P] if P > 1 else 0.1),
    lambda P: L2([0.1, 0.3, 0.02][:P] if P > 1 else 0.1, form="half"),
    lambda P: L2(0.2, include_1d=True),
    lambda P: L1([0.1, 0.05, 0.3][:P] if P > 1 else 0.1),
    lambda P: ElasticNet([0.1, 0.05, 0.3][:P] if P > 1 else 0.1, [0.2, 0.01, 0.1][:P] if P > 1 else 0.2),
], ids=["l2", "l2-half", "l2-1d", "l1", "elastic"])
def test_penalty_gradcheck(P, make):
    m = model(P)
    reg = make(P)
    reg.attach(m)
    res = check_penalty(reg, m)
    assert res.max_error < 1e-6, str(res)


def test_penalty_values_and_conventions():
    m = model(2)
    w = [p.data for n, p in m.named_parameters().items() if n.endswith("weight")]
    sq = sum(x.pow(2).reshape(2, -1).sum(1) for x in w)
    ab = sum(x.abs().reshape(2, -1).sum(1) for x in w)
    for reg, expected in ((L2([0.1, 0.2]), torch.tensor([0.1, 0.2]) * sq),
                          (L2(0.1, form="half"), 0.05 * sq),
                          (L1(0.3), 0.3 * ab),
                          (ElasticNet(0.3, 0.1), 0.3 * ab + 0.1 * sq)):
        reg.attach(m)
        torch.testing.assert_close(reg.penalty(), expected.to(torch.float64))


def test_biases_excluded_by_default_and_opt_in():
    m = model(1)
    assert [n for n, _ in select_parameters(m)] == ["0.weight", "2.weight"]
    assert [n for n, _ in select_parameters(m, include_1d=True)] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in select_parameters(m, layers=[2])] == ["2.weight"]
    m.layers[0].weight.decay = False  # per-layer opt-out
    assert [n for n, _ in select_parameters(m)] == ["2.weight"]
    with pytest.raises(ConfigError, match=r"regularizer layers \[7\] do not exist"):
        select_parameters(m, layers=[7])


def _step_with(m, opt, reg, x, y):
    loss = nn.SoftmaxCrossEntropy()
    out = m.forward(x, training=True)
    loss.forward(out, y)
    m.backward(loss.backward())
    if reg is not None:
        reg.add_grad()
    opt.step()


def test_sgd_weight_decay_equals_half_l2_penalty():
    """Coupled weight decay wd in SGD == L2 penalty (wd/2)*||w||^2 on weights (the docs' claim)."""
    x = torch.randn(1, 8, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    a, b = model(2), model(2)
    opt_a = SGD(a.parameters(), lr=0.1, weight_decay=[0.01, 0.2])
    reg = L2([0.01, 0.2], form="half")
    reg.attach(b)
    opt_b = SGD(b.parameters(), lr=0.1)
    for _ in range(5):
        _step_with(a, opt_a, None, x, y)
        _step_with(b, opt_b, reg, x, y)
    for k in a.state_dict():
        torch.testing.assert_close(a.state_dict()[k], b.state_dict()[k], rtol=1e-12, atol=1e-12)


def test_adamw_decoupled_differs_from_adam_with_l2():
    """For adaptive methods coupled (L2) and decoupled decay differ (Loshchilov & Hutter)."""
    x = torch.randn(1, 8, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    a, b = model(1), model(1)
    opt_a = AdamW(a.parameters(), lr=0.01, weight_decay=0.1)
    opt_b = Adam(b.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(5):
        _step_with(a, opt_a, None, x, y)
        _step_with(b, opt_b, None, x, y)
    assert (a.layers[0].weight.data - b.layers[0].weight.data).abs().max() > 1e-4


def test_l1_proximal_gives_exact_zeros_plain_l1_does_not():
    x = torch.randn(1, 32, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    res = {}
    for proximal in (False, True):
        m = model(1)
        reg = L1(0.05, proximal=proximal)
        reg.attach(m)
        opt = SGD(m.parameters(), lr=0.1)
        for _ in range(200):
            _step_with(m, opt, reg, x, y)
            reg.after_step(opt)
        w = torch.cat([m.layers[0].weight.data.flatten(), m.layers[2].weight.data.flatten()])
        res[proximal] = (int((w == 0).sum()), int((w.abs() < 1e-3).sum()))
    assert res[False][0] == 0          # subgradient steps oscillate around zero, never reach it
    assert res[True][0] >= 10          # soft thresholding makes exact zeros


def test_max_norm_projects_each_units_incoming_weights():
    m = model(2)
    m.layers[0].weight.data.mul_(10)
    reg = MaxNorm([1.0, 2.0])
    reg.attach(m)
    opt = SGD(m.parameters(), lr=0.1)
    before = m.layers[0].weight.data.clone()
    reg.after_step(opt)
    norms = MaxNorm.unit_norms(m.layers[0].weight.data)  # (P, 1, out)
    assert norms.shape == (2, 1, 5)
    assert torch.all(norms[0] <= 1.0 + 1e-12) and torch.all(norms[1] <= 2.0 + 1e-12)
    torch.testing.assert_close(norms[0], torch.ones_like(norms[0]))  # all were larger: projected to the sphere
    # direction kept
    cos = torch.nn.functional.cosine_similarity(before[0], m.layers[0].weight.data[0], dim=0)
    torch.testing.assert_close(cos, torch.ones_like(cos))
    # a weight already inside the ball is unchanged
    small = m.layers[2].weight.data.clone()
    reg2 = MaxNorm(1e6)
    reg2.attach(m)
    reg2.after_step(opt)
    assert torch.equal(small, m.layers[2].weight.data)


def test_max_norm_skips_inactive_members():
    m = model(2)
    m.layers[0].weight.data.mul_(10)
    reg = MaxNorm(1.0)
    reg.attach(m)
    opt = SGD(m.parameters(), lr=0.1)
    opt.set_active(torch.tensor([True, False]))
    before = m.layers[0].weight.data[1].clone()
    reg.after_step(opt)
    assert torch.equal(m.layers[0].weight.data[1], before)


def test_bad_values():
    with pytest.raises(ConfigError, match="L2 form must be 'full'"):
        L2(0.1, form="quarter")
    m = model(2)
    with pytest.raises(ConfigError, match="l2 lambda must be >= 0.0, got -1.0"):
        L2(-1.0).attach(m)
    with pytest.raises(ConfigError, match="max_norm c must be > 0.0"):
        MaxNorm(0.0).attach(m)
