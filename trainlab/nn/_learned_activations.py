"""Activations with structure or parameters of their own: Maxout and PReLU.

Both are in the course notes (note 001) as ReLU's successors:

* **Maxout** (Goodfellow et al. 2013, "Maxout Networks", https://arxiv.org/abs/1302.4389):
  a unit is the maximum of ``k`` affine pieces, ``h_c = max_j z_{c,j}``. Here it is an
  activation that takes the ``C * k`` outputs of the affine layer before it and returns
  ``C`` units; the pieces of unit ``c`` are the *contiguous* features ``c*k .. c*k+k-1``
  (for conv inputs ``(C*k, H, W)``: channels ``c*k .. c*k+k-1``, per position). A
  ``Linear(in, C*k) -> Maxout(k)`` pair is the paper's maxout layer.
  Backward routes each unit's gradient to its arg-max piece (the first one on a tie,
  as ``torch.max``), zero to the others -- the "switch" of max pooling, across features.

* **PReLU** (He et al. 2015, "Delving Deep into Rectifiers", https://arxiv.org/abs/1502.01852):
  ``y = x if x > 0 else a x`` with the slope ``a`` *learned*: one per channel
  (``num_parameters = C``, the paper's default) or one shared by all channels
  (``num_parameters = 1``), as ``torch.nn.PReLU``; the initial slope is 0.25 (the
  paper's and torch's). ``dy/dx = 1`` if ``x > 0`` else ``a`` (``a`` at 0, as torch);
  ``dL/da = sum g x`` over the entries with ``x <= 0`` of that channel (and over the
  batch and positions). The slope is ``Parameter(kind="slope", decay=False)``: the paper
  trains it without weight decay (decay would push it to 0, i.e. back to ReLU), and
  ``include_1d`` does not opt it in either; set ``decay = True`` on it to decay it.

The channel axis of a ``(P, N, C[, H, W])`` activation is axis 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trainlab.errors import ConfigError
from trainlab.nn._module import Module, Parameter
from trainlab.population import Population, member_values

__all__ = ["Maxout", "PReLU"]


class Maxout(Module):
    """``(P, N, C*k[, H, W]) -> (P, N, C[, H, W])``: each unit the max of its ``k`` pieces.

    Parameters
    ----------
    pieces:
        ``k >= 2``, the number of affine pieces per unit (the paper uses 2..5).
    """

    def __init__(self, pieces: int = 2) -> None:
        if not isinstance(pieces, int) or isinstance(pieces, bool) or pieces < 2:
            raise ConfigError(f"Maxout pieces must be an integer >= 2, got {pieces!r}")
        self._settings = {"pieces": pieces}
        self.pieces = pieces

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        if len(in_shape) not in (1, 3):
            raise ConfigError(f"Maxout expects inputs of shape (features,) or (channels, H, W), got {in_shape}")
        if in_shape[0] % self.pieces:
            raise ConfigError(f"Maxout with {self.pieces} pieces needs a number of features/channels divisible by "
                              f"{self.pieces}, got {in_shape[0]} (make the layer before it {self.pieces} times wider)")
        return (in_shape[0] // self.pieces,) + in_shape[1:]

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        # (P, N, C*k, ...) -> (P, N, C, k, ...): pieces of unit c are features c*k .. c*k+k-1
        return x.reshape(x.shape[0], x.shape[1], x.shape[2] // self.pieces, self.pieces, *x.shape[3:])

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        y, idx = self._grouped(x).max(dim=3, keepdim=True)
        self._idx = idx
        self._in_shape = x.shape
        return y.squeeze(3)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        P, N = g.shape[0], g.shape[1]
        dx = g.new_zeros((P, N, g.shape[2], self.pieces) + tuple(g.shape[3:]))
        dx.scatter_(3, self._idx, g.unsqueeze(3))
        return dx.reshape(self._in_shape)


class PReLU(Module):
    """``y = x if x > 0 else a x`` with learned slope(s) ``a``, like ``torch.nn.PReLU``.

    Parameters
    ----------
    num_parameters:
        1 (one slope shared by all channels), or the number of channels (one slope each;
        must equal the input's axis-2 size), or ``None``: one per channel, the count
        taken from the input at build (the usual choice in configs).
    init:
        Initial slope, a number or one per member (default 0.25, as torch and the paper).
    """

    _x: torch.Tensor | None  # the last forward's input, released by backward

    def __init__(self, num_parameters: int | None = 1, init: float | Sequence[float] = 0.25) -> None:
        if num_parameters is not None and (not isinstance(num_parameters, int) or isinstance(num_parameters, bool)
                                           or num_parameters < 1):
            raise ConfigError(f"PReLU num_parameters must be an integer >= 1 or None (one per channel), "
                              f"got {num_parameters!r}")
        member_values(init, len(init) if isinstance(init, Sequence) else 1, name="PReLU init", dtype=torch.float64)
        self._settings = {"num_parameters": num_parameters, "init": init}
        self.num_parameters = num_parameters
        self.init = init

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        C = in_shape[0] if in_shape else 1
        n = C if self.num_parameters is None else self.num_parameters
        if n != 1 and n != C:
            raise ConfigError(f"PReLU num_parameters must be 1 or the number of channels ({C}), got {n}")
        self.num_parameters = n
        P = population.size
        a0 = member_values(self.init, P, name="PReLU init", dtype=dtype, device=device)
        self.weight = Parameter(a0[:, None].expand(P, n).clone(), kind="slope", decay=False, name="weight")
        self._tail = len(in_shape) - 1  # spatial axes after the channel axis
        return in_shape

    def parameters(self) -> list[Parameter]:
        return [self.weight]

    def _a(self) -> torch.Tensor:
        # (P, n) -> (P, 1, n, 1, ...) broadcasting over (P, N, C, ...)
        a = self.weight.data
        return a.reshape(a.shape[0], 1, a.shape[1], *([1] * self._tail))

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._shared = bool(x.shape[0] == 1 and self.weight.data.shape[0] > 1)
        self._x = x
        self._pos = x > 0
        return torch.where(self._pos, x, x * self._a())

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        x, pos = self._x, self._pos
        assert x is not None, "PReLU.backward without a forward"
        # dL/da: sum over the batch, positions (and channels when shared) of g x where x <= 0
        contrib = torch.where(pos, torch.zeros((), dtype=g.dtype, device=g.device), g * x)
        dims = [1] + list(range(3, contrib.ndim))
        per_channel = contrib.sum(dim=dims)  # (P, C)
        if self.num_parameters == 1:
            per_channel = per_channel.sum(dim=1, keepdim=True)
        self.weight.grad.copy_(per_channel)
        self._x = None
        if not self.input_grad:
            return None
        dx = torch.where(pos, g, g * self._a())
        return dx.sum(dim=0, keepdim=True) if self._shared else dx

