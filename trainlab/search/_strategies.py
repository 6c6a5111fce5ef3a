"""Search strategies: how the points of a study are chosen. One class per strategy.

``manual``          the trials listed in ``[[search.manual]]``, each once
``grid``            every combination of the parameters' grid values, each once
``random``          independent uniform / log-uniform draws
``coarse-to-fine``  rounds of random draws in a box shrinking around the best trials
``tpe``             Optuna's Tree-structured Parzen Estimator (Bayesian optimization)
``gp``              Optuna's Gaussian-process sampler (Bayesian optimization)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import math
from typing import Any, ClassVar

from trainlab.errors import ConfigError
from trainlab.search._samplers import (CoarseToFineSampler, ModelSampler, SlotRandomSampler, SlotSampler,
                                       derive_seed)
from trainlab.search._space import CategoricalParam, SearchSpace

__all__ = ["Strategy", "Manual", "Grid", "Random", "CoarseToFine", "TPE", "GP", "STRATEGIES", "make_strategy"]


class Strategy:
    """How trials get their points.

    ``finite`` strategies (manual, grid) know all their points up front: the tuner
    queues them once, when the study is created, and the study has exactly that
    many trials. The others draw each trial's point when it starts.
    """

    name: ClassVar[str] = ""
    finite: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ()

    def space(self, space: SearchSpace) -> SearchSpace:
        """The space the study samples (manual builds its own from its list)."""
        if not space.sampled:
            raise ConfigError(f"search.space: strategy '{self.name}' needs at least one parameter that varies "
                              "(type = 'float', 'int' or 'categorical')")
        return space

    def points(self, space: SearchSpace) -> list[dict[str, Any]] | None:
        return None

    def sampler(self, space: SearchSpace, seed: int, *, trials: int, maximize: bool,
                on_box: Callable[[int, dict[str, Any]], None] | None = None,
                known_boxes: Mapping[int, dict[str, Any]] | None = None) -> SlotSampler:
        return SlotRandomSampler(derive_seed(seed, "sampler"))

    def slot_open(self, slot: int, trials: int, is_decided: Callable[[int], bool]) -> bool:
        """May slot ``slot`` start now? (coarse-to-fine waits for earlier rounds)."""
        return True

    def describe(self, trials: int | None = None) -> dict[str, Any]:
        return {"name": self.name, **{k: getattr(self, k) for k in self.options}}

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> "Strategy":
        table = dict(table or {})
        where = f"search.{cls.name.replace('-', '_')}"
        for k in table:
            if k not in cls.options:
                allowed = ", ".join(cls.options) if cls.options else "none"
                raise ConfigError(f"{where}: unknown option '{k}' for strategy '{cls.name}' (allowed: {allowed})")
        return cls(**table)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.options)})"


def _int_option(where: str, name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{where}: {name} must be an integer >= {low}, got {v!r}")
    return v


def _float_option(where: str, name: str, v: Any, low: float, high: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low <= v <= high):
        raise ConfigError(f"{where}: {name} must be a number in [{low}, {high}], got {v!r}")
    return float(v)


class Manual(Strategy):
    """Exactly the listed trials: ``configs`` is a list of ``{dotted key: value}`` dicts."""

    name = "manual"
    finite = True

    def __init__(self, configs: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence) or not configs:
            raise ConfigError("search.manual must be a non-empty list of tables ([[search.manual]]), "
                              f"got {configs!r}")
        for i, c in enumerate(configs):
            if not isinstance(c, Mapping) or not c:
                raise ConfigError(f"search.manual[{i}] must be a non-empty table of config keys, got {c!r}")
        self.configs = [dict(c) for c in configs]

    def space(self, space: SearchSpace) -> SearchSpace:
        if space.sampled:
            raise ConfigError("search.space: the manual strategy takes its trials from [[search.manual]]; "
                              "remove the sampled parameters from [search.space] or choose another strategy")
        keys: list[str] = []
        for c in self.configs:
            keys += [k for k in c if k not in keys]
        params = []
        for k in keys:
            seen: list[Any] = []
            for c in self.configs:
                if k in c and c[k] not in seen:
                    seen.append(c[k])
            params.append(CategoricalParam(k, seen))
        return SearchSpace(params + [p for p in space if p.name not in keys])

    def points(self, space: SearchSpace) -> list[dict[str, Any]]:
        from trainlab.search._space import _encode_choice

        return [{k: _encode_choice(v) for k, v in c.items()} for c in self.configs]

    def describe(self, trials: int | None = None) -> dict[str, Any]:
        return {"name": self.name, "configs": self.configs}


class Grid(Strategy):
    """Every point of the Cartesian product of the parameters' grid values, once."""

    name = "grid"
    finite = True

    def points(self, space: SearchSpace) -> list[dict[str, Any]]:
        return space.grid()


class Random(Strategy):
    """Independent draws: uniform, or log-uniform for ``log = true`` (the textbook's random search)."""

    name = "random"


class CoarseToFine(Strategy):
    """``rounds`` rounds: random over the whole space, then over a box around the ``top_k`` best.

    ``round_trials`` (optional) gives the trials per round; by default the budget is
    split evenly. See :class:`~trainlab.search._samplers.CoarseToFineSampler` for the box.
    """

    name = "coarse-to-fine"
    options = ("rounds", "top_k", "margin", "min_width", "round_trials")

    def __init__(self, rounds: int = 3, top_k: int = 5, margin: float = 0.5, min_width: float = 0.1,
                 round_trials: Sequence[int] | None = None) -> None:
        w = "search.coarse_to_fine"
        self.rounds = _int_option(w, "rounds", rounds, 1)
        self.top_k = _int_option(w, "top_k", top_k, 1)
        self.margin = _float_option(w, "margin", margin, 0.0, 10.0)
        self.min_width = _float_option(w, "min_width", min_width, 0.0, 1.0)
        if round_trials is not None:
            if not isinstance(round_trials, (list, tuple)) or len(round_trials) != self.rounds:
                raise ConfigError(f"{w}: round_trials must list {self.rounds} numbers (one per round), "
                                  f"got {round_trials!r}")
            round_trials = [_int_option(w, f"round_trials[{i}]", n, 1) for i, n in enumerate(round_trials)]
        self.round_trials = round_trials

    def round_sizes(self, trials: int) -> list[int]:
        if self.round_trials is not None:
            if sum(self.round_trials) != trials:
                raise ConfigError(f"search.coarse_to_fine: round_trials add up to {sum(self.round_trials)} "
                                  f"but the study has trials = {trials}")
            return list(self.round_trials)
        if trials < self.rounds:
            raise ConfigError(f"search.coarse_to_fine: {self.rounds} rounds need trials >= {self.rounds}, "
                              f"got {trials}")
        base, extra = divmod(trials, self.rounds)
        return [base + (1 if i < extra else 0) for i in range(self.rounds)]

    def sampler(self, space: SearchSpace, seed: int, *, trials: int, maximize: bool,
                on_box: Callable[[int, dict[str, Any]], None] | None = None,
                known_boxes: Mapping[int, dict[str, Any]] | None = None) -> SlotSampler:
        return CoarseToFineSampler(derive_seed(seed, "sampler"), space, self.round_sizes(trials), top_k=self.top_k,
                                   margin=self.margin, min_width=self.min_width, maximize=maximize,
                                   on_box=on_box, known_boxes=known_boxes)

    def slot_open(self, slot: int, trials: int, is_decided: Callable[[int], bool]) -> bool:
        sizes = self.round_sizes(trials)
        start = 0
        for n in sizes:
            if slot < start + n:
                break
            start += n
        return all(is_decided(s) for s in range(start))

    def describe(self, trials: int | None = None) -> dict[str, Any]:
        d = super().describe()
        if trials is not None:
            d["round_sizes"] = self.round_sizes(trials)
        return d


class TPE(Strategy):
    """Optuna's TPE sampler (multivariate, constant liar) after ``startup`` random trials."""

    name = "tpe"
    options = ("startup",)

    def __init__(self, startup: int = 10) -> None:
        self.startup = _int_option("search.tpe", "startup", startup, 1)

    def sampler(self, space: SearchSpace, seed: int, *, trials: int, maximize: bool,
                on_box: Callable[[int, dict[str, Any]], None] | None = None,
                known_boxes: Mapping[int, dict[str, Any]] | None = None) -> SlotSampler:
        return ModelSampler(derive_seed(seed, "sampler"), "tpe", startup=self.startup)


class GP(Strategy):
    """Optuna's Gaussian-process sampler after ``startup`` random trials."""

    name = "gp"
    options = ("startup",)

    def __init__(self, startup: int = 10) -> None:
        self.startup = _int_option("search.gp", "startup", startup, 1)

    def sampler(self, space: SearchSpace, seed: int, *, trials: int, maximize: bool,
                on_box: Callable[[int, dict[str, Any]], None] | None = None,
                known_boxes: Mapping[int, dict[str, Any]] | None = None) -> SlotSampler:
        return ModelSampler(derive_seed(seed, "sampler"), "gp", startup=self.startup)


STRATEGIES: dict[str, type[Strategy]] = {c.name: c for c in (Manual, Grid, Random, CoarseToFine, TPE, GP)}
_ALIASES = {"bayesian": "tpe", "coarse_to_fine": "coarse-to-fine"}


def make_strategy(name: str, search_table: Mapping[str, Any] | None = None) -> Strategy:
    """A strategy by name, with its options from the ``[search]`` table (``[search.tpe]``, ...)."""
    if not isinstance(name, str) or _ALIASES.get(name, name) not in STRATEGIES:
        raise ConfigError(f"search.strategy must be one of {', '.join(repr(n) for n in STRATEGIES)}, got {name!r}")
    cls = STRATEGIES[_ALIASES.get(name, name)]
    table = dict(search_table or {})
    if cls is Manual:
        return Manual(table.get("manual") or [])
    sub = table.get(cls.name.replace("-", "_"))
    if sub is not None and not isinstance(sub, Mapping):
        raise ConfigError(f"search.{cls.name.replace('-', '_')} must be a table, got {sub!r}")
    return cls.from_table(sub)


def grid_size(space: SearchSpace) -> int:
    return math.prod(len(p.grid_values()) for p in space.sampled)
