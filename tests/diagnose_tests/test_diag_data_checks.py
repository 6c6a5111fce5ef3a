"""Step 0 (data checks): the judge on plain numbers, the measurements on planted faults, plant_faults itself."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.data import load_splits
from trainlab.data._faults import plant_faults
from trainlab.diagnose._data_checks import DT, judge, label_noise_estimate, measure

torch.set_num_threads(1)


def _stats(rms=0.33, lo=0.0, hi=1.0, nan=0, inf=0):
    return {"n": 100, "min": lo, "max": hi, "mean": 0.13, "std": 0.3, "rms": rms, "nan": nan, "inf": inf}


def _data(**kw):
    d = {"preprocess": "minmax", "num_classes": 10, "stats": {"train": _stats(), "val": _stats(), "test": _stats()},
         "features": 784, "constant_features": 130, "class_counts": {"train": [350] * 10},
         "imbalance_ratio": 1.0, "missing_classes": [], "label_noise_estimate": 0.05,
         "duplicates": {"val": {"count": 0, "fraction": 0.0}, "test": {"count": 0, "fraction": 0.0}}, "shift": 0.024}
    d.update(kw)
    return d


def test_judge_clean_data_has_no_finding():
    assert judge(_data()) == []


def test_judge_names_each_problem_and_its_fix():
    f = judge(_data(stats={"train": _stats(rms=85.5, hi=255.0), "test": _stats(nan=3)}, preprocess="none"))
    codes = [x.code for x in f]
    assert codes == ["nonfinite_inputs", "inputs_not_normalized"]
    norm = f[1]
    assert norm.severity == "fail" and "not normalized" in norm.message and "0 to 255" in norm.message
    assert 'data.preprocess = "minmax"' in norm.advice
    assert norm.fix["overrides"] == ['data.preprocess="minmax"']
    # between the two thresholds: a warning
    assert judge(_data(stats={"train": _stats(rms=5.0)}))[0].severity == "warn"
    f = judge(_data(imbalance_ratio=50.0, class_counts={"train": [350, 7]}))
    assert [x.code for x in f] == ["class_imbalance"] and f[0].fix["overrides"] == ["data.rebalance=true"]
    assert judge(_data(imbalance_ratio=DT.IMBALANCE_WARN * 0.99)) == []
    f = judge(_data(duplicates={"val": {"count": 1, "fraction": 0.002}, "test": {"count": 50, "fraction": 0.05}}))
    assert [(x.code, x.severity) for x in f] == [("leakage", "warn"), ("leakage", "fail")]
    f = judge(_data(label_noise_estimate=0.3))
    assert [(x.code, x.severity) for x in f] == [("label_noise", "fail")]
    assert judge(_data(label_noise_estimate=0.12))[0].severity == "warn"
    f = judge(_data(shift=0.5))
    assert [x.code for x in f] == ["distribution_shift"]
    assert judge(_data(shift=math.nan)) == []


def test_plant_faults_is_seeded_and_does_what_it_says():
    s = load_splits("mnist-5k", val=500, test=1000, seed=0)
    assert plant_faults(s, {}) is s
    n = plant_faults(s, {"label_noise": 0.3}, seed=0)
    changed = (n.train.y != s.train.y).float().mean().item()
    assert changed == pytest.approx(0.3, abs=1 / len(s.train.y))  # always to another class
    assert torch.equal(plant_faults(s, {"label_noise": 0.3}, seed=0).train.y, n.train.y)
    assert not torch.equal(plant_faults(s, {"label_noise": 0.3}, seed=1).train.y, n.train.y)
    assert torch.equal(n.val.y, s.val.y) and torch.equal(n.train.x, s.train.x)
    im = plant_faults(s, {"imbalance": 50.0})
    counts = torch.bincount(im.train.y, minlength=10)
    assert counts[0] == 350 and counts[9] == 7 and (counts[:-1] >= counts[1:]).all()
    rb = plant_faults(s, {"imbalance": 50.0, "rebalance": True})
    assert torch.bincount(rb.train.y, minlength=10).tolist() == [350] * 10
    lk = plant_faults(s, {"leak": 0.5})
    assert len(lk.train.y) == len(s.train.y)
    rows = {r.numpy().tobytes() for r in lk.train.x}
    assert sum(r.numpy().tobytes() in rows for r in s.val.x) == 250
    assert sum(r.numpy().tobytes() in rows for r in s.test.x) == 500


def test_measure_finds_the_planted_faults():
    s = load_splits("mnist-5k", val=500, test=1000, seed=0)
    clean = measure(s, preprocess="minmax")
    assert judge(clean) == []
    assert clean["constant_features"] > 0 and clean["imbalance_ratio"] == pytest.approx(1.0, abs=0.02)
    assert clean["stats"]["train"]["max"] == pytest.approx(1.0)
    leak = measure(plant_faults(s, {"leak": 0.2}), preprocess="minmax")
    assert leak["duplicates"]["val"]["count"] == 100 and leak["duplicates"]["test"]["count"] == 200
    raw = load_splits("mnist-5k", val=500, test=1000, seed=0, preprocess="none")
    assert [f.code for f in judge(measure(raw, preprocess="none"))] == ["inputs_not_normalized"]


def test_label_noise_estimate_grows_with_the_noise():
    s = load_splits("mnist-5k", val=0, test=0, train=2000, seed=0)
    est = [label_noise_estimate(plant_faults(s, {"label_noise": q}).train.x, plant_faults(s, {"label_noise": q}).train.y,
                                10) for q in (0.0, 0.4)]
    assert est[0] < DT.NOISE_WARN < DT.NOISE_FAIL < est[1], est
