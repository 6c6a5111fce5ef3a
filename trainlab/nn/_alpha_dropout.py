"""Alpha dropout: the dropout of self-normalizing networks (SELU).

Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017, section 4
(https://arxiv.org/abs/1706.02515). Ordinary dropout sets units to 0, which for SELU
is not the value of a "silent" unit and changes the mean and variance the net keeps
fixed. Alpha dropout sets dropped units to SELU's negative saturation
``alpha' = -lambda alpha ~ -1.7581`` and then applies the affine map ``a x + b`` that
restores zero mean and unit variance for standardized inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.nn._activations import SELU_ALPHA, SELU_SCALE
from trainlab.nn._dropout import DropoutFamily, _check_drop_probability, _size_of
from trainlab.nn._module import Module
from trainlab.population import Population, member_view

__all__ = ["AlphaDropout", "ALPHA_PRIME", "alpha_dropout_affine"]

#: the value a dropped unit takes: SELU's limit for x -> -inf, ``-lambda alpha``
ALPHA_PRIME = -SELU_SCALE * SELU_ALPHA


def alpha_dropout_affine(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` of Klambauer et al. (2017), with keep probability ``q = 1 - p``::

        a = (q + alpha'^2 q (1 - q))^(-1/2) = ((1 - p)(1 + p alpha'^2))^(-1/2)
        b = -a (1 - q) alpha' = -a p alpha'

    so that ``E[y] = 0`` and ``Var[y] = 1`` when ``x`` has mean 0 and variance 1.
    """
    a = ((1.0 - p) * (1.0 + p * ALPHA_PRIME ** 2)).rsqrt()
    return a, -a * p * ALPHA_PRIME


class AlphaDropout(DropoutFamily, Module):
    """Alpha dropout with drop probability ``p`` (per member), for SELU networks.

    Training, with ``m ~ Bernoulli(1 - p)`` per unit (one mask per member)::

        y = a (x m + alpha' (1 - m)) + b,      dx = g a m
        eval:  y = x

    ``a``, ``b`` from :func:`alpha_dropout_affine`. The same as ``torch.nn.AlphaDropout(p)``
    (whose kernel writes ``y = x (a m) + a alpha (m - 1) + a alpha p`` with
    ``alpha = lambda alpha_SELU``: the same numbers). Keras' ``AlphaDropout(rate)`` too.
    A shared ``(1, N, ...)`` input gets a mask per member and its ``dx`` summed back, as
    :class:`~trainlab.nn.Dropout`.
    """

    def __init__(self, p: float | Sequence[float] = 0.05) -> None:
        _check_drop_probability(p, _size_of(p, "AlphaDropout p"), owner="AlphaDropout", warn=True)
        self._settings = dict(p=p)
        self.p = p
        self._init_family()

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        self.population = population
        self.rate = _check_drop_probability(self.p, population.size, owner="AlphaDropout", dtype=dtype,
                                            device=device)
        self.a, self.b = alpha_dropout_affine(self.rate)
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        P = self.population.size
        if not self._sampling(training):
            self._last_keep = None
            self._mult = None
            self._shared = False
            return x
        self._shared = bool(x.shape[0] == 1 and P > 1)
        keep = self._keep_mask(self.population, tuple(x.shape[1:]), self.rate, device=x.device, dtype=x.dtype)
        a = member_view(self.a, keep.ndim)
        b = member_view(self.b, keep.ndim)
        self._mult = keep * a
        # a (x m + alpha' (1 - m)) + b  =  x (a m) + (a alpha' (1 - m) + b)
        return x * self._mult + (a * ALPHA_PRIME * (1.0 - keep) + b)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        if self._mult is None:
            return g
        dx = g * self._mult
        return dx.sum(dim=0, keepdim=True) if self._shared else dx

