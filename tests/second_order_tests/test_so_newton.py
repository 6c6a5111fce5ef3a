"""Newton's method: one step on a positive-definite quadratic, damping on non-convex
losses, failures reported with the best point restored, and the size limit."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.population import Population
from trainlab.second_order import (BFGS, ModelObjective, Newton, Objective, Quadratic, Rosenbrock, hessian,
                                   minimize, textbook_function)

DT = torch.float64


def _spd(m: int, seed: int, condition: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=DT))
    A = Q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(condition)).item(), m, dtype=DT)) @ Q.T
    return 0.5 * (A + A.T)


def test_newton_solves_a_positive_definite_quadratic_in_one_step():
    A = torch.stack([_spd(6, 0, 1e3), _spd(6, 1, 10.0)])
    b = torch.randn(2, 6, generator=torch.Generator().manual_seed(2), dtype=DT)
    q = Quadratic(A, b, size=2, x0=torch.randn(2, 6, generator=torch.Generator().manual_seed(3), dtype=DT) * 5)
    res = minimize(q, "newton", tol=1e-9)
    assert res.iterations.tolist() == [1, 1]
    assert res.status == ["converged", "converged"]
    assert torch.allclose(res.x, q.minimizer(), rtol=0, atol=1e-10)
    assert res.evals == 2  # the start and the one step (the Hessian is the formula A)


def test_newton_one_step_on_the_textbook_function():
    res = minimize(textbook_function(), Newton(), tol=1e-12)
    assert int(res.iterations[0]) == 1
    assert res.x.abs().max() < 1e-14


def test_newton_uses_differences_when_asked_and_still_takes_one_step():
    q = Quadratic(_spd(4, 5, 100.0), torch.ones(4, dtype=DT), x0=torch.zeros(4, dtype=DT))
    res = minimize(q, Newton(hessian="differences"), tol=1e-8)
    assert int(res.iterations[0]) == 1
    assert torch.allclose(res.x, q.minimizer(), atol=1e-8)


def test_newton_damps_an_indefinite_hessian_and_decreases_monotonically(make_tanh):
    obj = make_tanh(P=2, lam=(1e-2, 3e-2))

    eig = torch.linalg.eigvalsh(hessian(obj, obj.initial_point()))
    assert bool((eig[:, 0] < 0).all())  # indefinite at the start: a pure Newton step would head for a saddle
    res = minimize(obj, Newton(), max_iter=100, tol=1e-8)
    assert res.status == ["converged", "converged"]
    assert bool((res.f_history.diff(dim=0) <= 0).all())
    assert bool((res.info["damping"] > 0).any())
    # at the end pure Newton steps (no damping) and a positive semi-definite Hessian: a local minimum.
    # (Semi: shifting every output bias by the same constant leaves softmax unchanged, eigenvalue 0.)
    assert bool((res.info["damping"][-1] == 0).all())
    assert bool((torch.linalg.eigvalsh(hessian(obj, res.x))[:, 0] > -1e-8).all())


def test_newton_on_rosenbrock():
    res = minimize(Rosenbrock(size=2, x0=[[-1.2, 1.0], [2.0, -1.0]]), "newton", max_iter=100, tol=1e-10)
    assert res.status == ["converged", "converged"]
    assert torch.allclose(res.x, torch.ones(2, 2, dtype=DT), atol=1e-9)


def test_too_large_model_names_the_size_and_the_limit():
    model = nn.Sequential([nn.Linear(784, 10)])
    model.build((784,), Population(1), dtype=DT)
    obj = ModelObjective(model, nn.SoftmaxCrossEntropy(), torch.zeros(3, 784, dtype=DT), torch.zeros(3).long())
    expected = ("Newton needs a dense 7850 x 7850 Hessian per member (7850 parameters); the limit is "
                "max_params=5000 — use LBFGS or raise max_params")
    with pytest.raises(ConfigError) as err:
        minimize(obj, "newton")
    assert str(err.value) == expected
    with pytest.raises(ConfigError, match=r"BFGS needs a dense 7850 x 7850 inverse-Hessian approximation per member "
                                          r"\(7850 parameters\); the limit is max_params=5000"):
        minimize(obj, BFGS())
    with pytest.raises(ConfigError, match="max_params=100"):
        minimize(obj, Newton(max_params=100))


class _Wall(Objective):
    """``|w - 10|^2``, but NaN wherever ``w_0 > 3``: the minimizer lies beyond the wall."""

    name = "wall"

    def __init__(self, size: int = 2):
        super().__init__()
        self.size, self.dim = size, 2

    def initial_point(self):
        return torch.tensor([[0.0, 0.0], [-5.0, 1.0]], dtype=DT)[: self.size]

    def _value_and_grad(self, w):
        f, g = ((w - 10) ** 2).sum(1), 2 * (w - 10)
        bad = w[:, 0] > 3
        return torch.where(bad, torch.nan, f), torch.where(bad[:, None], torch.nan, g)


def test_newton_stops_at_nan_and_restores_the_best_point():
    res = minimize(_Wall(), Newton(hessian="differences"), max_iter=100)
    for i in range(2):
        assert res.status[i] in ("hessian_nan", "damping_nan")
        assert "restored best point at iteration" in res.message[i]
        assert torch.isfinite(res.x[i]).all() and float(res.x[i, 0]) <= 3.0
        assert float(res.fun[i]) == pytest.approx(float(res.f_history[:, i].min()))


def test_newton_settings_are_validated():
    with pytest.raises(ConfigError, match="Newton damping must be >= 0.0, got -1.0"):
        Newton(damping=-1.0)
    with pytest.raises(ConfigError, match="Newton hessian must be"):
        Newton(hessian="exact")
    with pytest.raises(ConfigError, match="max_params must be an integer >= 1"):
        Newton(max_params=0)
