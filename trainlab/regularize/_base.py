"""The regularizer hook: what the Trainer calls around each step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Parameter, Sequential

__all__ = ["Regularizer", "StepInfo", "select_parameters"]


class StepInfo(Protocol):
    """What ``after_step`` reads of the optimizer that has just stepped (every
    :class:`trainlab.optim.Optimizer` has it): the per-member learning rates ``(P,)`` and which
    members are active ``(P,)``. A protocol, so regularizers need not import the optimizers."""

    @property
    def lr(self) -> torch.Tensor: ...

    @property
    def active(self) -> torch.Tensor: ...


def select_parameters(model: Sequential, *, include_1d: bool = False, layers: Sequence[int] | None = None
                      ) -> list[tuple[str, Parameter]]:
    """The parameters a penalty or constraint acts on.

    By default: every parameter whose ``decay`` flag is set -- the weights of
    Linear/conv layers -- and not biases or normalization gains/shifts (the
    flag is off for those). ``include_1d=True`` opts them in. ``layers`` restricts
    to those layer indices (per-layer opt-in); a weight can also be opted out by
    setting its ``decay`` flag to False.
    """
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < len(model.layers)]
        if bad:
            raise ConfigError(f"regularizer layers {bad} do not exist; the model has layers 0..{len(model.layers) - 1}")
    out = []
    for i, layer in enumerate(model.layers):
        if layers is not None and i not in layers:
            continue
        for name, p in layer.named_parameters().items():
            if p.decay or (include_1d and p.kind in ("bias", "norm")):
                out.append((f"{i}.{name}", p))
    return out


class Regularizer:
    """Hooks, all optional:

    * ``penalty() -> (P,)`` -- added to the training objective (and reported);
    * ``add_grad()`` -- adds the penalty's gradient to the parameters' ``.grad``
      after the model's backward, before the optimizer;
    * ``after_step(optimizer)`` -- projections and proximal steps after the update.

    ``attach(model)`` is called once, before training, to pick the parameters.
    """

    def attach(self, model: Sequential) -> None:
        self.model = model

    def penalty(self) -> torch.Tensor | None:
        return None

    def add_grad(self) -> None:
        return None

    def after_step(self, optimizer: StepInfo) -> None:
        return None

    def parameter_names(self) -> list[str]:
        return []
