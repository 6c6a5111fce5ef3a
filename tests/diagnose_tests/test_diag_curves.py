"""The learning-curve reading (``trainlab doctor --history``): pure rules on numbers, then planted runs.

The planted runs are real training runs of ``examples/faults/curves/*.toml`` (seconds each), judged
from their run directories exactly as a user's run would be; ``examples/healthy.toml`` must give no
finding at all.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from trainlab.cli import main
from trainlab.config import load_config
from trainlab.diagnose._curves import CT, Curves, curves_from_history, judge, judge_run, load_curves
from trainlab.diagnose._findings import Finding
from trainlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PLANTED = {"rising": "loss_rising", "noisy": "noisy_loss", "plateau": "plateau", "early_decay": "early_decay",
           "overfitting": "overfitting", "underfitting": "underfitting"}


def codes(c: Curves) -> list[str]:
    return [f.code for f in judge(c)]


def _epochs(n: int) -> list[float]:
    return [float(i + 1) for i in range(n)]


# ---- pure rules on numbers -------------------------------------------------------------------------
def test_a_smooth_geometric_fall_is_healthy():
    L = [0.4 * 0.7 ** i for i in range(10)]
    c = Curves(epoch=_epochs(10), train_loss=L, val_loss=[x + 0.05 for x in L], train_acc=[0.95] * 10,
               val_acc=[0.93] * 10)
    assert judge(c) == []


def test_rising_from_the_start_and_nothing_else():
    L = [2.0 * 1.3 ** i for i in range(10)]
    c = Curves(epoch=_epochs(10), train_loss=L, train_acc=[0.1] * 10, val_acc=[0.1] * 10)
    f = judge(c)
    assert [x.code for x in f] == ["loss_rising"] and f[0].severity == "fail"  # no underfitting on top
    assert "rose from the start" in f[0].message
    # falling first, then rising: that is not "from the start"
    assert "loss_rising" not in codes(Curves(epoch=_epochs(10), train_loss=[2, 1.5, 1, .8, .7, .9, 1.5, 2, 2.4, 3]))


def test_noise_counts_jumps_not_a_steady_fall():
    zigzag = [1.0 * (1.4 if i % 2 else 1.0) * 0.97 ** i for i in range(12)]
    assert "noisy_loss" in codes(Curves(epoch=_epochs(12), train_loss=zigzag, batch_size=2))
    f = [x for x in judge(Curves(epoch=_epochs(12), train_loss=zigzag, batch_size=2)) if x.code == "noisy_loss"][0]
    assert "batch size 2" in f.message and f.numbers["climb_back"] >= CT.NOISE
    # the same jumps on a curve that mostly falls a long way are not noise
    falling = [3.0 * 0.6 ** i * (1.05 if i % 2 else 1.0) for i in range(12)]
    assert "noisy_loss" not in codes(Curves(epoch=_epochs(12), train_loss=falling, batch_size=2))


def test_plateau_at_a_constant_rate_says_decay_and_a_flat_start_says_raise():
    L = [1.2, 0.8, 0.6, 0.5, 0.45, 0.45, 0.449, 0.451, 0.448, 0.45]
    f = [x for x in judge(Curves(epoch=_epochs(10), train_loss=L, lr=[0.1] * 10)) if x.code == "plateau"][0]
    assert "decay the learning rate" in f.advice and "constant learning rate" in f.message
    flat = [1.0, 0.99, 0.985, 0.98, 0.98, 0.979, 0.979, 0.98, 0.979, 0.978]
    f = [x for x in judge(Curves(epoch=_epochs(10), train_loss=flat, lr=[0.1] * 10)) if x.code == "plateau"][0]
    assert "raise the learning rate" in f.advice
    # a loss converging to ~0 is not a plateau
    assert "plateau" not in codes(Curves(epoch=_epochs(10), train_loss=[1, .3, .1, .03, .02, .01, .01, .01, .01, .01]))


def test_early_decay_needs_a_cut_while_still_falling():
    L = [1.0, 0.6, 0.36, 0.35, 0.345, 0.343, 0.342, 0.341]
    lr = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01]  # record 3 trained at the cut rate: cut after epoch 3
    f = judge(Curves(epoch=_epochs(8), train_loss=L, lr=lr))
    assert [x.code for x in f] == ["early_decay"]  # the stall after the cut is not a separate plateau
    assert f[0].numbers["epoch"] == 3.0 and f[0].numbers["pace_before"] > 0.3
    # the same cut after the loss has flattened is the right time: no finding
    late = [1.0, 0.6, 0.5, 0.49, 0.488, 0.487, 0.45, 0.44]
    lr_late = [0.1] * 6 + [0.01] * 2
    assert "early_decay" not in codes(Curves(epoch=_epochs(8), train_loss=late, lr=lr_late))


def test_overfitting_needs_the_gap_to_grow():
    tl = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02]
    vl = [1.0, 0.6, 0.5, 0.55, 0.65, 0.75, 0.8, 0.9]
    f = [x for x in judge(Curves(epoch=_epochs(8), train_loss=tl, val_loss=vl)) if x.code == "overfitting"][0]
    assert "early stop at epoch 3" in f.advice and f.numbers["gap_grew"] > 0
    # validation loss up *with* the training loss (instability): not overfitting
    tl2 = [1.0, 0.5, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    vl2 = [1.0, 0.6, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert "overfitting" not in codes(Curves(epoch=_epochs(8), train_loss=tl2, val_loss=vl2))


def test_underfitting_is_both_low():
    c = Curves(epoch=_epochs(5), train_loss=[2, 1.9, 1.8, 1.7, 1.6], train_acc=[.2, .3, .35, .4, .45],
               val_acc=[.2, .3, .33, .38, .42])
    assert "underfitting" in codes(c)
    c = dataclasses.replace(c, train_acc=[.9, .95, .99, 1, 1], val_acc=[.5, .55, .6, .6, .6])  # Curves is frozen
    assert "underfitting" not in codes(c)


def test_curves_from_a_history_dict_and_errors():
    h = {"size": 2, "records": [{"step": 10, "epoch": 1.0, "train_loss": [1.0, 2.0], "lr": [0.1, 0.2]},
                                {"step": 20, "epoch": 2.0, "train_loss": [0.5, None], "lr": [0.1, 0.2]}],
         "diverged": {"1": {"step": 15, "epoch": 1.5, "loss": "nan"}}, "info": {"batch_size": 50}}
    c = curves_from_history(h, 1)
    assert c.train_loss == [2.0, None] and c.lr == [0.2, 0.2] and c.batch_size == 50
    assert [f.code for f in judge(c)][0] == "diverged"
    with pytest.raises(ConfigError, match="--member 2 does not exist: this run has 2 member"):
        curves_from_history(h, 2)


def test_findings_are_the_doctors_finding_type():
    f = judge(Curves(epoch=_epochs(10), train_loss=[2.0 * 1.3 ** i for i in range(10)]))
    assert all(isinstance(x, Finding) for x in f)
    json.dumps([x.to_dict() for x in f])


def test_load_curves_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        load_curves(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no history.json or metrics.jsonl"):
        load_curves(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"member": 0, "step": 5, "epoch": 1.0, "train_loss": 1.0})
                                            + "\n")
    with pytest.raises(ConfigError, match="1 evaluation\\(s\\); reading curves needs at least 2"):
        load_curves(tmp_path)


# ---- planted runs: real training -------------------------------------------------------------------
def _train(name: str, out: Path) -> Path:
    from trainlab.run import train_run

    path = REPO / "examples" / ("healthy.toml" if name == "healthy" else f"faults/curves/{name}.toml")
    cfg = load_config(path, ["data.test=0"])
    train_run(cfg, out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PLANTED))
def test_each_planted_run_gets_its_verdict(name, tmp_path):
    run = _train(name, tmp_path / name)
    c, findings = judge_run(run)
    got = [f.code for f in findings]
    assert PLANTED[name] in got, (name, [f.message for f in findings])
    f = next(x for x in findings if x.code == PLANTED[name])
    assert f.message and f.advice and f.numbers  # the evidence, and what to do


@pytest.mark.slow
def test_no_false_alarm_on_the_healthy_run_and_the_cli(tmp_path, capsys):
    run = _train("healthy", tmp_path / "healthy")
    _, findings = judge_run(run)
    assert findings == [], [f.message for f in findings]
    assert main(["doctor", "--history", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "ok" and out["findings"] == [] and out["evaluations"] == 10


def test_cli_reads_an_interrupted_run_from_metrics_jsonl(tmp_path, capsys):
    d = tmp_path / "run"
    d.mkdir()
    rows = [{"member": 0, "step": 10 * i, "epoch": float(i), "train_loss": 2.0 * 1.3 ** i, "diverged": False}
            for i in range(1, 8)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["doctor", "--history", str(d)]) == 0
    text = capsys.readouterr().out
    assert "FAIL" in text and "loss_rising" in text and "rose from the start" in text
    assert main(["doctor", "--history", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert math.isfinite(CT.NOISE)
