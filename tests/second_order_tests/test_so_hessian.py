"""Hessian-vector products and dense Hessians against torch.autograd (float64).

Required: relative error < 1e-5 (norm-wise, ``trainlab.gradcheck.relative_error``);
central differences of the engine's gradients give ~1e-10, the softmax-regression
formula ~1e-15.
"""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.gradcheck import relative_error
from trainlab.population import Population
from trainlab.regularize import L2, MaxNorm
from trainlab.second_order import (ModelObjective, Quadratic, Rosenbrock, default_eps, fd_hessian, flatten, hessian,
                                   hvp, softmax_regression_hessian, unflatten_into)

DT = torch.float64
TOL = 1e-5


def test_tanh_mlp_hessian_matches_autograd(make_tanh, tanh_reference):
    obj = make_tanh(P=2, lam=(1e-2, 1e-1))
    w = obj.initial_point()
    H = hessian(obj, w)  # no formula for an MLP: central differences of gradients
    assert H.shape == (2, obj.dim, obj.dim)
    for i, lam in enumerate((1e-2, 1e-1)):
        ref = torch.autograd.functional.hessian(lambda t: tanh_reference(t, obj.x[0], obj.y, lam), w[i].clone())
        err = relative_error(H[i], ref)
        assert err < TOL, err
        assert err < 1e-8  # what the method actually achieves, with margin
        assert torch.equal(H[i], H[i].T)


def test_hvp_matches_autograd(make_tanh, tanh_reference):
    obj = make_tanh(P=2)
    w = obj.initial_point()
    v = torch.randn(w.shape, generator=torch.Generator().manual_seed(3), dtype=DT)
    Hv = hvp(obj, w, v)
    for i, lam in enumerate((1e-2, 1e-1)):
        _, ref = torch.autograd.functional.hvp(lambda t: tanh_reference(t, obj.x[0], obj.y, lam), w[i].clone(), v[i])
        assert relative_error(Hv[i], ref) < TOL


def test_default_eps_balances_truncation_and_rounding(make_tanh, tanh_reference):
    obj = make_tanh(P=1, lam=(1e-2,))
    w = obj.initial_point()
    ref = torch.autograd.functional.hessian(lambda t: tanh_reference(t, obj.x[0], obj.y, 1e-2), w[0].clone())
    err = {e: relative_error(fd_hessian(obj, w, eps=e)[0], ref) for e in (1e-2, 1e-12)}
    best = relative_error(fd_hessian(obj, w)[0], ref)
    # Too large: truncation ~ eps^2; too small: rounding ~ u / eps. The default u^(1/3) beats both.
    assert best < err[1e-2] / 100 and best < err[1e-12] / 100
    assert float(default_eps(w)[0]) == pytest.approx(torch.finfo(DT).eps ** (1 / 3) * max(1.0, float(w.abs().max())))


def test_members_are_independent(make_tanh):
    both = make_tanh(P=2, lam=(1e-2, 1e-1), seeds=[5, 9])
    H2 = hessian(both, both.initial_point())
    for i, (seed, lam) in enumerate(((5, 1e-2), (9, 1e-1))):
        alone = make_tanh(P=1, lam=(lam,), seeds=[seed])
        H1 = hessian(alone, alone.initial_point())
        # Batched (P=2) and single kernels round differently (~1e-17 in a gradient); the
        # difference quotient divides that by eps ~ 6e-6, hence 1e-9 rather than 1e-15.
        assert torch.allclose(H2[i], H1[0], rtol=0, atol=1e-9)


def test_softmax_regression_formula_and_differences_match_autograd(make_softmax, softmax_ref):
    obj = make_softmax(P=2, lam=[1e-3, 1e-1])
    w = obj.initial_point() + 0.3 * torch.randn(2, obj.dim, generator=torch.Generator().manual_seed(1), dtype=DT)
    Ha = softmax_regression_hessian(obj, w)
    Hf = fd_hessian(obj, w)
    assert torch.equal(hessian(obj, w), Ha)  # "auto" uses the formula
    for i, lam in enumerate((1e-3, 1e-1)):
        ref = torch.autograd.functional.hessian(lambda t: softmax_ref(t, obj.x[0], obj.y, lam, 3), w[i].clone())
        assert relative_error(Ha[i], ref) < 1e-12
        assert relative_error(Hf[i], ref) < TOL


def test_softmax_formula_half_form_and_weights_only(make_softmax):
    x, y = torch.randn(20, 3, dtype=DT), torch.arange(20) % 4
    model = nn.Sequential([nn.Linear(3, 4)])
    model.build((3,), Population(1), dtype=DT)
    obj = ModelObjective(model, nn.SoftmaxCrossEntropy(label_smoothing=0.1), x, y,
                         regularizers=[L2(0.2, form="half")])
    w = obj.initial_point()
    assert relative_error(softmax_regression_hessian(obj, w)[0], fd_hessian(obj, w)[0]) < TOL


def test_test_functions_have_exact_hessians():
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=DT)
    q = Quadratic(A, x0=(1.0, -1.0))
    w = q.initial_point()
    assert torch.allclose(fd_hessian(q, w)[0], A, atol=1e-9)  # differences are exact up to rounding on a quadratic
    rb = Rosenbrock(size=2, x0=[[-1.2, 1.0], [0.5, 2.0]])
    w = rb.initial_point()
    Ha = hessian(rb, w, method="analytic")
    Hf = hessian(rb, w, method="differences")
    for i in range(2):
        ref = torch.autograd.functional.hessian(lambda t: (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2, w[i])
        assert relative_error(Ha[i], ref) < 1e-14
        assert relative_error(Hf[i], ref) < TOL


def test_flatten_roundtrip_and_shape_error(make_tanh):
    obj = make_tanh(P=2)
    w = flatten(obj.model)
    assert w.shape == (2, 4 * 5 + 5 + 5 * 3 + 3)
    unflatten_into(obj.model, w * 2)
    assert torch.equal(flatten(obj.model), w * 2)
    with pytest.raises(ConfigError, match=r"flat parameters must have shape \(P, m\) = \(2, 43\), got \(2, 42\)"):
        unflatten_into(obj.model, w[:, :-1])


def test_errors_are_one_line():
    model = nn.Sequential([nn.Linear(3, 2), nn.Tanh(), nn.Linear(2, 2)])
    model.build((3,), 1, dtype=DT)
    x, y = torch.randn(5, 3, dtype=DT), torch.zeros(5, dtype=torch.long)
    obj = ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y)
    with pytest.raises(ConfigError, match="has no analytic Hessian; use method='differences'"):
        hessian(obj, obj.initial_point(), method="analytic")
    with pytest.raises(ConfigError, match="acts after each step"):
        ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y, regularizers=[MaxNorm(3.0)])
    with pytest.raises(ConfigError, match=r"x must have shape \(N, 3\)"):
        ModelObjective(model, nn.SoftmaxCrossEntropy(), torch.randn(5, 4, dtype=DT), y)
    with pytest.raises(ConfigError, match=r"points must have shape \(P, m\) = \(1, 14\)"):
        obj.value_and_grad(torch.zeros(14, dtype=DT))
    unbuilt = nn.Sequential([nn.Linear(3, 2)])
    with pytest.raises(ConfigError, match="not built"):
        ModelObjective(unbuilt, nn.SoftmaxCrossEntropy(), x, y)
