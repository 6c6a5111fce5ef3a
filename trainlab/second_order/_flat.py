"""A model's parameters as one flat vector per member: ``(P, m)``.

Second-order methods see a model as a function of ``m`` numbers per member. The
flat layout is the model's trainable parameters in ``model.parameters()`` order,
each reshaped row-major (``Linear``: the weight ``(in, out)`` -- index
``i * out + j`` -- then the bias ``(out,)``), concatenated. Frozen parameters
(``trainable=False``) are left out.
"""

from __future__ import annotations

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Module, Parameter

__all__ = ["trainable_parameters", "num_parameters", "flatten", "flatten_grads", "unflatten_into"]


def trainable_parameters(model: Module) -> list[Parameter]:
    """The parameters an optimizer moves, in the fixed flat order."""
    return [p for p in model.parameters() if p.trainable]


def num_parameters(model: Module) -> int:
    """``m``: trainable numbers per member."""
    return sum(p.data[0].numel() for p in trainable_parameters(model))


def _population(params: list[Parameter]) -> int:
    if not params:
        raise ConfigError("the model has no trainable parameters to flatten")
    return params[0].data.shape[0]


def flatten(model: Module) -> torch.Tensor:
    """A copy of the trainable parameters as ``(P, m)``."""
    params = trainable_parameters(model)
    P = _population(params)
    return torch.cat([p.data.reshape(P, -1) for p in params], dim=1)


def flatten_grads(model: Module) -> torch.Tensor:
    """A copy of the parameters' ``.grad`` as ``(P, m)`` (same layout as :func:`flatten`)."""
    params = trainable_parameters(model)
    P = _population(params)
    return torch.cat([p.grad.reshape(P, -1) for p in params], dim=1)


def unflatten_into(model: Module, flat: torch.Tensor) -> None:
    """Copy a ``(P, m)`` vector into the model's trainable parameters (in place)."""
    params = trainable_parameters(model)
    P = _population(params)
    m = sum(p.data[0].numel() for p in params)
    if flat.ndim != 2 or tuple(flat.shape) != (P, m):
        raise ConfigError(f"flat parameters must have shape (P, m) = ({P}, {m}), got {tuple(flat.shape)}")
    start = 0
    for p in params:
        n = p.data[0].numel()
        p.data.copy_(flat[:, start:start + n].reshape(p.data.shape))
        start += n
