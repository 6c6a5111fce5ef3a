"""Search spaces: which config keys vary, over what values, on what scale.

A space maps names (dotted config keys such as ``"optim.lr"``, or any name for a
plain function objective) to one parameter each:

=============== ================================================================
``float``       ``low``, ``high``; ``log = true`` draws log-uniformly (needs
                ``low > 0``); ``step`` makes it discrete (not with ``log``);
                ``points = n`` or ``values = [...]`` give its grid
``int``         ``low``, ``high`` (inclusive); ``log``; ``step`` (default 1);
                ``points``/``values`` for the grid (default: every integer)
``categorical`` ``choices = [...]``: any TOML values, lists and tables included
                (e.g. ``model.hidden = [[100, 100], [200, 200, 200]]``)
``fixed``       ``value``: the same for every trial
=============== ================================================================

In TOML each parameter is a table under ``[search.space]`` (quote dotted keys):
``[search.space."optim.lr"]`` then ``type = "float"``, ``low = 1e-6``,
``high = 1e-2``, ``log = true``. Shorthands: a list is ``categorical``, a scalar
is ``fixed``. Every mistake raises :class:`~trainlab.errors.ConfigError` with a
message that names the parameter, the rule and the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
import copy
import itertools
import json
import math
from typing import Any, Generic, TypeVar

import numpy as np
import optuna

from trainlab.errors import ConfigError

__all__ = ["Param", "FloatParam", "IntParam", "CategoricalParam", "FixedParam", "SearchSpace",
           "MAX_GRID_POINTS"]

#: a grid larger than this is refused (a typo such as ``step = 1e-9`` would otherwise hang)
MAX_GRID_POINTS = 100_000
_PRIMITIVE = (str, int, float, bool, type(None))


def _integer(where: str, name: str, v: Any) -> int:
    """``v`` as an int: an int, or a float with an integer value (TOML's ``3.0``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {name} must be an integer, got {v!r}")
    if isinstance(v, float):
        if not v.is_integer():
            raise ConfigError(f"{where}: {name} must be an integer, got {v!r}")
        return int(v)
    return v


def _real(where: str, name: str, v: Any) -> float:
    """``v`` as a finite float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: {name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(f"{where}: {name} must be a finite number, got {v}")
    return v


#: the number type of a numeric parameter: int for IntParam, float for FloatParam
N = TypeVar("N", int, float)


class Param:
    """One searched name. Subclasses say how it is distributed and how it is gridded."""

    kind = ""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a search parameter needs a non-empty name, got {name!r}")
        self.name = name

    @property
    def where(self) -> str:
        return f"search.space.{self.name}"

    def distribution(self) -> optuna.distributions.BaseDistribution | None:
        """The Optuna distribution (``None`` for a fixed value, which is never sampled)."""
        raise NotImplementedError

    def grid_values(self) -> list[Any]:
        raise NotImplementedError

    def decode(self, value: Any) -> Any:
        """The config value for an Optuna parameter value."""
        return value

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.describe()})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.name == other.name and self.describe() == other.describe()


class _Numeric(Param, Generic[N]):
    def __init__(self, name: str, low: Any, high: Any, *, log: bool = False, step: Any = None,
                 points: int | None = None, values: Sequence[Any] | None = None) -> None:
        super().__init__(name)
        w = self.where
        self.low: N = self._parse(w, "low", low)
        self.high: N = self._parse(w, "high", high)
        if not isinstance(log, bool):
            raise ConfigError(f"{w}: log must be true or false, got {log!r}")
        self.log = log
        if not self.low < self.high:
            raise ConfigError(f"{w}: low < high must hold, got low={self.low!r}, high={self.high!r} "
                              "(for a single value use type = 'fixed')")
        if log and self.low <= 0:
            raise ConfigError(f"{w}: log scale needs low > 0, got low={self.low!r}")
        if step is not None:
            if log:
                raise ConfigError(f"{w}: step cannot be combined with log = true (got step={step!r}); "
                                  "use points = n for a log-spaced grid")
            step = self._parse(w, "step", step)
            if step <= 0:
                raise ConfigError(f"{w}: step must be > 0, got step={step!r}")
            if step > self.high - self.low:
                raise ConfigError(f"{w}: step must be <= high - low = {self.high - self.low!r}, got step={step!r}")
        self.step: N | None = step
        if points is not None:
            points = _integer(w, "points", points)
            if points < 2:
                raise ConfigError(f"{w}: points must be >= 2 (low and high at least), got points={points!r}")
        self.points = points
        vs: list[N] | None = None
        if values is not None:
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"{w}: values must be a non-empty list, got {values!r}")
            vs = [self._parse(w, f"values[{i}]", v) for i, v in enumerate(values)]
            for v in vs:
                if not self.low <= v <= self.high:
                    raise ConfigError(f"{w}: values must lie in [low, high] = [{self.low!r}, {self.high!r}], "
                                      f"got {v!r}")
            if len(set(vs)) != len(vs):
                raise ConfigError(f"{w}: values must not repeat, got {vs!r}")
        if points is not None and values is not None:
            raise ConfigError(f"{w}: give either points or values, not both")
        self.values: list[N] | None = vs

    def _parse(self, where: str, name: str, v: Any) -> N:
        """``v`` as this parameter's number type (validated)."""
        raise NotImplementedError

    def to_internal(self, v: float) -> float:
        """The scale on which draws are uniform: log for ``log = true``."""
        return math.log(v) if self.log else float(v)

    def from_internal(self, u: float) -> float:
        return math.exp(u) if self.log else float(u)


class FloatParam(_Numeric[float]):
    """A real number in ``[low, high]``, uniform or log-uniform (``log=True``)."""

    kind = "float"

    def __init__(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None,
                 points: int | None = None, values: Sequence[float] | None = None) -> None:
        super().__init__(name, low, high, log=log, step=step, points=points, values=values)

    def _parse(self, where: str, name: str, v: Any) -> float:
        return _real(where, name, v)

    def distribution(self) -> optuna.distributions.FloatDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> list[float]:
        if self.values is not None:
            return list(self.values)
        if self.points is not None:
            u = np.linspace(self.to_internal(self.low), self.to_internal(self.high), self.points)
            vals = [self.from_internal(float(x)) for x in u]
            vals[0], vals[-1] = self.low, self.high  # exact ends, no exp(log(x)) round-off outside [low, high]
            return [min(max(v, self.low), self.high) for v in vals]
        if self.step is not None:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            _check_grid_size(self.where, n)
            return [self.low + i * self.step for i in range(n)]
        raise ConfigError(f"{self.where}: grid search needs a finite set of values for this float; give "
                          "points = n (evenly spaced, log-spaced when log = true), values = [...] or step")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "float", "low": self.low, "high": self.high, "log": self.log}
        for k in ("step", "points", "values"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


class IntParam(_Numeric[int]):
    """An integer in ``[low, high]`` (both inclusive), uniform or log-uniform."""

    kind = "int"

    def __init__(self, name: str, low: int, high: int, *, log: bool = False, step: int | None = None,
                 points: int | None = None, values: Sequence[int] | None = None) -> None:
        super().__init__(name, low, high, log=log, step=step, points=points, values=values)

    def _parse(self, where: str, name: str, v: Any) -> int:
        return _integer(where, name, v)

    def distribution(self) -> optuna.distributions.IntDistribution:
        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)

    def grid_values(self) -> list[int]:
        if self.values is not None:
            return list(self.values)
        if self.points is not None:
            u = np.linspace(self.to_internal(self.low), self.to_internal(self.high), self.points)
            out: list[int] = []
            for x in u:
                v = min(max(int(round(self.from_internal(float(x)))), self.low), self.high)
                if not out or v != out[-1]:
                    out.append(v)
            return out
        step = self.step or 1
        n = (self.high - self.low) // step + 1
        _check_grid_size(self.where, n)
        return list(range(self.low, self.high + 1, step))

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "int", "low": self.low, "high": self.high, "log": self.log}
        for k in ("step", "points", "values"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


def _encode_choice(v: Any) -> Any:
    # Optuna's categorical choices must be None/bool/int/float/str; lists and tables travel as JSON text.
    return v if isinstance(v, _PRIMITIVE) else "json:" + json.dumps(v, sort_keys=True)


class CategoricalParam(Param):
    """One of ``choices`` (any TOML values; non-scalars are stored as JSON text in the study)."""

    kind = "categorical"

    def __init__(self, name: str, choices: Sequence[Any]) -> None:
        super().__init__(name)
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or len(choices) == 0:
            raise ConfigError(f"{self.where}: choices must be a non-empty list, got {choices!r}")
        encoded = [_encode_choice(c) for c in choices]
        if len(set(map(repr, encoded))) != len(encoded):
            raise ConfigError(f"{self.where}: choices must not repeat, got {list(choices)!r}")
        for c in choices:
            if isinstance(c, float) and not math.isfinite(c):
                raise ConfigError(f"{self.where}: choices must be finite, got {c!r}")
        self.choices = [copy.deepcopy(c) for c in choices]
        self._decode = {repr(e): c for e, c in zip(encoded, self.choices)}
        self.encoded = encoded

    def distribution(self) -> optuna.distributions.CategoricalDistribution:
        return optuna.distributions.CategoricalDistribution(self.encoded)

    def grid_values(self) -> list[Any]:
        return list(self.encoded)

    def decode(self, value: Any) -> Any:
        try:
            return copy.deepcopy(self._decode[repr(value)])
        except KeyError:
            raise ConfigError(f"{self.where}: {value!r} is not one of the choices {self.choices!r}") from None

    def describe(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": self.choices}


class FixedParam(Param):
    """The same value in every trial (not sampled; recorded with the study)."""

    kind = "fixed"

    def __init__(self, name: str, value: Any) -> None:
        super().__init__(name)
        if value is None:
            raise ConfigError(f"{self.where}: a fixed parameter needs a value")
        self.value = copy.deepcopy(value)

    def distribution(self) -> None:
        return None

    def grid_values(self) -> list[Any]:
        return [self.value]

    def decode(self, value: Any) -> Any:
        return copy.deepcopy(self.value)

    def describe(self) -> dict[str, Any]:
        return {"type": "fixed", "value": self.value}


def _check_grid_size(where: str, n: int) -> None:
    if n > MAX_GRID_POINTS:
        raise ConfigError(f"{where}: the grid would have {n} values (more than {MAX_GRID_POINTS}); "
                          "use a larger step or points = n")


_OPTIONS = {
    "float": ("low", "high", "log", "step", "points", "values"),
    "int": ("low", "high", "log", "step", "points", "values"),
    "categorical": ("choices",),
    "fixed": ("value",),
}
_CLASSES = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam, "fixed": FixedParam}


def _param_from_table(name: str, spec: Any) -> Param:
    where = f"search.space.{name}"
    if isinstance(spec, list):
        return CategoricalParam(name, spec)
    if not isinstance(spec, dict):
        return FixedParam(name, spec)
    kind = spec.get("type")
    if kind not in _CLASSES:
        raise ConfigError(f"{where}: type must be one of {', '.join(repr(k) for k in _CLASSES)}, got {kind!r}")
    opts = {k: v for k, v in spec.items() if k != "type"}
    for k in opts:
        if k not in _OPTIONS[kind]:
            raise ConfigError(f"{where}: unknown option '{k}' for type = '{kind}' "
                              f"(allowed: {', '.join(_OPTIONS[kind])})")
    if kind in ("float", "int"):
        for k in ("low", "high"):
            if k not in opts:
                raise ConfigError(f"{where}: type = '{kind}' needs {k}")
        low, high = opts.pop("low"), opts.pop("high")
        return _CLASSES[kind](name, low, high, **opts)
    if kind == "categorical":
        if "choices" not in opts:
            raise ConfigError(f"{where}: type = 'categorical' needs choices = [...]")
        return CategoricalParam(name, opts["choices"])
    if "value" not in opts:
        raise ConfigError(f"{where}: type = 'fixed' needs value")
    return FixedParam(name, opts["value"])


def _flatten_space(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    # ``[search.space."optim.lr"]`` and ``[search.space.optim.lr]`` mean the same: a sub-table
    # without a ``type`` key is a group of parameters, not a parameter.
    for k, v in table.items():
        name = prefix + k
        if isinstance(v, dict) and "type" not in v:
            if not v:
                raise ConfigError(f"search.space.{name}: empty table; give type = 'float' | 'int' | "
                                  "'categorical' | 'fixed'")
            yield from _flatten_space(v, name + ".")
        else:
            yield name, v


class SearchSpace:
    """An ordered set of :class:`Param` by name.

    ``SearchSpace([FloatParam("optim.lr", 1e-6, 1e-2, log=True), ...])`` or
    :meth:`from_table` for the ``[search.space]`` TOML table.
    """

    def __init__(self, params: Iterable[Param] = ()) -> None:
        self.params: dict[str, Param] = {}
        for p in params:
            if not isinstance(p, Param):
                raise ConfigError(f"a search space holds Param objects, got {p!r}")
            if p.name in self.params:
                raise ConfigError(f"search.space.{p.name} is given twice")
            self.params[p.name] = p

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None) -> "SearchSpace":
        if table is None:
            return cls()
        if not isinstance(table, Mapping):
            raise ConfigError(f"search.space must be a table ([search.space]), got {table!r}")
        return cls(_param_from_table(name, spec) for name, spec in _flatten_space(table))

    # ---- views ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params.values())

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def __getitem__(self, name: str) -> Param:
        return self.params[name]

    @property
    def sampled(self) -> list[Param]:
        """The parameters the sampler draws (all but the fixed ones)."""
        return [p for p in self.params.values() if not isinstance(p, FixedParam)]

    @property
    def numeric(self) -> list[_Numeric]:
        return [p for p in self.params.values() if isinstance(p, _Numeric)]

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        out: dict[str, optuna.distributions.BaseDistribution] = {}
        for p in self.sampled:
            d = p.distribution()
            if d is not None:  # (always: only fixed parameters have none, and they are not sampled)
                out[p.name] = d
        return out

    def describe(self) -> dict[str, Any]:
        return {name: p.describe() for name, p in self.params.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.describe() == other.describe()

    def __repr__(self) -> str:
        return f"SearchSpace({list(self.params.values())!r})"

    # ---- values -----------------------------------------------------------------------------
    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna parameter values -> config values, fixed parameters included."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if isinstance(p, FixedParam):
                out[name] = p.decode(None)
            elif name in params:
                out[name] = p.decode(params[name])
        return out

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the sampled parameters' grid values (the Cartesian product)."""
        names = [p.name for p in self.sampled]
        columns = [p.grid_values() for p in self.sampled]
        size = math.prod(len(c) for c in columns)
        if size > MAX_GRID_POINTS:
            raise ConfigError(f"search.space: the grid has {size} points (more than {MAX_GRID_POINTS}); "
                              "use fewer values per parameter or random search")
        return [dict(zip(names, combo)) for combo in itertools.product(*columns)]
