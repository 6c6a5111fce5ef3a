"""Trials trained as populations on real (embedded MNIST) data: invariance, grouping, divergence, OOM,
pruning, outputs, and the test split touched once."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from trainlab.config import load_config
from trainlab.search import PopulationEvaluator, TrialJob, group_key, load_search, trial_config, tune
from trainlab.search.testing import tiny_search_config, write_toml

BASE = {k: v for k, v in tiny_search_config(train={"eval_train": True}).items() if k != "search"}


def jobs_for(values, seeds):
    return [TrialJob(number=i, trial_id=i, slot=i, attempt=0, seed=s, params=dict(v), values=dict(v))
            for i, (v, s) in enumerate(zip(values, seeds))]


def test_a_trial_in_a_population_equals_the_trial_alone():
    values = [{"optim.lr": 0.3, "optim.weight_decay": 1e-5}, {"optim.lr": 0.05, "optim.weight_decay": 1e-7},
              {"optim.lr": 0.01, "optim.weight_decay": 3e-6}]
    seeds = [11, 22, 33]
    ev = PopulationEvaluator(BASE)
    together = ev(jobs_for(values, seeds))
    assert {o.attrs["population_size"] for o in together} == {3}
    for v, s, o in zip(values, seeds, together):
        alone = ev(jobs_for([v], [s]))[0]
        assert alone.attrs["population_size"] == 1
        assert o.state == alone.state == "complete"
        assert o.value == pytest.approx(alone.value, abs=1e-9)
        for k in ("train_loss", "val_loss", "val_acc"):
            np.testing.assert_allclose(o.attrs["curves"][k], alone.attrs["curves"][k], rtol=1e-4, atol=1e-5)


def test_trials_are_grouped_by_what_is_not_per_member():
    a = trial_config(BASE, {"optim.lr": 0.1}, 1)
    b = trial_config(BASE, {"optim.lr": 0.01, "optim.weight_decay": 1e-4}, 2)
    assert group_key(a) != group_key(b)  # weight decay zero vs non-zero changes what is computed
    c = trial_config(BASE, {"optim.lr": 0.01, "optim.weight_decay": 1e-3}, 3)
    assert group_key(b) == group_key(c)
    assert group_key(c) != group_key(trial_config(BASE, {"optim.lr": 0.01, "optim.weight_decay": 1e-3,
                                                         "optim.name": "momentum"}, 3))
    assert group_key(c) != group_key(trial_config(BASE, {"optim.lr": 0.01, "optim.weight_decay": 1e-3,
                                                         "model.hidden": [16]}, 3))
    ev = PopulationEvaluator(BASE)
    outs = ev(jobs_for([{"optim.lr": 0.1, "optim.name": "sgd"}, {"optim.lr": 0.1, "optim.name": "momentum"},
                        {"optim.lr": 0.2, "optim.name": "sgd"}], [1, 2, 3]))
    assert [o.attrs["population_size"] for o in outs] == [2, 1, 2]
    assert outs[0].attrs["population"] == outs[2].attrs["population"] != outs[1].attrs["population"]


def test_a_diverged_member_is_a_failed_trial_with_its_reason_and_the_others_go_on():
    base = dict(BASE, loss={"name": "mse"})
    outs = PopulationEvaluator(base, metric="val_loss")(jobs_for([{"optim.lr": 0.1}, {"optim.lr": 1e5}], [1, 2]))
    assert outs[0].state == "complete" and outs[0].value < 1.0
    import re

    assert outs[1].state == "failed" and re.fullmatch(r"diverged at epoch [\d.]+ \(step \d+, loss (inf|nan)\)",
                                                      outs[1].reason), outs[1].reason
    assert outs[1].impute and not outs[1].retry
    from trainlab.errors import ConfigError

    with pytest.raises(ConfigError, match="search.metric = 'val_acc' needs an accuracy, but loss.name = 'mse'"):
        load_search(given=tiny_search_config(loss={"name": "mse"}))


def test_an_invalid_combination_is_a_failed_trial_not_a_crash():
    outs = PopulationEvaluator(BASE)(jobs_for([{"optim.lr": 0.1}, {"optim.lr": -1.0}], [1, 2]))
    assert outs[0].state == "complete"
    assert outs[1].state == "failed" and outs[1].reason == "invalid config: optim.lr must be > 0, got -1.0"


def test_out_of_memory_splits_the_population_then_fails_alone(monkeypatch):
    import trainlab.build as build

    real = build.build_run

    def small_only(cfg, **kw):
        if cfg.size > 1:
            raise MemoryError
        return real(cfg, **kw)

    monkeypatch.setattr(build, "build_run", small_only)
    outs = PopulationEvaluator(BASE)(jobs_for([{"optim.lr": 0.1}, {"optim.lr": 0.05}, {"optim.lr": 0.02}], [1, 2, 3]))
    assert [o.state for o in outs] == ["complete"] * 3 and {o.attrs["population_size"] for o in outs} == {1}

    def never(cfg, **kw):
        raise MemoryError

    monkeypatch.setattr(build, "build_run", never)
    outs = PopulationEvaluator(BASE)(jobs_for([{"optim.lr": 0.1}, {"optim.lr": 0.05}], [1, 2]))
    assert all(o.state == "failed" and o.reason.startswith("out of memory") and o.impute for o in outs)


def test_pruning_stops_poor_trials_early(tmp_path):
    cfg = tiny_search_config(train={"epochs": 6}, search={
        "trials": 10, "population": 2, "pruner": "median", "prune_startup": 2, "prune_warmup": 1,
        "space": {"optim.lr": {"type": "float", "low": 1e-5, "high": 0.5, "log": True}}})
    r = tune(cfg, storage=f"sqlite:///{tmp_path}/s.db", study="p")
    assert r.counts["with_result"] == 10 and r.counts["pruned"] >= 1
    pruned = [t for t in r.trials if t["state"] == "PRUNED"]
    import optuna

    st = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path}/s.db")
    for t in st.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert max(t.intermediate_values) < 6  # stopped before the last epoch
    assert all(t["value"] is not None for t in pruned)  # a pruned trial keeps its last value


def test_a_whole_study_writes_its_outputs_and_touches_the_test_split_once(tmp_path, monkeypatch):
    calls = []
    real = PopulationEvaluator.final_test

    def counting(self, *a, **kw):
        calls.append(1)
        return real(self, *a, **kw)

    monkeypatch.setattr(PopulationEvaluator, "final_test", counting)
    path = write_toml(tmp_path / "tiny.toml", tiny_search_config(search={"trials": 6, "population": 3}))
    r = tune(path, out=tmp_path / "out")
    out = tmp_path / "out"
    for name in ("trials.csv", "summary.json", "best.toml", "scatter.png", "curves.png", "history.png",
                 "importance.png", "study.db", "best/model.safetensors"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 6 and {r_["state"] for r_ in rows} == {"COMPLETE"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["trials"]["complete"] == 6
    assert summary["test"]["test"]["acc"] is not None and summary["test"]["trial"] == summary["best"]["number"]
    assert summary["test"]["val"]["acc"] == pytest.approx(summary["best"]["value"])  # same model as in its trial
    assert summary["dashboard"].startswith("optuna-dashboard sqlite:///")
    assert summary["timing"]["overhead_per_trial_s"] >= 0
    # selection never saw test numbers
    import optuna

    st = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out}/study.db")
    assert all(not any(k.startswith("test") for k in t.user_attrs["curves"]) for t in st.trials)
    # resuming a finished study re-uses the stored test evaluation: the test split is touched once
    r2 = tune(path, out=tmp_path / "out")
    assert len(calls) == 1 and r2.test == r.test
    # best.toml is a trainlab config that trains the best trial again, alone, to the same number
    cfg = load_config(out / "best.toml")
    assert cfg["population"]["size"] == 1 and cfg["optim"]["lr"] == pytest.approx(r.best["params"]["optim.lr"])
    from trainlab.run import train_run

    _, s = train_run(cfg, tmp_path / "again")
    assert s["members"][0]["final_val_acc"] == pytest.approx(r.best["value"])


def test_the_base_config_is_part_of_the_study_setup(tmp_path):
    cfg = tiny_search_config(search={"trials": 2, "population": 2})
    tune(cfg, storage=f"sqlite:///{tmp_path}/s.db", study="b")
    changed = tiny_search_config(search={"trials": 2, "population": 2}, train={"epochs": 4})
    from trainlab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"base.train.epochs: 3 -> 4"):
        tune(changed, storage=f"sqlite:///{tmp_path}/s.db", study="b")
    # the population size and the device do not change results: allowed
    assert tune(cfg, storage=f"sqlite:///{tmp_path}/s.db", study="b", population=1).finished


def test_load_search_with_the_textbook_example():
    base, spec = load_search("examples/search/textbook_random.toml")
    assert base["model"]["hidden"] == [100] * 6 and base["data"]["train"] == 500 and base["train"]["epochs"] == 50
    assert spec.trials == 100 and spec.strategy.name == "random" and spec.metric == "val_acc"
    lr, wd = spec.space["optim.lr"], spec.space["optim.weight_decay"]
    assert (lr.low, lr.high, lr.log) == (1e-6, 1e-2, True) and (wd.low, wd.high, wd.log) == (1e-8, 1e-4, True)
