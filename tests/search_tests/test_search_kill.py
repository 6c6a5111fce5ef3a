"""A SQLite study killed at any moment (SIGKILL, Ctrl-C) resumes to the requested number of trials,
losing none and counting none twice; the result equals an uninterrupted study's."""

from __future__ import annotations

import signal

import optuna
import pytest

from trainlab.search import tune
from trainlab.search.testing import (died_with, sqlite_trial_states, start_worker, tiny_search_config, wait_for,
                                     write_toml)

TRIALS = 10
# Trials long enough (0.6 s a round here, polled every 0.02 s) that the poll below cannot miss every running
# window: with 300 images and 5 epochs a round took 0.06 s and a CI run saw none of them.
CFG = tiny_search_config(data={"train": 2000}, model={"hidden": [64]}, train={"epochs": 30},
                         search={"trials": TRIALS, "population": 2, "heartbeat": 1, "grace": 5})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same study, uninterrupted, in this process: slot -> (params, value)."""
    r = tune(CFG, storage=f"sqlite:///{tmp_path_factory.mktemp('ref')}/ref.db", study="ref")
    return {t["slot"]: (t["optim.lr"], t["optim.weight_decay"], t["value"]) for t in r.trials if t["counts"]}


def check_study(db, reference):
    st = optuna.load_study(study_name="k", storage=f"sqlite:///{db}")
    trials = st.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    slots = sorted(t.system_attrs["trainlab:slot"] for t in done)
    assert slots == list(range(TRIALS))  # every slot once: none lost, none counted twice
    for t in done:
        lr, wd, value = reference[t.system_attrs["trainlab:slot"]]
        assert (t.params["optim.lr"], t.params["optim.weight_decay"]) == (lr, wd)
        assert t.value == pytest.approx(value, abs=1e-9)  # same seeds, same numbers
    return trials


def signal_mid_trial(tmp_path, sig):
    """Start a worker on the study, send it ``sig`` once trials are done and one is running;
    (config path, out dir, database, the worker, its exit status)."""
    path = write_toml(tmp_path / "k.toml", CFG)
    out, db = tmp_path / "out", tmp_path / "out" / "study.db"
    w = start_worker(path, "--out", str(out), log=tmp_path / "w1.log")

    def mid_trial() -> bool:
        states = sqlite_trial_states(db) if db.exists() else {}
        return states.get("COMPLETE", 0) >= 2 and states.get("RUNNING", 0) >= 1

    try:
        wait_for(mid_trial, 180, interval=0.02, what="a worker mid-trial", alive=w, log=tmp_path / "w1.log")
    finally:
        w.send_signal(sig)
        rc = w.wait(timeout=60)
    return path, out, db, w, rc


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes(tmp_path, reference):
    path, out, db, w, _ = signal_mid_trial(tmp_path, signal.SIGKILL)
    left = sqlite_trial_states(db)
    assert left.get("RUNNING", 0) >= 1  # kill -9 leaves them RUNNING: nobody could mark them
    r = start_worker(path, "--out", str(out), log=tmp_path / "w2.log")
    assert r.wait(timeout=300) == 0, (tmp_path / "w2.log").read_text()
    trials = check_study(db, reference)
    dead = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(dead) == left["RUNNING"]
    for t in dead:
        assert died_with(t.user_attrs["fail_reason"], w.pid), t.user_attrs
        retry = [x for x in trials if x.system_attrs.get("trainlab:retry_of") == t.number]
        # a kill during the claim can leave a trial with only some parameters drawn: the retry keeps them
        assert len(retry) == 1 and {k: retry[0].params[k] for k in t.params} == t.params
        assert retry[0].state.name == "COMPLETE"
    assert (out / "summary.json").exists() and (out / "best.toml").exists()


@pytest.mark.slow
def test_ctrl_c_marks_running_trials_failed_and_resume_reruns_them(tmp_path, reference):
    path, out, db, w, rc = signal_mid_trial(tmp_path, signal.SIGINT)
    assert rc == 130, (tmp_path / "w1.log").read_text()
    assert "interrupted" in (tmp_path / "w1.log").read_text()
    states = sqlite_trial_states(db)
    # marked FAILED, not left running (or, when the signal came while results were being told, which
    # finishes first, nothing was in flight any more)
    assert states.get("RUNNING", 0) == 0 and states.get("FAIL", 0) + states.get("COMPLETE", 0) >= 3
    r = start_worker(path, "--out", str(out), "--set", "search.max_retries=0", log=tmp_path / "w2.log")
    assert r.wait(timeout=300) == 0, (tmp_path / "w2.log").read_text()
    trials = check_study(db, reference)  # interruptions do not use up retries (max_retries = 0 here)
    assert all(t.user_attrs["fail_reason"].startswith("interrupted") for t in trials
               if t.state == optuna.trial.TrialState.FAIL)
