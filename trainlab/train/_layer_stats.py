"""Per-layer statistics of a population model, shared by the live probe and (later) the doctor.

The vocabulary of "what can go wrong in a layer" lives here once: which activation family a
layer is, when one of its outputs is *saturated* or a unit is *dead*, and how a histogram on
fixed bin edges is counted for every member at once. :func:`capture` runs one forward pass on a
probe batch with every side effect undone, so code that observes a model while it trains can
read any (nested) layer's input and output without changing the training.

Conventions:

* **saturated** (sigmoid, tanh): where the activation's slope is below ``SATURATION_SLOPE``
  (5%) of its maximum: sigmoid's ``y (1 - y) < 0.05 / 4``, i.e. ``y < 0.01266`` or
  ``y > 0.98734``; tanh's ``1 - y^2 < 0.05``, i.e. ``|y| > 0.97468``. Those outputs pass
  almost no gradient back (the course's vanishing-gradient picture of sigmoid nets).
* **dead** (ReLU): a unit (a feature of a dense layer, a channel of a convolution) whose output
  is 0 for every example (and every position) of the probe batch: it passes no gradient to its
  weights. Leaky ReLU / PReLU units with a slope > 0 always pass some gradient, so they are
  never dead; their *inactive* fraction (negative or 0 everywhere) is recorded instead (for a
  slope of exactly 0 inactive is dead).
* **histograms**: ``bins`` equal bins between ``edges[0]`` and ``edges[-1]`` (``bins + 1``
  edges); a value ``v`` falls in bin ``floor((v - lo) * bins / (hi - lo))`` (computed in the
  values' dtype), clamped to ``[0, bins - 1]`` (so the last bin is closed, like
  ``numpy.histogram``, and a value outside the range lands in an end bin). Non-finite values (a
  diverged member) are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import math
from typing import Any

import torch

from trainlab import nn

__all__ = ["SATURATION_SLOPE", "SIGMOID_EDGE", "TANH_EDGE", "activation_family", "named_modules", "histogram",
           "members", "quiet_pass", "capture"]

#: an output counts as saturated where the activation's slope is below this fraction of its maximum
SATURATION_SLOPE = 0.05
#: sigmoid outputs below this, or above 1 minus it, are saturated: y(1 - y) = 0.05 / 4
SIGMOID_EDGE = (1.0 - math.sqrt(1.0 - SATURATION_SLOPE)) / 2.0
#: tanh outputs with |y| above this are saturated: 1 - y^2 = 0.05
TANH_EDGE = math.sqrt(1.0 - SATURATION_SLOPE)

_FAMILIES: tuple[tuple[type, str], ...] = (
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.ReLU, "relu"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.PReLU, "leaky_relu"),
    (nn.ELU, "smooth"),
    (nn.GELU, "smooth"),
    (nn.Softplus, "smooth"),
    (nn.SiLU, "smooth"),
    (nn.Mish, "smooth"),
    (nn.SELU, "smooth"),
    (nn.Hardswish, "smooth"),
    (nn.Maxout, "smooth"),
    (nn.Identity, "identity"),
)
#: the fixed histogram range of the bounded activations
BOUNDED_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def activation_family(layer: nn.Module) -> str | None:
    """``"sigmoid"``, ``"tanh"``, ``"relu"``, ``"leaky_relu"``, ``"smooth"``, ``"identity"`` or None (no activation)."""
    for cls, fam in _FAMILIES:
        if isinstance(layer, cls):
            return fam
    return None


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every layer nested in ``model`` with a dotted path, in :meth:`Module.modules` order (the root left out).

    A :class:`~trainlab.nn.Sequential`'s layers are named by their index, a container's other
    children by the attribute that holds them (a Residual's ``block`` and ``shortcut``):
    ``"3.block.1"`` is the second layer of the block of the fourth layer.
    """
    out: list[tuple[str, nn.Module]] = []

    def walk(parent: nn.Module, prefix: str) -> None:
        layers = getattr(parent, "layers", None)
        for i, child in enumerate(parent.children()):
            name = None
            if isinstance(layers, list) and any(c is child for c in layers):
                name = str(next(j for j, c in enumerate(layers) if c is child))
            else:
                name = next((k for k, v in vars(parent).items() if v is child and not k.startswith("_")), str(i))
            path = f"{prefix}.{name}" if prefix else name
            out.append((path, child))
            walk(child, path)

    walk(model, "")
    return out


def histogram(flat: torch.Tensor, lo: float, hi: float, bins: int, *, finite: bool | None = None) -> torch.Tensor:
    """``(P, bins)`` counts of each row of ``flat`` ``(P, n)`` on ``bins`` equal bins over ``[lo, hi]``.

    The rule of the module docstring: clamped end bins, non-finite values left out. One
    ``bincount`` for all members (no loop over them). ``finite=True`` says the caller knows every
    value is finite (skips a pass).
    """
    P = flat.shape[0]
    if finite is None:
        finite = bool(torch.isfinite(flat).all())
    mask = None
    if not finite:
        mask = torch.isfinite(flat)
        flat = torch.nan_to_num(flat, nan=lo, posinf=hi, neginf=lo)
    # clamped to [0, bins - 1] first, so truncation toward zero is the floor
    idx = torch.sub(flat, lo).mul_(bins / (hi - lo)).clamp_(0, bins - 1).to(torch.int32)
    idx += torch.arange(P, device=flat.device, dtype=torch.int32).unsqueeze(1) * bins
    idx = idx[mask] if mask is not None else idx.reshape(-1)
    return torch.bincount(idx, minlength=P * bins).view(P, bins)


def edges(lo: float, hi: float, bins: int) -> list[float]:
    """The ``bins + 1`` bin edges of :func:`histogram` on ``[lo, hi]``."""
    return [lo + (hi - lo) * k / bins for k in range(bins + 1)]


def finite_range(t: torch.Tensor) -> tuple[tuple[float, float] | None, bool]:
    """``((min, max) over the finite values of t, or None when there is none; whether all are finite)``."""
    lo, hi = (float(v) for v in torch.aminmax(t))  # NaN and inf propagate: one cheap pass decides
    if math.isfinite(lo) and math.isfinite(hi):
        return (lo, hi), True
    f = t[torch.isfinite(t)]
    if f.numel() == 0:
        return None, False
    return (float(f.min()), float(f.max())), False


def members(t: torch.Tensor) -> list[float | None]:
    """A ``(P,)`` tensor as a JSON-safe list: floats, None where not finite."""
    return [v if math.isfinite(v) else None for v in t.detach().double().cpu().tolist()]


@contextlib.contextmanager
def quiet_pass(model: nn.Module) -> Iterator[None]:
    """Undo every side effect of forward passes run inside: buffers (BatchNorm's running and
    population statistics, its batch counters) and the members' random generators (dropout, noise)
    come back bit for bit as they were. The layers' backward caches are not restored: the next
    training step's forward rebuilds them before its backward reads them."""
    pop = getattr(model, "population", None)
    if pop is not None:
        device = getattr(model, "device", None)
        if device is not None:
            pop.generators(device)  # create them now, so that the state restored below includes them
        saved_rng = pop.get_state()
    saved = {k: v.clone() for k, v in model.buffers().items()}
    try:
        yield
    finally:
        for k, v in model.buffers().items():
            if k in saved:
                v.copy_(saved[k])
        if pop is not None:
            pop.set_state(saved_rng)


@contextlib.contextmanager
def _observed(layers: list[tuple[str, nn.Module]], seen: dict[str, tuple[torch.Tensor, torch.Tensor]]
              ) -> Iterator[None]:
    """Wrap the ``forward`` of each layer (an instance attribute over the class method, removed again
    on exit) so that its input and output land in ``seen[path]``."""
    patched = []
    try:
        for path, layer in layers:
            had = "forward" in vars(layer)
            inner = layer.forward

            def wrapper(x: torch.Tensor, *, training: bool, _inner: Any = inner, _path: str = path) -> torch.Tensor:
                y = _inner(x, training=training)
                seen[_path] = (x, y)
                return y

            patched.append((layer, had, inner))
            layer.forward = wrapper  # type: ignore[method-assign]
        yield
    finally:
        for layer, had, inner in patched:
            if had:
                layer.forward = inner  # type: ignore[method-assign]
            else:
                del layer.forward


@torch.no_grad()
def capture(model: nn.Sequential, x: torch.Tensor, layers: list[tuple[str, nn.Module]], *, training: bool
            ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{path: (input, output)}`` of ``layers`` (nested anywhere in ``model``) in one forward on ``x``.

    ``x`` is ``(N, ...)`` (shared by every member) or ``(P, N, ...)``. The pass runs in
    ``training`` mode as the caller asks and leaves no trace (:func:`quiet_pass`).
    """
    xs = x.unsqueeze(0) if x.ndim == len(model.input_shape or ()) + 1 else x
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    # Eval mode of BatchNorm(inference="population") needs statistics the Trainer computes only at its
    # evaluations; before the first one, this pass reads the running averages instead (the doctor's rule).
    switched = [] if training else [
        m for m in model.modules() if getattr(m, "inference", None) == "population"
        and bool((getattr(m, "population_batches", torch.ones(1)) == 0).any())]
    try:
        for m in switched:
            m.inference = "running"  # type: ignore[attr-defined]
        with quiet_pass(model), _observed(layers, seen):
            model.forward(xs, training=training)
    finally:
        for m in switched:
            m.inference = "population"  # type: ignore[attr-defined]
    return seen
