"""Search spaces and the [search] table: parsing, validation messages, grids, config checks."""

from __future__ import annotations

import itertools
import math

import pytest

from trainlab.errors import ConfigError
from trainlab.search import (CategoricalParam, FixedParam, FloatParam, IntParam, SearchSpace, check_space_for_config,
                             load_search, parse_search)
from trainlab.search.testing import tiny_search_config


def space(table):
    return SearchSpace.from_table(table)


def test_types_and_shorthands():
    s = space({
        "optim.lr": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "train.batch_size": {"type": "int", "low": 32, "high": 256, "log": True},
        "optim.name": ["sgd", "adam"],                      # list -> categorical
        "train.epochs": 5,                                  # scalar -> fixed
        "model": {"hidden": {"type": "categorical", "choices": [[100, 100], [50]]}},  # nested = dotted
    })
    assert isinstance(s["optim.lr"], FloatParam) and s["optim.lr"].log
    assert isinstance(s["train.batch_size"], IntParam)
    assert isinstance(s["optim.name"], CategoricalParam)
    assert isinstance(s["train.epochs"], FixedParam)
    assert isinstance(s["model.hidden"], CategoricalParam)
    assert [p.name for p in s.sampled] == ["optim.lr", "train.batch_size", "optim.name", "model.hidden"]
    # lists travel through Optuna as JSON text and come back as lists
    enc = s["model.hidden"].distribution().choices
    assert all(isinstance(c, str) for c in enc)
    assert s.decode({"model.hidden": enc[0], "optim.name": "adam"}) == {
        "optim.name": "adam", "train.epochs": 5, "model.hidden": [100, 100]}


@pytest.mark.parametrize("table, message", [
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0, got low=0.0"),
    ({"type": "float", "low": -1.0, "high": 1.0, "log": True}, "log scale needs low > 0, got low=-1.0"),
    ({"type": "float", "low": 0.1, "high": 0.01}, "low < high must hold, got low=0.1, high=0.01"),
    ({"type": "int", "low": 5, "high": 5}, "low < high must hold, got low=5, high=5"),
    ({"type": "float", "low": 1e-4, "high": 1.0, "log": True, "step": 0.1}, "step cannot be combined with log"),
    ({"type": "categorical", "choices": []}, "choices must be a non-empty list, got []"),
    ({"type": "categorical", "choices": "sgd"}, "choices must be a non-empty list, got 'sgd'"),
    ({"type": "categorical"}, "type = 'categorical' needs choices"),
    ({"type": "flaot", "low": 0, "high": 1}, "type must be one of 'float', 'int', 'categorical', 'fixed', got 'flaot'"),
    ({"type": "float", "low": 0, "hi": 1}, "unknown option 'hi' for type = 'float' (allowed: low, high, log, step"),
    ({"type": "float", "high": 1}, "type = 'float' needs low"),
    ({"type": "int", "low": 1.5, "high": 4}, "low must be an integer, got 1.5"),
    ({"type": "float", "low": 0, "high": 1, "step": -0.1}, "step must be > 0, got step=-0.1"),
    ({"type": "float", "low": 0, "high": 1, "values": [0.5, 2.0]}, "values must lie in [low, high]"),
    ({"type": "float", "low": 0, "high": 1, "points": 1}, "points must be >= 2"),
])
def test_space_errors_state_the_rule_and_the_value(table, message):
    with pytest.raises(ConfigError) as e:
        space({"optim.lr": table})
    assert message in str(e.value)
    assert str(e.value).startswith("search.space.optim.lr:")


def test_grid_values():
    assert FloatParam("x", 1e-6, 1e-2, log=True, points=5).grid_values() == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3,
                                                                                            1e-2])
    g = FloatParam("x", 1e-6, 1e-2, log=True, points=5).grid_values()
    assert g[0] == 1e-6 and g[-1] == 1e-2  # exact ends: no exp(log(x)) round-off outside [low, high]
    assert FloatParam("x", 0.0, 1.0, step=0.25).grid_values() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert IntParam("n", 1, 7, step=2).grid_values() == [1, 3, 5, 7]
    assert IntParam("n", 1, 1000, log=True, points=4).grid_values() == [1, 10, 100, 1000]
    with pytest.raises(ConfigError, match="grid search needs a finite set of values"):
        FloatParam("x", 0.0, 1.0).grid_values()


def test_grid_is_exactly_the_cartesian_product():
    s = SearchSpace([FloatParam("a", 1e-3, 1e-1, log=True, points=3), IntParam("b", 1, 4),
                     CategoricalParam("c", ["x", [1, 2]]), FixedParam("d", 7)])
    pts = s.grid()
    expected = list(itertools.product(s["a"].grid_values(), [1, 2, 3, 4], s["c"].encoded))
    assert [(p["a"], p["b"], p["c"]) for p in pts] == expected
    assert len(pts) == 3 * 4 * 2 and all("d" not in p for p in pts)  # fixed values are not gridded


def test_search_table_errors():
    with pytest.raises(ConfigError, match=r"search: unknown key 'trails' \(did you mean 'trials'\?\)"):
        parse_search({"trails": 10})
    with pytest.raises(ConfigError, match="search.strategy must be one of 'manual', 'grid', 'random', "
                                          "'coarse-to-fine', 'tpe', 'gp', got 'annealing'"):
        parse_search({"strategy": "annealing"})
    with pytest.raises(ConfigError, match=r"search.metric must be one of 'val_acc', 'val_loss', got 'test_acc'"):
        parse_search({"metric": "test_acc", "space": {"x": [1, 2]}})
    with pytest.raises(ConfigError, match=r"search.coarse_to_fine: unknown option 'top' for strategy "
                                          r"'coarse-to-fine' \(allowed: rounds, top_k"):
        parse_search({"strategy": "coarse-to-fine", "coarse_to_fine": {"top": 3}})
    with pytest.raises(ConfigError, match="search.grace must be > search.heartbeat"):
        parse_search({"heartbeat": 30, "grace": 20})
    spec = parse_search({"strategy": "tpe", "trials": 5, "space": {"x": {"type": "float", "low": 0, "high": 1}}})
    with pytest.raises(ConfigError, match="search.scatter: 'y' is not a parameter"):
        parse_search({"space": {"x": [1, 2]}, "scatter": ["x", "y"]})
    assert spec.strategy.name == "tpe" and spec.trials == 5 and spec.direction == "maximize"
    assert parse_search({"metric": "val_loss", "space": {"x": [1, 2]}}).direction == "minimize"


def test_grid_trials_must_match_points():
    spec = parse_search({"strategy": "grid", "space": {"x": [1, 2, 3]}})
    assert spec.budget() == 3
    spec = parse_search({"strategy": "grid", "trials": 5, "space": {"x": [1, 2, 3]}})
    with pytest.raises(ConfigError, match="search.trials is 5 but the grid strategy has 3 points"):
        spec.budget()
    with pytest.raises(ConfigError, match="search.trials is missing"):
        parse_search({"strategy": "random", "space": {"x": [1, 2]}}).budget()


@pytest.mark.parametrize("table, message", [
    ({"optim.lrr": [0.1]}, "search.space.optim.lrr: not a config key (did you mean 'optim.lr'?)"),
    ({"seed": [1, 2]}, "search.space.seed cannot be searched"),
    ({"population.size": [1, 2]}, "search.space.population.size cannot be searched"),
    ({"train.epochs": {"type": "float", "low": 1, "high": 5}}, "train.epochs is an integer; use type = 'int'"),
    ({"optim.name": {"type": "int", "low": 1, "high": 5}}, "optim.name is not a number; use type = 'categorical'"),
    ({"model.dropout": {"type": "float", "low": 0.0, "high": 1.0}},
     "search.space.model.dropout: 1.0 is not a valid value (model.dropout must be < 1, got 1.0)"),
    ({"optim.name": ["sgd", "adamm"]}, "\"adamm\" is not a valid value (optim.name must be one of"),
])
def test_space_is_checked_against_the_config_schema(table, message):
    with pytest.raises(ConfigError) as e:
        check_space_for_config(SearchSpace.from_table(table), {})
    assert message in str(e.value)


def test_load_search_splits_config_and_search(tmp_path):
    from trainlab.search.testing import write_toml

    cfg = tiny_search_config()
    base, spec = load_search(write_toml(tmp_path / "s.toml", cfg), ["train.epochs=4", "search.population=3"],
                             search={"trials": 9})
    assert "search" not in base and base["train"]["epochs"] == 4
    assert spec.trials == 9 and spec.population == 3 and spec.study == "s" and spec.seed == 0
    bad = tiny_search_config(data={"val": 0})
    with pytest.raises(ConfigError, match="search needs a validation split to select on: data.val must be > 0"):
        load_search(given=bad)
    with pytest.raises(ConfigError, match="no \\[search\\] table"):
        load_search(given={"train": {"epochs": 1}})


def test_manual_configs_accept_dotted_and_nested_keys():
    spec = parse_search({"manual": [{"optim.lr": 0.1, "model.hidden": [10]}, {"optim": {"lr": 0.01}}]})
    assert spec.strategy.name == "manual" and spec.budget() == 2
    s = spec.effective_space()
    assert set(s.params) == {"optim.lr", "model.hidden"}
    pts = spec.strategy.points(s)
    assert s.decode(pts[0]) == {"optim.lr": 0.1, "model.hidden": [10]}
    assert s.decode(pts[1]) == {"optim.lr": 0.01}
    with pytest.raises(ConfigError, match="the manual strategy takes its trials from"):
        parse_search({"manual": [{"optim.lr": 0.1}], "space": {"optim.momentum": [0.5, 0.9]}}).effective_space()


def test_log_uniform_draws_spread_evenly_over_decades():
    import numpy as np

    from trainlab.search._samplers import derive_seed, draw

    d = FloatParam("lr", 1e-6, 1e-2, log=True).distribution()
    xs = np.array([draw(d, np.random.default_rng(derive_seed(3, s, "lr"))) for s in range(4000)])
    counts = np.histogram(np.log10(xs), bins=4, range=(-6, -2))[0]
    assert all(abs(c - 1000) < 120 for c in counts), counts  # uniform in the exponent, not in the value
    assert xs.min() >= 1e-6 and xs.max() <= 1e-2
    u = FloatParam("m", 0.0, 1.0).distribution()
    ys = np.array([draw(u, np.random.default_rng(derive_seed(3, s, "m"))) for s in range(4000)])
    assert abs(ys.mean() - 0.5) < 0.02 and math.isclose(np.median(ys), 0.5, abs_tol=0.03)


def test_every_example_config_parses():
    import glob

    files = sorted(glob.glob("examples/search/*.toml"))
    assert len(files) >= 5
    for f in files:
        base, spec = load_search(f)
        assert spec.budget() > 0 and spec.effective_space().sampled, f
