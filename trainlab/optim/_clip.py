"""Gradient clipping, per member: by global norm and by value.

``norm``: each member's gradient, all its trainable parameters together, is rescaled so
its global L2 norm is at most ``c``:

    n_i = sqrt(sum_p ||g_p[i]||^2),   g_p[i] <- g_p[i] * min(1, c_i / (n_i + 1e-6))

exactly ``torch.nn.utils.clip_grad_norm_(params, c)`` run on member *i*'s parameters
alone (same ``1e-6`` and the same clamp). The norm is taken **per member**, never across
the population: member *i* is clipped as if it trained alone.

``value``: every gradient entry is clamped to ``[-v_i, v_i]``
(``torch.nn.utils.clip_grad_value_``).

When both are set, the norm is clipped first, then the values. The gradient clipped is
the one the optimizer is about to use (the loss's gradient plus any penalty's), before
coupled weight decay is added -- as in PyTorch, where ``clip_grad_norm_`` runs on
``p.grad`` before ``optimizer.step()``.

The norm *before* clipping is recorded: the mean and the largest norm over the steps
since the previous evaluation go into the history as ``grad_norm`` and ``grad_norm_max``
(one value per member), with ``clipped``: the fraction of those steps on which the norm
clip was active.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainlab.nn import Parameter
from trainlab.population import member_values, member_view

__all__ = ["ClipGradients"]

Number = float | Sequence[float] | torch.Tensor


class ClipGradients:
    """Clip each member's gradient by global ``norm`` and/or by ``value`` (per member, ``(P,)`` each).

    Attach it to an optimizer (``ClipGradients(norm=1.0).attach(opt)``); the optimizer calls it at
    the start of every ``step``, and a :class:`~trainlab.train.Trainer` records the norms.
    ``None`` switches a kind off.
    """

    def __init__(self, *, norm: Number | None = None, value: Number | None = None) -> None:
        if norm is None and value is None:
            raise ValueError("ClipGradients needs norm=..., value=... or both")
        self.norm, self.value = norm, value  # settings, verbatim
        self._norm: torch.Tensor | None = None
        self._value: torch.Tensor | None = None
        self.last_norm: torch.Tensor | None = None

    def attach(self, optimizer: Any) -> "ClipGradients":
        P = optimizer.size
        first = optimizer.params[0].data
        kw = dict(device=first.device, dtype=first.dtype, low=0.0, low_inclusive=False)
        self._norm = None if self.norm is None else member_values(self.norm, P, name="clip norm", **kw)
        self._value = None if self.value is None else member_values(self.value, P, name="clip value", **kw)
        self._sum = torch.zeros(P, dtype=torch.float64, device=first.device)
        self._max = torch.zeros(P, dtype=torch.float64, device=first.device)
        self._hits = torch.zeros(P, dtype=torch.float64, device=first.device)
        self._count = 0
        optimizer.clip = self
        if self not in optimizer.hooks:
            optimizer.hooks.append(self)
        return self

    # ---- the clipping -----------------------------------------------------------------------
    def __call__(self, params: Sequence[Parameter]) -> torch.Tensor:
        """Clip the ``.grad`` of ``params`` in place; returns the per-member norms before clipping."""
        grads = [p.grad for p in params if p.trainable]
        sq = grads[0].reshape(grads[0].shape[0], -1).pow(2).sum(dim=1)
        for g in grads[1:]:  # per member: sum over everything but the population axis
            sq = sq + g.reshape(g.shape[0], -1).pow(2).sum(dim=1)
        norm = sq.sqrt()
        if self._norm is not None:
            coef = (self._norm / (norm + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(member_view(coef, g.ndim))
            self._hits += (norm > self._norm).double()
        if self._value is not None:
            for g in grads:
                v = member_view(self._value, g.ndim)
                torch.clamp(g, min=-v, max=v, out=g)
        n64 = norm.double()
        self._sum += n64
        torch.maximum(self._max, n64, out=self._max)
        self._count += 1
        self.last_norm = norm
        return norm

    # ---- the Trainer's hooks (duck-typed :class:`~trainlab.train.Callback`) ----------------------
    def on_train_begin(self, trainer: Any) -> None: ...

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None: ...

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        """Add the norms of the steps since the previous evaluation to the record (then reset)."""
        if self._count:
            record["grad_norm"] = (self._sum / self._count).tolist()
            record["grad_norm_max"] = self._max.tolist()
            if self._norm is not None:
                record["clipped"] = (self._hits / self._count).tolist()
        self._sum.zero_(), self._max.zero_(), self._hits.zero_()
        self._count = 0

    def on_train_end(self, trainer: Any) -> None: ...

    def on_interrupt(self, trainer: Any) -> None: ...

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"sum": self._sum, "max": self._max, "hits": self._hits}, {"count": self._count}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        for k, t in (("sum", self._sum), ("max", self._max), ("hits", self._hits)):
            if k in tensors:
                t.copy_(tensors[k])
        self._count = int(meta.get("count", 0))

    def __repr__(self) -> str:
        return f"ClipGradients(norm={self.norm!r}, value={self.value!r})"
