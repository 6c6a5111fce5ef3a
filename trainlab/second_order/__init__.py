"""Second-order optimization: Hessians from the engine's gradients, Newton, BFGS, L-BFGS.

Quick start (softmax regression on embedded MNIST, float64)::

    from trainlab import nn, regularize
    from trainlab.second_order import ModelObjective, minimize, Newton

    model = nn.Sequential([nn.Linear(784, 10)]); model.build((784,), 1, dtype=torch.float64)
    obj = ModelObjective(model, nn.SoftmaxCrossEntropy(), x, y,
                         regularizers=[regularize.L2(1e-4, include_1d=True)])
    res = minimize(obj, "lbfgs", max_iter=200, tol=1e-6)     # or Newton(max_params=8000)
    print(res)                                               # per member: f, iterations, status

See docs/second_order.md for the formulas, error analysis and measured results;
:mod:`trainlab.second_order.demos` for the demonstrations (data + figures).
"""

from trainlab.second_order._base import LineSearchRecord, Method, Step
from trainlab.second_order._bfgs import BFGS
from trainlab.second_order._first_order import FirstOrder, GradientDescent
from trainlab.second_order._flat import flatten, flatten_grads, num_parameters, trainable_parameters, unflatten_into
from trainlab.second_order._functions import Quadratic, Rosenbrock, textbook_function
from trainlab.second_order._hessian import default_eps, fd_hessian, hessian, hvp
from trainlab.second_order._lbfgs import LBFGS
from trainlab.second_order._trainer_lbfgs import CLOSURE_OPTIMIZERS, TrainerLBFGS
from trainlab.second_order._line_search import LineSearchOutcome, line_search, strong_wolfe, wolfe_batch
from trainlab.second_order._minimize import METHODS, Result, get_method, minimize
from trainlab.second_order._newton import Newton
from trainlab.second_order._objective import ModelObjective, Objective
from trainlab.second_order._softmax import softmax_regression_hessian

__all__ = [
    # objectives
    "Objective",
    "ModelObjective",
    "Quadratic",
    "Rosenbrock",
    "textbook_function",
    "flatten",
    "flatten_grads",
    "unflatten_into",
    "num_parameters",
    "trainable_parameters",
    # Hessians
    "hvp",
    "fd_hessian",
    "hessian",
    "default_eps",
    "softmax_regression_hessian",
    # line search
    "strong_wolfe",
    "line_search",
    "wolfe_batch",
    "LineSearchOutcome",
    # methods
    "Method",
    "Step",
    "LineSearchRecord",
    "Newton",
    "BFGS",
    "LBFGS",
    "TrainerLBFGS",
    "CLOSURE_OPTIMIZERS",
    "FirstOrder",
    "GradientDescent",
    "METHODS",
    "get_method",
    "minimize",
    "Result",
]
