"""Each step of the doctor judged on plain numbers (no training): the findings, the verdict, the summary
and the numbers of doctor.json follow from the step's data alone. Plus the severity words, and the
rule that the doctor's probes observe a model without changing it."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.diagnose import Finding, Severity
from trainlab.diagnose._bn_batch import BT
from trainlab.diagnose._doctor import STEPS
from trainlab.diagnose._lr_range import LRRangeResult
from trainlab.diagnose._severity import worst
from trainlab.diagnose._step import HistoryArrays, StepResult
from trainlab.diagnose._step_attribution import AttributionData, gap_to_explain
from trainlab.diagnose._step_curves import CurvesData
from trainlab.diagnose._step_grid import GridData
from trainlab.diagnose._step_initial import InitialLossData
from trainlab.diagnose._step_overfit import OverfitData
from trainlab.diagnose._step_range import RangeData

torch.set_num_threads(1)

LN10 = math.log(10)
TABLE = [{"index": 0, "name": "0:Linear", "type": "Linear", "role": "weight", "family": None, "weight_shape": [4, 3]},
         {"index": 1, "name": "1:ReLU", "type": "ReLU", "role": "activation", "family": "relu", "weight_shape": None},
         {"index": 2, "name": "2:Linear", "type": "Linear", "role": "weight", "family": None, "weight_shape": [3, 2]}]


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


# ---- the words ----------------------------------------------------------------------------------


def test_severity_is_a_string_and_orders_the_verdicts():
    assert Severity.WARN == "warn" and f"{Severity.FAIL}" == "fail" and Severity("ok") is Severity.OK
    assert worst([]) == Severity.OK
    assert worst(["info", "skip"]) == Severity.OK  # info and skip never raise a verdict
    assert worst([Severity.WARN, "fail", "info"]) == Severity.FAIL
    assert Finding("x", "warn", "m").severity is Severity.WARN  # a plain word is read as the enum
    with pytest.raises(ValueError):
        Finding("x", "bad", "m")


# ---- step 1 -------------------------------------------------------------------------------------


def _initial(loss: float = LN10, *, ce: bool = True, summary: dict | None = None, bn: dict | None = None,
             reference: float = LN10) -> InitialLossData:
    return InitialLossData(loss=loss, reference=reference, reference_kind="ln C = ln 10" if ce else "the variance",
                           cross_entropy=ce, examples=100, regularization_turned_off=["model.dropout"],
                           probe={"layers": {}, "summary": summary or {}}, table=TABLE, bn_batch_noise=bn)


def test_initial_loss_judge():
    step = STEPS[1]
    healthy = _initial(1.04 * LN10)
    assert step.judge(healthy) == [] and step.verdict(healthy, []) == Severity.OK
    assert step.advice(healthy, [])[-1].startswith("the untrained net is uninformed")
    assert "ratio 1.040; regularization off (model.dropout)" in step.summary(healthy, [])
    high = step.judge(_initial(6.0 * LN10))
    assert codes(high) == ["initial_loss_high"] and high[0].severity == Severity.FAIL
    assert step.judge(_initial(1.5 * LN10))[0].severity == Severity.WARN  # between 1.3 and 2: a warning
    mse = step.judge(_initial(3 * 0.09, ce=False, reference=0.09))
    assert codes(mse) == ["initial_loss_high"] and mse[0].severity == Severity.WARN  # MSE: never a failure
    assert codes(step.judge(_initial(0.5 * LN10))) == ["initial_loss_low"]
    assert codes(step.judge(_initial(math.inf))) == ["initial_loss_nonfinite"]
    sym = step.judge(_initial(summary={"min_unit_spread": [0.0]}))
    assert codes(sym) == ["symmetry"] and sym[0].severity == Severity.WARN
    bn = {"batch_size": 4, "mean_noise": 0.4, "var_noise": 0.5, "layer": 1, "expected_mean_noise": 0.4}
    d = _initial(bn=bn)
    assert codes(step.judge(d)) == ["bn_small_batch"] and BT.SMALL_BATCH > 4
    assert step.numbers(d)["bn_batch_noise"] == bn and "bn_batch_noise" not in step.numbers(_initial())


# ---- step 2 -------------------------------------------------------------------------------------


def _overfit(*, reached=(120, None, 140, 60, 30, None), exploded=(None, None, None, None, None, 5),
             final=(0.01, 2.2, 0.9, 0.005, 0.001, math.nan), start: dict | None = None, end: dict | None = None,
             up: float | None = 1e-3, lr: float = 0.1) -> OverfitData:
    factors = [1.0, 0.01, 0.1, 10.0, 100.0, 1000.0]
    P = len(factors)
    L = np.full((10, P), 2.3)
    for m, e in enumerate(exploded):
        if e is not None:
            L[e - 1:, m] = 1e4
    rec = {"layers": {}, "summary": start or {}}
    return OverfitData(examples=100, steps=150, batch_size=100, target=0.99, regularization_turned_off=[], lr=lr,
                       member=0, lrs=[lr * f for f in factors], factors=factors, step_losses=L,
                       final_accuracy=[1.0 if r is not None else 0.3 for r in reached], reached=list(reached),
                       exploded=list(exploded), first_loss=[2.3] * P, final_loss=list(final),
                       update_ratio_median=up, probe={"layers": TABLE, "records": [rec]},
                       end={"layers": {}, "summary": end or {}})


def test_overfit_judge_ok_and_its_warnings():
    step = STEPS[2]
    d = _overfit()
    assert d.ok and step.judge(d) == [] and step.verdict(d, []) == Severity.OK
    assert step.summary(d, []).startswith("reached 99% training accuracy on 100 examples at step 120 (lr 0.1;")
    # a fault the probes saw at the start only warns when the sample was learned anyway
    f = step.judge(_overfit(start={"saturated": [0.5], "saturated_max_layer": [0.6]}))
    assert codes(f) == ["saturation"] and f[0].severity == Severity.WARN
    n = step.numbers(d)
    assert n["reached_target_at_step"] == 120 and n["loss_drop"] == pytest.approx(1 - 0.01 / 2.3)
    assert [r["factor"] for r in n["rates"]] == d.factors and n["augmentation"] == "off"


def test_overfit_judge_tells_the_failures_apart():
    step = STEPS[2]
    # too high: the config's rate exploded, a smaller one learned
    d = _overfit(reached=(None, None, 140, None, None, None), exploded=(4, None, None, 3, 2, 2),
                 final=(math.nan, 2.2, 0.9, math.nan, math.nan, math.nan))
    f = step.judge(d)
    assert codes(f) == ["diverged"] and "learning rate 0.1 is too high; at lr 0.01 it does reach 99%" in f[0].message
    assert f[0].advice == "lower the learning rate to about 0.01" and step.verdict(d, f) == Severity.FAIL
    # bad initialization: the probes at the start show it; no rate helps
    d = _overfit(reached=(None,) * 6, exploded=(None,) * 6, final=(2.3,) * 6, start={"min_unit_spread": [0.0]})
    f = step.judge(d)
    assert codes(f) == ["symmetry"] and f[0].message.startswith("bad initialization: ")
    assert f[0].severity == Severity.FAIL
    # the rate killed the ReLUs (dead at the end, alive at the start)
    d = _overfit(reached=(None, None, 140, None, None, None), exploded=(None,) * 6, final=(1.5,) * 6,
                 start={"dead": [0.01]}, end={"dead": [0.8], "dead_max_layer": [0.9]})
    f = step.judge(d)
    assert codes(f) == ["dead_relu"] and f[0].severity == Severity.FAIL
    assert f[0].message.startswith("the learning rate 0.1 killed the ReLUs: ")
    assert f[0].advice.startswith("lower the learning rate (at 0.01 the sample is learned); ")
    # too low: no progress, a larger rate learns, the weights barely move
    d = _overfit(reached=(None, None, None, 60, 30, None), final=(2.29, 2.3, 2.3, 0.005, 0.001, math.nan),
                 up=1e-7, lr=1e-6)
    f = step.judge(d)
    assert codes(f) == ["lr_too_low"] and "at lr 1e-05 it reaches 99%" in f[0].message
    assert "each step changes the weights by 1.0e-07 of their size" in f[0].message
    # none of the above: it cannot overfit, and says so
    d = _overfit(reached=(None,) * 6, exploded=(None,) * 6, final=(1.0,) * 6, up=1e-3)
    f = step.judge(d)
    assert codes(f) == ["cannot_overfit"]
    assert step.summary(d, f).startswith("did not reach 99% training accuracy on 100 examples in 150 steps")
    # a warning alone does not pass a sample that was not learned
    d = _overfit(reached=(None,) * 6, exploded=(None,) * 6, final=(1.0,) * 6,
                 end={"saturated": [0.5], "saturated_max_layer": [0.5]})
    f = step.judge(d)
    assert codes(f) == ["saturation"] and f[0].severity == Severity.WARN and step.verdict(d, f) == Severity.FAIL


# ---- step 3 -------------------------------------------------------------------------------------


def _range(suggestion: float | None, lr: float = 0.05, restored: bool = True, notes=()) -> RangeData:
    lrs = [0.001, 0.01, 0.1, 1.0]
    res = LRRangeResult(lrs=lrs, losses=np.zeros((3, 4)), smoothed=np.zeros((3, 4)),
                        status=["steady", "steady", "steady", "diverged"], diverged_at=[None, None, None, 2],
                        drop=[0.1, 0.3, 0.5, None], iterations=100, planned=100, stop_reason="completed",
                        suggestion=suggestion, reason="the largest steady rate" if suggestion else "nothing fell",
                        notes=list(notes))
    return RangeData(res, restored, lr, 1e-4, [], (0.1, 1.0))


def test_lr_range_judge():
    step = STEPS[3]
    d = _range(0.1)
    assert step.judge(d) == []
    assert step.summary(d, []).startswith("largest rate whose loss falls steadily within 100 iterations: 0.1 "
                                          "(3 of 4 rates steady, 1 diverged")
    assert step.advice(d, [])[-1] == "the coarse grid (step 4) tries rates from 0.01 to 0.1"
    assert codes(step.judge(_range(0.1, lr=1.0))) == ["lr_above_range"]
    assert codes(step.judge(_range(0.1, lr=1e-4))) == ["lr_below_range"]
    f = step.judge(_range(None, notes=["a note"]))
    assert codes(f) == ["no_suggestion", "note"] and step.summary(_range(None), f) == \
        "no learning rate suggested: nothing fell"
    f = step.judge(_range(0.1, restored=False))
    assert codes(f) == ["restore_failed"] and step.verdict(_range(0.1), f) == Severity.FAIL
    assert step.numbers(d)["members"] == 4


# ---- steps 4 and 5 ------------------------------------------------------------------------------


def _history(val_acc: np.ndarray, diverged: dict | None = None) -> HistoryArrays:
    E, P = val_acc.shape
    val_loss = 1.0 - val_acc
    return HistoryArrays(epoch=np.arange(1, E + 1, dtype=float), step=np.arange(1, E + 1, dtype=float) * 10,
                         values={"train_loss": val_loss * 0.9, "val_loss": val_loss, "val_acc": val_acc},
                         diverged=diverged or {})


def _grid(val_acc: np.ndarray, coarse: bool, diverged: dict | None = None) -> GridData:
    return GridData(coarse, [0.01, 0.1, 1.0], [0.0, 1e-3], "optim.weight_decay", 2, _history(val_acc, diverged),
                    "3 rates x 2 values")


def test_grid_judge_best_member_edges_and_fix():
    acc = np.array([[0.5, 0.8, 0.6, 0.5, 0.85, 0.7], [0.6, 0.9, 0.7, 0.6, 0.88, 0.75]])  # epochs x members
    d = _grid(acc, coarse=True)
    assert d.best_index == (0, 1) and d.best is not None and d.best["member"] == 1
    assert d.best["lr"] == 0.1 and d.best["weight_decay"] == 0.0 and d.best["best_val_acc"] == 0.9
    assert STEPS[4].judge(d) == []  # coarse: no edge, no fix
    assert STEPS[4].advice(d, []) == ["refine around lr 0.1, optim.weight_decay 0"]
    assert STEPS[4].summary(d, []) == "3 rates x 2 values: best lr 0.1, optim.weight_decay 0 (best val acc 0.9000)"
    refined = _grid(acc, coarse=False)
    f = STEPS[5].judge(refined)
    assert codes(f) == ["grid_best"] and f[0].fix["overrides"] == ["optim.lr=0.1", "optim.weight_decay=0.0"]
    assert f[0].fix["val_acc"] == 0.9 and f[0].fix["measured_by"] == "refined grid"
    assert STEPS[5].numbers(refined)["score"] == [[0.6, 0.9, 0.7], [0.6, 0.88, 0.75]]  # best over epochs
    # the best at the grid's largest rate gets a note; a diverged member scores nothing
    edge = _grid(np.array([[0.5, 0.6, 0.95, 0.5, 0.6, 0.7]]), coarse=True, diverged={5: {"step": 3}})
    assert codes(STEPS[4].judge(edge)) == ["best_at_edge"]
    assert STEPS[4].numbers(edge)["diverged"] == [5] and math.isnan(STEPS[4].numbers(edge)["score"][1][2])
    dead = _grid(np.full((1, 6), np.nan), coarse=True, diverged={m: {} for m in range(6)})
    f = STEPS[4].judge(dead)
    assert dead.best is None and codes(f) == ["grid_failed"] and STEPS[4].verdict(dead, f) == Severity.FAIL
    assert STEPS[4].summary(dead, f).endswith("every member diverged") and STEPS[4].figures(dead) == {}


# ---- step 6 -------------------------------------------------------------------------------------


def _curves(train_loss, val_loss, train_acc, val_acc, *, end: dict | None = None, diverged=None,
            refined_best=None) -> CurvesData:
    E = len(train_loss)
    col = lambda v: np.asarray(v, dtype=float).reshape(E, 1)  # noqa: E731
    h = HistoryArrays(epoch=np.arange(1, E + 1, dtype=float), step=np.arange(1, E + 1, dtype=float) * 35,
                      values={"train_loss": col(train_loss), "val_loss": col(val_loss), "train_acc": col(train_acc),
                              "val_acc": col(val_acc)}, diverged=diverged or {})
    return CurvesData(h, np.full((3 * E, 1), float(train_loss[0])), LN10, {"layers": TABLE, "records": [], "examples": 256},
                      {"layers": {}, "summary": end or {}}, 10, 2.0, 0.1, refined_best)


def test_curves_judge():
    step = STEPS[6]
    healthy = _curves([0.5, 0.3, 0.2, 0.15], [0.5, 0.35, 0.3, 0.28], [0.85, 0.9, 0.95, 0.97],
                      [0.85, 0.89, 0.92, 0.93])
    assert [f for f in step.judge(healthy) if f.severity != Severity.INFO] == []
    assert step.summary(healthy, []) == \
        "trained the config as given for 4 epochs: healthy curves (final val acc 0.930)"
    over = _curves([0.5, 0.2, 0.05, 0.01, 0.005, 0.001], [0.5, 0.4, 0.45, 0.6, 0.7, 0.8],
                   [0.85, 0.95, 0.99, 1.0, 1.0, 1.0], [0.85, 0.87, 0.86, 0.84, 0.83, 0.82])
    f = step.judge(over)
    assert "overfitting" in codes(f)
    assert next(x for x in f if x.code == "overfitting").numbers["early_stop_epoch"] == 2.0
    # the probes' dead units: a failure on their own, a warning after a divergence (they follow from it)
    dead = {"dead": [0.6], "dead_max_layer": [0.7]}
    f = step.judge(_curves([0.5, 0.3, 0.2], [0.5, 0.4, 0.3], [0.8, 0.9, 0.95], [0.8, 0.88, 0.9], end=dead))
    assert next(x for x in f if x.code == "dead_relu").severity == Severity.FAIL
    d = _curves([0.5, 0.3, 0.2], [0.5, 0.4, 0.3], [0.8, 0.9, 0.95], [0.8, 0.88, 0.9], end=dead,
                diverged={0: {"step": 12, "epoch": 0.3, "loss": "nan"}})
    f = step.judge(d)
    assert codes(f) == ["diverged", "dead_relu"] and f[1].severity == Severity.WARN
    rb = {"lr": 0.1, "weight_decay": 0.0, "reg_key": "optim.weight_decay", "best_val_acc": 0.95}
    line = step.advice(_curves([0.5, 0.3], [0.5, 0.4], [0.8, 0.9], [0.8, 0.88], refined_best=rb), [])[-1]
    assert line == "the refined grid's best: lr 0.1, optim.weight_decay 0, best val acc 0.950 (this config: 0.880)"
    n = step.numbers(healthy)
    assert n["epochs"] == 4.0 and n["best_val_acc"] == 0.93 and n["probe_overhead"] == pytest.approx(0.1 / 1.9)


# ---- steps 0 and 7 ------------------------------------------------------------------------------


def _stats(rms: float = 0.3) -> dict:
    return {"n": 100, "min": 0.0, "max": 1.0, "mean": 0.13, "std": 0.3, "rms": rms, "nan": 0, "inf": 0}


def test_data_checks_step_summary_and_judge():
    data = {"preprocess": "none", "num_classes": 10, "stats": {"train": _stats(85.5)}, "features": 784,
            "constant_features": 67, "duplicates": {"test": {"count": 0, "fraction": 0.0}}, "shift": 0.02}
    f = STEPS[0].judge(data)
    assert codes(f) == ["inputs_not_normalized"] and STEPS[0].verdict(data, f) == Severity.FAIL
    assert STEPS[0].summary(data, f) == ("training inputs 0..1 (mean 0.13, std 0.3); 67 of 784 features constant; "
                                         "0 val/test duplicates in train; train/test shift 0.020")


def _result(number: int, verdict: str, findings=(), numbers=None) -> StepResult:
    return StepResult(number, STEPS[number].name, verdict, "", dict(numbers or {}), list(findings))


def test_attribution_runs_only_with_a_gap_to_explain():
    assert gap_to_explain({1: _result(1, "ok")}, None)[0] is False
    assert gap_to_explain({2: _result(2, "fail")}, None) == (True, "step(s) 2 failed")
    fix = {"overrides": ["data.rebalance=true"], "val_acc": None, "baseline_val_acc": None, "measured_by": None}
    r0 = _result(0, "warn", [Finding("class_imbalance", "warn", "m", "a", fix=fix)])
    assert gap_to_explain({0: r0}, None) == (True, "class_imbalance: a fix to measure")
    r6 = _result(6, "ok", numbers={"best_val_acc": 0.90})
    go, why = gap_to_explain({6: r6}, {"best_val_acc": 0.93})
    assert go and why == "the refined grid's best (0.930) beats the config as given (0.900)"
    assert gap_to_explain({6: r6}, {"best_val_acc": 0.91})[0] is False  # within GRID_GAP
    skipped = AttributionData("no step failed", None)
    step = STEPS[7]
    assert step.judge(skipped) == [] and step.verdict(skipped, []) == Severity.SKIP
    assert step.summary(skipped, []) == "not run: no step failed"
    assert step.numbers(skipped) == {"reason": "no step failed"}


def test_attribution_revises_the_fixes_it_measured_without_touching_the_old_findings():
    fix = {"overrides": ["data.rebalance=true"], "val_acc": None, "baseline_val_acc": None, "measured_by": None}
    old = Finding("class_imbalance", "warn", "m", "a", fix=dict(fix))
    table = {"rows": [{"name": "as given", "overrides": [], "score": 0.5},
                      {"name": "remedy", "overrides": ["data.rebalance=true"], "score": 0.85}],
             "pairs": [], "as_given": 0.5, "reduced": math.nan, "reference": 0.85, "gap": 0.35}
    data = AttributionData("class_imbalance: a fix to measure", table, 1, 2, 100)
    results = {0: _result(0, "warn", [old])}
    new = STEPS[7].revise(data, results)
    assert list(new) == [0] and new[0][0].fix == {"overrides": ["data.rebalance=true"], "val_acc": 0.85,
                                                  "baseline_val_acc": 0.5, "measured_by": "ablation"}
    assert old.fix == fix and results[0].findings[0] is old  # the earlier result is not edited
    f = STEPS[7].judge(data)
    assert codes(f) == ["cause"] and "recovered" not in table["rows"][1]  # the judge is pure
    assert STEPS[7].numbers(data)["rows"][1]["recovered"] == pytest.approx(1.0)


# ---- probes observe only --------------------------------------------------------------------------


def _settings(model) -> list[dict]:
    """Every layer's plain attributes (settings, modes, flags): what a probe must not change."""
    plain = (str, int, float, bool, type(None))
    return [{k: v for k, v in vars(layer).items() if isinstance(v, plain) and k != "_shared"}
            for layer in model.modules()]


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("extra", [[], ['model.norm="batchnorm"', 'model.bn_inference="population"',
                                        "model.dropout=0.2"]])
def test_probes_leave_the_model_state_and_settings_bitwise_unchanged(extra):
    from trainlab.build import build_run
    from trainlab.config import RunConfig
    from trainlab.diagnose import probe_model
    from trainlab.diagnose._bn_batch import measure as _bn_measure
    from trainlab.diagnose._step_initial import init_probe
    from trainlab.diagnose._step_range import states_equal

    cfg = RunConfig.load("examples/healthy.toml", ["data.train=300", "data.val=100", "data.test=100"] + extra)
    run = build_run(cfg)
    x, y = run.splits.train.x[:64], run.splits.train.y[:64]
    before, settings, rng = _state(run.model), _settings(run.model), run.model.population.get_state()
    probe_model(run.model, x, gradients=False)
    init_probe(run, x, y)
    bn = _bn_measure(run.model, x, 4)
    assert (bn is not None) == ("batchnorm" in " ".join(extra))
    assert states_equal(before, _state(run.model))
    assert _settings(run.model) == settings
    after_rng = run.model.population.get_state()
    assert rng.keys() == after_rng.keys()
    assert all(torch.equal(a, b) for k in rng for a, b in zip(rng[k], after_rng[k]))


def test_no_step_patches_a_built_object():
    """The steps derive a new config and build from it; none assigns to an attribute of a built run."""
    root = Path(__file__).resolve().parents[2] / "trainlab" / "diagnose"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    text = ast.unparse(t)
                    assert not text.startswith(("run.", "grun.")), f"{path.name}:{node.lineno}: {text}"


# ---- --history: the curve reading as a unit -------------------------------------------------------


def test_history_reading_is_a_unit_and_draws_the_curves(tmp_path, capsys):
    import json

    from trainlab.cli import main
    from trainlab.diagnose._curves import READING

    run = tmp_path / "run"
    run.mkdir()
    loss = [2.0, 2.6, 3.1, 4.0, 5.2]
    records = [{"step": 10 * (i + 1), "epoch": float(i + 1), "train_loss": [v], "val_loss": [v + 0.1]}
               for i, v in enumerate(loss)]
    (run / "history.json").write_text(json.dumps({"size": 1, "records": records}))
    curves = READING.measure(run)
    assert curves.train_loss == loss and curves.member == 0
    assert codes(READING.judge(curves)) == ["loss_rising"]
    figs = READING.figures(curves)
    assert list(figs) == ["curves"] and len(figs["curves"][0].axes) == 2
    import matplotlib.pyplot as plt

    plt.close("all")
    assert main(["doctor", "--history", str(run), "--json", "--out", str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["findings"][0]["code"] == "loss_rising"
    assert (tmp_path / "out" / "history_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_doctor_takes_a_run_config_and_diagnoses_one_member():
    from trainlab.config import RunConfig
    from trainlab.diagnose import DoctorOptions, doctor

    cfg = RunConfig.load("examples/healthy.toml", ["data.train=300", "data.val=100", "data.test=100"])
    pop = cfg.as_population({"optim.lr": [0.05, 0.2]})
    rep = doctor(pop, steps="1", options=DoctorOptions.quick(member=1), overrides=["model.dropout=0.1"])
    rep.close_figures()
    assert rep.source == "<config>" and isinstance(rep.config, RunConfig)
    assert rep.config.size == 1 and rep.config.optim.lr == 0.2 and rep.config.model.dropout == 0.1
    assert "model.dropout" in rep.step(1).numbers["regularization_turned_off"]
    assert rep.to_dict()["config"]["optim"]["lr"] == 0.2
    assert pop.model.dropout == 0.0  # the given config is not edited
