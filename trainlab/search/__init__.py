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

from collections.abc import Mapping
import importlib
from pathlib import Path
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
    "SlotState": "_vocab", "Outcome": "_vocab",
    "TrialJob": "_jobs", "TrialOutcome": "_jobs", "Evaluator": "_jobs", "FunctionEvaluator": "_jobs",
    "PopulationEvaluator": "_population", "group_key": "_population", "trial_config": "_population",
    "StudyStorage": "_storage", "open_storage": "_storage",
    "param_importances": "_report",
}

__all__ = [*_EXPORTS, "tune", "report"]

if TYPE_CHECKING:
    from trainlab.search._jobs import Evaluator, FunctionEvaluator, TrialJob, TrialOutcome
    from trainlab.search._population import PopulationEvaluator, group_key, trial_config
    from trainlab.search._pruners import (PRUNERS, HyperbandPruner, MedianPruner, NoPruner, Pruner,
                                          SuccessiveHalvingPruner, make_pruner)
    from trainlab.search._report import param_importances
    from trainlab.search._samplers import CoarseToFineSampler, ModelSampler, SlotRandomSampler, derive_seed
    from trainlab.search._space import CategoricalParam, FixedParam, FloatParam, IntParam, Param, SearchSpace
    from trainlab.search._spec import SEARCH_KEYS, SearchSpec, check_space_for_config, load_search, parse_search
    from trainlab.search._storage import StudyStorage, open_storage
    from trainlab.search._strategies import (GP, STRATEGIES, TPE, CoarseToFine, Grid, Manual, Random, Strategy,
                                             make_strategy)
    from trainlab.search._results import Ledger, StudySnapshot, TuneResult
    from trainlab.search._tuner import Tuner
    from trainlab.search._vocab import Outcome, SlotState


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"trainlab.search.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainlab.search' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def _prepare(config: str | Path | Mapping[str, Any], *, trials: int | None, strategy: str | None,
             population: int | None, seed: int | None, overrides: list[str]) -> tuple[dict[str, Any], SearchSpec,
                                                                                      str | None]:
    from trainlab.search._spec import load_search

    search = {"trials": trials, "strategy": strategy, "population": population, "seed": seed}
    if isinstance(config, Mapping):
        base, spec = load_search(None, overrides, given=config, search=search)
        return base, spec, None
    base, spec = load_search(config, overrides, search=search)
    return base, spec, Path(config).stem


def tune(config: str | Path | Mapping[str, Any], *, trials: int | None = None, strategy: str | None = None,
         population: int | None = None, storage: str | None = None, study: str | None = None,
         out: str | Path | None = None, seed: int | None = None, overrides: list[str] = (),
         device: str | None = None, progress: bool = False) -> TuneResult:
    """Run (or resume, or join) the study a search config describes; see docs/search.md.

    ``config`` is a TOML file or a dict: a trainlab config plus a ``[search]`` table.
    The keyword arguments override ``[search]``; ``overrides`` are ``key=value``
    strings as with ``--set``. Without ``storage`` the study lives in
    ``out/study.db`` (SQLite), or in memory when ``out`` is None too.
    """
    from trainlab.search._tuner import Tuner

    base, spec, stem = _prepare(config, trials=trials, strategy=strategy, population=population, seed=seed,
                                overrides=list(overrides))
    return Tuner(spec, base_config=base, storage=storage, study=study or spec.study or stem, out=out,
                 progress=progress, device=device).run()


def report(config: str | Path | Mapping[str, Any], *, trials: int | None = None, strategy: str | None = None,
           storage: str | None = None, study: str | None = None, out: str | Path | None = None,
           seed: int | None = None, overrides: list[str] = ()) -> TuneResult:
    """Write the outputs of a study as it stands (running or not), without running trials; the same
    arguments as :func:`tune` name the study and its setup."""
    from trainlab.search._tuner import Tuner

    base, spec, stem = _prepare(config, trials=trials, strategy=strategy, population=None, seed=seed,
                                overrides=list(overrides))
    return Tuner(spec, base_config=base, storage=storage, study=study or spec.study or stem, out=out).report()
