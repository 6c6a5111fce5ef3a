"""BatchNorm on PyTorch's native kernels against the explicit reference formulas (``reference=True``),
and the statistics pass as a context object.

The native path lays a population's ``(P, N, C[, H, W])`` out as ``P*C`` channels of one
``aten::native_batch_norm`` call; it must give the reference's outputs, input gradients, gamma/beta
gradients and running statistics (float64: to 1e-12) in every setting the layer has."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.nn import BatchNorm, Linear, Sequential, StatisticsPass
from trainlab.nn import _norm
from trainlab.population import Population

SETTINGS = list(itertools.product([1, 3], [(6,), (3, 4, 4)], ["channel", "activation"], ["unbiased", "biased"],
                                  [True, False], [0.1, [0.1, 0.2, 0.3]]))


def _run(P, shape, stats, rv, affine, momentum, reference, dtype, active=None):
    layer = BatchNorm(statistics=stats, running_variance=rv, affine=affine,
                      momentum=momentum if P > 1 or not isinstance(momentum, list) else momentum[0])
    layer.build(shape, Population(P, seed=1), dtype=dtype)
    layer.reference = reference
    gen = torch.Generator().manual_seed(5)
    if affine:
        layer.gamma.data.copy_(torch.rand(layer.gamma.data.shape, generator=gen, dtype=dtype) + 0.5)
        layer.beta.data.copy_(torch.randn(layer.beta.data.shape, generator=gen, dtype=dtype))
    if active is not None:
        layer.set_active(active)
    out = []
    for k in range(3):
        x = torch.randn(P, 8, *shape, generator=gen, dtype=dtype) * 2 + 1
        g = torch.randn(P, 8, *shape, generator=gen, dtype=dtype)
        out.append(layer.forward(x, training=True))
        out.append(layer.backward(g))
        if affine:
            out += [layer.gamma.grad.clone(), layer.beta.grad.clone()]
    out += [layer.running_mean, layer.running_var, layer.num_batches_tracked]
    out.append(layer.forward(x, training=False))
    return out


@pytest.mark.parametrize("P,shape,stats,rv,affine,momentum", SETTINGS)
def test_native_kernels_equal_the_reference_formulas(P, shape, stats, rv, affine, momentum) -> None:
    native = _run(P, shape, stats, rv, affine, momentum, False, torch.float64)
    ref = _run(P, shape, stats, rv, affine, momentum, True, torch.float64)
    for a, b in zip(native, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_native_kernels_float32_and_inactive_members() -> None:
    for active in (None, torch.tensor([True, False, True])):
        native = _run(3, (3, 4, 4), "channel", "unbiased", True, 0.1, False, torch.float32, active)
        ref = _run(3, (3, 4, 4), "channel", "unbiased", True, 0.1, True, torch.float32, active)
        for a, b in zip(native, ref):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


def test_the_native_path_is_the_one_that_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(_norm._NativeBatchMode, "forward",
                        lambda self, layer, x: calls.append(1) or _norm._ReferenceBatchMode().forward(layer, x))
    layer = BatchNorm()
    layer.build((4,), Population(2), dtype=torch.float64)
    layer.forward(torch.randn(2, 5, 4, dtype=torch.float64), training=True)
    assert calls == [1]
    layer.reference = True
    layer.forward(torch.randn(2, 5, 4, dtype=torch.float64), training=True)
    assert calls == [1]


def test_statistics_pass_context_stores_only_a_completed_pass() -> None:
    model = Sequential([Linear(4, 3), BatchNorm()])
    model.build((4,), Population(2, seed=0), dtype=torch.float64)
    bn = model.layers[1]
    x = torch.randn(1, 12, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="boom"):
        with StatisticsPass(model, "population"), torch.no_grad():
            model.forward(x[:, :6], training=True)
            raise RuntimeError("boom")
    assert bn._collect is None and int(bn.population_batches[0]) == 0  # nothing stored
    with StatisticsPass(model, "population"), torch.no_grad():
        model.forward(x[:, :6], training=True)
        model.forward(x[:, 6:], training=True)
    assert bn._collect is None and bn.population_batches.tolist() == [2, 2]
    assert bn.num_batches_tracked.tolist() == [0, 0]  # running averages untouched by a population pass
    with pytest.raises(ConfigError, match="StatisticsPass kind"):
        StatisticsPass(model, "sideways")


@pytest.mark.parametrize("shape", [(6,), (3, 4, 4)])
def test_one_member_runs_torchs_batch_norm_bit_for_bit(shape) -> None:
    # One member takes the kernel's layout as a view (no transposes) and reuses flat views of gamma, beta and
    # the running buffers; the numbers must be torch.nn.BatchNorm1d/2d's exactly, with a non-contiguous
    # upstream gradient too, and the views must follow the layer when it is built again.
    torch_bn = (torch.nn.BatchNorm1d if len(shape) == 1 else torch.nn.BatchNorm2d)(shape[0]).double()
    layer = BatchNorm()
    for build in range(2):
        layer.build(shape, Population(1, seed=build), dtype=torch.float64)
        gen = torch.Generator().manual_seed(build)
        with torch.no_grad():
            torch_bn.weight.copy_(torch.rand(shape[0], generator=gen, dtype=torch.float64) + 0.5)
            torch_bn.bias.copy_(torch.randn(shape[0], generator=gen, dtype=torch.float64))
            torch_bn.reset_running_stats()
        layer.gamma.data.copy_(torch_bn.weight.detach().view(1, -1))
        layer.beta.data.copy_(torch_bn.bias.detach().view(1, -1))
        for _ in range(3):
            x = torch.randn(8, *shape, generator=gen, dtype=torch.float64) * 2 + 1
            g = torch.randn(*reversed((8,) + shape), generator=gen, dtype=torch.float64).permute(
                *reversed(range(1 + len(shape))))  # (8, *shape), not contiguous
            xt = x.clone().requires_grad_()
            torch_bn.zero_grad()
            yt = torch_bn(xt)
            yt.backward(g)
            y = layer.forward(x.unsqueeze(0), training=True)
            dx = layer.backward(g.unsqueeze(0))
            assert torch.equal(y[0], yt.detach()) and torch.equal(dx[0], xt.grad)
            assert torch.equal(layer.gamma.grad[0], torch_bn.weight.grad)
            assert torch.equal(layer.beta.grad[0], torch_bn.bias.grad)
            assert torch.equal(layer.running_mean[0], torch_bn.running_mean)
            assert torch.equal(layer.running_var[0], torch_bn.running_var)
