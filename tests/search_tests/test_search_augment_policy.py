"""Augmentation policies are searchable: RandAugment's (N, M) and per-op probabilities as per-member
keys, trials with different policies train as one population, each equal to the trial alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainlab.search import PopulationEvaluator, TrialJob, group_key, load_search, trial_config, tune
from trainlab.search.testing import tiny_search_config

BASE = {k: v for k, v in tiny_search_config().items() if k != "search"}
BASE["optim"] = {"name": "sgd", "lr": 0.1}


def jobs_for(values, seeds):
    return [TrialJob(number=i, trial_id=i, slot=i, attempt=0, seed=s, params=dict(v), values=dict(v))
            for i, (v, s) in enumerate(zip(values, seeds))]


def test_policy_trials_share_a_population_and_equal_the_trial_alone():
    values = [{"augment.policy_ops": 1, "augment.policy_magnitude": 3.0},
              {"augment.policy_ops": 3, "augment.policy_magnitude": 9.0},
              {"augment.policy_ops": 2, "augment.policy_magnitude": 6.0, "augment.cutout": 5,
               "augment.cutout_p": 0.5}]
    seeds = [11, 22, 33]
    cfgs = [trial_config(BASE, v, s) for v, s in zip(values, seeds)]
    assert group_key(cfgs[0]) == group_key(cfgs[1]) != group_key(cfgs[2])  # cutout on: another population
    ev = PopulationEvaluator(BASE)
    together = ev(jobs_for(values, seeds))
    assert [o.attrs["population_size"] for o in together] == [2, 2, 1]
    for v, s, o in zip(values[:2], seeds, together):
        alone = ev(jobs_for([v], [s]))[0]
        assert o.state == alone.state == "complete"
        assert o.value == pytest.approx(alone.value, abs=1e-9)
        np.testing.assert_allclose(o.attrs["curves"]["val_loss"], alone.attrs["curves"]["val_loss"],
                                   rtol=1e-4, atol=1e-5)
    # the policy changes training: N = 0 (no augmentation) gives another curve than N = 3, M = 9
    off = ev(jobs_for([{"augment.policy_ops": 0}], [22]))[0]
    assert off.attrs["curves"]["val_loss"] != together[1].attrs["curves"]["val_loss"]


def test_a_tiny_policy_search_completes_and_records_the_policy(tmp_path: Path):
    cfg = tiny_search_config(optim={"name": "sgd", "lr": 0.1}, train={"epochs": 2}, search={
        "strategy": "grid", "population": 6,
        "space": {"augment.policy_ops": {"type": "int", "low": 0, "high": 2},
                  "augment.policy_magnitude": {"type": "categorical", "choices": [0.0, 10.0]}}})
    load_search(given=cfg)  # both keys are valid search parameters
    r = tune(cfg, storage=f"sqlite:///{tmp_path}/s.db", study="policy", out=tmp_path / "out")
    assert r.counts["with_result"] == r.counts["complete"] == 6
    seen = {(t["augment.policy_ops"], t["augment.policy_magnitude"]) for t in r.trials}
    assert seen == {(n, m) for n in (0, 1, 2) for m in (0.0, 10.0)}
    assert set(r.best["params"]) == {"augment.policy_ops", "augment.policy_magnitude"}
    best = (tmp_path / "out" / "best.toml").read_text()
    assert "policy_ops" in best and "policy_magnitude" in best
