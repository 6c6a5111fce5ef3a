"""The experiment registry, presets and checks: the contract every experiment follows."""

from __future__ import annotations

import math

import pytest

from trainlab.errors import ConfigError, TrainlabError
from trainlab.experiments import (
    BUILTIN,
    PRESETS,
    REGISTRY,
    Check,
    Experiment,
    NotAvailable,
    Preset,
    Registry,
    Result,
    get_experiment,
)

ISSUE_ORDER = ["activations", "zero-init", "init-compare", "vanishing-gradient", "relu", "batchnorm", "bn-inference",
               "bn-effects", "overfitting", "regularizers", "model-size", "width", "l1-vs-l2", "dropout",
               "early-stopping", "augmentation", "small-data", "optimizers", "schedules", "search", "whitening",
               "covariate-shift", "second-order", "ensembles"]  # issue 8's list, then issue 10's; issues 18's and
#                                                                  19's placed beside their topic
DOC_PAGES = {"ensembles", "engine", "layers", "init", "optimizers", "data", "dropout", "noise", "normalization", "regularization",
             "early_stopping", "training", "second_order", "augmentation", "search", "schedules"}


def test_registry_lists_every_experiment_of_the_issue_in_order():
    assert list(REGISTRY) == ISSUE_ORDER
    assert list(BUILTIN) == ISSUE_ORDER


@pytest.mark.parametrize("name", ISSUE_ORDER)
def test_every_experiment_states_its_claim_source_and_docs_page(name):
    exp = REGISTRY[name]
    assert exp.name == name
    assert exp.title and len(exp.claim) > 40
    assert "course note" in exp.source
    assert exp.docs in DOC_PAGES
    ok, why = exp.available()
    assert isinstance(ok, bool)
    if not ok:
        assert len(why) > 20  # says why, not just "no"


def test_an_experiment_whose_technique_has_not_landed_is_not_available():
    """``available() -> (False, why)``: listed, never run (every built-in experiment has landed, so a local one)."""
    exp = Experiment(name="pending", title="Pending", claim="c", source="s", docs="engine", run=None, plot=None,
                     available=lambda: (False, "its technique has not landed in trainlab yet"))
    ok, why = exp.available()
    assert not ok and "not landed" in why
    with pytest.raises(NotAvailable, match="pending.*not landed"):
        exp.run("smoke")
    unwritten = Experiment(name="unwritten", title="U", claim="c", source="s", docs="engine", run=None, plot=None)
    assert unwritten.available() == (False, "this experiment has not been written yet")


@pytest.mark.parametrize("name", ["augmentation", "search"])
def test_augmentation_and_search_have_landed(name):
    ok, why = REGISTRY[name].available()
    assert ok, why


def test_unknown_experiment_is_one_line_listing_the_known_ones():
    with pytest.raises(ConfigError) as e:
        get_experiment("batch-norm")
    msg = str(e.value)
    assert "\n" not in msg and "'batch-norm'" in msg and "batchnorm" in msg and "dropout" in msg
    assert isinstance(e.value, TrainlabError)


def test_presets_are_validated():
    assert PRESETS == ("smoke", "quick", "textbook")
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        Preset(name="fast")
    assert Preset().embedded and not Preset(data="mnist").embedded


def test_one_registration_adds_an_experiment_and_a_missing_module_is_not_available():
    reg = Registry()

    def run(preset):
        return Result(name="toy", preset=preset.name, checks=[Check("c", "claim", 1.0, 0.5)])

    reg.register("toy", Experiment(name="toy", title="Toy", claim="c", source="s", docs="engine", run=run,
                                   plot=lambda r: []))
    reg.register("ghost", "trainlab.experiments.no_such_module")
    assert list(reg) == ["toy", "ghost"]
    result = reg["toy"].run("smoke")
    assert result.passed and result.seconds >= 0 and result.settings["preset"] == "smoke"
    ok, why = reg["ghost"].available()
    assert not ok and "no_such_module" in why
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("toy", "x")
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        reg.get_experiment("nope")


def test_second_order_registration_follows_the_package():
    """Available exactly when trainlab.second_order (with the API it uses) can be imported."""
    import importlib.util

    ok, why = REGISTRY["second-order"].available()
    present = importlib.util.find_spec("trainlab.second_order") is not None
    assert ok == present, why


def test_an_availability_probe_that_raises_means_not_available():
    exp = Experiment(name="x", title="X", claim="c", source="s", docs="engine", run=lambda p: None, plot=None,
                     available=lambda: 1 / 0)
    ok, why = exp.available()
    assert not ok and "ZeroDivisionError" in why


class TestCheck:
    def test_passed_is_computed_from_the_measurement(self):
        assert Check("a", "c", 0.3, 0.2, ">=").passed
        assert not Check("a", "c", 0.1, 0.2, ">=").passed
        assert Check("a", "c", 0.1, 0.2, "<=").passed
        assert Check("a", "c", 1.0, (0.5, 2.0), "between").passed
        assert not Check("a", "c", 2.5, (0.5, 2.0), "between").passed

    def test_a_non_finite_measurement_never_passes(self):
        assert not Check("a", "c", math.nan, 0.0, ">=").passed
        assert not Check("a", "c", math.inf, 0.0, ">=").passed

    def test_bad_op_is_an_error(self):
        with pytest.raises(ConfigError, match="check op"):
            Check("a", "c", 1.0, 0.0, ">")

    def test_to_dict_is_json_safe(self):
        import json

        d = Check("a", "c", math.inf, (0.0, 1.0), "between").to_dict()
        assert d["measured"] is None and d["threshold"] == [0.0, 1.0] and d["passed"] is False
        json.dumps(d, allow_nan=False)
        assert Check("a", "c", 0.5, 1.0, "<=", unit=" s").threshold_text() == "<= 1 s"
