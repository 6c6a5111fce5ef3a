"""The successive-halving and Hyperband pruners stop poor trials early (issue 18, defect 6),
like the median pruner's test in test_search_population.py."""

from __future__ import annotations

import optuna
import pytest

from trainlab.search import tune
from trainlab.search.testing import tiny_search_config


def _study(tmp_path, pruner: str, name: str):
    cfg = tiny_search_config(train={"epochs": 6}, search={
        "trials": 12, "population": 3, "pruner": pruner, "prune_warmup": 1,
        "space": {"optim.lr": {"type": "float", "low": 1e-5, "high": 0.5, "log": True}}})
    url = f"sqlite:///{tmp_path}/s.db"
    r = tune(cfg, storage=url, study=name)
    return r, optuna.load_study(study_name=name, storage=url)


def _check_pruned(r, st) -> list[optuna.trial.FrozenTrial]:
    assert r.counts["with_result"] == 12 and r.counts["pruned"] >= 1
    pruned = [t for t in st.trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert pruned and complete
    for t in pruned:
        assert max(t.intermediate_values) < 6  # stopped before the last epoch
    assert all(t["value"] is not None for t in r.trials if t["state"] == "PRUNED")  # keeps its last value
    return pruned


def test_successive_halving_prunes_at_its_rungs(tmp_path) -> None:
    r, st = _study(tmp_path, "successive_halving", "sha")
    pruned = _check_pruned(r, st)
    # min_resource 1 (prune_warmup), reduction factor 4: rungs at epochs 1 and 4, nowhere else
    assert {max(t.intermediate_values) for t in pruned} <= {1, 4}
    # a trial that went on past a rung was among the best at it: a pruned trial's value at its last rung
    # is worse than (for a maximized val_acc: below) the best trial's value at the same epoch
    best = max((t for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE),
               key=lambda t: t.intermediate_values[max(t.intermediate_values)])
    maximize = st.direction == optuna.study.StudyDirection.MAXIMIZE
    for t in pruned:
        step = max(t.intermediate_values)
        a, b = t.intermediate_values[step], best.intermediate_values[step]
        assert (a <= b) if maximize else (a >= b)
    assert any(k.startswith("completed_rung_") for t in pruned for k in t.system_attrs)


def test_hyperband_prunes_poor_trials_early(tmp_path) -> None:
    r, st = _study(tmp_path, "hyperband", "hb")
    _check_pruned(r, st)
    # Hyperband runs successive halving in brackets: every trial is assigned one
    assert all(any(k.startswith("completed_rung_") for k in t.system_attrs) for t in st.trials
               if t.state == optuna.trial.TrialState.PRUNED)


@pytest.mark.parametrize(("name", "cls"), [("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
                                           ("hyperband", optuna.pruners.HyperbandPruner),
                                           ("median", optuna.pruners.MedianPruner),
                                           ("none", optuna.pruners.NopPruner)])
def test_the_pruner_key_builds_optunas_pruner_with_the_warmup_as_min_resource(name, cls) -> None:
    from trainlab.search import load_search
    from trainlab.search._tuner import Tuner

    _, spec = load_search(given=tiny_search_config(search={"trials": 2, "pruner": name, "prune_warmup": 3}))
    assert spec.pruner == name
    pruner = Tuner._pruner(type("T", (), {"spec": spec})())
    assert type(pruner) is cls
    if name in ("successive_halving", "hyperband"):
        assert pruner._min_resource == 3
