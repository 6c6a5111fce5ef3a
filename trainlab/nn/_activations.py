"""Element-wise activations: forward caches what the derivative needs.

Per-member hyperparameters (LeakyReLU's slope, ELU's alpha, Softplus' beta) are
``(P,)`` tensors broadcast over ``(P, N, ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import torch

from trainlab.errors import ConfigError
from trainlab.nn._module import Module
from trainlab.population import Population, member_values, member_view

__all__ = ["Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU", "GELU", "Softplus", "SiLU", "Mish", "SELU",
           "Hardswish", "SELU_ALPHA", "SELU_SCALE"]


_threshold_backward_into = torch.ops.aten.threshold_backward.grad_input


class _Elementwise(Module):
    def __init__(self) -> None:
        self._settings = {}

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        self._build_hparams(population.size, device, dtype)
        return in_shape

    def _build_hparams(self, P: int, device: torch.device | str, dtype: torch.dtype) -> None:
        pass


class Identity(_Elementwise):
    """``y = x`` (the linear activation)."""

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        return x

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return g


class Sigmoid(_Elementwise):
    """``y = 1 / (1 + e^-x)``; ``dy/dx = y (1 - y)`` (at most 1/4: the vanishing-gradient culprit)."""

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._y = torch.sigmoid(x)
        return self._y

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        y = self._y
        return g * y * (1.0 - y)


class Tanh(_Elementwise):
    """``y = tanh x``; ``dy/dx = 1 - y^2``."""

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._y = torch.tanh(x)
        return self._y

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        y = self._y
        return g * (1.0 - y * y)


class ReLU(_Elementwise):
    """``y = max(0, x)``; ``dy/dx = 1 if x > 0 else 0`` (0 at x = 0, as in PyTorch)."""

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._y = torch.relu(x)
        return self._y

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        # One fused kernel: g where y > 0, else 0 (y > 0 exactly when x > 0).
        return torch.ops.aten.threshold_backward(g, self._y, 0)

    # The same two, overwriting their argument instead of allocating a new tensor: the same values, bit for
    # bit. Only a chain that owns the argument calls them (Sequential's in-place plan): for a large
    # population the allocation and the extra pass over memory cost as much as the arithmetic.
    def forward_in_place(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._y = torch.relu_(x)
        return self._y

    def backward_in_place(self, g: torch.Tensor) -> torch.Tensor:
        return _threshold_backward_into(g, self._y, 0, grad_input=g)


class _WithMemberParam(_Elementwise):
    """An activation with one per-member number ``self._value``."""

    _param_name = ""
    _low: float | None = None
    _low_inclusive = True

    def __init__(self, value: float | Sequence[float]) -> None:
        self._settings = {self._param_name: value}
        self._value = value
        member_values(value, len(value) if isinstance(value, Sequence) else 1, name=f"{type(self).__name__} {self._param_name}",
                      low=self._low, low_inclusive=self._low_inclusive, dtype=torch.float64)

    def _build_hparams(self, P: int, device: torch.device | str, dtype: torch.dtype) -> None:
        self._p = member_values(self._value, P, name=f"{type(self).__name__} {self._param_name}", dtype=dtype,
                                device=device, low=self._low, low_inclusive=self._low_inclusive)
        self._views: dict[int, torch.Tensor] = {}

    def _view(self, ndim: int) -> torch.Tensor:
        v = self._views.get(ndim)
        if v is None:
            v = self._views[ndim] = member_view(self._p, ndim)
        return v

    def _note_input(self, x: torch.Tensor) -> None:
        # A shared (1, N, ...) input broadcasts against the (P,) hyperparameter to (P, N, ...).
        self._shared = bool(x.shape[0] == 1 and self._p.shape[0] > 1)

    def _input_grad(self, dx: torch.Tensor) -> torch.Tensor:
        # ... so, as for Linear, the shared input receives the sum of the members' gradients.
        return dx.sum(dim=0, keepdim=True) if self._shared else dx


class LeakyReLU(_WithMemberParam):
    """``y = x if x > 0 else slope * x``; ``slope`` may differ per member (default 0.01, as PyTorch)."""

    _param_name = "slope"
    _low = 0.0

    def __init__(self, slope: float | Sequence[float] = 0.01) -> None:
        super().__init__(slope)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._note_input(x)
        self._pos = x > 0
        return torch.where(self._pos, x, x * self._view(x.ndim))

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return self._input_grad(torch.where(self._pos, g, g * self._view(g.ndim)))


class ELU(_WithMemberParam):
    """``y = x if x > 0 else alpha (e^x - 1)``; ``dy/dx = 1`` or ``y + alpha``."""

    _param_name = "alpha"
    _low = 0.0

    def __init__(self, alpha: float | Sequence[float] = 1.0) -> None:
        super().__init__(alpha)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._note_input(x)
        a = self._view(x.ndim)
        self._pos = x > 0
        self._y = torch.where(self._pos, x, a * torch.expm1(x))
        return self._y

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return self._input_grad(torch.where(self._pos, g, g * (self._y + self._view(g.ndim))))


class GELU(_Elementwise):
    """``y = x Phi(x)`` with ``Phi`` the standard normal CDF; ``dy/dx = Phi(x) + x phi(x)``.

    ``approximate="tanh"`` uses ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    (Hendrycks & Gimpel 2016), matching ``torch.nn.GELU(approximate="tanh")``.
    """

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ConfigError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self._settings = {"approximate": approximate}
        self.approximate = approximate

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._x = x
        if self.approximate == "tanh":
            c = math.sqrt(2.0 / math.pi)
            self._t = torch.tanh(c * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1.0 + self._t)
        self._cdf = 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))
        return x * self._cdf

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        x = self._x
        if self.approximate == "tanh":
            c = math.sqrt(2.0 / math.pi)
            t = self._t
            return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x))
        pdf = torch.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
        return g * (self._cdf + x * pdf)


class Softplus(_WithMemberParam):
    """``y = log(1 + e^(beta x)) / beta``; ``dy/dx = sigmoid(beta x)``.

    As in ``torch.nn.Softplus``, where ``beta x > threshold`` (default 20) the
    output is ``x`` (the two agree to float precision there and this avoids overflow).
    """

    _param_name = "beta"
    _low = 0.0
    _low_inclusive = False

    def __init__(self, beta: float | Sequence[float] = 1.0, *, threshold: float = 20.0) -> None:
        super().__init__(beta)
        self._settings["threshold"] = threshold
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._note_input(x)
        b = self._view(x.ndim)
        bx = x * b
        self._bx = bx
        return torch.where(bx > self.threshold, x, torch.log1p(torch.exp(bx.clamp(max=self.threshold))) / b)

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        bx = self._bx
        return self._input_grad(torch.where(bx > self.threshold, g, g * torch.sigmoid(bx)))


class SiLU(_Elementwise):
    """SiLU / Swish (``beta = 1``): ``y = x sigmoid(x)``; ``dy/dx = s + x s (1 - s)`` with ``s = sigmoid(x)``.

    Elfwing et al. 2018 ("SiLU"), Ramachandran et al. 2017 ("Swish"). See: ``torch.nn.SiLU``.
    """

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._x = x
        self._s = torch.sigmoid(x)
        return x * self._s

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        s = self._s
        return g * (s * (1.0 + self._x * (1.0 - s)))


class Mish(_Elementwise):
    """Mish (Misra 2019): ``y = x tanh(softplus(x))``;
    ``dy/dx = t + x (1 - t^2) sigmoid(x)`` with ``t = tanh(softplus(x))`` (``softplus' = sigmoid``).

    ``softplus`` is computed as ``torch.nn.functional.softplus`` (linear above 20, no overflow).
    See: ``torch.nn.Mish``.
    """

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._x = x
        self._t = torch.tanh(torch.nn.functional.softplus(x))
        return x * self._t

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        t = self._t
        return g * (t + self._x * (1.0 - t * t) * torch.sigmoid(self._x))


#: SELU's fixed point constants (Klambauer et al. 2017, eq. 14): with these a layer maps
#: zero-mean unit-variance inputs (and LeCun-normal weights) to zero mean and unit variance.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


class SELU(_Elementwise):
    """Scaled ELU (Klambauer et al. 2017): ``y = lambda x`` if ``x > 0`` else ``lambda alpha (e^x - 1)``;
    ``dy/dx = lambda`` or ``y + lambda alpha``.

    ``lambda ~ 1.0507``, ``alpha ~ 1.6733`` are fixed (not hyperparameters): they make
    the layer self-normalizing when the weights are LeCun-normal (``N(0, 1/fan_in)``;
    ``init = "auto"`` picks it for SELU) and dropout is :class:`~trainlab.nn.AlphaDropout`.
    See: ``torch.nn.SELU``.
    """

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._pos = x > 0
        self._y = torch.where(self._pos, SELU_SCALE * x, (SELU_SCALE * SELU_ALPHA) * torch.expm1(x))
        return self._y

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return torch.where(self._pos, g * SELU_SCALE, g * (self._y + SELU_SCALE * SELU_ALPHA))


class Hardswish(_Elementwise):
    """Hardswish (Howard et al. 2019, MobileNetV3): ``y = x relu6(x + 3) / 6``;
    ``dy/dx = 0`` for ``x <= -3``, ``(2x + 3) / 6`` for ``-3 < x < 3``, ``1`` for ``x >= 3``
    (at the kinks the outer side's slope, as ``torch.nn.Hardswish``'s backward chooses).
    """

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._x = x
        return x * (x + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0)

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        x = self._x
        mid = g * (x * (1.0 / 3.0) + 0.5)
        return torch.where(x <= -3.0, torch.zeros_like(g), torch.where(x < 3.0, mid, g))
