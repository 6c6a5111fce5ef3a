"""The layer contract: settings stored verbatim, state built for a population.

A layer is constructed from its settings only (sizes, init, rates). ``build`` then
allocates its parameters for a :class:`~trainlab.population.Population` of ``P``
members on a device and dtype, and returns the per-example output shape. After that:

* ``forward(x, *, training)`` takes ``(P, N, ...)`` (or ``(1, N, ...)`` for an input
  shared by all members) and returns ``(P, N, ...)``; it caches what ``backward``
  needs.
* ``backward(g)`` takes the gradient of the loss with respect to the output and
  returns the gradient with respect to the input (or ``None`` when
  ``input_grad`` is off, e.g. for the first layer of a model), of the input's
  shape: for a shared ``(1, N, ...)`` input it is summed over the members. It *overwrites*
  each parameter's ``.grad`` (one backward per forward) and never mutates ``g``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any
from collections.abc import Iterator

import os

import torch

from trainlab.errors import ConfigError
from trainlab.population import Population, member_values, member_view

__all__ = ["Parameter", "Module", "Container", "check_allocation", "check_size", "draw_weight", "promises"]


def promises(layer: Any, method: str, flag: str) -> bool:
    """Whether ``layer``'s ``method`` (``"forward"`` / ``"backward"``) comes with the promise ``flag``
    (``"fresh_output"`` / ``"fresh_input_grad"``, see :class:`Module`): the class in the MRO that defines the
    method must declare the flag itself, so a subclass that overrides the method inherits no promise; the
    value is then the layer's own (an instance may narrow it, as BatchNorm without affine does)."""
    for cls in type(layer).__mro__:
        if method in vars(cls):
            return flag in vars(cls) and bool(getattr(layer, flag))
    return False


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_allocation(numel: int, *, what: str, bytes_per_element: int = 8) -> None:
    """Refuse, with one clear line, a weight that cannot be trained here.

    Called before drawing initial weights (drawn in float64). Training holds the
    weight, its gradient and up to two optimizer states besides, so one float64 draw
    larger than a quarter of the machine's memory is refused: an absurd width or
    population is a config error instead of an out-of-memory kill.
    """
    need = numel * bytes_per_element
    total = _physical_memory()
    if need > total // 4:
        raise ConfigError(f"{what} needs {need / 2**30:.1f} GiB ({numel:,} values), more than a quarter of this "
                          f"machine's {total / 2**30:.1f} GiB of memory; use fewer units or members")


def check_size(value: Any, name: str, layer: str, *, optional: bool = True) -> None:
    """A layer size: an integer >= 1 (or None, taken from the input at build, when ``optional``)."""
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{layer} {name} must be an integer >= 1{' or None' if optional else ''}, got {value!r}")


def draw_weight(initializer: Any, shape: tuple[int, ...], population: Population, init_scale: Any, *,
                what: str, device: Any = "cpu", dtype: torch.dtype = torch.float32) -> Parameter:
    """Every member's initial weight ``(P, *shape)``: the initializer's draw from the member's own
    generator, times its ``init_scale`` (a number or one per member). Drawn on the CPU so that CPU
    and GPU runs start from the same weights; refused first if it could not be trained here."""
    P = population.size
    check_allocation(P * math.prod(shape), what=f"{what} for {P} member(s)")
    scale = member_values(init_scale, P, name="init_scale", dtype=torch.float64, low=0.0)
    w = torch.stack([initializer.sample(shape, g) for g in population.generators("cpu")])
    w = w * member_view(scale, len(shape) + 1)
    return Parameter(w.to(device=device, dtype=dtype), kind="weight", decay=True, name="weight")


@dataclass(eq=False)
class Parameter:
    """A trainable tensor of shape ``(P, ...)`` and its gradient.

    ``kind`` is ``"weight"``, ``"bias"`` or ``"norm"`` (normalization gains/shifts).
    ``decay`` says whether weight decay / norm penalties apply; by default only
    weights are decayed (1-D parameters such as biases and norm gains are not).
    ``trainable=False`` freezes it: optimizers skip it. ``lr_scale`` multiplies the
    learning rate for this parameter (per-layer rates, e.g. for fine-tuning).
    """

    data: torch.Tensor
    kind: str = "weight"
    decay: bool = True
    trainable: bool = True
    name: str = ""
    lr_scale: float = 1.0
    grad: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.grad = torch.zeros_like(self.data)

    @property
    def shape(self) -> torch.Size:
        return self.data.shape


class Module:
    """Base class of every layer. Subclasses override ``build``, ``forward``, ``backward``."""

    #: whether ``backward`` must return the input gradient (off for a model's first layer)
    input_grad: bool = True
    #: a promise of the class that defines ``forward``: it returns a new tensor that nothing else holds (not
    #: its input, not a view of a tensor the layer keeps), so the next layer of a chain may overwrite it
    #: (see :meth:`trainlab.nn.Sequential.forward`). A subclass that overrides ``forward`` makes no promise
    #: unless it declares this again (:func:`promises`).
    fresh_output: bool = False
    #: the same promise for what ``backward`` returns (the input gradient)
    fresh_input_grad: bool = False
    #: the constructor arguments, verbatim (set by layers that take any; see :meth:`settings`)
    _settings: dict[str, Any]

    def build(
        self,
        in_shape: tuple[int, ...],
        population: Population,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[int, ...]:
        """Allocate state for ``population``; return the per-example output shape."""
        self.population_size = population.size
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError

    def parameters(self) -> list[Parameter]:
        """Trainable tensors, in a fixed order."""
        return []

    def children(self) -> list[Module]:
        """The layers this one contains directly (containers: Sequential, Residual); none for a plain layer."""
        return []

    def modules(self) -> Iterator[Module]:
        """This layer and every layer nested in it, depth first, in order (like ``torch.nn.Module.modules``).

        The one walker for code that looks for layers of a kind (BatchNorm, dropout, ...): a
        layer inside a :class:`~trainlab.nn.Residual` block is found like a top-level one.
        """
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self) -> dict[str, Parameter]:
        return {p.name: p for p in self.parameters()}

    def buffers(self) -> dict[str, torch.Tensor]:
        """Non-trainable state that is saved with the model (e.g. BN running statistics)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, verbatim (used for saving and export)."""
        return dict(getattr(self, "_settings", {}))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


class Container(Module):
    """A layer made of layers (:class:`Sequential`, :class:`Residual`): ``input_grad`` is passed on
    to the inner layers by :meth:`_set_input_grad`, whenever it is set and after ``build``."""

    @property
    def input_grad(self) -> bool:
        return getattr(self, "_input_grad", True)

    @input_grad.setter
    def input_grad(self, value: bool) -> None:
        self._input_grad = value
        self._set_input_grad()

    def _set_input_grad(self) -> None:
        raise NotImplementedError
