"""Layers and losses against ``torch.nn`` + autograd, member by member, float64.

Each member ``i`` of a P=3 population (with different hyperparameters per member)
must give the numbers ``torch.nn`` gives for that member's weights and settings:
forward outputs and input/parameter gradients, to ``atol = rtol = 1e-10``.
Also: the exporter (``trainlab.export``) builds a torch model with the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from trainlab.errors import ConfigError
from trainlab.export import converter_for, register_converter, to_torch, to_torch_population
from trainlab.nn import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    Linear,
    MeanSquaredError,
    Module,
    ReLU,
    Sequential,
    Sigmoid,
    Softplus,
    SoftmaxCrossEntropy,
    Tanh,
)
from trainlab.population import Population

DT = torch.float64
ATOL = RTOL = 1e-10
P, N = 3, 6


def close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = ATOL, rtol: float = RTOL) -> None:
    torch.testing.assert_close(actual, expected.detach().to(actual.dtype), atol=atol, rtol=rtol)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT) * scale


# ---- Linear --------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
def test_linear_matches_functional_linear(bias: bool, shared: bool) -> None:
    layer = Linear(4, 3, bias=bias, init_scale=[1.0, 0.5, 2.0])
    layer.build((4,), Population(P, seed=5), dtype=DT)
    if bias:
        layer.bias.data.copy_(randn(P, 1, 3, seed=1))
    x = randn(1 if shared else P, N, 4, seed=2)
    g = randn(P, N, 3, seed=3)
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    assert y.shape == (P, N, 3) and dx.shape == x.shape

    dx_ref = torch.zeros_like(x)
    for i in range(P):
        xi = x[0 if shared else i].clone().requires_grad_()
        w = layer.weight.data[i].T.clone().requires_grad_()  # torch's (out, in) layout
        b = layer.bias.data[i, 0].clone().requires_grad_() if bias else None
        yi = F.linear(xi, w, b)
        yi.backward(g[i])
        close(y[i], yi)
        close(layer.weight.grad[i], w.grad.T)
        if bias:
            close(layer.bias.grad[i, 0], b.grad)
        dx_ref[0 if shared else i] += xi.grad  # a shared input gets the members' sum
    close(dx, dx_ref)


# ---- activations ---------------------------------------------------------------------

# name -> (trainlab layer with per-member values, torch module for member i)
ACTIVATIONS: dict[str, tuple[Callable[[], Module], Callable[[int], torch.nn.Module]]] = {
    "identity": (Identity, lambda i: torch.nn.Identity()),
    "sigmoid": (Sigmoid, lambda i: torch.nn.Sigmoid()),
    "tanh": (Tanh, lambda i: torch.nn.Tanh()),
    "relu": (ReLU, lambda i: torch.nn.ReLU()),
    "leaky_relu": (lambda: LeakyReLU([0.01, 0.2, 0.7]), lambda i: torch.nn.LeakyReLU([0.01, 0.2, 0.7][i])),
    "elu": (lambda: ELU([1.0, 0.3, 2.5]), lambda i: torch.nn.ELU([1.0, 0.3, 2.5][i])),
    "gelu": (GELU, lambda i: torch.nn.GELU()),
    "gelu_tanh": (lambda: GELU(approximate="tanh"), lambda i: torch.nn.GELU(approximate="tanh")),
    "softplus": (lambda: Softplus([1.0, 0.5, 4.0]), lambda i: torch.nn.Softplus(beta=[1.0, 0.5, 4.0][i])),
    "softplus_threshold": (
        lambda: Softplus([1.0, 0.5, 4.0], threshold=3.0),
        lambda i: torch.nn.Softplus(beta=[1.0, 0.5, 4.0][i], threshold=3.0),
    ),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_matches_torch_nn(name: str) -> None:
    make, ref = ACTIVATIONS[name]
    layer = make()
    layer.build((7,), Population(P), dtype=DT)
    x = randn(P, N, 7, seed=10, scale=3.0)
    x[:, 0, :3] = 0.0  # the kink itself: trainlab must follow PyTorch's choice of derivative there
    x[:, 1, :2] = torch.tensor([40.0, -40.0], dtype=DT)  # saturation / overflow territory
    g = randn(P, N, 7, seed=11)
    g_before = g.clone()
    y = layer.forward(x, training=True)
    dx = layer.backward(g)
    assert torch.equal(g, g_before), "backward mutated its incoming gradient"
    for i in range(P):
        xi = x[i].clone().requires_grad_()
        yi = ref(i).to(DT)(xi)
        yi.backward(g[i])
        close(y[i], yi)
        close(dx[i], xi.grad)


# ---- losses --------------------------------------------------------------------------

C = 5


def _targets(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(20)
    return {
        "hard_shared": lambda: torch.randint(0, C, (N,), generator=gen),
        "hard_per_member": lambda: torch.randint(0, C, (P, N), generator=gen),
        "soft_shared": lambda: torch.softmax(torch.randn(N, C, generator=gen, dtype=DT), dim=-1),
        "soft_per_member": lambda: torch.softmax(torch.randn(P, N, C, generator=gen, dtype=DT), dim=-1),
    }[kind]()


def _member_target(t: torch.Tensor, i: int, per_member: bool) -> torch.Tensor:
    return t[i] if per_member else t


@pytest.mark.parametrize("kind", ["hard_shared", "hard_per_member", "soft_shared", "soft_per_member"])
@pytest.mark.parametrize("smoothing", [0.0, [0.0, 0.1, 0.3]], ids=["no_smoothing", "smoothing"])
@pytest.mark.parametrize("scale", [3.0, 1e4], ids=["logits", "large_logits"])
def test_cross_entropy_matches_torch(kind: str, smoothing: float | list[float], scale: float) -> None:
    loss = SoftmaxCrossEntropy(label_smoothing=smoothing)
    loss.build(P, dtype=DT)
    z = randn(P, N, C, seed=21, scale=scale)
    t = _targets(kind)
    value = loss.forward(z, t)
    grad = loss.backward()
    assert value.shape == (P,) and grad.shape == z.shape
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    eps = smoothing if isinstance(smoothing, list) else [smoothing] * P
    for i in range(P):
        zi = z[i].clone().requires_grad_()
        ref = F.cross_entropy(zi, _member_target(t, i, kind.endswith("per_member")), label_smoothing=eps[i])
        ref.backward()
        # Losses of ~1e4 are formed from differences of ~1e4 numbers: scale atol with them.
        close(value[i], ref, atol=ATOL * scale)
        close(grad[i], zi.grad)


def test_cross_entropy_uses_the_logits_dtype_after_build_in_float32() -> None:
    loss = SoftmaxCrossEntropy(label_smoothing=[0.1, 0.2, 0.0])
    loss.build(P)  # float32 by default; float64 logits arrive later
    z = randn(P, N, C, seed=22)
    t = _targets("hard_shared")
    value, grad = loss.forward(z, t), loss.backward()
    for i in range(P):
        zi = z[i].clone().requires_grad_()
        ref = F.cross_entropy(zi, t, label_smoothing=[0.1, 0.2, 0.0][i])
        ref.backward()
        close(value[i], ref)
        close(grad[i], zi.grad)


@pytest.mark.parametrize("kind", ["dense_shared", "dense_per_member", "class_index", "class_index_per_member"])
def test_mse_matches_torch(kind: str) -> None:
    loss = MeanSquaredError()
    loss.build(P, dtype=DT)
    y = randn(P, N, C, seed=23)
    gen = torch.Generator().manual_seed(24)
    t = {
        "dense_shared": lambda: torch.randn(N, C, generator=gen, dtype=DT),
        "dense_per_member": lambda: torch.randn(P, N, C, generator=gen, dtype=DT),
        "class_index": lambda: torch.randint(0, C, (N,), generator=gen),
        "class_index_per_member": lambda: torch.randint(0, C, (P, N), generator=gen),
    }[kind]()
    value, grad = loss.forward(y, t), loss.backward()
    for i in range(P):
        yi = y[i].clone().requires_grad_()
        ti = t[i] if kind.endswith("per_member") else t
        if not ti.is_floating_point():
            ti = F.one_hot(ti, C).to(DT)
        ref = F.mse_loss(yi, ti)
        ref.backward()
        close(value[i], ref)
        close(grad[i], yi.grad)


# ---- export ----------------------------------------------------------------------------


def _zoo(dtype: torch.dtype) -> Sequential:
    model = Sequential([
        Linear(6, 8, init_scale=[1.0, 0.5, 2.0]),
        LeakyReLU([0.01, 0.2, 0.5]),
        Linear(8, 8, init="he_normal"),
        ELU([1.0, 0.5, 2.0]),
        Linear(8, 8),
        GELU(approximate="tanh"),
        Linear(8, 8),
        GELU(),
        Linear(8, 8),
        Softplus([1.0, 2.0, 0.5], threshold=10.0),
        Linear(8, 8, bias=False),
        Tanh(),
        Linear(8, 8),
        ReLU(),
        Identity(),
        Linear(8, 4),
        Sigmoid(),
    ])
    model.build((6,), Population(P, seed=7), dtype=dtype)
    for name, p in model.named_parameters().items():
        if name.endswith("bias"):
            p.data.copy_(randn(*p.shape, seed=len(name), scale=0.5).to(dtype))
    return model


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["float64", "float32"])
def test_export_matches_every_member(dtype: torch.dtype, tol: float) -> None:
    model = _zoo(dtype)
    x = randn(1, 10, 6, seed=30, scale=2.0).to(dtype)
    y = model.forward(x, training=False)
    for i, tmodel in enumerate(to_torch_population(model)):
        assert isinstance(tmodel, torch.nn.Sequential) and len(tmodel) == len(model.layers)
        assert all(p.dtype == dtype for p in tmodel.parameters())
        with torch.no_grad():
            close(to_torch(model, i)(x[0]), y[i], atol=tol, rtol=tol)
            close(tmodel(x[0]), y[i], atol=tol, rtol=tol)


def test_export_converts_hyperparameters_of_the_member() -> None:
    model = _zoo(DT)
    t = to_torch(model, 2)
    assert isinstance(t[0], torch.nn.Linear) and t[0].in_features == 6 and t[0].out_features == 8
    assert t[1].negative_slope == 0.5 and t[3].alpha == 2.0
    assert t[5].approximate == "tanh" and t[7].approximate == "none"
    assert t[9].beta == 0.5 and t[9].threshold == 10.0
    assert t[10].bias is None
    torch.testing.assert_close(t[0].weight, model.layers[0].weight.data[2].T, atol=0, rtol=0)


def test_export_copies_tensors() -> None:
    model = _zoo(DT)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = to_torch(model, 1)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(1.0)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    snapshot = [p.detach().clone() for p in to_torch(model, 1).parameters()]
    exported = to_torch(model, 1)
    model.layers[0].weight.data.mul_(2.0)
    assert all(torch.equal(p, s) for p, s in zip(exported.parameters(), snapshot))


def test_export_nested_sequential() -> None:
    inner = Sequential([Linear(3, 4), Tanh()])
    model = Sequential([inner, Linear(4, 2)])
    model.build((3,), Population(2), dtype=DT)
    x = randn(1, 5, 3, seed=31)
    with torch.no_grad():
        close(to_torch(model, 1)(x[0]), model.forward(x, training=False)[1])


class _Square(Module):
    def forward(self, x, *, training):
        return x * x


class _SquareTorch(torch.nn.Module):
    def forward(self, x):
        return x * x


def test_unknown_layer_names_it_and_registry_accepts_new_layers() -> None:
    model = Sequential([Linear(3, 2), _Square()])
    model.build((3,), Population(2), dtype=DT)
    with pytest.raises(ConfigError, match="_Square"):
        to_torch(model)

    @register_converter(_Square)
    def _convert(layer: _Square, member: int) -> torch.nn.Module:
        return _SquareTorch()

    assert converter_for(model.layers[1]) is _convert
    x = randn(1, 4, 3, seed=32)
    with torch.no_grad():
        close(to_torch(model, 1)(x[0]), model.forward(x, training=False)[1])


def test_subclass_does_not_inherit_parent_converter() -> None:
    class Doubled(Tanh):
        def forward(self, x, *, training):
            return 2.0 * super().forward(x, training=training)

    model = Sequential([Linear(3, 2), Doubled()])
    model.build((3,), Population(1), dtype=DT)
    with pytest.raises(ConfigError, match="Doubled"):
        to_torch(model)


def test_export_errors() -> None:
    with pytest.raises(ConfigError, match="not built"):
        to_torch(Sequential([Linear(3, 2)]))
    model = Sequential([Linear(3, 2)])
    model.build((3,), Population(2), dtype=DT)
    with pytest.raises(ConfigError, match=r"member must be an integer in \[0, 2\), got 2"):
        to_torch(model, 2)
    with pytest.raises(TypeError, match="trainlab layer class"):
        register_converter(torch.nn.Linear)  # type: ignore[arg-type]
