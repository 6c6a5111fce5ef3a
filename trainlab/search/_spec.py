"""The ``[search]`` table: what a study searches, how, and for how long.

A search config is a trainlab config plus one ``[search]`` table, which
:func:`load_search` takes out before the rest goes to
:meth:`trainlab.config.RunConfig.from_dict` (so ``[search]`` is not part of the trainlab
config schema)::

    [search]
    strategy = "random"        # manual | grid | random | coarse-to-fine | tpe | gp
    trials = 100               # trials with a result (grid/manual: their number of points)
    population = 25            # at most this many trials train together as one population
    metric = "val_acc"         # val_acc (maximized) or val_loss (minimized): validation only

    [search.space."optim.lr"]
    type = "float"
    low = 1e-6
    high = 1e-2
    log = true

Every key is listed in :data:`SEARCH_KEYS`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
import copy
from dataclasses import dataclass, field
import difflib
import json
from pathlib import Path
from typing import Any

from trainlab.config import SCHEMA, Key, RunConfig, apply_overrides, read_toml, set_key
from trainlab.errors import ConfigError
from trainlab.search._pruners import PRUNERS, Pruner, make_pruner
from trainlab.search._space import CategoricalParam, FixedParam, FloatParam, IntParam, SearchSpace
from trainlab.search._strategies import STRATEGIES, Strategy, make_strategy

__all__ = ["SearchSpec", "SEARCH_KEYS", "load_search", "parse_search", "check_space_for_config", "apply_params",
           "schema_key", "METRICS", "PRUNERS"]

METRICS = {"val_acc": "maximize", "val_loss": "minimize"}

#: every key of ``[search]`` with what it means (sub-tables: space, manual, coarse_to_fine, tpe, gp)
SEARCH_KEYS: dict[str, str] = {
    "strategy": "manual | grid | random | coarse-to-fine | tpe | gp (default random)",
    "trials": "trials with a result; grid/manual: defaults to (and must equal) their number of points",
    "population": "most trials trained together as one population (default 16)",
    "seed": "study seed: sampler draws and each trial's member seed (default: the config's seed)",
    "metric": "val_acc or val_loss",
    "direction": "maximize or minimize (default: the metric's)",
    "objective": "final (metric after the last epoch, the textbook's) or best (best epoch)",
    "pruner": "none | median | successive_halving | hyperband (stops poor trials early)",
    "prune_warmup": "epochs before a trial may be pruned (default 5)",
    "prune_startup": "finished trials before the median pruner prunes (default 5)",
    "report": "store every epoch's metric in the study (always on with a pruner)",
    "max_retries": "retries of a trial that failed by accident (worker died, error) (default 2)",
    "heartbeat": "seconds between a running trial's heartbeats (default 10)",
    "grace": "seconds without a heartbeat before a trial counts as dead (default 60)",
    "study": "study name (default: the config file's name)",
    "storage": "Optuna storage URL (default: sqlite file study.db in the output directory)",
    "final_test": "retrain the best config and evaluate the test split once (default true)",
    "scatter": "the two parameters of the scatter figure (default: the first two numbers)",
    "curves": "learning curves of the best N trials in curves.png (default 10)",
    "importance_trials": "at most this many trials feed parameter importance (default 300)",
    "space": "[search.space]: the parameters",
    "manual": "[[search.manual]]: the trials of the manual strategy",
    "coarse_to_fine": "[search.coarse_to_fine]: rounds, top_k, margin, min_width, round_trials",
    "tpe": "[search.tpe]: startup",
    "gp": "[search.gp]: startup",
}

#: config keys the tuner owns: searching them would break the comparison or the population
_RESERVED = {
    "seed": "the split, shuffling and member seeds come from the study (set search.seed instead)",
    "population.size": "the tuner groups trials into populations itself (set search.population)",
    "population.seeds": "each trial's seed is derived from the study seed and its slot",
    "device": "all trials run on the same device (use --device)",
}
#: config keys that do not change a trial's result (ignored when a resumed study checks its setup)
_VOLATILE = ("device", "data.data_dir", "data.cache_dir", "data.download", "population.size", "population.seeds")


@dataclass
class SearchSpec:
    """Everything about a study except the base config: settings stored verbatim."""

    space: SearchSpace
    strategy: Strategy
    trials: int | None = None
    population: int = 16
    seed: int = 0
    metric: str = "val_acc"
    direction: str = "maximize"
    objective: str = "final"
    pruner: str = "none"
    prune_warmup: int = 5
    prune_startup: int = 5
    report: bool = False
    max_retries: int = 2
    heartbeat: int = 10
    grace: int = 60
    study: str | None = None
    storage: str | None = None
    final_test: bool = True
    scatter: list[str] | None = None
    curves: int = 10
    importance_trials: int = 300
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def pruning(self) -> Pruner:
        """The :class:`~trainlab.search.Pruner` that ``pruner`` (its config name) names."""
        return make_pruner(self.pruner, warmup=self.prune_warmup, startup=self.prune_startup)

    def effective_space(self) -> SearchSpace:
        return self.strategy.space(self.space)

    def budget(self) -> int:
        """The number of trials the study runs to (finite strategies: their number of points)."""
        points = self.strategy.points(self.effective_space()) if self.strategy.finite else None
        if points is not None:
            if self.trials is not None and self.trials != len(points):
                raise ConfigError(f"search.trials is {self.trials} but the {self.strategy.name} strategy has "
                                  f"{len(points)} points; leave trials out or make it {len(points)}")
            return len(points)
        if self.trials is None:
            raise ConfigError(f"search.trials is missing: strategy '{self.strategy.name}' needs the number of "
                              "trials (--trials N or trials = N in [search])")
        return self.trials

    def fingerprint(self, n: int) -> dict[str, Any]:
        """What must not change when a study of ``n`` trials resumes (the budget may grow for all but
        coarse-to-fine, whose rounds depend on it; the population size may change)."""
        return {"space": self.effective_space().describe(), "strategy": self.strategy.describe(n),
                "seed": self.seed, "metric": self.metric, "direction": self.direction,
                "objective": self.objective, "pruner": self.pruning().describe()}


def _int(where: str, v: Any, low: int, high: int = 2**63 - 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise ConfigError(f"{where} must be an integer in [{low}, {high}], got {v!r}")
    return v


def _choice(where: str, v: Any, choices: Collection[str]) -> str:
    if v not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(repr(c) for c in choices)}, got {v!r}")
    return v


def schema_key(path: str) -> Key | None:
    """The :class:`~trainlab.config.Key` of a dotted config key, or ``None`` if there is none."""
    node: Any = SCHEMA
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Key) else None


def _all_keys(node: Mapping[str, Any] = SCHEMA, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
        if isinstance(v, dict):
            out += _all_keys(v, prefix + k + ".")
        else:
            out.append(prefix + k)
    return out


def _flatten_config_table(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` and ``{"optim.lr": 0.1}`` -> ``{"optim.lr": 0.1}``, stopping at config keys
    (so a table-valued key such as ``model.init`` stays a table)."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        path = prefix + k
        if isinstance(v, dict) and schema_key(path) is None:
            out.update(_flatten_config_table(v, path + "."))
        else:
            out[path] = v
    return out


def apply_params(given: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the (unresolved) config ``given`` with each dotted key of ``values`` set."""
    out = copy.deepcopy(dict(given))
    for k, v in values.items():
        set_key(out, k, copy.deepcopy(v), where=f"search.space.{k}")
    return out


def check_space_for_config(space: SearchSpace, base_given: Mapping[str, Any]) -> None:
    """Every parameter must name a config key that can vary, and its ends / choices must be valid values
    for that key (checked by resolving the config at each end), so mistakes surface before any trial."""
    known = _all_keys()
    for p in space:
        key = schema_key(p.name)
        if key is None:
            near = difflib.get_close_matches(p.name, known, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"search.space.{p.name}: not a config key{hint}")
        if p.name in _RESERVED:
            raise ConfigError(f"search.space.{p.name} cannot be searched: {_RESERVED[p.name]}")
        if key.kind == "int" and isinstance(p, FloatParam):
            raise ConfigError(f"search.space.{p.name}: {p.name} is an integer; use type = 'int'")
        if key.kind in ("str", "bool", "int_list", "float_list", "str_or_table", "table_list") and isinstance(p, (FloatParam,
                                                                                                    IntParam)):
            raise ConfigError(f"search.space.{p.name}: {p.name} is not a number; use type = 'categorical' "
                              "or 'fixed'")
        if isinstance(p, (FloatParam, IntParam)):
            probes = [p.low, p.high]
        elif isinstance(p, CategoricalParam):
            probes = p.choices
        else:
            probes = [p.value] if isinstance(p, FixedParam) else []
        for v in probes:
            try:
                RunConfig.from_dict(apply_params(base_given, {p.name: v}))
            except ConfigError as e:
                msg = str(e).removeprefix("config: ")
                raise ConfigError(f"search.space.{p.name}: {json.dumps(v)} is not a valid value ({msg})") from None


def parse_search(table: Mapping[str, Any] | None, *, config_seed: int = 0, config_keys: bool = True,
                 name: str | None = None) -> SearchSpec:
    """The ``[search]`` table -> :class:`SearchSpec` (validated; one-line errors)."""
    table = dict(table or {})
    if not isinstance(table, dict):
        raise ConfigError(f"search must be a table ([search]), got {table!r}")
    for k in table:
        if k not in SEARCH_KEYS:
            near = difflib.get_close_matches(k, list(SEARCH_KEYS), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"search: unknown key '{k}'{hint} (allowed: {', '.join(SEARCH_KEYS)})")
    if "manual" in table:
        manual = table["manual"]
        if isinstance(manual, list) and config_keys:
            table["manual"] = [_flatten_config_table(c) if isinstance(c, dict) else c for c in manual]
        elif isinstance(manual, list):
            table["manual"] = [dict(c) if isinstance(c, dict) else c for c in manual]
    strategy_name = table.get("strategy", "manual" if "manual" in table else "random")
    strategy = make_strategy(strategy_name, table)
    space = SearchSpace.from_table(table.get("space"))
    metric = _choice("search.metric", table.get("metric", "val_acc"), list(METRICS))
    spec = SearchSpec(space=space, strategy=strategy, metric=metric)
    if "trials" in table:
        spec.trials = _int("search.trials", table["trials"], 0, 10**7)
    spec.population = _int("search.population", table.get("population", 16), 1, 4096)
    spec.seed = _int("search.seed", table.get("seed", config_seed), 0)
    spec.direction = _choice("search.direction", table.get("direction", METRICS[metric]), ("maximize", "minimize"))
    spec.objective = _choice("search.objective", table.get("objective", "final"), ("final", "best"))
    spec.pruner = _choice("search.pruner", table.get("pruner", "none"), PRUNERS)
    spec.prune_warmup = _int("search.prune_warmup", table.get("prune_warmup", 5), 0, 10**6)
    spec.prune_startup = _int("search.prune_startup", table.get("prune_startup", 5), 0, 10**6)
    for k in ("report", "final_test"):
        if k in table and not isinstance(table[k], bool):
            raise ConfigError(f"search.{k} must be true or false, got {table[k]!r}")
    spec.report = bool(table.get("report", False))
    spec.final_test = bool(table.get("final_test", True))
    spec.max_retries = _int("search.max_retries", table.get("max_retries", 2), 0, 100)
    spec.heartbeat = _int("search.heartbeat", table.get("heartbeat", 10), 1, 3600)
    spec.grace = _int("search.grace", table.get("grace", max(60, 6 * spec.heartbeat)), 1, 10**6)
    if spec.grace <= spec.heartbeat:
        raise ConfigError(f"search.grace must be > search.heartbeat ({spec.heartbeat} s) so a live trial is "
                          f"never declared dead, got {spec.grace}")
    for k in ("study", "storage"):
        if k in table and (not isinstance(table[k], str) or not table[k]):
            raise ConfigError(f"search.{k} must be a non-empty string, got {table[k]!r}")
    spec.study = table.get("study", name)
    spec.storage = table.get("storage")
    if "scatter" in table:
        sc = table["scatter"]
        if not isinstance(sc, list) or len(sc) != 2 or not all(isinstance(s, str) for s in sc):
            raise ConfigError(f"search.scatter must list two parameter names, got {sc!r}")
        spec.scatter = list(sc)
    spec.curves = _int("search.curves", table.get("curves", 10), 0, 1000)
    spec.importance_trials = _int("search.importance_trials", table.get("importance_trials", 300), 10, 10**6)
    effective = spec.effective_space()
    if spec.scatter:
        for s in spec.scatter:
            if s not in effective:
                raise ConfigError(f"search.scatter: '{s}' is not a parameter of the space "
                                  f"(have: {', '.join(effective.params)})")
    return spec


def load_search(path: str | Path | None = None, overrides: Sequence[str] = (), *, given: Mapping[str, Any] | None = None,
                search: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], SearchSpec]:
    """Read a search config (a file, or ``given``), apply ``--set`` overrides and the ``search`` keys
    (e.g. ``{"trials": 20}`` from the command line), and split it into the trainlab config
    (unresolved, validated) and the :class:`SearchSpec`."""
    raw = read_toml(path) if path is not None else copy.deepcopy(dict(given or {}))
    space_sets = [o for o in overrides if o.split("=", 1)[0].strip().startswith("search.space.")]
    raw = apply_overrides(raw, [o for o in overrides if o not in space_sets])
    for text in space_sets:
        _override_space(raw, text)
    table = raw.pop("search", None)
    if table is None:
        raise ConfigError(f"{path or 'config'}: no [search] table; a search config needs [search] with a "
                          "strategy and [search.space] (see examples/search/)")
    if not isinstance(table, dict):
        raise ConfigError(f"search must be a table ([search]), got {table!r}")
    table.update({k: v for k, v in (search or {}).items() if v is not None})
    base = RunConfig.from_dict(raw)  # the base config must be valid on its own
    if base.data.val == 0:
        raise ConfigError("search needs a validation split to select on: data.val must be > 0")
    spec = parse_search(table, config_seed=base.seed, name=Path(path).stem if path is not None else None)
    check_space_for_config(spec.effective_space(), raw)
    if spec.metric == "val_acc" and base.loss.name != "cross_entropy" and "loss.name" not in spec.space:
        raise ConfigError(f"search.metric = 'val_acc' needs an accuracy, but loss.name = "
                          f"'{base.loss.name}' has none; use metric = 'val_loss'")
    return raw, spec


def _override_space(raw: dict[str, Any], text: str) -> None:
    """``--set search.space.<param>.<field>=V`` (e.g. ``search.space.optim.lr.high=0.5``) or
    ``--set search.space.<param>={...}``: a parameter's names contain dots (``"optim.lr"``), so the key is
    matched against the parameters the config has, longest first, instead of being split at every dot."""
    from trainlab.config import parse_override

    parts, value = parse_override(text)
    rest = ".".join(parts[2:])
    search = raw.setdefault("search", {})
    if not isinstance(search, dict):
        raise ConfigError(f"--set {'.'.join(parts)}: search is not a table")
    space = search.setdefault("space", {})
    if not isinstance(space, dict):
        raise ConfigError(f"--set {'.'.join(parts)}: search.space is not a table")
    from trainlab.search._space import _flatten_space

    space = search["space"] = dict(_flatten_space(space))  # [search.space.optim.lr] -> "optim.lr"
    for name in sorted(space, key=len, reverse=True):
        if rest == name:
            space[name] = value
            return
        if rest.startswith(name + ".") and isinstance(space[name], dict):
            space[name][rest[len(name) + 1:]] = value
            return
    if isinstance(value, dict):  # a new parameter, given whole
        space[rest] = value
        return
    have = ", ".join(sorted(space)) or "none"
    raise ConfigError(f"--set search.space.{rest}: no parameter of [search.space] matches (it has: {have}); "
                      f"set a field of one (search.space.<name>.high=...) or give a new one whole: "
                      f"--set 'search.space.<config key>={{type = \"float\", low = ..., high = ...}}'")


def canonical_base(given: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved base config without the keys that do not change results (for resume checks)."""
    cfg = RunConfig.from_dict(given).to_dict()  # a plain copy, trimmed to what changes results
    for k in _VOLATILE:
        parts = k.split(".")
        node = cfg
        for p in parts[:-1]:
            node = node[p]
        node.pop(parts[-1], None)
    return json.loads(json.dumps(cfg))


def strategy_names() -> list[str]:
    return list(STRATEGIES)
