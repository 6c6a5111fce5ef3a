"""Optimizer wrappers: Lookahead.

(Stochastic weight averaging needs the training data at the end, to recompute BatchNorm
statistics, so it is a Trainer callback: :class:`trainlab.train.SWA`.)
"""

from __future__ import annotations

from typing import Any

import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.optim._base import Number, Optimizer
from trainlab.population import member_values, member_view

__all__ = ["Lookahead"]


class Lookahead(Optimizer):
    """Lookahead (Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back", 2019).

    The wrapped ("fast") optimizer takes ``k`` steps; then the slow weights move a fraction
    ``alpha`` of the way towards the fast ones and the fast weights restart from there::

        every k inner steps:   phi <- phi + alpha (theta - phi);   theta <- phi

    (Algorithm 1 of the paper; ``phi`` starts at the initial weights.) ``k`` counts each member's
    own inner steps (a frozen member does not advance); ``alpha`` may differ per member. torch has
    no Lookahead. The inner optimizer's hyperparameters stay reachable: ``hparams``, ``lr`` and
    ``set_hparam`` are the inner optimizer's (a learning-rate schedule changes the fast rate).
    Checkpoints hold the inner state, the slow weights and ``alpha``.
    """

    def __init__(self, inner: Optimizer, *, k: int = 5, alpha: Number = 0.5) -> None:
        if not isinstance(inner, Optimizer) or isinstance(inner, Lookahead) or getattr(inner, "needs_closure", False):
            raise ConfigError(f"Lookahead wraps a first-order trainlab optimizer (not L-BFGS or another Lookahead), "
                              f"got {inner!r}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"Lookahead k must be an integer >= 1, got {k!r}")
        self.inner = inner
        self.params = inner.params
        self.size = inner.size
        self.k = k
        first = self.params[0].data
        self.alpha = member_values(alpha, self.size, name="Lookahead alpha", low=0.0, high=1.0,
                                   device=first.device, dtype=first.dtype)
        self.slow = [p.data.clone() for p in self.params]
        # Optimizer._settings is typed from Optimizer.__init__'s numbers (optim/_base.py, edited by another
        # helper now); the nested inner settings are a dict. Drop this ignore once _base types it dict[str, Any].
        self._settings = {"k": k, "alpha": alpha, "inner": inner.settings()}  # type: ignore[dict-item]

    # ---- what the Trainer and schedules see: the inner optimizer's numbers ---------------
    # The base declares hparams/steps/active/state as plain attributes (set in Optimizer.__init__, which
    # Lookahead does not run); here they are read-only views of the inner optimizer's, hence [override].
    @property
    def hparams(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.inner.hparams

    @property
    def steps(self) -> torch.Tensor:  # type: ignore[override]
        return self.inner.steps

    @property
    def active(self) -> torch.Tensor:  # type: ignore[override]
        return self.inner.active

    @property
    def state(self) -> list[dict[str, torch.Tensor]]:  # type: ignore[override]
        return self.inner.state

    def h(self, name: str, ndim: int) -> torch.Tensor:
        return self.inner.h(name, ndim)

    def set_hparam(self, name: str, value: Number) -> None:
        self.inner.set_hparam(name, value)

    def assign_hparam(self, name: str, values: torch.Tensor) -> None:
        """A schedule's unvalidated fast path, where the optimizer base has one: the inner optimizer's."""
        self.inner.assign_hparam(name, values)

    # Whatever rides on an optimizer (gradient clipping, a schedule's hooks) rides on the inner one:
    # its step clips the gradients, and the Trainer reads the hooks through these properties.
    @property
    def clip(self) -> object:
        return getattr(self.inner, "clip", None)

    @clip.setter
    def clip(self, value: object) -> None:
        self.inner.clip = value

    @property
    def hooks(self) -> list[Any]:  # type: ignore[override]  # a read-only view, as hparams above
        if not hasattr(self.inner, "hooks"):
            self.inner.hooks = []
        return self.inner.hooks

    def set_active(self, mask: torch.Tensor) -> None:
        self.inner.set_active(mask)

    # ---- the step -------------------------------------------------------------------------
    def step(self) -> None:
        before = self.inner.steps.clone()
        self.inner.step()
        # Members whose own step count just reached a multiple of k synchronize.
        sync = (self.inner.steps != before) & (self.inner.steps % self.k == 0)
        if not bool(sync.any()):
            return
        a = torch.where(sync, self.alpha, torch.zeros_like(self.alpha))
        for p, slow in zip(self.params, self.slow):
            if not p.trainable:
                continue
            av = member_view(a, slow.ndim)
            slow.add_(av * (p.data - slow))  # phi <- phi + alpha (theta - phi), only where sync
            p.data.copy_(torch.where(member_view(sync, slow.ndim), slow, p.data))

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor],
                lr: torch.Tensor) -> None:  # pragma: no cover - step() is overridden
        raise NotImplementedError

    def zero_state(self) -> None:
        self.inner.zero_state()
        for p, slow in zip(self.params, self.slow):
            slow.copy_(p.data)

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"inner.{k}": v for k, v in self.inner.state_dict().items()}
        out["lookahead.alpha"] = self.alpha
        for i, s in enumerate(self.slow):
            out[f"lookahead.slow.{i}"] = s
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor], *, source: str = "optimizer state") -> None:
        mine = self.state_dict()
        missing = sorted(k for k in mine if k.startswith("lookahead.") and k not in state)
        bad = [k for k in mine if k.startswith("lookahead.") and k in state
               and tuple(state[k].shape) != tuple(mine[k].shape)]
        if missing or bad:
            raise CheckpointError(f"{source} does not fit Lookahead: missing {missing}, wrong shape {bad}")
        self.inner.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("inner.")}, source=source)
        self.alpha.copy_(state["lookahead.alpha"])
        for i, s in enumerate(self.slow):
            s.copy_(state[f"lookahead.slow.{i}"].to(device=s.device, dtype=s.dtype))

    def __repr__(self) -> str:
        return f"Lookahead({self.inner!r}, k={self.k}, alpha={self._settings['alpha']!r})"
