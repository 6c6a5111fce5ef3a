"""Noise robustness: Gaussian noise on a layer's input or on its weights, training only.

``std`` may differ per member. Every draw comes from the member's own generator
(``population.generators(device)``), so member *i* of a population gets exactly the
noise it would get if trained alone with the same seed. At eval both layers are
deterministic: the input passes unchanged, the weights are the trained ``W``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.nn._dropout import _size_of
from trainlab.nn._linear import Linear
from trainlab.nn._module import Module
from trainlab.population import Population, member_draw, member_values, member_view

__all__ = ["NoiseFamily", "GaussianNoise", "NoisyLinear"]


def _check_std(value: Any, size: int, *, owner: str, dtype: torch.dtype = torch.float64,
               device: torch.device | str = "cpu") -> torch.Tensor:
    return member_values(value, size, name=f"{owner} std", dtype=dtype, device=device, low=0.0)


class NoiseFamily:
    """Mixin of the layers that add Gaussian noise while training.

    * ``fix_noise(eps)`` / ``release_noise()``: hold the standard-normal draw ``eps``
      fixed (the layer still multiplies it by each member's ``std``); no random numbers
      are drawn while it is fixed. For gradient checks and demonstrations.
    * ``last_noise``: the ``eps`` of the last training forward (``None`` after an eval one).
    """

    #: when ``True`` the layer draws noise even in eval mode (``training=False``): set by
    #: :func:`~trainlab.nn.mc_dropout` for Monte-Carlo prediction
    mc: bool = False
    _fixed_eps: torch.Tensor | None = None
    _last_eps: torch.Tensor | None = None

    def fix_noise(self, eps: torch.Tensor) -> None:
        """Use ``eps`` (standard normal, before scaling by ``std``) until :meth:`release_noise`."""
        if not isinstance(eps, torch.Tensor):
            raise ConfigError(f"{type(self).__name__}.fix_noise expects a tensor, got {type(eps).__name__}")
        self._fixed_eps = eps.detach().clone()

    def release_noise(self) -> None:
        """Go back to drawing fresh noise on every training forward."""
        self._fixed_eps = None

    @property
    def last_noise(self) -> torch.Tensor | None:
        """Standard-normal draw used by the last training forward."""
        return self._last_eps

    def _eps(self, population: Population, shape: tuple[int, ...], *, device: torch.device,
             dtype: torch.dtype) -> torch.Tensor:
        if self._fixed_eps is not None:
            want = (population.size, *shape)
            if tuple(self._fixed_eps.shape) != want:
                raise ConfigError(f"{type(self).__name__}: the fixed noise has shape {tuple(self._fixed_eps.shape)}, "
                                  f"this forward needs {want}")
            eps = self._fixed_eps.to(device=device, dtype=dtype)
        else:
            eps = member_draw(population, shape, kind="normal", device=device, dtype=dtype)
        self._last_eps = eps
        return eps


class GaussianNoise(NoiseFamily, Module):
    """Additive input noise while training: ``y = x + std * eps``, ``eps ~ N(0, 1)`` per unit.

    Eval: ``y = x``. Backward: ``dx = g`` (the noise does not depend on ``x``). A shared
    input ``(1, N, ...)`` gives a ``(P, N, ...)`` output (each member its own noise)
    and ``dx`` summed back to ``(1, N, ...)``. Placed first it corrupts the data
    ("noise robustness", the course notes); placed after a hidden layer it corrupts
    the hidden units. ``std = 0`` for a member is the identity for that member.

    See: Keras ``GaussianNoise(stddev)`` (same math; torch has no such layer);
    Bishop, "Training with noise is equivalent to Tikhonov regularization", 1995.

    Parameters
    ----------
    std:
        Noise standard deviation (>= 0): one number, or one per member.
    """

    def __init__(self, std: float | Sequence[float]) -> None:
        _check_std(std, _size_of(std, "GaussianNoise std"), owner="GaussianNoise")
        self._settings = dict(std=std)
        self.std = std

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        self.population = population
        self.sigma = _check_std(self.std, population.size, owner="GaussianNoise", dtype=dtype, device=device)
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        if not (training or self.mc):
            self._last_eps = None
            self._shared = False  # the output is x itself
            return x
        self._shared = bool(x.shape[0] == 1 and self.population.size > 1)
        eps = self._eps(self.population, tuple(x.shape[1:]), device=x.device, dtype=x.dtype)
        return torch.addcmul(x, member_view(self.sigma, eps.ndim), eps)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        # d(x + std*eps)/dx = 1; only a shared input needs work (the sum over members).
        return g.sum(dim=0, keepdim=True) if self._shared else g


class NoisyLinear(NoiseFamily, Linear):
    """A :class:`~trainlab.nn.Linear` layer whose weights are perturbed while training ("weight noise").

    Per member, with ``eps ~ N(0, 1)`` of the weight's shape, redrawn every step::

        training:  W~ = W + std * eps,   y = x W~ + b
        eval:      y = x W + b
        backward:  dW = x^T g,  db = sum_n g,  dx = g W~^T

    ``dW`` is the gradient *evaluated at the noisy weights* ``W~`` (``dW~/dW = I``),
    so SGD on it minimises the expected loss ``E_eps[L(W + std eps)]``, which prefers
    flat minima; for small ``std`` it adds roughly ``std^2/2 tr(H)`` to the loss.
    This is the fixed-variance weight noise of Graves (2011, "Practical variational
    inference for neural networks") and the course notes' noise robustness. The
    bias is not perturbed. Unlike NoisyNets' ``NoisyLinear`` (Fortunato et al. 2018),
    ``std`` is a hyperparameter, not learned, and eval uses no noise.

    Parameters
    ----------
    in_features, out_features, init, init_scale, bias:
        As for :class:`~trainlab.nn.Linear`.
    std:
        Weight-noise standard deviation (>= 0): one number, or one per member.
    """

    def __init__(self, in_features: int | None, out_features: int, *, std: float | Sequence[float],
                 init: Any = "xavier_uniform", init_scale: float | Sequence[float] = 1.0, bias: bool = True) -> None:
        super().__init__(in_features, out_features, init=init, init_scale=init_scale, bias=bias)
        _check_std(std, _size_of(std, "NoisyLinear std"), owner="NoisyLinear")
        self._settings = dict(in_features=in_features, out_features=out_features, std=std, init=init,
                              init_scale=init_scale, bias=bias)
        self.std = std

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        out = super().build(in_shape, population, device=device, dtype=dtype)
        self.population = population
        self.sigma = _check_std(self.std, population.size, owner="NoisyLinear", dtype=dtype, device=device)
        return out

    def _effective_weight(self, training: bool) -> torch.Tensor:
        W = self.weight.data
        if training or self.mc:
            eps = self._eps(self.population, tuple(W.shape[1:]), device=W.device, dtype=W.dtype)
            return torch.addcmul(W, member_view(self.sigma, 3), eps)  # dW~/dW = 1: the gradient passes as is
        self._last_eps = None
        return W
