"""schedule.name (and schedule settings) as search parameters: different kinds share one population."""

from __future__ import annotations

import csv

import pytest

from trainlab.errors import ConfigError
from trainlab.search import PopulationEvaluator, TrialJob, load_search, tune
from trainlab.search.testing import tiny_search_config, write_toml

KINDS = ["constant", "step", "cosine", "onecycle"]


def _jobs(values, seeds):
    return [TrialJob(number=i, trial_id=i, slot=i, attempt=0, seed=s, params=dict(v), values=dict(v))
            for i, (v, s) in enumerate(zip(values, seeds))]


def test_schedule_name_is_a_categorical_and_kinds_share_a_population():
    cfg = tiny_search_config(search={"strategy": "grid", "population": 4,
                                     "space": {"schedule.name": {"type": "categorical", "choices": KINDS}}},
                             schedule={"step_size": 1, "gamma": 0.5})
    base, spec = load_search(given=cfg)
    assert spec.space["schedule.name"].choices == KINDS
    ev = PopulationEvaluator(base)
    values = [{"schedule.name": k} for k in KINDS]
    together = ev(_jobs(values, [1, 2, 3, 4]))
    assert [o.attrs["population_size"] for o in together] == [4] * 4  # one population of four kinds
    for v, s, o in zip(values, [1, 2, 3, 4], together):
        alone = ev(_jobs([v], [s]))[0]
        assert o.value == pytest.approx(alone.value, abs=1e-9)
    assert len({o.value for o in together}) > 1  # the kinds did train differently


@pytest.mark.slow
def test_a_search_over_kinds_runs_end_to_end(tmp_path):
    cfg = tiny_search_config(search={"strategy": "grid", "population": 4, "trials": 8,
                                     "space": {"schedule.name": KINDS, "schedule.warmup": [0, 1]}})
    path = write_toml(tmp_path / "kinds.toml", cfg)
    r = tune(path, out=tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert sorted(r_["schedule.name"] for r_ in rows) == sorted(KINDS * 2)
    assert {r_["state"] for r_ in rows} == {"COMPLETE"}
    assert r.best["params"]["schedule.name"] in KINDS


def test_an_unknown_kind_in_the_space_is_refused_before_any_trial():
    cfg = tiny_search_config(search={"strategy": "random", "trials": 2,
                                     "space": {"schedule.name": ["cosine", "linear"]}})
    with pytest.raises(ConfigError, match=r"search.space.schedule.name: \"linear\" is not a valid value"):
        load_search(given=cfg)
