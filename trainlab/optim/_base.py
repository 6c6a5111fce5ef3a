"""The optimizer hook: one base class validates, holds state, and calls ``_update``.

Every numeric hyperparameter (learning rate, weight decay, momentum, betas, ...) is
one number shared by all members or one per member, held as a ``(P,)`` tensor.
State is allocated in ``__init__`` (never lazily on the first step).

Members can be switched off with :meth:`Optimizer.set_active` (diverged or
early-stopped members): an inactive member's weights and optimizer state do not
change at all, whatever its gradient holds (even NaN), and its step counter stops.

Weight decay
------------
``weight_decay`` is *coupled* by default, as in ``torch.optim``: ``g <- g + wd * w``
before the update (equal to an L2 penalty ``wd/2 * ||w||^2`` on the loss).
``decoupled=True`` instead shrinks the weights directly, ``w <- w - lr * wd * w``,
outside the adaptive update (Loshchilov & Hutter 2019; ``torch.optim.AdamW`` and
SGDW). For plain SGD the two are the same; for adaptive methods (AdaGrad, RMSProp,
Adam) they differ, because coupled decay is divided by the adaptive denominator.
Decay applies only to parameters whose ``decay`` flag is set: weights by default,
not biases or normalization gains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.nn import Parameter
from trainlab.population import member_values, member_view

__all__ = ["Optimizer"]

Number = float | Sequence[float] | torch.Tensor


class Optimizer:
    """Base class. Subclasses declare ``_hparams`` (name -> (default, low, high)) and ``_state_names``."""

    #: name -> (low, low_inclusive, high, high_inclusive) for validation of each per-member hyperparameter
    _ranges: dict[str, tuple[float | None, bool, float | None, bool]] = {}
    #: names of per-parameter state tensors, each shaped like the parameter, zero at start
    _state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], *, lr: Number, weight_decay: Number = 0.0,
                 decoupled: bool = False, **hparams: Number) -> None:
        self.params = [p for p in params]
        if not self.params:
            raise ConfigError(f"{type(self).__name__} got no parameters to optimize")
        first = self.params[0].data
        self.size = P = first.shape[0]
        device, dtype = first.device, first.dtype
        self.decoupled = bool(decoupled)
        self._settings = dict(lr=lr, weight_decay=weight_decay, decoupled=decoupled, **hparams)
        ranges = {"lr": (0.0, False, None, False), "weight_decay": (0.0, True, None, False), **self._ranges}
        self.hparams: dict[str, torch.Tensor] = {}
        for name, value in dict(lr=lr, weight_decay=weight_decay, **hparams).items():
            low, low_inc, high, high_inc = ranges[name]
            self.hparams[name] = member_values(
                value, P, name=f"{type(self).__name__} {name}", device=device, dtype=dtype,
                low=low, low_inclusive=low_inc, high=high, high_inclusive=high_inc)
        self.state: list[dict[str, torch.Tensor]] = [
            {name: torch.zeros_like(p.data) for name in self._state_names} for p in self.params
        ]
        self.steps = torch.zeros(P, dtype=torch.int64, device=device)  # per-member step counts
        self.active = torch.ones(P, dtype=torch.bool, device=device)
        self._inactive: list[int] = []
        self._inactive_idx: torch.Tensor | None = None  # the same as a tensor; None when every member trains
        self._has_decay_cache: bool | None = None  # whether any member has weight_decay != 0 (None: not known)
        self._decay_buffers: dict[int, torch.Tensor] = {}  # id(parameter) -> its _decay_buffer
        #: bumped whenever a step's kernels may change (members on/off, hyperparameters, loaded
        #: state): a captured CUDA graph of the step is recorded again (trainlab.train._graphs)
        self.version = 0
        self._views: dict[tuple[str, int], torch.Tensor] = {}
        #: gradient clipping (:class:`~trainlab.optim.ClipGradients`), applied at the start of :meth:`step`
        self.clip: Any = None
        #: objects riding on this optimizer that the Trainer calls like callbacks (a learning-rate
        #: schedule, the clipping's norm recorder); see :meth:`ClipGradients.attach`, ``Schedule.attach``
        self.hooks: list[Any] = []

    # ---- per-member hyperparameters -------------------------------------------------
    def h(self, name: str, ndim: int) -> torch.Tensor:
        """Hyperparameter ``name`` as a ``(P, 1, ..., 1)`` view for an ``ndim``-dim tensor."""
        key = (name, ndim)
        v = self._views.get(key)
        if v is None:
            v = self._views[key] = member_view(self.hparams[name], ndim)
        return v

    def _adam_moments(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adam's moment estimates (Kingma & Ba 2015, Algorithm 1), updated in place and returned:
        ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2`` (Adam, AdamW, NAdam, RAdam)."""
        m, v = state["m"], state["v"]
        b1, b2 = self.h("beta1", w.ndim), self.h("beta2", w.ndim)
        m.mul_(b1).addcmul_(g, 1.0 - b1)
        v.mul_(b2).addcmul_(g * g, 1.0 - b2)
        return m, v

    def set_hparam(self, name: str, value: Number) -> None:
        """Change a hyperparameter (e.g. a learning-rate schedule); validates like the constructor."""
        if name not in self.hparams:
            raise ConfigError(f"{type(self).__name__} has no hyperparameter {name!r} "
                              f"(allowed: {', '.join(self.hparams)})")
        old = self.hparams[name]
        low, low_inc, high, high_inc = {"lr": (0.0, False, None, False), "weight_decay": (0.0, True, None, False),
                                        **self._ranges}[name]
        new = member_values(value, self.size, name=f"{type(self).__name__} {name}", device=old.device,
                            dtype=old.dtype, low=low, low_inclusive=low_inc, high=high, high_inclusive=high_inc)
        old.copy_(new)  # in place: cached views stay valid
        if name == "lr":
            self._refresh_scaled_lr()
        self._has_decay_cache = None  # weight_decay may have changed from or to zero
        self.version += 1

    def assign_hparam(self, name: str, values: torch.Tensor) -> None:
        """Overwrite hyperparameter ``name`` with ``values`` (``(P,)``), unvalidated: the fast path of a
        schedule, which may reach a rate of exactly 0 (cosine's end) that :meth:`set_hparam` refuses."""
        self.hparams[name].copy_(values)
        if name == "lr":
            self._refresh_scaled_lr()

    def _refresh_scaled_lr(self) -> None:
        """Recompute the rates times ``lr_scale`` (see :meth:`_lr_view`) in place, not as new tensors: a
        step captured as a CUDA graph reads them at their addresses, and a schedule changes the rate
        between replays without a new capture (``assign_hparam`` does not bump :attr:`version`)."""
        lr = self.hparams["lr"]
        for (key, ndim), v in self._views.items():
            if key.startswith("lr*"):
                torch.mul(member_view(lr, ndim), float(key[3:]), out=v)  # as _lr_view computes it

    @property
    def lr(self) -> torch.Tensor:
        return self.hparams["lr"]

    # ---- members on/off ------------------------------------------------------------
    def set_active(self, mask: torch.Tensor) -> None:
        """Only members where ``mask`` is true are updated from now on."""
        self.active.copy_(mask.to(self.active.device))
        self._inactive = [i for i, a in enumerate(self.active.tolist()) if not a]
        # made here, not in step(): no host-to-device copy inside a captured step
        self._inactive_idx = torch.tensor(self._inactive, device=self.active.device) if self._inactive else None
        self.version += 1

    # ---- the step ------------------------------------------------------------------
    def step(self) -> None:
        """Update every trainable parameter from its ``.grad``."""
        idx = self._inactive_idx
        if idx is not None:
            if len(self._inactive) == self.size:
                return
            saved = [(p.data.index_select(0, idx), {k: v.index_select(0, idx) for k, v in st.items()})
                     for p, st in zip(self.params, self.state)]
        if idx is None:  # every member active (set_active keeps the two in step)
            self.steps += 1
        else:
            self.steps += self.active.to(self.steps.dtype)
        if self.clip is not None:
            self.clip(self.params)
        ws: list[torch.Tensor] = []
        gs: list[torch.Tensor] = []
        sts: list[dict[str, torch.Tensor]] = []
        lrs: list[torch.Tensor] = []
        for p, st in zip(self.params, self.state):
            if not p.trainable:
                continue
            g = p.grad
            if idx is not None:
                g = g.index_fill(0, idx, 0.0)  # keep NaN of a diverged member out of shared kernels
            w = p.data
            lr = self._lr_view(w.ndim, p.lr_scale)
            if p.decay:
                if self.decoupled:
                    w.mul_(1.0 - lr * self.h("weight_decay", w.ndim))
                elif self._has_decay:  # g + wd * w, one pass, into a buffer kept across steps (below)
                    g = torch.addcmul(g, self.h("weight_decay", w.ndim), w, out=self._decay_buffer(p, g))
            ws.append(w)
            gs.append(g)
            sts.append(st)
            lrs.append(lr)
        if ws:
            self._update_all(ws, gs, sts, lrs)
        if idx is not None:
            for p, (pd, st_saved), st in zip(self.params, saved, self.state):
                p.data.index_copy_(0, idx, pd)
                for k, v in st_saved.items():
                    st[k].index_copy_(0, idx, v)

    def _decay_buffer(self, p: Parameter, g: torch.Tensor) -> torch.Tensor:
        """Where ``g + wd * w`` goes: one tensor per parameter, kept across steps, so a population's step
        does not allocate (and first touch) a gradient-sized tensor per parameter; the gradient itself
        stays as the backward left it (probes read it). No ``_update`` keeps its ``g`` past the step."""
        buffers = self._decay_buffers
        b = buffers.get(id(p))
        if b is None or b.shape != g.shape or b.dtype != g.dtype or b.device != g.device:
            b = buffers[id(p)] = torch.empty_like(g)
        return b

    @property
    def _has_decay(self) -> bool:
        hd = self._has_decay_cache
        if hd is None:
            hd = self._has_decay_cache = bool((self.hparams["weight_decay"] != 0).any())
        return hd

    def _lr_view(self, ndim: int, scale: float) -> torch.Tensor:
        """The per-member learning rate times the parameter's ``lr_scale`` (per-layer rates), as a view."""
        if scale == 1.0:
            return self.h("lr", ndim)
        key = (f"lr*{scale!r}", ndim)
        v = self._views.get(key)
        if v is None:
            v = self._views[key] = member_view(self.hparams["lr"], ndim) * scale
        return v

    def _update(self, w: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], lr: torch.Tensor) -> None:
        """Update ``w`` in place from gradient ``g`` (already including coupled decay) with learning rate
        ``lr`` (a ``(P, 1, ...)`` view: the member's rate times the parameter's ``lr_scale``)."""
        raise NotImplementedError

    def _update_all(self, ws: list[torch.Tensor], gs: list[torch.Tensor], states: list[dict[str, torch.Tensor]],
                    lrs: list[torch.Tensor]) -> None:
        """Update every trainable parameter at once: by default :meth:`_update` on each in turn.

        An optimizer may override this with one multi-tensor (``torch._foreach_*``) pass over all
        parameters -- fewer Python calls and, on a GPU, fewer kernel launches. Such a fast path must
        apply the same elementwise operations in the same order as :meth:`_update`, which stays the
        reference (``tests/optim_tests/test_foreach.py`` checks the two agree bit for bit)."""
        for w, g, st, lr in zip(ws, gs, states, lrs):
            self._update(w, g, st, lr)

    def zero_state(self) -> None:
        for st in self.state:
            for v in st.values():
                v.zero_()
        self.steps.zero_()

    # ---- saving ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the optimizer: state per parameter, step counts, hyperparameters, active mask."""
        out: dict[str, torch.Tensor] = {"steps": self.steps, "active": self.active}
        for name, v in self.hparams.items():
            out[f"hparam.{name}"] = v
        for i, st in enumerate(self.state):
            for k, v in st.items():
                out[f"{i}.{k}"] = v
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor], *, source: str = "optimizer state") -> None:
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        unexpected = sorted(set(state) - set(mine))
        bad = [k for k in mine if k in state and tuple(state[k].shape) != tuple(mine[k].shape)]
        if missing or unexpected or bad:
            raise CheckpointError(
                f"{source} does not fit {type(self).__name__}: missing {missing}, unexpected {unexpected}, "
                f"wrong shape {bad}")
        for k, t in mine.items():
            t.copy_(state[k].to(device=t.device, dtype=t.dtype))
        self.set_active(self.active)
        self._has_decay_cache = None

    def settings(self) -> dict:
        return dict(self._settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._settings.items())})"
