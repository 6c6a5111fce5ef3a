"""The demonstrations return data and draw figures (Agg, no pyplot state)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab.second_order import demos


def test_textbook_paths(tmp_path):
    res = demos.run_textbook_paths()
    assert set(res.paths) == {"SGD", "Momentum", "AdaGrad", "Adam", "Newton", "L-BFGS"}
    for name in ("SGD", "Momentum", "AdaGrad", "Adam"):
        assert res.paths[name].shape == (31, 2)  # 30 steps from (-7, 2)
    np.testing.assert_allclose(res.paths["SGD"][1], [-6.335, -1.8])
    assert res.iterations["Newton"] == 1 and res.status["Newton"] == "converged"
    assert res.status["L-BFGS"] == "converged"
    fig = demos.plot_paths(res)
    assert len(fig.axes) == 6
    fig.savefig(tmp_path / "paths.png")
    assert (tmp_path / "paths.png").stat().st_size > 10_000


def test_quadratic_bowl_newton_one_step_gd_zigzags():
    res = demos.run_quadratic_bowl()
    assert res.iterations["Newton"] == 1 and res.values["Newton"][-1] < 1e-20
    gd = res.paths[next(k for k in res.paths if k.startswith("GD"))]
    A = res.objective.A[0].numpy()
    steep = np.linalg.eigh(A)[1][:, -1]
    along = gd @ steep
    assert np.all(np.sign(along[1:]) == -np.sign(along[:-1]))  # flips side every step: the zig-zag
    assert res.values[next(k for k in res.paths if k.startswith("GD"))][-1] > 1e-6


def test_rosenbrock_demo():
    res = demos.run_rosenbrock(gd_steps=200)
    for name in ("Newton", "BFGS", "L-BFGS"):
        assert res.status[name] == "converged"
        np.testing.assert_allclose(res.paths[name][-1], [1.0, 1.0], atol=1e-6)
    assert len(demos.plot_paths(res, columns=2).axes) == 4


def test_newton_cost_curve_small():
    res = demos.run_newton_cost(sizes=(100, 200, 400), repeats=1, n_train=200, fit_from=200, threads=1)
    assert res.m.tolist() == [100.0, 200.0, 400.0]
    assert all(math.isfinite(s) for s in (res.slope_step, res.slope_solve, res.slope_hessian))
    assert np.all(res.step_s > 0)
    assert len(demos.plot_newton_cost(res).axes) == 1


@pytest.mark.slow
def test_mnist_softmax_demo_small(tmp_path):
    res = demos.run_mnist_softmax(n_train=200, features=64, first_order_steps=30, l2=1e-3)
    assert res.m == 650
    assert res.status["Newton"] == "converged" and res.iterations["Newton"] <= 8
    assert res.status["L-BFGS (m=10)"] == "converged"
    assert abs(res.final["L-BFGS (m=10)"] - res.f_star) < 1e-6
    for name, c in res.curves.items():
        assert len(c["f"]) == len(c["time"]) == res.iterations[name] + 1
        assert np.all(np.diff(c["time"]) >= 0)
    demos.plot_mnist_softmax(res).savefig(tmp_path / "mnist.png")
