"""The two calls of the search: :func:`tune` runs (or resumes, or joins) a study, :func:`report` writes its
outputs as it stands. Exported as ``trainlab.search.tune`` and ``trainlab.search.report``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainlab.search._results import TuneResult
from trainlab.search._spec import SearchSpec, load_search
from trainlab.search._tuner import Tuner

__all__ = ["tune", "report"]


def _prepare(config: str | Path | Mapping[str, Any], *, trials: int | None, strategy: str | None,
             population: int | None, seed: int | None, overrides: list[str]) -> tuple[dict[str, Any], SearchSpec,
                                                                                      str | None]:
    search = {"trials": trials, "strategy": strategy, "population": population, "seed": seed}
    if isinstance(config, Mapping):
        base, spec = load_search(None, overrides, given=config, search=search)
        return base, spec, None
    base, spec = load_search(config, overrides, search=search)
    return base, spec, Path(config).stem


def tune(config: str | Path | Mapping[str, Any], *, trials: int | None = None, strategy: str | None = None,
         population: int | None = None, storage: str | None = None, study: str | None = None,
         out: str | Path | None = None, seed: int | None = None, overrides: list[str] = (),
         device: str | None = None, progress: bool = False, tensorboard: str | Path | None = None) -> TuneResult:
    """Run (or resume, or join) the study a search config describes; see docs/search.md.

    ``config`` is a TOML file or a dict: a trainlab config plus a ``[search]`` table.
    The keyword arguments override ``[search]``; ``overrides`` are ``key=value``
    strings as with ``--set``. Without ``storage`` the study lives in
    ``out/study.db`` (SQLite), or in memory when ``out`` is None too.
    ``tensorboard``: write each finished trial as a TensorBoard run into this folder
    (hparams, objective, curves; docs/tensorboard.md).
    """
    if tensorboard is not None:
        from trainlab.train import check_logdir

        check_logdir(tensorboard)
    base, spec, stem = _prepare(config, trials=trials, strategy=strategy, population=population, seed=seed,
                                overrides=list(overrides))
    return Tuner(spec, base_config=base, storage=storage, study=study or spec.study or stem, out=out,
                 progress=progress, device=device, tensorboard=tensorboard).run()


def report(config: str | Path | Mapping[str, Any], *, trials: int | None = None, strategy: str | None = None,
           storage: str | None = None, study: str | None = None, out: str | Path | None = None,
           seed: int | None = None, overrides: list[str] = ()) -> TuneResult:
    """Write the outputs of a study as it stands (running or not), without running trials; the same
    arguments as :func:`tune` name the study and its setup."""
    base, spec, stem = _prepare(config, trials=trials, strategy=strategy, population=None, seed=seed,
                                overrides=list(overrides))
    return Tuner(spec, base_config=base, storage=storage, study=study or spec.study or stem, out=out).report()
