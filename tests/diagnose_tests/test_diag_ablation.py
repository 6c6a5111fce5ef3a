"""Attribution by ablation (pure judge, the list of differences, population grouping) and the fixes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trainlab.config import RunConfig, load_config, read_toml
from trainlab.diagnose._ablation import AT, Difference, differences, judge, measure
from trainlab.diagnose._findings import Finding
from trainlab.diagnose._fixes import order_fixes, write_fixed


def _row(name, score, ov=None):
    return {"name": name, "overrides": ov or [f"{name}=0"], "score": score}


def _data(base, scores, reduced, pairs=()):
    rows = [_row("as given", base, [])] + [_row(k, v) for k, v in scores.items()]
    rows.append(_row("all undone (the reduced config)", reduced, ["x=1"]))
    top = max([v for v in scores.values() if math.isfinite(v)] + [reduced])
    return {"rows": rows, "pairs": list(pairs), "as_given": base, "reduced": reduced, "reference": top,
            "gap": top - base if math.isfinite(base) else top}  # as measure() does: a diverged config scores 0


def test_judge_names_the_undo_that_recovers_most():
    f = judge(_data(0.10, {"regularize.l2": 0.88, "optim.weight_decay": 0.11, "train.batch_size": 0.5}, 0.90))
    assert f[0].code == "cause" and "regularize.l2" in f[0].message
    assert f[0].fix == {"overrides": ["regularize.l2=0"], "val_acc": 0.88, "baseline_val_acc": 0.10,
                        "measured_by": "ablation"}
    assert f[0].numbers["recovered"] == pytest.approx(0.78 / 0.80)
    assert [x.code for x in f[1:]] == ["contributes"]  # batch size: 50% of the gap, above a quarter


def test_judge_is_honest_when_no_single_change_explains_the_gap():
    f = judge(_data(0.50, {"a": 0.60, "b": 0.62}, 0.90))
    assert [x.code for x in f] == ["no_single_cause"]
    assert "no single change recovers half" in f[0].message and "a: 0.600" in f[0].message
    assert f[0].fix["overrides"] == ["x=1"] and f[0].fix["val_acc"] == 0.90


def test_judge_names_an_interacting_pair():
    pair = {"name": "a + b", "members": ["a", "b"], "overrides": ["a=0", "b=0"], "score": 0.88}
    f = judge(_data(0.10, {"a": 0.10, "b": 0.11}, 0.90, [pair]))
    assert [x.code for x in f] == ["interacting_pair"]
    assert f[0].numbers["interaction"] > AT.INTERACTION and f[0].fix["overrides"] == ["a=0", "b=0"]


def test_judge_no_gap_and_diverged_baseline():
    assert [x.code for x in judge(_data(0.90, {"a": 0.905}, 0.90))] == ["no_gap"]
    f = judge(_data(math.nan, {"a": 0.85}, 0.86))
    assert f[0].code == "cause" and f[0].fix["baseline_val_acc"] == 0.0 and "diverged" in f[0].message


def test_differences_lists_every_undo():
    cfg = RunConfig.load(None, ["regularize.l2=1.0", "model.dropout=0.5", "augment.rotate=10.0",
                                "model.norm=\"batchnorm\"", "data.preprocess=\"none\"",
                                "model.init_scale=0.0", "loss.label_smoothing=0.1",
                                "data.label_noise=0.3", "optim.lr=0.05"]).member(0)
    d = {x.name.split(" (")[0]: x for x in differences(cfg, lr=0.5)}
    assert d["L2 penalty"].overrides == {"regularize.l2": 0.0} and not d["L2 penalty"].structural
    assert d["dropout"].overrides == {"model.dropout": 0.0}
    assert d["augmentation rotate"].overrides == {"augment.rotate": 0.0}
    assert d["label smoothing"].overrides == {"loss.label_smoothing": 0.0}
    assert d["batch norm -> none"].structural and "batch norm -> layer norm" in d
    assert d["preprocessing none -> minmax"].overrides == {"data.preprocess": "minmax"}
    assert d["init scale 0.0 -> 1"].overrides == {"model.init_scale": 1.0}
    assert d["planted data fault data.label_noise = 0.3"].overrides == {"data.label_noise": 0.0}
    assert any(k.startswith("learning rate 0.05 -> 0.5") for k in d)
    assert {"batch size 100 -> 400", "batch size 100 -> 25"} <= set(d)
    assert differences(RunConfig.load(None, []).member(0), batch_sizes=False) == []


def test_measure_trains_per_member_undos_as_one_population_and_structural_ones_apart():
    cfg = RunConfig.load(None, ["regularize.l2=1.0", "model.dropout=0.5", "data.preprocess=\"none\""]).member(0)
    diffs = differences(cfg, batch_sizes=True)
    calls = []

    def train(config, splits):
        pop = config.to_dict()  # a RunConfig; read as plain lists
        calls.append((pop["population"]["size"], pop["train"]["batch_size"], pop["data"]["preprocess"],
                      pop["regularize"]["l2"], pop["population"]["seeds"]))
        # the L2 undo recovers everything, only where the data are normalized too
        l2 = np.atleast_1d(pop["regularize"]["l2"])
        ok = pop["data"]["preprocess"] == "minmax"
        return np.array([0.9 if (v == 0.0 and ok) else (0.2 if ok else 0.1) for v in l2])

    loads = []
    data = measure(cfg, diffs, train=train, load=lambda c: loads.append(c.data.preprocess) or object())
    # one population for as-given + the two per-member undos; one run per structural undo
    assert calls[0][0] == 3 and calls[0][3] == [1.0, 0.0, 1.0] and len(set(calls[0][4])) == 1
    assert {25, 400} <= {c[1] for c in calls[1:] if c[2] == "none"}  # batch size: structural, a run each
    assert sorted(loads) == ["minmax", "none"]  # each data table loaded once
    assert all(c[4] == calls[0][4][:1] * c[0] for c in calls)  # same seed everywhere
    names = [r["name"] for r in data["rows"]]
    assert names[0] == "as given" and names[-1].startswith("all undone")
    assert data["reduced"] == 0.9 and data["as_given"] == 0.1
    f = judge(data)
    assert f[0].code == "interacting_pair", [x.message for x in f]
    assert set(f[0].fix["overrides"]) == {"regularize.l2=0.0", 'data.preprocess="minmax"'}


def test_fixes_order_and_write(tmp_path):
    found = [(5, Finding("grid_best", "info", "", fix={"overrides": ["optim.lr=0.1"], "val_acc": 0.9,
                                                          "baseline_val_acc": None, "measured_by": "refined grid"})),
             (7, Finding("contributes", "warn", "", fix={"overrides": ["optim.lr=0.2"], "val_acc": 0.6,
                                                           "baseline_val_acc": 0.1, "measured_by": "ablation"})),
             (7, Finding("cause", "fail", "", fix={"overrides": ["regularize.l2=0.0"], "val_acc": 0.88,
                                                     "baseline_val_acc": 0.1, "measured_by": "ablation"})),
             (0, Finding("leakage", "fail", "", fix={"overrides": ["data.leak=0.0"], "val_acc": None,
                                                       "baseline_val_acc": None, "measured_by": None}))]
    fx = order_fixes(found)
    assert [f["overrides"][0] for f in fx] == ["data.leak=0.0", "regularize.l2=0.0", "optim.lr=0.2", "optim.lr=0.1"]
    src = tmp_path / "c.toml"
    src.write_text('seed = 0\n\n[optim]\nname = "momentum"\nlr = 0.05\n\n[regularize]\nl2 = 1.0\n')
    out = write_fixed(src, fx[1])
    assert out == tmp_path / "c.fixed.toml"
    text = out.read_text()
    assert "l2 = 0.0  # doctor: was 1.0 (cause; validation accuracy 0.100 -> 0.880" in text
    assert read_toml(out)["regularize"]["l2"] == 0.0 and read_toml(out)["optim"]["lr"] == 0.05
    out2 = write_fixed(src, {"overrides": ['data.preprocess="minmax"', "model.init_scale=1.0"], "val_acc": None})
    cfg = load_config(out2)
    assert cfg["data"]["preprocess"] == "minmax" and cfg["model"]["init_scale"] == 1.0
    assert out2.read_text().count("# doctor: was") == 2


def test_grids_vary_the_regularization_the_config_has():
    from trainlab.diagnose._step_grid import reg_key as _reg_key, reg_values as _reg_values

    def one(*over):
        return RunConfig.load(None, list(over)).member(0)

    assert _reg_key(one()) == "optim.weight_decay"
    assert _reg_key(one("regularize.l2=1.0", "model.dropout=0.5")) == "regularize.l2"
    assert _reg_key(one("regularize.l1=0.01")) == "regularize.l1"
    assert _reg_key(one("model.dropout=0.5")) == "model.dropout"
    assert _reg_values("regularize.l2", 1.0, (), True, 3) == [0.0, 0.1, 1.0]  # coarse: 0, a tenth, as given
    assert _reg_values("model.dropout", 0.5, (), True, 3) == [0.0, 0.25, 0.5]
    assert _reg_values("regularize.l2", 0.1, (1 / 3, 1.0, 3.0), False, 0) == [0.03333, 0.1, 0.3]
    assert _reg_values("model.dropout", 0.5, (1.0, 3.0), False, 0) == [0.5, 0.95]  # a rate stays below 1
    assert _reg_values("optim.weight_decay", 1e-4, (), True, 3) == []  # the caller's weight-decay grid
