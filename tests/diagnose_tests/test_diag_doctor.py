"""The doctor: the right verdict on each planted fault, no false alarm on the healthy config, outputs, CLI."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import re

import pytest
import torch

from trainlab.diagnose import DoctorOptions, doctor, parse_steps
from trainlab.errors import ConfigError, TrainlabError

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
FAULTS = REPO / "examples" / "faults"
HEALTHY = REPO / "examples" / "healthy.toml"
QUICK = DoctorOptions.quick()


def _run(path: Path, steps: str = "1,2,6", **kw):
    rep = doctor(path, steps=steps, options=QUICK, **kw)
    rep.close_figures()
    return rep


# the faults of issue 22 (data, regularization, a pair): tested in test_diag_attribution.py
NEW_FAULTS = ["l2_too_strong", "unnormalized", "leak", "label_noise", "imbalanced", "pair_zero_init_l2"]


def test_every_fault_config_has_a_test():
    assert sorted(p.stem for p in FAULTS.glob("*.toml")) == sorted(list(EXPECTED) + NEW_FAULTS)


# fault -> (step -> codes that must be found there); every one of these is measured in docs/doctor.md
EXPECTED = {
    "lr_too_high": {2: {"diverged"}, 6: {"diverged"}},
    "lr_too_low": {2: {"lr_too_low"}, 6: {"no_progress"}},
    "zero_init": {1: {"symmetry"}, 2: {"symmetry"}},
    "sigmoid_saturation": {1: {"initial_loss_high", "saturation"}, 2: {"saturation"}, 6: {"saturation"}},
    "vanishing_init": {1: {"vanishing"}, 2: {"vanishing"}},
    "tiny_train": {6: {"overfitting"}},
    "dead_relu": {6: {"dead_relu"}},
}


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_planted_fault_gets_the_right_verdict(fault):
    rep = _run(FAULTS / f"{fault}.toml")
    for number, codes in EXPECTED[fault].items():
        step = rep.step(number)
        assert codes <= set(step.codes), (number, step.codes, step.summary)
        assert step.verdict in ("warn", "fail")
        for f in step.findings:
            if f.code in codes:
                assert f.advice, f.code
    assert rep.verdict in ("warn", "fail")
    if fault == "lr_too_low":  # told apart from a bad initialization
        assert not {"symmetry", "vanishing", "saturation"} & set(rep.codes)
        assert "lr_too_low" in rep.step(2).findings[0].code
    if fault in ("zero_init", "vanishing_init"):  # ... and a bad initialization from a too low rate
        assert "lr_too_low" not in rep.codes
    if fault == "dead_relu":  # dead units without a divergence on the full data
        assert "diverged" not in rep.step(6).codes
    if fault == "tiny_train":
        f = next(f for f in rep.step(6).findings if f.code == "overfitting")
        assert 5 <= f.numbers["early_stop_epoch"] <= 40
        assert f"early stop at epoch {f.numbers['early_stop_epoch']:g}" in f.advice
        assert rep.step(1).verdict == rep.step(2).verdict == "ok"


def test_overfit_step_tells_the_three_failures_apart():
    """Too high (diverged), too low (no progress where larger rates progress), bad init (no rate helps; probes)."""
    too_high = _run(FAULTS / "lr_too_high.toml", steps="2").step(2)
    assert too_high.findings[0].code == "diverged"
    assert "is too high" in too_high.findings[0].message
    too_low = _run(FAULTS / "lr_too_low.toml", steps="2").step(2)
    assert too_low.findings[0].code == "lr_too_low"
    assert too_low.numbers["update_ratio_median"] < 1e-5
    bad_init = _run(FAULTS / "zero_init.toml", steps="2").step(2)
    assert bad_init.findings[0].code == "symmetry"
    assert bad_init.findings[0].message.startswith("bad initialization: ")
    assert all(r["reached_target_at_step"] is None for r in bad_init.numbers["rates"])


def test_healthy_config_gets_no_false_alarm_quick():
    rep = _run(HEALTHY, steps="0-7")
    assert rep.step(7).verdict == "skip"  # no gap: attribution does not run
    assert rep.fixes == [] or all(f["code"] == "grid_best" for f in rep.fixes)
    from trainlab.diagnose._fixes import first_fix

    assert first_fix(rep.fixes) is None  # --apply writes nothing for a healthy config
    for s in rep.steps:
        if s.number == 7:
            continue
        assert s.verdict == "ok", (s.number, s.summary, [f.message for f in s.findings])
    assert rep.verdict == "ok"
    assert rep.step(3).numbers["restored_bitwise"] is True
    assert rep.step(3).numbers["suggestion"] is not None


@pytest.mark.slow
def test_healthy_config_gets_no_false_alarm_full_recipe(tmp_path):
    rep = doctor(HEALTHY, out=tmp_path)
    rep.close_figures()
    assert [s.verdict for s in rep.steps] == ["ok"] * 7 + ["skip"], rep.text()


def test_initial_loss_reference_depends_on_the_loss():
    ce = _run(HEALTHY, steps="1").step(1).numbers
    assert ce["reference"] == pytest.approx(math.log(10))
    assert ce["reference_kind"] == "ln C = ln 10"
    step = _run(HEALTHY, steps="1", overrides=["loss.name=\"mse\""]).step(1)
    mse = step.numbers
    # one-hot targets of 10 balanced classes: each output's variance is p (1 - p) = 0.09
    assert mse["reference"] == pytest.approx(0.09, abs=2e-3)
    assert mse["reference_kind"] == "the variance of the targets"
    # unit-scale untrained outputs cost more than the targets' variance: a warning for MSE, not a failure
    assert step.verdict == "warn" and step.codes == ["initial_loss_high"]


def test_regularization_and_augmentation_are_off_for_steps_1_and_2():
    over = ["optim.weight_decay=0.01", "model.dropout=0.5", "regularize.l2=0.001", "loss.label_smoothing=0.1",
            "early_stopping.enabled=true"]
    rep = _run(HEALTHY, steps="1,2", overrides=over)
    want = {"optim.weight_decay", "model.dropout", "regularize.l2", "loss.label_smoothing", "early_stopping.enabled"}
    assert set(rep.step(1).numbers["regularization_turned_off"]) == want
    n2 = rep.step(2).numbers
    assert set(n2["regularization_turned_off"]) == want
    assert n2["augmentation"] == "off" and n2["evaluated_on"] == "the training sample itself"
    assert n2["final_accuracy"] >= 0.99  # with dropout 0.5 + label smoothing on, 100% would be out of reach


def test_outputs_json_and_self_contained_html(tmp_path):
    rep = doctor(HEALTHY, steps="1,3", options=QUICK, out=tmp_path)
    rep.close_figures()
    d = json.loads((tmp_path / "doctor.json").read_text())
    assert [s["step"] for s in d["steps"]] == [1, 3]
    for s in d["steps"]:
        assert set(s) >= {"name", "verdict", "numbers", "findings", "advice", "summary"}
        assert s["verdict"] in ("ok", "warn", "fail")
    assert d["steps"][1]["name"] == "learning-rate range test"
    html = (tmp_path / "doctor.html").read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert not re.search(r"<(script|link)\b|src=['\"](?!data:)", html)
    assert (tmp_path / "doctor_3_lr_range.png").read_bytes()[:4] == b"\x89PNG"


def test_steps_subset_parsing():
    assert parse_steps("1,2,6") == [1, 2, 6]
    assert parse_steps("1-3") == [1, 2, 3]
    assert parse_steps(None) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert parse_steps("0,7") == [0, 7]
    with pytest.raises(ConfigError, match="steps must be numbers from 0 to 7"):
        parse_steps("1,8")
    with pytest.raises(ConfigError, match="--steps expects step numbers 0-7"):
        parse_steps("one")


def test_later_steps_fall_back_to_the_config_without_earlier_ones():
    rep = _run(HEALTHY, steps="4")
    assert "the config's rate" in rep.step(4).summary
    assert rep.step(4).numbers["lrs"] == sorted(float(f"{0.05 * f:.4g}") for f in QUICK.coarse_factors)


def _cli(*argv: str) -> argparse.Namespace:
    from trainlab.diagnose.cli import DoctorCommand

    cmd = DoctorCommand()
    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    return cmd, p.parse_args(list(argv))


def test_cli_prints_one_block_per_step(tmp_path, capsys):
    cmd, args = _cli(str(FAULTS / "lr_too_low.toml"), "--steps", "1,2", "--quick", "--out", str(tmp_path))
    assert cmd.run(args) == 1  # a FAIL verdict exits 1 (issue 17; it exited 0)
    out = capsys.readouterr().out
    assert re.search(r"^\[1\] initial loss \.+ OK", out, re.M)
    assert re.search(r"^\[2\] overfit a small sample \.+ FAIL", out, re.M)
    assert "learning rate 1e-06 is too low" in out
    assert f"wrote {tmp_path}/doctor.json" in out
    cmd, args = _cli(str(HEALTHY), "--steps", "1", "--quick", "--json", "--out", str(tmp_path / "j"))
    assert cmd.run(args) == 0  # OK (or WARN) exits 0
    assert json.loads(capsys.readouterr().out)["steps"][0]["verdict"] == "ok"


def test_cli_errors_are_one_line():
    cmd, args = _cli(str(HEALTHY), "--steps", "9")
    with pytest.raises(TrainlabError, match="steps must be numbers from 0 to 7"):
        cmd.run(args)
    cmd, args = _cli("nope.toml", "--steps", "1")
    with pytest.raises(TrainlabError, match="config file not found: nope.toml"):
        cmd.run(args)
