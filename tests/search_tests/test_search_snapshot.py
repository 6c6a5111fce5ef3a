"""The report is a function of a plain snapshot (issue 15): made by hand from trials, with no tuner, storage or
evaluator, it gives the counts and the best; a tuner's own snapshot gives the result its run returned.
Slot and outcome states are enums that still equal their stored strings; pruners are classes by name."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
import pytest

from trainlab.errors import ConfigError
from trainlab.search import (FloatParam, FunctionEvaluator, Outcome, Random, SearchSpace, SearchSpec, SlotState,
                             StudySnapshot, TrialOutcome, Tuner, make_pruner)
from trainlab.search._report import build_result
from trainlab.search._vocab import RETRY, SLOT

SPACE = SearchSpace([FloatParam("x", 0.0, 1.0)])


def _trial(number: int, slot: int, state: TrialState, value: float | None = None, **system):
    t = create_trial(state=state, value=value, params={"x": 0.1 * (number + 1)},
                     distributions={"x": FloatDistribution(0.0, 1.0)}, system_attrs={SLOT: slot, **system})
    t.number = number
    return t


def test_the_report_is_a_function_of_a_hand_made_snapshot() -> None:
    trials = [_trial(0, 0, TrialState.COMPLETE, 0.5), _trial(1, 1, TrialState.COMPLETE, 0.9),
              _trial(2, 2, TrialState.PRUNED, 0.2), _trial(3, 3, TrialState.FAIL, **{RETRY: False}),
              _trial(4, 4, TrialState.FAIL, **{RETRY: True}), _trial(5, 5, TrialState.RUNNING)]
    spec = SearchSpec(space=SPACE, strategy=Random(), trials=8, max_retries=2)
    snap = StudySnapshot(study="hand", storage="memory", storage_kind="memory", spec=spec, space=SPACE, budget=8,
                         trials=trials, attrs={})
    assert [s.status for s in snap.ledger.slots.values()] == [SlotState.COMPLETE, SlotState.COMPLETE,
                                                               SlotState.PRUNED, SlotState.FAILED, SlotState.RETRY,
                                                               SlotState.LIVE]
    r = build_result(snap)
    assert r.counts == {"budget": 8, "with_result": 4, "complete": 2, "pruned": 1, "failed": 1, "running": 1,
                        "waiting_retry": 1, "trial_records": 6, "retries": 0}
    assert not r.finished and r.best["number"] == 1 and r.best["value"] == 0.9 and r.files == {}
    assert [row["counts"] for row in r.trials] == [True, True, True, True, False, False]


def test_a_tuners_snapshot_gives_the_result_of_its_run(tmp_path) -> None:
    spec = SearchSpec(space=SPACE, strategy=Random(), trials=6, population=3)
    t = Tuner(spec, evaluator=FunctionEvaluator(lambda v: -abs(v["x"] - 0.3)),
              storage=f"sqlite:///{tmp_path}/s.db", study="s")
    ran = t.run()
    t._open(create=False)
    try:
        again = build_result(t.snapshot())
    finally:
        t.store.close()
    assert again.counts == ran.counts and again.best == ran.best and again.finished
    assert again.trials == ran.trials


def test_states_are_enums_equal_to_their_stored_strings() -> None:
    assert SlotState.LIVE == "live" and SlotState.RETRY.decided is False and SlotState.PRUNED.decided
    o = TrialOutcome.complete(1.0)
    assert o.state is Outcome.COMPLETE and o.state == "complete"
    assert TrialOutcome("pruned").state is Outcome.PRUNED
    with pytest.raises(ValueError):
        TrialOutcome("finished")


@pytest.mark.parametrize(("name", "cls"), [("none", optuna.pruners.NopPruner),
                                           ("median", optuna.pruners.MedianPruner),
                                           ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
                                           ("hyperband", optuna.pruners.HyperbandPruner)])
def test_pruners_are_classes_resolved_by_their_config_name(name, cls) -> None:
    p = make_pruner(name, warmup=2, startup=4)
    assert p.name == name and type(p.optuna()) is cls and p.prunes == (name != "none")
    assert p.describe() == (name if name == "none" else {"name": name, "warmup": 2, "startup": 4})


def test_an_unknown_pruner_is_one_line_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"search.pruner must be one of 'none', 'median', 'successive_halving', "
                                          r"'hyperband', got 'asha'"):
        make_pruner("asha")
