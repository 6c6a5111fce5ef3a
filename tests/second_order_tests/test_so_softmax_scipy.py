"""L2-regularized softmax regression on embedded MNIST (200 images, 8x8 = 64 features,
10 classes: m = 650): Newton, L-BFGS and BFGS reach scipy's L-BFGS-B minimum to 1e-6
in loss, and Newton needs at most 8 iterations (7 measured)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlab.second_order import minimize

scipy_optimize = pytest.importorskip("scipy.optimize")

LAM = 1e-3


def _autograd_loss(theta: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> tuple[float, np.ndarray]:
    # The reference objective is written independently, with torch autograd.
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    d = x.shape[1]
    W, b = t[: d * 10].reshape(d, 10), t[d * 10:]
    f = torch.nn.functional.cross_entropy(x @ W + b, y) + LAM * ((W ** 2).sum() + (b ** 2).sum())
    (g,) = torch.autograd.grad(f, t)
    return float(f.detach()), g.numpy()


@pytest.fixture(scope="module")
def reference(mnist64):
    x, y = mnist64
    theta0 = np.zeros(65 * 10)
    res = scipy_optimize.minimize(_autograd_loss, theta0, args=(x, y), jac=True, method="L-BFGS-B",
                                  options={"maxiter": 10000, "ftol": 1e-15, "gtol": 1e-10})
    assert res.success, res.message
    return float(res.fun)


@pytest.mark.parametrize("method, max_iter", [("newton", 8), ("lbfgs", 500), ("bfgs", 500)])
def test_reaches_scipy_minimum(method, max_iter, make_softmax, mnist64, reference):
    x, y = mnist64
    obj = make_softmax(P=1, lam=LAM, x=x, y=y)
    assert obj.dim == 650
    res = minimize(obj, method, max_iter=max_iter, tol=1e-7)
    assert res.status == ["converged"], res.message
    assert abs(float(res.fun[0]) - reference) < 1e-6
    if method == "newton":
        assert int(res.iterations[0]) <= 8
