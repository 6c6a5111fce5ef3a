"""Hyperparameter search on Optuna, with trials trained as populations.

Quick start (the textbook's random search; see docs/search.md)::

    from trainlab.search import tune
    result = tune("examples/search/textbook_random.toml", out="runs/textbook-search")
    result.best["value"], result.best["params"], result.test   # validation best; test once

Pieces, for other uses::

    from trainlab.search import SearchSpace, FloatParam, SearchSpec, Random, Tuner, FunctionEvaluator
    space = SearchSpace([FloatParam("x", 1e-4, 1.0, log=True)])
    spec = SearchSpec(space=space, strategy=Random(), trials=50)
    Tuner(spec, evaluator=FunctionEvaluator(lambda v: -abs(v["x"] - 0.01))).run()

Strategies: :class:`Manual`, :class:`Grid`, :class:`Random`, :class:`CoarseToFine`,
:class:`TPE`, :class:`GP`. Pruners (``pruner = "..."``): :class:`NoPruner`, :class:`MedianPruner`,
:class:`SuccessiveHalvingPruner`, :class:`HyperbandPruner`. ``Tuner.snapshot()`` gives a study as plain
data (:class:`StudySnapshot`). Augmentation-policy search (AutoAugment-style) waits for
trainlab's augmentation feature and is not available yet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exports load on first use (PEP 562): ``trainlab tune``'s command class can be imported by the
# CLI without importing Optuna for every other command.
_EXPORTS = {
    "Param": "_space", "FloatParam": "_space", "IntParam": "_space", "CategoricalParam": "_space",
    "FixedParam": "_space", "SearchSpace": "_space",
    "Strategy": "_strategies", "Manual": "_strategies", "Grid": "_strategies", "Random": "_strategies",
    "CoarseToFine": "_strategies", "TPE": "_strategies", "GP": "_strategies", "STRATEGIES": "_strategies",
    "make_strategy": "_strategies",
    "SlotRandomSampler": "_samplers", "CoarseToFineSampler": "_samplers", "ModelSampler": "_samplers",
    "derive_seed": "_samplers",
    "SearchSpec": "_spec", "SEARCH_KEYS": "_spec", "load_search": "_spec", "parse_search": "_spec",
    "check_space_for_config": "_spec",
    "Pruner": "_pruners", "NoPruner": "_pruners", "MedianPruner": "_pruners", "SuccessiveHalvingPruner": "_pruners",
    "HyperbandPruner": "_pruners", "PRUNERS": "_pruners", "make_pruner": "_pruners",
    "Tuner": "_tuner", "TuneResult": "_results", "Ledger": "_results", "StudySnapshot": "_results",
    "best_trial": "_results",
    "SlotState": "_vocab", "Outcome": "_vocab",
    # the keys trainlab stores in a study (a stored format: readers such as the lab's viewer use them)
    "SLOT": "_vocab", "SEED": "_vocab", "SPEC": "_vocab", "BUDGET": "_vocab", "FINAL": "_vocab",
    "TrialJob": "_jobs", "TrialOutcome": "_jobs", "Evaluator": "_jobs", "FunctionEvaluator": "_jobs",
    "PopulationEvaluator": "_population", "group_key": "_population", "trial_config": "_population",
    "StudyStorage": "_storage", "open_storage": "_storage", "STORAGE_RECORD": "_vocab",
    "recorded_storage": "_storage",
    "param_importances": "_report",
    "TuneCommand": "_cli", "tune": "_api", "report": "_api",
}

__all__ = [*_EXPORTS]

if TYPE_CHECKING:
    from trainlab.search._api import report, tune
    from trainlab.search._cli import TuneCommand
    from trainlab.search._jobs import Evaluator, FunctionEvaluator, TrialJob, TrialOutcome
    from trainlab.search._population import PopulationEvaluator, group_key, trial_config
    from trainlab.search._pruners import (PRUNERS, HyperbandPruner, MedianPruner, NoPruner, Pruner,
                                          SuccessiveHalvingPruner, make_pruner)
    from trainlab.search._report import param_importances
    from trainlab.search._samplers import CoarseToFineSampler, ModelSampler, SlotRandomSampler, derive_seed
    from trainlab.search._space import CategoricalParam, FixedParam, FloatParam, IntParam, Param, SearchSpace
    from trainlab.search._spec import SEARCH_KEYS, SearchSpec, check_space_for_config, load_search, parse_search
    from trainlab.search._storage import StudyStorage, open_storage, recorded_storage
    from trainlab.search._strategies import (GP, STRATEGIES, TPE, CoarseToFine, Grid, Manual, Random, Strategy,
                                             make_strategy)
    from trainlab.search._results import Ledger, StudySnapshot, TuneResult, best_trial
    from trainlab.search._tuner import Tuner
    from trainlab.search._vocab import BUDGET, FINAL, SEED, SLOT, SPEC, STORAGE_RECORD, Outcome, SlotState


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"trainlab.search.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainlab.search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
