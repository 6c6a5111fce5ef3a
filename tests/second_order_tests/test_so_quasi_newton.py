"""BFGS and L-BFGS: Rosenbrock, the strong Wolfe conditions at every accepted step,
NaN in the line search, and population independence."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.second_order import (BFGS, LBFGS, FirstOrder, GradientDescent, Objective, Rosenbrock, line_search,
                                   minimize, textbook_function)

DT = torch.float64
C1, C2 = 1e-4, 0.9


@pytest.mark.parametrize("method", ["bfgs", "lbfgs"])
def test_rosenbrock_converges(method):
    res = minimize(Rosenbrock(size=2, x0=[[-1.2, 1.0], [-3.0, -2.0]]), method, max_iter=500, tol=1e-10)
    assert res.status == ["converged", "converged"]
    assert torch.allclose(res.x, torch.ones(2, 2, dtype=DT), atol=1e-8)
    assert int(res.iterations.max()) < 100


@pytest.mark.parametrize("method", [BFGS(), LBFGS(history=3)])
def test_accepted_steps_satisfy_the_strong_wolfe_conditions(method, make_tanh):
    res = minimize(make_tanh(P=2), method, max_iter=60, tol=1e-9)
    accepted = [r for r in res.line_searches if r.ok]
    assert len(accepted) >= 60  # both members, most iterations
    for r in accepted:
        assert r.phi <= r.phi0 + C1 * r.alpha * r.dphi0 + 1e-15  # sufficient decrease (N&W 3.7a)
        assert abs(r.dphi) <= C2 * abs(r.dphi0)  # strong curvature (N&W 3.7b)
        assert r.dphi0 < 0


def test_scalar_line_search():
    # phi(a) = (a - 3)^2 - a^3/10 along a descent direction: bracketing then zoom
    phi = lambda a: ((a - 3) ** 2 - a ** 3 / 10, 2 * (a - 3) - 3 * a ** 2 / 10)  # noqa: E731
    out = line_search(phi, *phi(0.0), alpha1=0.1)
    f0, d0 = phi(0.0)
    assert out.ok and out.phi <= f0 + C1 * out.alpha * d0 and abs(out.dphi) <= C2 * abs(d0)
    bad = line_search(phi, 1.0, 0.5)
    assert not bad.ok and "not a descent direction" in bad.message


def test_line_search_backtracks_from_nan():
    # finite only for a < 2; the first trial a = 8 is NaN, bisection comes back
    phi = lambda a: ((a - 1.5) ** 2, 2 * (a - 1.5)) if a < 2 else (math.nan, math.nan)  # noqa: E731
    out = line_search(phi, 2.25, -3.0, alpha1=8.0)
    assert out.ok and out.nan_evals >= 1 and out.alpha < 2


class _Wall(Objective):
    """``|w - 10|^2``, NaN wherever ``w_0 > 3``."""

    name = "wall"

    def __init__(self):
        super().__init__()
        self.size, self.dim = 2, 2

    def initial_point(self):
        return torch.tensor([[0.0, 0.0], [-5.0, 1.0]], dtype=DT)

    def _value_and_grad(self, w):
        f, g = ((w - 10) ** 2).sum(1), 2 * (w - 10)
        bad = w[:, 0] > 3
        return torch.where(bad, torch.nan, f), torch.where(bad[:, None], torch.nan, g)


class _BlowsUp(Objective):
    """Rosenbrock whose value turns NaN after ``calls`` evaluations (a run that diverges)."""

    name = "blows up"

    def __init__(self, calls: int):
        super().__init__()
        self.size, self.dim, self.limit = 1, 2, calls
        self.rb = Rosenbrock()

    def initial_point(self):
        return self.rb.initial_point()

    def _value_and_grad(self, w):
        f, g = self.rb._value_and_grad(w)
        return (f * math.nan, g) if self.evals > self.limit else (f, g)


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_nan_in_line_search_restores_best_point_and_reports(method):
    res = minimize(_Wall(), method, max_iter=100)
    for i in range(2):
        assert res.status[i] == "line_search_nan"
        assert res.message[i].startswith("line search produced NaN; restored best point at iteration ")
        assert int(res.nan_evals[i]) > 0
        assert torch.isfinite(res.x[i]).all() and float(res.x[i, 0]) <= 3.0
        assert float(res.fun[i]) == float(res.f_history[:, i].min())
    blow = _BlowsUp(calls=15)
    res = minimize(blow, "lbfgs", max_iter=100)
    assert res.status == ["line_search_nan"]
    k = int(res.message[0].split("iteration ")[1].split(" ")[0])
    assert 0 < k < int(res.iterations[0])
    assert torch.equal(res.fun, res.f_history[k])  # the best point, not the NaN one
    assert torch.isfinite(res.x).all()


def test_gradient_descent_divergence_is_reported():
    res = minimize(Rosenbrock(), GradientDescent(lr=0.1), max_iter=50)
    assert res.status == ["diverged"]
    assert "objective became non-finite at iteration" in res.message[0]
    assert "restored best point at iteration 0" in res.message[0]
    assert torch.equal(res.x, Rosenbrock().initial_point())


def test_first_order_wraps_trainlab_optimizers():
    q = textbook_function()
    res = minimize(q, FirstOrder("sgd", lr=0.95), max_iter=2, tol=0.0, record_path=True)
    assert torch.allclose(res.path[1, 0], torch.tensor([-6.335, -1.8], dtype=DT))  # Saito 6.1: (-7, 2) -> ...
    with pytest.raises(ConfigError, match="unknown optimizer 'lion'"):
        FirstOrder("lion")


def test_population_members_match_single_runs(make_softmax, mnist64):
    x, y = mnist64
    both = make_softmax(P=2, lam=[1e-3, 1e-2], x=x, y=y, seeds=[0, 1])
    res2 = minimize(both, "lbfgs", max_iter=40, tol=0.0)
    for i, lam in enumerate((1e-3, 1e-2)):
        alone = make_softmax(P=1, lam=lam, x=x, y=y, seeds=[i])
        res1 = minimize(alone, "lbfgs", max_iter=40, tol=0.0)
        assert torch.allclose(res2.x[i], res1.x[0], rtol=0, atol=1e-9)
        assert torch.allclose(res2.f_history[:, i], res1.f_history[:, 0], rtol=0, atol=1e-12)


def test_method_and_option_errors():
    with pytest.raises(ConfigError, match="unknown method 'cg'"):
        minimize(textbook_function(), "cg")
    with pytest.raises(ConfigError, match="0 < c1 < c2 < 1"):
        LBFGS(c1=0.9, c2=0.1)
    with pytest.raises(ConfigError, match="LBFGS history must be an integer >= 1"):
        LBFGS(history=0)
    with pytest.raises(ConfigError, match=r"x0 must have shape \(P, m\) = \(1, 2\)"):
        minimize(textbook_function(), "lbfgs", x0=torch.zeros(3, dtype=DT))
