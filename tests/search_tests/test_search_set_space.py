"""Issue 17, item 8: ``--set search.space.optim.lr.high=...`` overrides a parameter of the search space from
the command line (it said "did you mean 'optim.lr'?" and could not)."""

from __future__ import annotations

import pytest

from trainlab.errors import ConfigError
from trainlab.search._spec import load_search


def _lr(spec):
    return next(p for p in spec.space if p.name == "optim.lr")


def test_a_field_of_a_dotted_parameter_is_overridden():
    _, spec = load_search("examples/search/bayesian.toml", ["search.space.optim.lr.high=0.05",
                                                            "search.space.optim.lr.log=false"])
    p = _lr(spec)
    assert p.high == 0.05 and p.low == 1e-4 and p.log is False


def test_a_nested_table_parameter_and_a_whole_new_parameter():
    _, spec = load_search("examples/search/grid.toml", ["search.space.optim.lr.low=0.001"])
    assert _lr(spec).low == 0.001
    _, spec = load_search("examples/search/bayesian.toml",
                          ['search.space.optim.lr={type = "float", low = 0.01, high = 0.1}'])
    assert (_lr(spec).low, _lr(spec).high, _lr(spec).log) == (0.01, 0.1, False)


def test_an_unknown_parameter_field_is_one_clear_line():
    with pytest.raises(ConfigError, match=r"no parameter of \[search.space\] matches.*optim.lr"):
        load_search("examples/search/bayesian.toml", ["search.space.optim.lrr.high=0.05"])


def test_an_out_of_range_override_is_still_validated():
    with pytest.raises(ConfigError, match="search.space.optim.lr"):
        load_search("examples/search/bayesian.toml", ["search.space.optim.lr.high=-1"])
