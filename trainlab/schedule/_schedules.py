"""Learning-rate schedules on the population axis: every hyperparameter one value or one per member.

A schedule is attached to an optimizer (``CosineAnnealingLR().attach(opt)``); a
:class:`~trainlab.train.Trainer` built with that optimizer drives it. The rate of member
*i* at count ``t`` is a closed-form function of ``t`` and the member's **base rate**
(the optimizer's ``lr`` when the schedule was attached), the same numbers as the
``torch.optim.lr_scheduler`` class of the same name stepped ``t`` times (checked step for
step in ``tests/schedule_tests``).

``interval`` says what ``t`` counts:

``"epoch"``  completed epochs (``t = step // steps_per_epoch``); the rate changes at epoch
             boundaries -- PyTorch's usual ``scheduler.step()`` once per epoch;
``"step"``   completed iterations -- what ``OneCycleLR`` expects (``scheduler.step()`` after
             every ``optimizer.step()``).

``warmup = W`` (counted in the same unit) puts a linear warm-up in front of any schedule:
``lr = base * (s + (1 - s) * t / W)`` for ``t < W`` (``s = warmup_start``), then the schedule
from its own ``t = 0`` -- ``SequentialLR([LinearLR(s, 1, W), schedule], milestones=[W])``.

The rate is computed in float64 and written into the optimizer's ``lr`` (its dtype) only when
``t`` changes: with ``interval = "epoch"`` that is once per epoch. Without a schedule nothing
runs at all (the default, constant rate costs nothing per step).

:class:`PerMember` gives different members different *kinds* of schedule (constant vs step vs
cosine vs one-cycle in one population); each member's numbers equal that member's schedule
run alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.optim import Optimizer
from trainlab.population import member_values

__all__ = ["Schedule", "Constant", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
           "CosineAnnealingWarmRestarts", "OneCycleLR", "ReduceLROnPlateau", "PerMember", "SCHEDULES",
           "momentum_name"]

Number = float | int | Sequence[float] | torch.Tensor
F64 = torch.float64


def momentum_name(optimizer: Optimizer) -> str | None:
    """The hyperparameter a one-cycle schedule cycles: ``momentum`` (SGD momentum, Nesterov) or ``beta1``
    (Adam), as ``torch.optim.lr_scheduler.OneCycleLR`` does; ``None`` when the optimizer has neither."""
    for name in ("momentum", "beta1"):
        if name in optimizer.hparams:
            return name
    return None


class Schedule:
    """Base class: ``interval``, ``warmup``, the hooks a Trainer calls, and saving.

    Subclasses implement ``_rate(t) -> (P,)`` (float64; ``t`` the count after the warm-up, a
    ``(P,)`` float64 tensor) and may implement ``_momentum(t)`` and ``_observe(record)``.
    """

    kind = ""

    def __init__(self, *, interval: str = "epoch", warmup: Number = 0, warmup_start: Number = 1 / 3) -> None:
        if interval not in ("epoch", "step"):
            raise ConfigError(f"{type(self).__name__} interval must be 'epoch' or 'step', got {interval!r}")
        self.interval, self.warmup, self.warmup_start = interval, warmup, warmup_start
        self.optimizer: Optimizer | None = None  # set by attach()
        self._momentum_hparam: str | None = None
        self.size = 0  # members, known once attached
        self.steps_per_epoch = 1
        self.length: int | None = None  # training length in intervals, known when training begins
        self._last_key: Any = None

    # ---- binding ------------------------------------------------------------------------------
    def attach(self, optimizer: Optimizer) -> Schedule:
        """Ride on ``optimizer``: its current ``lr`` becomes each member's base rate."""
        name = momentum_name(optimizer)
        mom = optimizer.hparams[name].detach().to(F64).clone() if name else None
        self._bind(optimizer.size, optimizer.lr.detach().to(F64).clone(), mom)
        self.optimizer, self._momentum_hparam = optimizer, name
        if self not in optimizer.hooks:
            optimizer.hooks.insert(0, self)
        return self

    def _bind(self, size: int, base: torch.Tensor, base_momentum: torch.Tensor | None) -> None:
        self.size, self.base, self._opt_momentum = size, base, base_momentum
        self._warmup = self._ints(self.warmup, "warmup", low=0)
        self._warmup_start = self._floats(self.warmup_start, "warmup_start", low=0.0, high=1.0)
        self._bind_rule()

    def _bind_rule(self) -> None:
        """Turn the subclass's settings into ``(P,)`` tensors (validated)."""

    def _floats(self, v: Number, name: str, **bounds: Any) -> torch.Tensor:
        return member_values(v, self.size, name=f"{type(self).__name__} {name}", dtype=F64,
                             device=self.base.device, **bounds)

    def _ints(self, v: Number, name: str, **bounds: Any) -> torch.Tensor:
        t = self._floats(v, name, **bounds)
        if bool((t != t.round()).any()):
            raise ConfigError(f"{type(self).__name__} {name} must be whole numbers, got {v!r}")
        return t

    def begin(self, total_steps: int, steps_per_epoch: int) -> None:
        """Training of ``total_steps`` steps (``steps_per_epoch`` each epoch) begins: resolve the defaults
        that depend on its length (a cosine's ``t_max``, a one-cycle's ``total``)."""
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.length = int(total_steps) if self.interval == "step" else math.ceil(total_steps / self.steps_per_epoch)
        self._last_key = None
        self._begin_rule()

    def _begin_rule(self) -> None: ...

    def _main_length(self) -> torch.Tensor:
        """The training length left after each member's warm-up, in intervals (at least 1)."""
        return (float(self.length or 1) - self._warmup).clamp(min=1.0)

    # ---- the values -----------------------------------------------------------------------------
    def counter(self, step: int) -> int:
        """``t`` after ``step`` completed iterations."""
        return step if self.interval == "step" else step // self.steps_per_epoch

    def _key(self, step: int) -> Any:
        return self.counter(step)

    def rates(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``(P,)`` float64 learning rates (and momenta, or ``None``) for the iteration after ``step``."""
        t = torch.full((self.size,), float(self.counter(step)), dtype=F64, device=self.base.device)
        main = (t - self._warmup).clamp(min=0.0)
        lr = self._rate(main)
        mom = self._momentum(main)
        if bool((self._warmup > 0).any()):
            W = self._warmup.clamp(min=1.0)
            s = self._warmup_start
            lr = torch.where(t < self._warmup, self.base * (s + (1.0 - s) * t / W), lr)
        return lr, mom

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _momentum(self, t: torch.Tensor) -> torch.Tensor | None:
        return None

    def _observe(self, record: Mapping[str, Any]) -> bool:
        """An evaluation happened (reduce-on-plateau reads it); True when the rates changed."""
        return False

    def lr_curve(self, total_steps: int, steps_per_epoch: int = 1) -> torch.Tensor:
        """``(total_steps, P)``: the rate of every iteration of a run of that length (no plateau events).
        For figures and tests; needs :meth:`attach` (or ``_bind``) first."""
        self.begin(total_steps, steps_per_epoch)
        return torch.stack([self.rates(s)[0] for s in range(total_steps)])

    # ---- the Trainer's hooks (duck-typed :class:`~trainlab.train.Callback`; ``trainer`` is typed Any as there:
    # the Trainer sits on a floor above this package) ---------------------------------------------------
    def _attached(self) -> Optimizer:
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to an optimizer: call attach(optimizer) first")
        return self.optimizer

    def _apply(self, step: int) -> None:
        key = self._key(step)
        if key == self._last_key:
            return
        self._last_key = key
        lr, mom = self.rates(step)
        opt = self._attached()
        opt.assign_hparam("lr", lr.to(opt.lr.dtype))
        if mom is not None and self._momentum_hparam is not None:
            opt.assign_hparam(self._momentum_hparam, mom.to(opt.hparams[self._momentum_hparam].dtype))

    def on_train_begin(self, trainer: Any) -> None:
        self.begin(trainer.history.info["total_steps"], trainer.steps_per_epoch)
        self._apply(trainer.step)

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None:
        self._apply(trainer.step)

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None:
        opt = self._attached()
        record["lr"] = opt.lr.tolist()  # the rate of the steps just taken
        if self._momentum_hparam is not None and self.cycles_momentum():
            record[self._momentum_hparam] = opt.hparams[self._momentum_hparam].tolist()
        if self._observe(record):
            self._last_key = None  # recompute at the next step boundary

    def cycles_momentum(self) -> bool:
        return False

    def on_train_end(self, trainer: Any) -> None: ...

    def on_interrupt(self, trainer: Any) -> None: ...

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"base": self.base}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if "base" in tensors:
            self.base.copy_(tensors["base"])
        self._last_key = None

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in (
            "optimizer", "size", "steps_per_epoch", "length", "base")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.settings().items())})"


class Constant(Schedule):
    """The base rate throughout (with an optional warm-up: ``Constant(warmup=5)`` is ``LinearLR`` warm-up
    alone)."""

    kind = "constant"

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.base.clone()


class StepLR(Schedule):
    """``lr = base * gamma ** floor(t / step_size)``.  See: ``torch.optim.lr_scheduler.StepLR``."""

    kind = "step"

    def __init__(self, step_size: Number = 10, gamma: Number = 0.1, **kw: Any) -> None:
        super().__init__(**kw)
        self.step_size, self.gamma = step_size, gamma

    def _bind_rule(self) -> None:
        self._step_size = self._ints(self.step_size, "step_size", low=1.0)
        self._gamma = self._floats(self.gamma, "gamma", low=0.0, low_inclusive=False)

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.base * self._gamma ** torch.floor(t / self._step_size)


class MultiStepLR(Schedule):
    """``lr = base * gamma ** (number of milestones <= t)``.  See: ``torch.optim.lr_scheduler.MultiStepLR``.

    ``milestones``: one list shared by every member, or one list per member (lists of any lengths).
    """

    kind = "multistep"

    def __init__(self, milestones: Sequence[int] | Sequence[Sequence[int]] = (), gamma: Number = 0.1,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.milestones: Sequence[int] | Sequence[Sequence[int]] = milestones
        self.gamma = gamma

    def _bind_rule(self) -> None:
        ms: list[Any] = list(self.milestones)  # ints, or one sequence of ints per member (checked below)
        per = [list(m) for m in ms] if ms and all(isinstance(m, (list, tuple)) for m in ms) else [ms] * self.size
        if len(per) != self.size:
            raise ConfigError(f"MultiStepLR milestones must be one list or {self.size} lists (one per member), "
                              f"got {len(per)}")
        for m in per:
            if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in m):
                raise ConfigError(f"MultiStepLR milestones must be integers >= 0, got {m!r}")
        width = max([len(m) for m in per] + [1])
        table = torch.full((self.size, width), math.inf, dtype=F64, device=self.base.device)
        for i, m in enumerate(per):
            if m:
                table[i, :len(m)] = torch.tensor(m, dtype=F64)
        self._milestones = table
        self._gamma = self._floats(self.gamma, "gamma", low=0.0, low_inclusive=False)

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        passed = (self._milestones <= t[:, None]).sum(dim=1).to(F64)
        return self.base * self._gamma ** passed


class ExponentialLR(Schedule):
    """``lr = base * gamma ** t``.  See: ``torch.optim.lr_scheduler.ExponentialLR``."""

    kind = "exponential"

    def __init__(self, gamma: Number = 0.95, **kw: Any) -> None:
        super().__init__(**kw)
        self.gamma = gamma

    def _bind_rule(self) -> None:
        self._gamma = self._floats(self.gamma, "gamma", low=0.0, low_inclusive=False)

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.base * self._gamma ** t


def _cosine(base: torch.Tensor, eta_min: torch.Tensor, t: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    return eta_min + (base - eta_min) * (1.0 + torch.cos(math.pi * t / T)) / 2.0


class CosineAnnealingLR(Schedule):
    """``lr = eta_min + (base - eta_min) * (1 + cos(pi t / t_max)) / 2`` (Loshchilov & Hutter 2017, SGDR
    without restarts).  See: ``torch.optim.lr_scheduler.CosineAnnealingLR`` (its closed form).

    ``t_max`` defaults to the training length (minus the warm-up), so the rate reaches ``eta_min``
    (an absolute rate, default 0) at the end. Past ``t_max`` the cosine goes on (it rises again),
    as in PyTorch.
    """

    kind = "cosine"

    def __init__(self, t_max: Number | None = None, eta_min: Number = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.t_max, self.eta_min = t_max, eta_min

    def _bind_rule(self) -> None:
        self._eta_min = self._floats(self.eta_min, "eta_min", low=0.0)
        self._t_max = None if self.t_max is None else self._ints(self.t_max, "t_max", low=1.0)

    def _begin_rule(self) -> None:
        if self.t_max is None:
            self._t_max = self._main_length()

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        if self._t_max is None:
            raise ConfigError("CosineAnnealingLR without t_max needs the training length: call begin() first")
        return _cosine(self.base, self._eta_min, t, self._t_max)


class CosineAnnealingWarmRestarts(Schedule):
    """SGDR (Loshchilov & Hutter 2017): cosine from the base rate to ``eta_min`` over ``t_0`` intervals,
    then restart; each cycle ``t_mult`` times longer than the one before.
    See: ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``.

    With ``T_i`` the current cycle's length and ``T_cur`` the count since its start,
    ``lr = eta_min + (base - eta_min) * (1 + cos(pi T_cur / T_i)) / 2``.
    """

    kind = "cosine_restarts"

    def __init__(self, t_0: Number = 10, t_mult: Number = 1, eta_min: Number = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.t_0, self.t_mult, self.eta_min = t_0, t_mult, eta_min

    def _bind_rule(self) -> None:
        self._t_0 = self._ints(self.t_0, "t_0", low=1.0)
        self._t_mult = self._ints(self.t_mult, "t_mult", low=1.0)
        self._eta_min = self._floats(self.eta_min, "eta_min", low=0.0)

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        # t_mult = 1: T_cur = t mod t_0. Otherwise walk the cycles (their number grows like log t).
        T_i = self._t_0.clone()
        start = torch.zeros_like(t)
        grow = self._t_mult > 1
        if bool(grow.any()):
            while True:
                nxt = grow & (t >= start + T_i)
                if not bool(nxt.any()):
                    break
                start = torch.where(nxt, start + T_i, start)
                T_i = torch.where(nxt, T_i * self._t_mult, T_i)
        T_cur = torch.where(grow, t - start, torch.remainder(t, self._t_0))
        return _cosine(self.base, self._eta_min, T_cur, T_i)


class OneCycleLR(Schedule):
    """The one-cycle policy (Smith & Topin 2019): the rate rises from ``base / div_factor`` to the base
    rate (the peak, PyTorch's ``max_lr``) over the first ``pct_start`` of ``total`` intervals, then anneals to
    ``base / (div_factor * final_div_factor)``; the momentum (SGD ``momentum`` or Adam ``beta1``) moves the
    other way, ``max_momentum`` -> ``base_momentum`` -> ``max_momentum``.
    See: ``torch.optim.lr_scheduler.OneCycleLR`` (same phases, ends and defaults).

    ``total`` defaults to the training length (minus the warm-up); ``interval`` defaults to ``"step"``
    (PyTorch steps it per iteration). ``cycle_momentum=None`` cycles it when the optimizer has one.
    """

    kind = "onecycle"

    def __init__(self, total: Number | None = None, pct_start: Number = 0.3, anneal: str = "cos",
                 div_factor: Number = 25.0, final_div_factor: Number = 1e4, three_phase: bool = False,
                 cycle_momentum: bool | None = None, base_momentum: Number = 0.85, max_momentum: Number = 0.95,
                 *, interval: str = "step", **kw: Any) -> None:
        super().__init__(interval=interval, **kw)
        if anneal not in ("cos", "linear"):
            raise ConfigError(f"OneCycleLR anneal must be 'cos' or 'linear', got {anneal!r}")
        self.total, self.pct_start, self.anneal = total, pct_start, anneal
        self.div_factor, self.final_div_factor, self.three_phase = div_factor, final_div_factor, bool(three_phase)
        self.cycle_momentum, self.base_momentum, self.max_momentum = cycle_momentum, base_momentum, max_momentum

    def _bind(self, size: int, base: torch.Tensor, base_momentum: torch.Tensor | None) -> None:
        if self.cycle_momentum and base_momentum is None:
            raise ConfigError("OneCycleLR cycle_momentum needs an optimizer with momentum or beta1 "
                              "(momentum, nesterov, adam, adamw); set cycle_momentum = false")
        self._cycle = base_momentum is not None and self.cycle_momentum is not False
        super()._bind(size, base, base_momentum)

    def cycles_momentum(self) -> bool:
        return self._cycle

    def _bind_rule(self) -> None:
        self._pct = self._floats(self.pct_start, "pct_start", low=0.0, high=1.0, low_inclusive=False,
                                 high_inclusive=False)
        self._div = self._floats(self.div_factor, "div_factor", low=0.0, low_inclusive=False)
        self._final_div = self._floats(self.final_div_factor, "final_div_factor", low=0.0, low_inclusive=False)
        self._base_m = self._floats(self.base_momentum, "base_momentum", low=0.0, high=1.0)
        self._max_m = self._floats(self.max_momentum, "max_momentum", low=0.0, high=1.0)
        self._total = None if self.total is None else self._ints(self.total, "total", low=2.0)

    def _begin_rule(self) -> None:
        if self.total is None:
            self._total = self._main_length().clamp(min=2.0)

    def _phases(self, tot: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """(end_step, start_lr, end_lr, start_momentum, end_momentum) per phase, as PyTorch lays them out,
        for ``tot`` intervals in all."""
        pct = self._pct
        peak = self.base
        initial = peak / self._div
        low = initial / self._final_div
        if self.three_phase:
            return [(pct * tot - 1, initial, peak, self._max_m, self._base_m),
                    (2 * pct * tot - 2, peak, initial, self._base_m, self._max_m),
                    (tot - 1, initial, low, self._max_m, self._max_m)]
        return [(pct * tot - 1, initial, peak, self._max_m, self._base_m),
                (tot - 1, peak, low, self._base_m, self._max_m)]

    def _anneal(self, start: torch.Tensor, end: torch.Tensor, pct: torch.Tensor) -> torch.Tensor:
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (torch.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _both(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._total is None:
            raise ConfigError("OneCycleLR without total needs the training length: call begin() first")
        t = torch.minimum(t, self._total)
        phases = self._phases(self._total)
        starts = [torch.zeros_like(t)] + [p[0] for p in phases[:-1]]
        # the first phase whose end is >= t (the last phase takes the rest), as PyTorch picks it
        layout = list(zip(phases, starts))
        (end, l0, l1, m0, m1), start = layout[-1]
        pct = (t - start) / (end - start)
        lr, mom = self._anneal(l0, l1, pct), self._anneal(m0, m1, pct)
        for (end, l0, l1, m0, m1), start in reversed(layout[:-1]):
            pct = (t - start) / (end - start)
            lr = torch.where(t <= end, self._anneal(l0, l1, pct), lr)
            mom = torch.where(t <= end, self._anneal(m0, m1, pct), mom)
        return lr, mom

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        return self._both(t)[0]

    def _momentum(self, t: torch.Tensor) -> torch.Tensor | None:
        return self._both(t)[1] if self._cycle else None


class ReduceLROnPlateau(Schedule):
    """Divide the rate by ``1/factor`` when ``monitor`` has not improved for ``patience`` evaluations.
    See: ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (same rule, defaults and ``threshold_mode``).

    Per member: each member has its own best value, bad-evaluation count, cool-down and rate.
    It steps at each *evaluation* (by default once per epoch, like PyTorch's per-epoch
    ``scheduler.step(val_loss)``), so ``patience`` counts evaluations. ``mode = "auto"``
    minimizes losses and maximizes accuracies.
    """

    kind = "plateau"

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", factor: Number = 0.1, patience: Number = 10,
                 threshold: Number = 1e-4, threshold_mode: str = "rel", cooldown: Number = 0, min_lr: Number = 0.0,
                 eps: float = 1e-8, **kw: Any) -> None:
        super().__init__(**kw)
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"ReduceLROnPlateau mode must be 'auto', 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ConfigError(f"ReduceLROnPlateau threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.monitor, self.mode, self.factor, self.patience = monitor, mode, factor, patience
        self.threshold, self.threshold_mode, self.cooldown, self.min_lr, self.eps = (
            threshold, threshold_mode, cooldown, min_lr, eps)

    @property
    def maximize(self) -> bool:
        return self.mode == "max" or (self.mode == "auto" and self.monitor.endswith("acc"))

    def _bind_rule(self) -> None:
        self._factor = self._floats(self.factor, "factor", low=0.0, high=1.0, low_inclusive=False,
                                    high_inclusive=False)
        self._patience = self._ints(self.patience, "patience", low=0.0)
        self._threshold = self._floats(self.threshold, "threshold", low=0.0)
        self._cooldown = self._ints(self.cooldown, "cooldown", low=0.0)
        self._min_lr = self._floats(self.min_lr, "min_lr", low=0.0)
        self._lr = self.base.clone()
        self._best = torch.full_like(self.base, -math.inf if self.maximize else math.inf)
        self._bad = torch.zeros_like(self.base)
        self._cool = torch.zeros_like(self.base)

    def _rate(self, t: torch.Tensor) -> torch.Tensor:
        return self._lr.clone()

    def _observe(self, record: Mapping[str, Any]) -> bool:
        values = record.get(self.monitor)
        if values is None:
            have = sorted(k for k, v in record.items() if isinstance(v, list))
            raise ConfigError(f"ReduceLROnPlateau monitors {self.monitor!r}, which this run does not record "
                              f"(it records: {', '.join(have)}); add that split or monitor another metric")
        a = torch.tensor([math.nan if v is None else float(v) for v in values], dtype=F64, device=self.base.device)
        th, best = self._threshold, self._best
        if self.maximize:
            better = a > (best * (1.0 + th) if self.threshold_mode == "rel" else best + th)
        else:
            better = a < (best * (1.0 - th) if self.threshold_mode == "rel" else best - th)
        self._best = torch.where(better, a, best)
        self._bad = torch.where(better, torch.zeros_like(self._bad), self._bad + 1)
        cooling = self._cool > 0
        self._cool = torch.where(cooling, self._cool - 1, self._cool)
        self._bad = torch.where(cooling, torch.zeros_like(self._bad), self._bad)
        reduce = self._bad > self._patience
        new = torch.maximum(self._lr * self._factor, self._min_lr)
        changed = reduce & (self._lr - new > self.eps)
        self._lr = torch.where(changed, new, self._lr)
        self._cool = torch.where(reduce, self._cooldown, self._cool)
        self._bad = torch.where(reduce, torch.zeros_like(self._bad), self._bad)
        return bool(changed.any())

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        t, m = super().state_dict()
        t.update(lr=self._lr, best=self._best, bad=self._bad, cool=self._cool)
        return t, m

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        for k in ("lr", "best", "bad", "cool"):
            if k in tensors:
                setattr(self, f"_{k}", tensors[k].to(device=self.base.device, dtype=F64).clone())


class PerMember(Schedule):
    """Different schedules for different members: ``groups`` = ``[(schedule, members), ...]`` covering every
    member once. Each schedule runs on its members as on a population of their own (its per-member
    settings have one value per member *of its group*); members whose schedule does not cycle the
    momentum keep their optimizer's.

    ``PerMember.of([Constant(), StepLR(5), CosineAnnealingLR(), OneCycleLR()])``: one schedule per member.
    """

    kind = "per_member"

    def __init__(self, groups: Sequence[tuple[Schedule, Sequence[int]]]) -> None:
        super().__init__()
        self.groups = [(s, [int(i) for i in idx]) for s, idx in groups]
        if not self.groups:
            raise ConfigError("PerMember needs at least one (schedule, members) group")

    @classmethod
    def of(cls, schedules: Sequence[Schedule]) -> PerMember:
        return cls([(s, [i]) for i, s in enumerate(schedules)])

    def _bind(self, size: int, base: torch.Tensor, base_momentum: torch.Tensor | None) -> None:
        seen = sorted(i for _, idx in self.groups for i in idx)
        if seen != list(range(size)):
            raise ConfigError(f"PerMember groups must cover members 0..{size - 1} once each, got {seen}")
        self.size, self.base, self._opt_momentum = size, base, base_momentum
        self._index: list[torch.Tensor] = []
        for s, idx in self.groups:
            ix = torch.tensor(idx, dtype=torch.long, device=base.device)
            s._bind(len(idx), base[ix].clone(), None if base_momentum is None else base_momentum[ix].clone())
            self._index.append(ix)

    def begin(self, total_steps: int, steps_per_epoch: int) -> None:
        super().begin(total_steps, steps_per_epoch)
        for s, _ in self.groups:
            s.begin(total_steps, steps_per_epoch)

    def _key(self, step: int) -> Any:
        return tuple(s._key(step) for s, _ in self.groups)

    def rates(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        lr = self.base.clone()
        mom = None
        for (s, _), ix in zip(self.groups, self._index):
            l, m = s.rates(step)
            lr[ix] = l
            if m is not None:
                if mom is None:
                    # a group returns momenta only when it cycles them, which _bind allows only when
                    # the optimizer has a momentum (OneCycleLR._bind), so _opt_momentum is set here
                    assert self._opt_momentum is not None
                    mom = self._opt_momentum.clone()
                mom[ix] = m
        return lr, mom

    def cycles_momentum(self) -> bool:
        return any(s.cycles_momentum() for s, _ in self.groups)

    def _observe(self, record: Mapping[str, Any]) -> bool:
        changed = False
        for (s, idx), _ in zip(self.groups, self._index):
            sub = {k: ([v[i] for i in idx] if isinstance(v, list) else v) for k, v in record.items()}
            changed |= s._observe(sub)
        return changed

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        t: dict[str, torch.Tensor] = {"base": self.base}
        for g, (s, _) in enumerate(self.groups):
            st, _ = s.state_dict()
            t.update({f"{g}.{k}": v for k, v in st.items()})
        return t, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state_dict(tensors, meta)
        for g, (s, _) in enumerate(self.groups):
            s.load_state_dict({k[len(f"{g}."):]: v for k, v in tensors.items() if k.startswith(f"{g}.")}, {})

    def settings(self) -> dict[str, Any]:
        return {"groups": [(s, idx) for s, idx in self.groups]}


#: config name -> class
SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "step": StepLR,
    "multistep": MultiStepLR,
    "exponential": ExponentialLR,
    "cosine": CosineAnnealingLR,
    "cosine_restarts": CosineAnnealingWarmRestarts,
    "onecycle": OneCycleLR,
    "plateau": ReduceLROnPlateau,
}
