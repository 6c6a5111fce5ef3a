"""Pruners: when a trial stops before its last epoch. One class per pruner, resolved by name like the
strategies (``[search] pruner = "median"``); each builds the Optuna pruner that decides.

``none``                 every trial trains to its last epoch (no intermediate values are judged)
``median``               stop a trial whose best value is worse than the median of earlier trials at its epoch
``successive_halving``   keep the best 1/4 of the trials at each rung (epochs r, 4r, 16r, ...)
``hyperband``            successive halving in several brackets with different first rungs

A trial reports its validation metric after every epoch (``TrialJob.report``); the pruner's
answer stops that member (``trainer.stop_members``) while its population goes on. ``prune_warmup``
(epochs) and ``prune_startup`` (finished trials) are the two settings the ``[search]`` table has.
"""

from __future__ import annotations

from typing import Any, ClassVar

import optuna

from trainlab.errors import ConfigError

__all__ = ["Pruner", "NoPruner", "MedianPruner", "SuccessiveHalvingPruner", "HyperbandPruner", "PRUNERS",
           "make_pruner"]


class Pruner:
    """How a study stops poor trials early.

    ``warmup``: epochs a trial trains before it may be pruned (``search.prune_warmup``);
    ``startup``: finished trials before the median pruner acts (``search.prune_startup``).
    """

    name: ClassVar[str] = ""
    #: False: the trials' reports are only stored (``search.report``), never judged
    prunes: ClassVar[bool] = True

    def __init__(self, warmup: int = 5, startup: int = 5) -> None:
        self.warmup, self.startup = int(warmup), int(startup)

    def optuna(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner the study is loaded with."""
        raise NotImplementedError

    def describe(self) -> str | dict[str, Any]:
        """What a resumed study checks (it must not change): the name and the settings."""
        return {"name": self.name, "warmup": self.warmup, "startup": self.startup}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(warmup={self.warmup}, startup={self.startup})"


class NoPruner(Pruner):
    """``none``: every trial trains to its last epoch (Optuna's ``NopPruner``); the default."""

    name = "none"
    prunes = False

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def describe(self) -> str:
        return self.name  # no settings: a study's fingerprint holds the bare name


class MedianPruner(Pruner):
    """``median``: the median stopping rule (Golovin et al. 2017, Google Vizier): after ``warmup`` epochs,
    stop a trial whose best value so far is worse than the median of the earlier trials' values at the
    same epoch, once ``startup`` trials have finished (Optuna's ``MedianPruner``)."""

    name = "median"

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.MedianPruner(n_startup_trials=self.startup, n_warmup_steps=self.warmup)


class SuccessiveHalvingPruner(Pruner):
    """``successive_halving``: asynchronous successive halving (ASHA, Li et al. 2020) with the minimum
    resource ``max(1, warmup)`` epochs and Optuna's reduction factor 4: at the rungs ``r, 4r, 16r, ...``
    a trial goes on only when it is in the best quarter of the trials that reached that rung."""

    name = "successive_halving"

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, self.warmup))


class HyperbandPruner(Pruner):
    """``hyperband``: Hyperband (Li et al. 2018): successive halving in brackets that start at different
    rungs, each trial assigned to one bracket, from the minimum resource ``max(1, warmup)`` epochs up to
    the last epoch of the first finished trial (Optuna's ``HyperbandPruner``, reduction factor 3)."""

    name = "hyperband"

    def optuna(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.HyperbandPruner(min_resource=max(1, self.warmup))


#: the pruners by config name (the order of the error message: none first, the default)
PRUNERS: dict[str, type[Pruner]] = {c.name: c for c in (NoPruner, MedianPruner, SuccessiveHalvingPruner,
                                                        HyperbandPruner)}


def make_pruner(name: str, *, warmup: int = 5, startup: int = 5) -> Pruner:
    """A pruner by its config name, with ``search.prune_warmup`` and ``search.prune_startup``."""
    if not isinstance(name, str) or name not in PRUNERS:
        raise ConfigError(f"search.pruner must be one of {', '.join(repr(n) for n in PRUNERS)}, got {name!r}")
    return PRUNERS[name](warmup=warmup, startup=startup)

