"""Ctrl-C / SIGTERM during ``tune`` (issue 17, item 5): the signal is delivered at chosen points -- while the
study is created, during a SQLite write (a trial's attribute, a tell), while a population trains, while the
worker waits -- and each time the study stops at the next safe point, its running trials are marked for
retry, and rerunning the same command completes it with every trial exactly once (equal to an uninterrupted
study). The CLI exits 130 with the command that resumes, and never swallows the interrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from trainlab.search import tune
from trainlab.search.testing import sqlite_trial_states, start_worker, tiny_search_config, wait_for, write_toml

TRIALS = 6
CFG = tiny_search_config(search={"trials": TRIALS, "population": 2})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    r = tune(CFG, storage=f"sqlite:///{tmp_path_factory.mktemp('ref')}/ref.db", study="s")
    return {t["slot"]: (t["optim.lr"], t["value"]) for t in r.trials if t["counts"]}


def _signal_self(sig: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # let the handler run inside the patched call, as a real signal would


def check_complete(db, reference) -> None:
    st = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    trials = st.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.system_attrs["trainlab:slot"] for t in done) == list(range(TRIALS))  # each exactly once
    for t in done:
        lr, value = reference[t.system_attrs["trainlab:slot"]]
        assert t.params["optim.lr"] == lr and t.value == pytest.approx(value, abs=1e-9)


def _once(fn, sig=signal.SIGINT, *, after: int = 0):
    calls = {"n": 0}

    def wrapped(*a, **k):
        calls["n"] += 1
        if calls["n"] == after + 1:
            _signal_self(sig)  # arrives while the real call below is about to write
        return fn(*a, **k)

    return wrapped, calls


POINTS = ["create_study", "set_system_attr", "tell", "training_step", "report", "outputs"]


@pytest.mark.parametrize("point", POINTS)
def test_a_signal_at_any_point_stops_then_the_same_call_resumes(tmp_path, monkeypatch, reference, point):
    from optuna.storages import RDBStorage

    from trainlab.train import Trainer

    sig = signal.SIGTERM if point in ("tell", "report") else signal.SIGINT
    cfg = CFG
    db = tmp_path / "s.db"
    if point == "create_study":
        w, calls = _once(RDBStorage.create_new_study, sig)
        monkeypatch.setattr(RDBStorage, "create_new_study", w)
    elif point == "set_system_attr":
        w, calls = _once(RDBStorage.set_trial_system_attr, sig, after=3)
        monkeypatch.setattr(RDBStorage, "set_trial_system_attr", w)
    elif point == "tell":
        w, calls = _once(RDBStorage.set_trial_state_values, sig, after=1)
        monkeypatch.setattr(RDBStorage, "set_trial_state_values", w)
    elif point == "report":
        w, calls = _once(RDBStorage.set_trial_intermediate_value, sig, after=2)
        monkeypatch.setattr(RDBStorage, "set_trial_intermediate_value", w)
        cfg = tiny_search_config(search={"trials": TRIALS, "population": 2, "pruner": "median"})
    elif point == "outputs":  # every trial is done; the study's files are being written (exited 0 before)
        from trainlab.search import _report

        w, calls = _once(_report.write_csv, sig)
        monkeypatch.setattr(_report, "write_csv", w)
    else:
        w, calls = _once(Trainer.train_step, sig, after=4)
        monkeypatch.setattr(Trainer, "train_step", w)
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, storage=f"sqlite:///{db}", study="s", out=tmp_path / "out" if point == "outputs" else None)
    assert calls["n"] >= 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    states = sqlite_trial_states(db)
    assert states.get("RUNNING", 0) == 0 and states.get("WAITING", 0) == 0, states  # marked for retry
    monkeypatch.undo()
    check_complete_after = tune(cfg, storage=f"sqlite:///{db}", study="s")
    assert check_complete_after.summary["trials"]["with_result"] == TRIALS
    if point != "report":
        check_complete(db, reference)


@pytest.mark.slow
def test_cli_sigint_exits_130_with_the_resume_command_and_is_never_swallowed(tmp_path):
    cfg = tiny_search_config(data={"train": 2000}, model={"hidden": [64]}, train={"epochs": 30},
                             search={"trials": 4, "population": 2})
    path = write_toml(tmp_path / "k.toml", cfg)
    out = tmp_path / "out"
    log = tmp_path / "w.log"
    for attempt, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        w = start_worker(path, "--out", str(out), log=log)
        try:
            wait_for(lambda: (out / "study.db").exists() and sqlite_trial_states(out / "study.db").get("RUNNING", 0),
                     120, interval=0.02, what="a running trial", alive=w, log=log)
        finally:
            t0 = time.monotonic()
            w.send_signal(sig)
            rc = w.wait(timeout=60)
        text = log.read_text()
        assert rc == 130, text
        assert time.monotonic() - t0 < 10  # within a training step or two, not the whole study
        assert "Exception ignored" not in text and "Traceback" not in text and "trainlab: ;" not in text, text
        assert "rerun the same command: python -m trainlab.search" in text and str(path) in text, text
        assert sqlite_trial_states(out / "study.db").get("RUNNING", 0) == 0
    r = subprocess.run([sys.executable, "-m", "trainlab.cli", "tune", str(path), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    st = optuna.load_study(study_name="k", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in st.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    assert sorted(t.system_attrs["trainlab:slot"] for t in done) == list(range(4))


def test_tune_trials_zero_is_refused(tmp_path):
    path = write_toml(tmp_path / "k.toml", CFG)
    r = subprocess.run([sys.executable, "-m", "trainlab.cli", "tune", str(path), "--trials", "0", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--trials must be at least 1" in r.stderr
