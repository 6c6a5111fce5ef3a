"""Objectives: smooth functions of ``P`` independent parameter vectors ``w (P, m)``.

Every second-order method in this package talks to an :class:`Objective` only
through ``value_and_grad(w) -> (f (P,), g (P, m))``. Member ``p``'s value and
gradient depend on row ``p`` of ``w`` alone, so ``P`` problems are solved as one
(the population axis) and a single problem is ``P = 1``.

:class:`ModelObjective` wraps a trainlab model, a loss, a full batch of data and
optional regularizers: the value is ``loss + sum of penalties`` and the gradient
comes from the model's own explicit ``backward`` (no autograd).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Linear, Loss, Sequential, SoftmaxCrossEntropy
from trainlab.regularize import L2, MaxNorm, Regularizer
from trainlab.second_order._flat import flatten, flatten_grads, num_parameters, unflatten_into
from trainlab.second_order._softmax import softmax_regression_hessian

__all__ = ["Objective", "ModelObjective"]


class Objective:
    """Base class: subclasses set ``size`` (``P``), ``dim`` (``m``), ``dtype``, ``device``
    and implement ``_value_and_grad``; ``analytic_hessian`` is optional.

    ``evals`` counts calls of :meth:`value_and_grad` (one call evaluates all members).
    """

    size: int
    dim: int
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")
    name: str = "objective"

    def __init__(self) -> None:
        self.evals = 0

    def value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``f (P,)`` and ``g = df/dw (P, m)`` at ``w (P, m)``; ``w`` is not modified."""
        if w.ndim != 2 or tuple(w.shape) != (self.size, self.dim):
            raise ConfigError(f"{self.name}: points must have shape (P, m) = ({self.size}, {self.dim}), "
                              f"got {tuple(w.shape)}")
        self.evals = getattr(self, "evals", 0) + 1
        with torch.no_grad():
            return self._value_and_grad(w)

    def value(self, w: torch.Tensor) -> torch.Tensor:
        return self.value_and_grad(w)[0]

    def _value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def initial_point(self) -> torch.Tensor:
        """The default starting point ``(P, m)``."""
        raise NotImplementedError(f"{self.name} has no default starting point; pass x0")

    def analytic_hessian(self, w: torch.Tensor) -> torch.Tensor | None:
        """The exact Hessian ``(P, m, m)`` when a formula is known, else ``None``."""
        return None

    def set_point(self, w: torch.Tensor) -> None:
        """Called once with the final point (a model objective writes it into the model)."""


def _check_regularizer(r: Regularizer) -> None:
    if isinstance(r, MaxNorm) or getattr(r, "proximal", False):
        raise ConfigError(f"{type(r).__name__} acts after each step (a projection or proximal step), not through the "
                          "objective; full-batch minimizers need penalties with a gradient (L2, L1, ElasticNet)")


class ModelObjective(Objective):
    """``f(w) = loss(model_w(x), y) + sum_r penalty_r(w)`` for every member, full batch.

    The model is evaluated with ``training=False``: dropout is off (no random masks)
    and normalization layers use their running statistics, so the objective is a
    deterministic function of ``w`` -- line searches and finite differences rely on
    that. Evaluating it writes ``w`` into the model's parameters; :func:`minimize`
    writes the final point back at the end.

    Parameters
    ----------
    model:
        A built :class:`~trainlab.nn.Sequential` (``P`` members).
    loss:
        A trainlab loss (``SoftmaxCrossEntropy``, ``MeanSquaredError``, ...).
    x, y:
        The whole training set: ``x (N, ...)`` shared by all members (or
        ``(P, N, ...)`` per member), ``y`` labels or targets as the loss takes them.
    regularizers:
        Penalties from :mod:`trainlab.regularize` added to the objective (attached
        here). Projections (max-norm) and proximal L1 are refused.
    """

    name = "model objective"

    def __init__(self, model: Sequential, loss: Loss, x: torch.Tensor, y: torch.Tensor, *,
                 regularizers: Sequence[Regularizer] = ()) -> None:
        super().__init__()
        if getattr(model, "population", None) is None:
            raise ConfigError("the model is not built: call model.build(input_shape, population) first")
        self.model, self.loss = model, loss
        self.size, self.dim = model.size, num_parameters(model)
        self.dtype, self.device = model.dtype, model.device
        sample = tuple(model.input_shape or ())
        x = x.to(device=self.device, dtype=self.dtype)
        if tuple(x.shape[1:]) == sample:
            x = x.unsqueeze(0)
        elif not (x.ndim == len(sample) + 2 and tuple(x.shape[2:]) == sample and x.shape[0] in (1, self.size)):
            raise ConfigError(f"x must have shape (N, {', '.join(map(str, sample))}) or (P, N, ...) for this model, "
                              f"got {tuple(x.shape)}")
        self.x = x
        self.y = y.to(self.device)
        self.regularizers = list(regularizers)
        for r in self.regularizers:
            _check_regularizer(r)
            r.attach(model)
        self.loss.build(self.size, device=self.device, dtype=self.dtype)

    def initial_point(self) -> torch.Tensor:
        return flatten(self.model)

    def set_point(self, w: torch.Tensor) -> None:
        unflatten_into(self.model, w)

    def _value_and_grad(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unflatten_into(self.model, w)
        saved = self.model.input_grad
        self.model.input_grad = False  # d(loss)/d(data) is not needed
        try:
            out = self.model.forward(self.x, training=False)
            f = self.loss.forward(out, self.y)
            for r in self.regularizers:
                pen = r.penalty()
                if pen is not None:
                    f = f + pen
            self.model.backward(self.loss.backward())
            for r in self.regularizers:
                r.add_grad()
        finally:
            self.model.input_grad = saved
        return f.clone(), flatten_grads(self.model)

    # ---- softmax regression: the one model with a Hessian formula here ---------------
    @property
    def is_softmax_regression(self) -> bool:
        """One ``Linear`` layer, softmax cross-entropy, and only L2 penalties."""
        return (len(self.model.layers) == 1 and isinstance(self.model.layers[0], Linear)
                and isinstance(self.loss, SoftmaxCrossEntropy)
                and all(isinstance(r, L2) for r in self.regularizers))

    def analytic_hessian(self, w: torch.Tensor) -> torch.Tensor | None:
        if not self.is_softmax_regression:
            return None
        return softmax_regression_hessian(self, w)
