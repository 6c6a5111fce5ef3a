"""Normalization layers: gradient checks, torch references, statistics, conventions, errors.

Everything in float64. At P=3 the members differ (gamma, beta, running statistics,
BatchNorm momentum), so a layer that mixes members up or reduces over ``P`` fails.
References: ``torch.nn.BatchNorm1d/2d`` (outputs, gradients AND running statistics over
several steps, member by member), ``F.layer_norm``/``F.group_norm``/``F.instance_norm``
through autograd, and the Ioffe & Szegedy population formulas written out by hand.
"""

from __future__ import annotations

from collections.abc import Callable
import warnings

import pytest
import torch
import torch.nn.functional as F

from trainlab.errors import ConfigError
from trainlab.gradcheck import check_layer
from trainlab.nn import Linear, ReLU, Sequential, SoftmaxCrossEntropy
from trainlab.nn._module import Module
from trainlab.nn._norm import (
    BatchNorm,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    batch_norm_layers,
    compute_population_statistics,
    momentum_from_keras,
    momentum_to_keras,
    recompute_running_statistics,
)
from trainlab.optim import SGD
from trainlab.export import batchnorm_to_torch, groupnorm_to_torch, instancenorm_to_torch, layernorm_to_torch
from trainlab.population import Population

DT = torch.float64
TOL = 1e-6
ATOL = RTOL = 1e-10
N = 4
MOMENTA = [0.1, 0.3, 0.05]


def randn(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT) * scale + shift


def close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = ATOL, rtol: float = RTOL) -> None:
    torch.testing.assert_close(actual, expected.detach().to(actual.dtype), atol=atol, rtol=rtol)


def perturb(layer: Module, seed: int) -> None:
    """Different gamma/beta (and BatchNorm statistics) for every member."""
    for k, p in enumerate(layer.parameters()):
        base = 1.0 if p.name == "gamma" else 0.0
        p.data.copy_(base + 0.5 * randn(*p.data.shape, seed=seed + k))
    if isinstance(layer, BatchNorm):
        shape = layer.running_mean.shape
        layer.running_mean.copy_(randn(*shape, seed=seed + 10))
        layer.running_var.copy_(0.5 + randn(*shape, seed=seed + 11).abs())
        layer.population_mean.copy_(randn(*shape, seed=seed + 12))
        layer.population_var.copy_(0.5 + randn(*shape, seed=seed + 13).abs())
        layer.population_batches.fill_(3)


def build(layer: Module, in_shape: tuple[int, ...], P: int, seed: int = 0) -> Module:
    layer.build(in_shape, Population(P, seed=seed), dtype=DT)
    perturb(layer, seed=100 + seed)
    return layer


# ---- gradient checks --------------------------------------------------------------------

# name -> (factory(P) -> layer, per-example shapes, modes)
GRADCHECK: dict[str, tuple[Callable[[int], Module], list[tuple[int, ...]], list[bool]]] = {
    "batchnorm": (lambda P: BatchNorm(momentum=MOMENTA[:P] if P > 1 else 0.1), [(3,), (3, 2, 3)], [True, False]),
    "batchnorm_no_affine": (lambda P: BatchNorm(affine=False), [(3,), (3, 2, 3)], [True, False]),
    "batchnorm_population": (lambda P: BatchNorm(inference="population"), [(3,), (3, 2, 3)], [False]),
    "batchnorm_frozen_stats": (lambda P: BatchNorm(freeze_stats=True), [(3,), (3, 2, 3)], [True]),
    "layernorm": (lambda P: LayerNorm(), [(5,), (3, 2, 3)], [True, False]),
    "layernorm_trailing": (lambda P: LayerNorm([2, 3]), [(3, 2, 3)], [True]),
    "layernorm_no_affine": (lambda P: LayerNorm(affine=False), [(5,), (3, 2, 3)], [True]),
    "groupnorm": (lambda P: GroupNorm(2), [(6,), (4, 2, 3)], [True, False]),
    "groupnorm_no_affine": (lambda P: GroupNorm(2, affine=False), [(6,), (4, 2, 3)], [True]),
    "instancenorm": (lambda P: InstanceNorm(), [(3, 2, 3)], [True, False]),
    "instancenorm_affine": (lambda P: InstanceNorm(affine=True), [(3, 2, 3)], [True, False]),
}
GRADCHECK_CASES = [
    pytest.param(name, shape, training, id=f"{name}-{'x'.join(map(str, shape))}-{'train' if training else 'eval'}")
    for name, (_, shapes, modes) in GRADCHECK.items() for shape in shapes for training in modes
]


@pytest.mark.parametrize(("P", "shared"), [(1, False), (3, False), (3, True)], ids=["P1", "P3", "P3_shared_input"])
@pytest.mark.parametrize(("name", "shape", "training"), GRADCHECK_CASES)
def test_gradcheck(name: str, shape: tuple[int, ...], training: bool, P: int, shared: bool) -> None:
    factory, _, _ = GRADCHECK[name]
    layer = build(factory(P), shape, P)
    x = randn(1 if shared else P, N, *shape, seed=7, scale=2.0, shift=0.5)
    res = check_layer(layer, x, training=training)
    assert set(res.errors) == {"input"} | {p.name for p in layer.parameters()}
    assert res.max_error < TOL, str(res)


def test_gradcheck_batchnorm_single_image_per_batch() -> None:
    # N = 1 with H*W > 1 is a valid batch in training (as in PyTorch's BatchNorm2d)
    layer = build(BatchNorm(), (2, 3, 3), 3)
    res = check_layer(layer, randn(3, 1, 2, 3, 3, seed=8), training=True)
    assert res.max_error < TOL, str(res)


# ---- BatchNorm against torch.nn.BatchNorm1d / 2d ------------------------------------------


def torch_batchnorms(layer: BatchNorm, momenta: list[float]) -> list[torch.nn.Module]:
    cls = torch.nn.BatchNorm1d if layer._ndim == 3 else torch.nn.BatchNorm2d
    out = []
    for i, m in enumerate(momenta):
        bn = cls(layer.num_features, eps=layer.eps, momentum=m, affine=layer.affine, dtype=DT)
        with torch.no_grad():
            if layer.affine:
                bn.weight.copy_(layer.gamma.data[i])
                bn.bias.copy_(layer.beta.data[i])
            bn.running_mean.copy_(layer.running_mean[i])
            bn.running_var.copy_(layer.running_var[i])
        out.append(bn)
    return out


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("shape", [(4,), (3, 2, 5)], ids=["2d", "4d"])
def test_batchnorm_matches_torch_over_training_steps(shape: tuple[int, ...], shared: bool, affine: bool) -> None:
    P, Nb = 3, 6
    layer = build(BatchNorm(momentum=MOMENTA, affine=affine), shape, P)
    refs = torch_batchnorms(layer, MOMENTA)
    for step in range(4):
        x = randn(1 if shared else P, Nb, *shape, seed=30 + step, scale=1.0 + step, shift=step - 1.5)
        g = randn(P, Nb, *shape, seed=40 + step)
        y = layer.forward(x, training=True)
        dx = layer.backward(g)
        assert y.shape == (P, Nb, *shape) and dx.shape == x.shape
        dx_ref = torch.zeros_like(x)
        for i, bn in enumerate(refs):
            bn.train()
            bn.zero_grad()
            xi = x[0 if shared else i].clone().requires_grad_()
            yi = bn(xi)
            yi.backward(g[i])
            close(y[i], yi)
            dx_ref[0 if shared else i] += xi.grad
            if affine:
                close(layer.gamma.grad[i], bn.weight.grad)
                close(layer.beta.grad[i], bn.bias.grad)
            close(layer.running_mean[i], bn.running_mean)
            close(layer.running_var[i], bn.running_var)
            assert int(layer.num_batches_tracked[i]) == int(bn.num_batches_tracked) == step + 1
        close(dx, dx_ref)
    # inference with the running statistics, and its gradients
    x = randn(1 if shared else P, 5, *shape, seed=50, scale=2.0)
    g = randn(P, 5, *shape, seed=51)
    y = layer.forward(x, training=False)
    dx = layer.backward(g)
    dx_ref = torch.zeros_like(x)
    for i, bn in enumerate(refs):
        bn.eval()
        bn.zero_grad()
        xi = x[0 if shared else i].clone().requires_grad_()
        yi = bn(xi)
        yi.backward(g[i])
        close(y[i], yi)
        dx_ref[0 if shared else i] += xi.grad
        if affine:
            close(layer.gamma.grad[i], bn.weight.grad)
            close(layer.beta.grad[i], bn.bias.grad)
    close(dx, dx_ref)


def test_batchnorm_frozen_stats_trains_like_torch_bn_in_eval_mode() -> None:
    P = 3
    layer = build(BatchNorm(freeze_stats=True), (4,), P)
    refs = torch_batchnorms(layer, [0.1] * P)
    x, g = randn(P, 6, 4, seed=60), randn(P, 6, 4, seed=61)
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    for i, bn in enumerate(refs):
        bn.eval()  # the usual way to freeze BN statistics while fine-tuning in torch
        xi = x[i].clone().requires_grad_()
        yi = bn(xi)
        yi.backward(g[i])
        close(y[i], yi)
        close(dx[i], xi.grad)
        close(layer.gamma.grad[i], bn.weight.grad)
        close(layer.beta.grad[i], bn.bias.grad)


def test_batchnorm_export_modules_match_eval_mode() -> None:
    for shape, cls in (((4,), torch.nn.BatchNorm1d), ((3, 2, 2), torch.nn.BatchNorm2d)):
        for inference in ("running", "population"):
            layer = build(BatchNorm(momentum=MOMENTA, inference=inference), shape, 3)
            x = randn(3, 5, *shape, seed=62)
            y = layer.forward(x, training=False)
            for i in range(3):
                bn = batchnorm_to_torch(layer, i)
                assert type(bn) is cls and bn.momentum == pytest.approx(MOMENTA[i])
                bn.eval()
                close(y[i], bn(x[i]))


# ---- LayerNorm / GroupNorm / InstanceNorm against torch functional + autograd ----------------


# reference(layer, x_i, gamma_i, beta_i) with torch.nn.functional (gamma_i/beta_i None without affine)
def _ln_ref(layer: LayerNorm, xi: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    return F.layer_norm(xi, layer.normalized_shape_, w, b, layer.eps)


def _gn_ref(layer: GroupNorm, xi: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    return F.group_norm(xi, layer.num_groups, w, b, layer.eps)


def _in_ref(layer: InstanceNorm, xi: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    return F.instance_norm(xi, weight=w, bias=b, eps=layer.eps)


PER_EXAMPLE: dict[str, tuple[Callable[[], Module], tuple[int, ...], Callable]] = {
    "layernorm_flat": (lambda: LayerNorm(), (6,), _ln_ref),
    "layernorm_image": (lambda: LayerNorm(), (3, 2, 4), _ln_ref),
    "layernorm_trailing": (lambda: LayerNorm((2, 4)), (3, 2, 4), _ln_ref),
    "layernorm_no_affine": (lambda: LayerNorm(affine=False, eps=1e-3), (3, 2, 4), _ln_ref),
    "groupnorm_flat": (lambda: GroupNorm(3), (6,), _gn_ref),
    "groupnorm_image": (lambda: GroupNorm(2), (4, 3, 2), _gn_ref),
    "groupnorm_one_group": (lambda: GroupNorm(1), (4, 3, 2), _gn_ref),
    "groupnorm_no_affine": (lambda: GroupNorm(2, affine=False), (4, 3, 2), _gn_ref),
    "instancenorm": (lambda: InstanceNorm(), (3, 2, 4), _in_ref),
    "instancenorm_affine": (lambda: InstanceNorm(affine=True), (3, 2, 4), _in_ref),
}


@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("name", list(PER_EXAMPLE))
def test_per_example_norms_match_torch(name: str, shared: bool) -> None:
    make, shape, ref = PER_EXAMPLE[name]
    P = 3
    layer = build(make(), shape, P)
    x = randn(1 if shared else P, 5, *shape, seed=70, scale=3.0, shift=1.0)
    g = randn(P, 5, *shape, seed=71)
    y = layer.forward(x, training=True)
    assert torch.equal(layer.forward(x, training=False), y)  # no training/inference difference
    y = layer.forward(x, training=True)
    if not layer.affine and shared:
        assert y.shape[0] == 1  # nothing differs per member: the output stays shared ...
        g = g[:1]  # ... and so does the gradient that comes back
    dx = layer.backward(g)
    assert dx.shape == x.shape
    dx_ref = torch.zeros_like(x)
    for i in range(P):
        xi = x[0 if shared else i].clone().requires_grad_()
        w = layer.gamma.data[i].clone().requires_grad_() if layer.affine else None
        b = layer.beta.data[i].clone().requires_grad_() if layer.affine else None
        yi = ref(layer, xi, w, b)
        yi.backward(g[i])
        close(y[i if y.shape[0] == P else 0], yi)
        dx_ref[0 if shared else i] += xi.grad
        if layer.affine:
            close(layer.gamma.grad[i], w.grad)
            close(layer.beta.grad[i], b.grad)
        if y.shape[0] == 1:
            break
    close(dx, dx_ref)


def test_per_example_export_modules_match() -> None:
    cases = [(LayerNorm(), (3, 2, 2), layernorm_to_torch, torch.nn.LayerNorm),
             (GroupNorm(3), (6, 2, 2), groupnorm_to_torch, torch.nn.GroupNorm),
             (InstanceNorm(affine=True), (3, 2, 2), instancenorm_to_torch, torch.nn.InstanceNorm2d),
             (InstanceNorm(), (3, 2, 2), instancenorm_to_torch, torch.nn.InstanceNorm2d)]
    for layer, shape, convert, cls in cases:
        build(layer, shape, 3)
        x = randn(3, 4, *shape, seed=72)
        y = layer.forward(x, training=False)
        for i in range(3):
            mod = convert(layer, i)
            assert type(mod) is cls
            close(y[i], mod.to(DT)(x[i]))


def test_groupnorm_with_c_groups_is_instancenorm() -> None:
    gn, inorm = build(GroupNorm(3, affine=False), (3, 4, 4), 2), build(InstanceNorm(), (3, 4, 4), 2)
    x = randn(2, 5, 3, 4, 4, seed=73)
    close(gn.forward(x, training=True), inorm.forward(x, training=True))


# ---- statistics: population (Alg. 2), recomputed running, frozen, eval ----------------------


def small_model(P: int, *, inference: str = "population", momentum=0.1) -> Sequential:
    model = Sequential([Linear(5, 4, init_scale=[1.0, 0.5][:P]), BatchNorm(inference=inference, momentum=momentum),
                        ReLU(), Linear(4, 3), BatchNorm(inference=inference, momentum=momentum)])
    model.build((5,), Population(P, seed=3), dtype=DT)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            perturb(layer, seed=80)
            layer.population_batches.zero_()
        elif isinstance(layer, Linear):
            layer.bias.data.copy_(randn(*layer.bias.data.shape, seed=81))
    return model


def hand_batch_stats(model: Sequential, xb: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per BN layer, (mu_B, biased sigma_B^2) of each member, written out with plain torch ops."""
    lin1, bn1, _, lin2, bn2 = model.layers
    out = []
    h = xb.unsqueeze(0) @ lin1.weight.data + lin1.bias.data  # (P, m, 4)
    mu, var = h.mean(dim=1), h.var(dim=1, unbiased=False)
    out.append((mu, var))
    h = torch.relu((h - mu[:, None]) / torch.sqrt(var[:, None] + bn1.eps) * bn1.gamma.data[:, None]
                   + bn1.beta.data[:, None])
    h = h @ lin2.weight.data + lin2.bias.data
    out.append((h.mean(dim=1), h.var(dim=1, unbiased=False)))
    return out


def test_population_statistics_follow_algorithm_2() -> None:
    P, m = 2, 8
    model = small_model(P)
    x = randn(35, 5, seed=82, scale=2.0)  # 4 full batches of 8; the last 3 examples are left out
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [p.grad.clone() for p in model.parameters()]
    rng_before = [g.get_state() for g in model.population.generators("cpu")]
    compute_population_statistics(model, x, batch_size=m)
    stats = [hand_batch_stats(model, x[i:i + m]) for i in range(0, 32, m)]
    for k, bn in enumerate(batch_norm_layers(model)):
        mus = torch.stack([s[k][0] for s in stats])
        variances = torch.stack([s[k][1] for s in stats])
        close(bn.population_mean, mus.mean(dim=0))                       # E[x] = mean of mu_B
        close(bn.population_var, m / (m - 1) * variances.mean(dim=0))    # Var[x] = m/(m-1) mean of sigma_B^2
        assert bn.population_batches.tolist() == [4] * P
    # nothing else moved: parameters, running statistics, gradients, random streams
    for key, value in model.state_dict().items():
        if ".population_" not in key:
            assert torch.equal(value, before[key]), key
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads_before))
    assert all(torch.equal(g.get_state(), s) for g, s in zip(model.population.generators("cpu"), rng_before))
    # inference uses them in the folded form y = a x + b
    bn = model.layers[1]
    h = (x[None] @ model.layers[0].weight.data + model.layers[0].bias.data)
    a = bn.gamma.data / torch.sqrt(bn.population_var + bn.eps)
    b = bn.beta.data - a * bn.population_mean
    close(bn.forward(h, training=False), h * a[:, None] + b[:, None])


def test_statistics_passes_give_the_dropout_streams_back() -> None:
    from trainlab.nn._dropout import Dropout

    def model() -> Sequential:
        m = Sequential([Linear(5, 6), BatchNorm(), Dropout(0.5), ReLU(), Linear(6, 3)])
        m.build((5,), Population(2, seed=4), dtype=DT)
        return m

    a, b = model(), model()
    x = randn(16, 5, seed=85)
    compute_population_statistics(a, x, batch_size=4)
    recompute_running_statistics(a, x, batch_size=4)
    b.load_state_dict(a.state_dict())  # same statistics; only the random streams could differ now
    xb = randn(1, 4, 5, seed=86)
    assert torch.equal(a.forward(xb, training=True), b.forward(xb, training=True))


def test_population_inference_without_statistics_raises() -> None:
    model = small_model(1)
    with pytest.raises(ConfigError, match=r"compute_population_statistics"):
        model.forward(randn(1, 4, 5, seed=83), training=False)


def test_statistics_pass_errors() -> None:
    model = small_model(1)
    with pytest.raises(ConfigError, match="batch_size=50 but x has 10 examples"):
        compute_population_statistics(model, randn(10, 5, seed=84), batch_size=50)
    with pytest.raises(ConfigError, match="no BatchNorm layer"):
        plain = Sequential([Linear(5, 2)])
        plain.build((5,), 1, dtype=DT)
        recompute_running_statistics(plain, randn(10, 5, seed=84), batch_size=5)


def test_recompute_running_statistics_is_the_cumulative_average() -> None:
    P, m = 2, 6
    layer = build(BatchNorm(momentum=[0.1, 0.2]), (3, 2, 2), P)
    x = randn(20, 3, 2, 2, seed=85, scale=2.0, shift=1.0)  # plain data (n, C, H, W): 3 full batches
    recompute_running_statistics(layer, x.unsqueeze(0), batch_size=m)
    refs = [torch.nn.BatchNorm2d(3, momentum=None, dtype=DT) for _ in range(P)]  # torch's cumulative average
    for bn in refs:
        bn.train()
        for i in range(0, 18, m):
            bn(x[i:i + m])
    for i, bn in enumerate(refs):
        close(layer.running_mean[i], bn.running_mean)
        close(layer.running_var[i], bn.running_var)
        assert int(layer.num_batches_tracked[i]) == 3
    # by hand: equal-weight average of the batch means and of the unbiased batch variances
    batches = [x[i:i + m] for i in range(0, 18, m)]
    close(layer.running_mean[0], torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(dim=0))
    close(layer.running_var[0], torch.stack([b.transpose(0, 1).reshape(3, -1).var(dim=1) for b in batches]).mean(0))
    # and training afterwards goes back to the layer's own momentum
    layer.forward(x[None, :m], training=True)
    assert layer._collect is None and layer.num_batches_tracked.tolist() == [4, 4]


def test_recompute_leaves_frozen_layers_alone() -> None:
    model = small_model(2, inference="running")
    frozen = model.layers[4]
    frozen.freeze_stats = True
    before = (frozen.running_mean.clone(), frozen.running_var.clone())
    recompute_running_statistics(model, randn(24, 5, seed=86), batch_size=8)
    assert torch.equal(frozen.running_mean, before[0]) and torch.equal(frozen.running_var, before[1])
    assert model.layers[1].num_batches_tracked.tolist() == [3, 3]


def test_freeze_stats_keeps_running_statistics_bitwise() -> None:
    model = small_model(2, inference="running")
    for bn in batch_norm_layers(model):
        bn.freeze_stats = True
    before = {k: v.clone() for k, v in model.buffers().items()}
    loss = SoftmaxCrossEntropy()
    loss.build(2, dtype=DT)
    opt = SGD(model.parameters(), lr=0.1)
    for step in range(3):
        xb = randn(1, 8, 5, seed=87 + step)
        out = model.forward(xb, training=True)
        assert torch.equal(out, model.forward(xb, training=False))  # frozen: training == inference
        loss.forward(out, torch.arange(8) % 3)
        model.backward(loss.backward())
        opt.step()
    for k, v in model.buffers().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.layers[1].gamma.data, torch.ones_like(model.layers[1].gamma.data))


def test_freeze_affine_is_a_separate_switch() -> None:
    layer = build(BatchNorm(), (4,), 2)
    layer.freeze_affine()
    assert [p.trainable for p in layer.parameters()] == [False, False]
    gamma, beta, rm = layer.gamma.data.clone(), layer.beta.data.clone(), layer.running_mean.clone()
    opt = SGD(layer.parameters(), lr=0.5)
    layer.forward(randn(2, 6, 4, seed=88), training=True)
    layer.backward(randn(2, 6, 4, seed=89))
    opt.step()
    assert torch.equal(layer.gamma.data, gamma) and torch.equal(layer.beta.data, beta)
    assert not torch.equal(layer.running_mean, rm)  # statistics still move: only the affine is frozen
    layer.freeze_affine(False)
    assert [p.trainable for p in layer.parameters()] == [True, True]


def test_eval_mode_is_deterministic_and_leaves_buffers_alone() -> None:
    for layer, shape in ((BatchNorm(momentum=[0.1, 0.5]), (3, 2, 2)), (BatchNorm(inference="population"), (3,))):
        build(layer, shape, 2)
        before = {k: v.clone() for k, v in layer.buffers().items()}
        x = randn(2, 5, *shape, seed=90)
        y1 = layer.forward(x, training=False)
        y2 = layer.forward(x, training=False)
        assert torch.equal(y1, y2)
        assert torch.equal(layer.forward(x[:, :1], training=False), y1[:, :1])  # N=1 is fine in eval
        for k, v in layer.buffers().items():
            assert torch.equal(v, before[k]), k


def test_set_active_holds_statistics_of_stopped_members() -> None:
    layer = build(BatchNorm(), (3,), 3)
    before = layer.running_mean.clone()
    layer.set_active(torch.tensor([True, False, True]))
    layer.forward(randn(3, 6, 3, seed=91), training=True)
    assert torch.equal(layer.running_mean[1], before[1]) and not torch.equal(layer.running_mean[0], before[0])
    assert layer.num_batches_tracked.tolist() == [1, 0, 1]
    layer.set_active(None)
    layer.forward(randn(3, 6, 3, seed=92), training=True)
    assert layer.num_batches_tracked.tolist() == [2, 1, 2]


def test_member_equals_single_model() -> None:
    """Member i of a P=3 population with per-member momentum == a P=1 model of member i."""
    seeds = [11, 12, 13]

    def run(P: int, members: list[int]) -> Sequential:
        model = Sequential([Linear(5, 4, init="he_normal"), BatchNorm(momentum=[MOMENTA[i] for i in members]),
                            ReLU(), Linear(4, 3)])
        model.build((5,), Population(P, seeds=[seeds[i] for i in members]), dtype=DT)
        loss = SoftmaxCrossEntropy()
        loss.build(P, dtype=DT)
        opt = SGD(model.parameters(), lr=0.3)
        for step in range(4):
            out = model.forward(randn(1, 8, 5, seed=93 + step), training=True)
            loss.forward(out, torch.arange(8) % 3)
            model.backward(loss.backward())
            opt.step()
        return model

    pop = run(3, [0, 1, 2])
    for i in range(3):
        single = run(1, [i])
        for k, v in single.state_dict().items():
            close(pop.state_dict()[k][i:i + 1], v, atol=1e-12, rtol=1e-12)


def test_buffers_are_saved_with_the_model() -> None:
    model = small_model(2, inference="running")
    names = set(model.state_dict())
    for key in ("running_mean", "running_var", "num_batches_tracked", "population_mean", "population_var",
                "population_batches"):
        assert f"1.{key}" in names and f"4.{key}" in names
    assert {"1.gamma", "1.beta"} <= names
    assert model.layers[1].running_mean.shape == (2, 4) and model.layers[1].num_batches_tracked.shape == (2,)
    model.forward(randn(1, 8, 5, seed=94), training=True)
    copy = small_model(2, inference="running")
    copy.load_state_dict(model.state_dict())
    x = randn(1, 6, 5, seed=95)
    assert torch.equal(copy.forward(x, training=False), model.forward(x, training=False))


def test_parameters_are_norm_kind_without_decay() -> None:
    for layer in (build(BatchNorm(), (3,), 2), build(LayerNorm(), (3, 2, 2), 2), build(GroupNorm(1), (3,), 2),
                  build(InstanceNorm(affine=True), (3, 2, 2), 2)):
        gamma, beta = layer.parameters()
        assert (gamma.name, beta.name) == ("gamma", "beta")
        assert gamma.kind == beta.kind == "norm" and not gamma.decay and not beta.decay
    assert build(LayerNorm(), (3, 2, 2), 2).gamma.shape == (2, 3, 2, 2)  # per element, as torch.nn.LayerNorm
    assert build(GroupNorm(3), (6, 2, 2), 2).gamma.shape == (2, 6)       # per channel
    assert build(InstanceNorm(), (3, 2, 2), 2).parameters() == []          # affine off by default, as torch


# ---- batch of one ------------------------------------------------------------------------


def test_batch_of_one_in_training_raises_with_advice() -> None:
    layer = build(BatchNorm(), (4,), 2)
    with pytest.raises(ConfigError) as e:
        layer.forward(randn(2, 1, 4, seed=96), training=True)
    msg = str(e.value)
    assert "N=1" in msg and "LayerNorm/GroupNorm" in msg and "at least 2 values per channel" in msg
    image = build(BatchNorm(), (4, 1, 1), 2)
    with pytest.raises(ConfigError, match=r"N=1 and H\*W=1"):
        image.forward(randn(2, 1, 4, 1, 1, seed=97), training=True)
    # one image of several pixels is a batch of H*W values per channel (PyTorch allows it)
    build(BatchNorm(), (4, 2, 2), 2).forward(randn(2, 1, 4, 2, 2, seed=98), training=True)
    # fixed statistics need no batch: eval mode and frozen statistics accept N=1
    layer.forward(randn(2, 1, 4, seed=99), training=False)
    build(BatchNorm(freeze_stats=True), (4,), 2).forward(randn(2, 1, 4, seed=99), training=True)
    # and LayerNorm / GroupNorm do not care about N
    build(LayerNorm(), (4,), 2).forward(randn(2, 1, 4, seed=99), training=True)


# ---- momentum conventions ------------------------------------------------------------------


def test_momentum_converters() -> None:
    assert momentum_from_keras(0.99) == pytest.approx(0.01)
    assert momentum_from_keras(0.9) == pytest.approx(0.1)   # the textbook's 0.9 is torch's default 0.1
    assert momentum_to_keras(0.1) == pytest.approx(0.9)
    assert momentum_to_keras(momentum_from_keras(0.95)) == pytest.approx(0.95)
    assert momentum_from_keras([0.99, 0.9]) == pytest.approx([0.01, 0.1])
    with pytest.raises(ConfigError, match="<= 1.0"):
        momentum_from_keras(1.5)


def test_momentum_that_looks_like_keras_warns() -> None:
    expected = r"momentum=0.9 is above 0.5.*Keras/textbook.*momentum_from_keras\(0.9\) = 0.1"
    with pytest.warns(UserWarning, match=expected):
        BatchNorm(momentum=0.9)
    with pytest.warns(UserWarning, match="Keras"):
        BatchNorm(momentum=[0.1, 0.99])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BatchNorm(momentum=0.1)
        BatchNorm(momentum=[0.01, 0.5])


def test_per_member_momentum_is_validated() -> None:
    layer = BatchNorm(momentum=[0.1, 0.2])
    with pytest.raises(ConfigError, match="3 numbers"):
        layer.build((4,), Population(3), dtype=DT)
    with pytest.raises(ConfigError, match=">= 0.0"):
        BatchNorm(momentum=-0.1)


# ---- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "in_shape", "pattern"), [
    (lambda: GroupNorm(4, 6), None, r"num_channels must be divisible by num_groups, got num_channels=6, num_groups=4"),
    (lambda: GroupNorm(4), (6,), r"divisible by num_groups, got num_channels=6, num_groups=4"),
    (lambda: GroupNorm(2), (4, 3), r"GroupNorm expects inputs \(P, N, C\) or \(P, N, C, H, W\)"),
    (lambda: BatchNorm(), (4, 3), r"BatchNorm expects inputs \(P, N, C\) or \(P, N, C, H, W\).*\(4, 3\)"),
    (lambda: BatchNorm(5), (4,), r"BatchNorm\(num_features=5\) got inputs with 4 channels"),
    (lambda: InstanceNorm(), (6,), r"InstanceNorm expects image inputs \(P, N, C, H, W\).*use LayerNorm"),
    (lambda: LayerNorm([3]), (3, 4), r"LayerNorm normalized_shape=\[3\] must be the trailing dimensions"),
    (lambda: BatchNorm(eps=0), None, r"BatchNorm eps must be a number > 0, got 0"),
    (lambda: BatchNorm(inference="moving"), None, r"inference must be 'running' or 'population', got 'moving'"),
    (lambda: LayerNorm(0), None, r"LayerNorm normalized_shape must be"),
    (lambda: GroupNorm(0), None, r"GroupNorm num_groups must be an integer >= 1"),
])
def test_validation_errors(make, in_shape, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        layer = make()
        layer.build(in_shape, Population(1), dtype=DT)


@pytest.mark.parametrize(("layer", "in_shape", "x_shape", "pattern"), [
    (BatchNorm(), (4,), (2, 3, 4, 1, 1), r"BatchNorm expects inputs of shape \(P, N, 4\) with P = 2"),
    (BatchNorm(), (4, 2, 2), (2, 3, 5, 2, 2), r"BatchNorm\(num_features=4\) expects inputs \(P, N, 4, H, W\)"),
    (GroupNorm(2), (4,), (3, 3, 4), r"GroupNorm expects inputs of shape \(P, N, 4\) with P = 2"),
    (InstanceNorm(), (4, 2, 2), (2, 3, 4, 1, 1), r"InstanceNorm needs more than one spatial position"),
    (LayerNorm(), (4,), (2, 3, 4, 2), r"LayerNorm expects inputs of shape \(P, N, 4\)"),
])
def test_forward_shape_errors(layer, in_shape, x_shape, pattern) -> None:
    layer.build(in_shape, Population(2), dtype=DT)
    with pytest.raises(ConfigError, match=pattern):
        layer.forward(torch.zeros(x_shape, dtype=DT), training=True)


def test_settings_are_verbatim() -> None:
    bn = BatchNorm(momentum=[0.1, 0.2], inference="population")
    assert bn.settings() == dict(num_features=None, eps=1e-5, momentum=[0.1, 0.2], inference="population",
                                 affine=True, freeze_stats=False, running_variance="unbiased", running_var_init=1.0,
                                 statistics="channel")
    bn.build((3,), Population(2))
    assert bn.settings()["num_features"] is None and bn.num_features == 3
    assert repr(GroupNorm(2, eps=1e-3)) == "GroupNorm(num_groups=2, num_channels=None, eps=0.001, affine=True)"
    assert LayerNorm().settings() == dict(normalized_shape=None, eps=1e-5, affine=True)
    assert InstanceNorm().settings() == dict(num_features=None, eps=1e-5, affine=False)
