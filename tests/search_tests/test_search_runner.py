"""The worker loop: resume to N results, setup checks, retries, dead workers, interruptions, shared storage."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time

import optuna
import pytest

from trainlab.errors import ConfigError
from trainlab.search import FloatParam, FunctionEvaluator, Random, SearchSpace, SearchSpec, Tuner, TrialOutcome
from trainlab.search._storage import WORKER, open_storage, worker_identity
from trainlab.search._tuner import REASON, SLOT

SPACE = SearchSpace([FloatParam("lr", 1e-6, 1e-2, log=True), FloatParam("wd", 1e-8, 1e-4, log=True)])


def f(v):
    return -((math.log10(v["lr"]) + 3) ** 2 + (math.log10(v["wd"]) + 6) ** 2)


def spec(trials, **kw):
    kw.setdefault("space", SPACE)
    kw.setdefault("strategy", Random())
    return SearchSpec(trials=trials, **kw)


def tuner(tmp_path, trials, fn=f, *, storage=None, study="s", out=False, **kw):
    """A worker on ``tmp_path/study.db`` (outputs written only with ``out=True``)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Tuner(spec(trials, **kw), evaluator=FunctionEvaluator(fn), out=tmp_path if out else None,
                 storage=storage or f"sqlite:///{tmp_path}/study.db", study=study)


def slots(result):
    """slot -> the trial that stands for it; also checks no slot has two results."""
    out = {}
    for r in result.trials:
        if r["state"] in ("COMPLETE", "PRUNED"):
            assert r["slot"] not in out, f"slot {r['slot']} has two results"
            out[r["slot"]] = r
    return out


def test_resume_runs_until_n_results_never_n_more(tmp_path):
    calls = []
    fn = lambda v: calls.append(1) or f(v)  # noqa: E731
    r = tuner(tmp_path, 10, fn).run()
    assert r.counts["complete"] == 10 and sorted(slots(r)) == list(range(10))
    r = tuner(tmp_path, 15, fn).run()
    assert r.counts["complete"] == 15 and sorted(slots(r)) == list(range(15))
    assert len(calls) == 15
    r = tuner(tmp_path, 15, fn, out=True).run()  # nothing left to do
    assert len(calls) == 15 and r.counts["trial_records"] == 15 and r.finished
    assert (tmp_path / "trials.csv").read_text().count("\n") == 16


def test_resuming_with_a_changed_setup_says_what_changed(tmp_path):
    tuner(tmp_path, 3).run()
    other = SearchSpace([FloatParam("lr", 1e-5, 1e-2, log=True), FloatParam("wd", 1e-8, 1e-4, log=True)])
    with pytest.raises(ConfigError) as e:
        tuner(tmp_path, 3, space=other).run()
    assert "was created with a different setup" in str(e.value) and "space.lr.low: 1e-06 -> 1e-05" in str(e.value)
    from trainlab.search import TPE

    with pytest.raises(ConfigError, match=r'strategy.name: "random" -> "tpe"'):
        tuner(tmp_path, 3, strategy=TPE()).run()
    with pytest.raises(ConfigError, match=r"seed: 0 -> 1"):
        tuner(tmp_path, 3, seed=1).run()
    assert tuner(tmp_path, 3, study="other", seed=1).run().counts["complete"] == 3  # a new study is fine


def test_accidental_failures_are_retried_with_the_same_parameters_a_bounded_number_of_times(tmp_path):
    seen: dict[tuple, int] = {}

    def flaky(v):
        key = (v["lr"], v["wd"])
        seen[key] = seen.get(key, 0) + 1
        if key == first[3] and seen[key] == 1:
            raise OSError("disk hiccup")          # once: the retry succeeds
        if key == first[5]:
            raise OSError("always broken here")   # every time: retries run out
        return f(v)

    first = {s: (r["lr"], r["wd"]) for s, r in slots(tuner(tmp_path / "ref", 8).run()).items()}
    r = tuner(tmp_path, 8, flaky, max_retries=2).run()
    assert r.counts["with_result"] == 8 and r.counts["complete"] == 7 and r.counts["failed"] == 1
    rows = r.trials
    s3 = [x for x in rows if x["slot"] == 3]
    assert [x["state"] for x in s3] == ["FAIL", "COMPLETE"]
    assert s3[0]["fail_reason"] == "error: OSError: disk hiccup" and s3[1]["retry_of"] == s3[0]["number"]
    assert (s3[0]["lr"], s3[0]["wd"]) == (s3[1]["lr"], s3[1]["wd"]) == first[3]
    s5 = [x for x in rows if x["slot"] == 5]
    assert [x["state"] for x in s5] == ["FAIL"] * 3 and [x["attempt"] for x in s5] == [0, 1, 2]
    assert seen[first[5]] == 3


def test_a_systematic_error_stops_the_worker(tmp_path):
    def broken(v):
        raise ZeroDivisionError("bug")

    with pytest.raises(RuntimeError, match="different slots in a row failed with an error.*ZeroDivisionError: bug"):
        tuner(tmp_path, 10, broken, population=1).run()


class _Interrupting:
    def __init__(self, at):
        self.calls, self.at = 0, at

    def __call__(self, jobs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return [TrialOutcome.complete(f(j.values)) for j in jobs]


def test_interrupted_trials_are_failed_and_rerun_on_resume(tmp_path):
    t = Tuner(spec(9, population=3, max_retries=0), evaluator=_Interrupting(2), storage=f"sqlite:///{tmp_path}/study.db",
              study="s")
    with pytest.raises(KeyboardInterrupt):
        t.run()
    st = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/study.db")
    failed = [x for x in st.trials if x.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 3 and all(x.user_attrs[REASON].startswith("interrupted") for x in failed)
    assert not [x for x in st.trials if x.state == optuna.trial.TrialState.RUNNING]
    r = Tuner(spec(9, population=3, max_retries=0), evaluator=_Interrupting(0), storage=f"sqlite:///{tmp_path}/study.db",
              study="s").run()
    assert r.counts["complete"] == 9 and sorted(slots(r)) == list(range(9))  # interruptions use no retries
    ref = slots(tuner(tmp_path / "ref", 9).run())
    assert {s: (x["lr"], x["value"]) for s, x in slots(r).items()} == {s: (x["lr"], x["value"]) for s, x in ref.items()}


def _orphan(storage_url, study, slot, worker):
    """A RUNNING trial left by a worker that is gone (as after kill -9), with its parameters drawn."""
    st = optuna.load_study(study_name=study, storage=storage_url)
    t = st.ask()
    t.suggest_float("lr", 1e-6, 1e-2, log=True)
    t.suggest_float("wd", 1e-8, 1e-4, log=True)
    st._storage.set_trial_system_attr(t._trial_id, SLOT, slot)
    st._storage.set_trial_system_attr(t._trial_id, WORKER, worker)
    return t.number, t.params


@pytest.mark.parametrize("heartbeat", ["none", "stale"])
def test_a_trial_of_a_dead_local_worker_is_failed_at_once_and_retried(tmp_path, heartbeat):
    """Failed at once, naming the process; also when its heartbeat has gone stale as well (a restart
    more than ``grace`` seconds after a kill -9), where the process is the more telling reason."""
    beats = {"heartbeat": 1, "grace": 1} if heartbeat == "stale" else {}  # else the default grace (60 s)
    tuner(tmp_path, 2, **beats).run()
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = dict(worker_identity(), pid=int(p.stdout), start="1")
    number, params = _orphan(f"sqlite:///{tmp_path}/study.db", "s", 2, dead)
    if heartbeat == "stale":
        store = open_storage(f"sqlite:///{tmp_path}/study.db", heartbeat=1, grace=1)
        st = store.storage
        tid = st.get_trial_id_from_study_id_trial_number(st.get_study_id_from_name("s"), number)
        store.beat([tid])
        time.sleep(2.5)  # SQLite's clock (CURRENT_TIMESTAMP) counts whole seconds
        assert tid in store.raw._get_stale_trial_ids(st.get_study_id_from_name("s"))
        store.close()
    t0 = time.monotonic()
    r = tuner(tmp_path, 4, **beats).run()
    assert time.monotonic() - t0 < 20  # no waiting for a grace period
    s2 = [x for x in r.trials if x["slot"] == 2]
    assert [x["state"] for x in s2] == ["FAIL", "COMPLETE"]
    assert s2[0]["number"] == number
    assert s2[0]["fail_reason"] == f"worker died (process {dead['pid']} on {dead['host']} is gone)"
    assert (s2[1]["lr"], s2[1]["wd"]) == (params["lr"], params["wd"])
    assert r.counts["complete"] == 4 and r.counts["retries"] == 1


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_of_a_silent_remote_worker_is_failed_after_the_grace_period(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else f"journal:{tmp_path}/study.log"
    tuner(tmp_path, 1, storage=url, heartbeat=1, grace=2).run()
    remote = {"host": "another-machine", "boot": "x", "pid": 1, "start": "1"}
    number, _ = _orphan(url if kind == "sqlite" else _journal(url), "s", 1, remote)
    store = open_storage(url, heartbeat=1, grace=2)
    st = store.storage
    tid = st.get_trial_id_from_study_id_trial_number(st.get_study_id_from_name("s"), number)
    store.beat([tid])  # it was alive a moment ago
    store.close()
    t0 = time.monotonic()
    r = tuner(tmp_path, 3, storage=url, heartbeat=1, grace=2).run()
    waited = time.monotonic() - t0
    s1 = [x for x in r.trials if x["slot"] == 1]
    assert [x["state"] for x in s1] == ["FAIL", "COMPLETE"]
    assert "no heartbeat for more than 2 s" in s1[0]["fail_reason"]
    assert 1.5 < waited < 30
    assert r.counts["complete"] == 3


def _journal(url):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(url[len("journal:"):]))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_several_workers_share_one_study_exactly(tmp_path, kind):
    """Three workers (threads with their own storage connections) and a reader hammering the file:
    every slot gets exactly one result, nothing is run twice, the reader never breaks a writer."""
    url = f"sqlite:///{tmp_path}/study.db" if kind == "sqlite" else f"journal:{tmp_path}/study.log"
    runs: list[float] = []
    lock = threading.Lock()

    def slow(v):
        time.sleep(0.01)
        with lock:
            runs.append(v["lr"])
        return f(v)

    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        try:
            Tuner(spec(24, population=2), evaluator=FunctionEvaluator(slow), storage=url, study="shared").run()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader():
        import sqlite3

        while not stop.is_set():
            if kind == "sqlite" and (tmp_path / "study.db").exists():
                con = sqlite3.connect(f"file:{tmp_path}/study.db?mode=ro", uri=True, timeout=30)
                try:
                    con.execute("SELECT count(*) FROM trials").fetchall()
                except sqlite3.OperationalError:
                    pass  # tables not created yet
                con.close()
            time.sleep(0.001)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    rd = threading.Thread(target=reader)
    rd.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    stop.set()
    rd.join()
    assert not errors, errors
    r = Tuner(spec(24, population=2), evaluator=FunctionEvaluator(slow), storage=url, study="shared").report()
    assert r.counts["complete"] == 24 and r.counts["trial_records"] == 24
    assert sorted(slots(r)) == list(range(24))
    assert len(runs) == 24 and len(set(runs)) == 24
    ref = slots(Tuner(spec(24), evaluator=FunctionEvaluator(f), study="ref").run())
    assert {s: x["lr"] for s, x in slots(r).items()} == {s: x["lr"] for s, x in ref.items()}  # same points


def test_report_needs_an_existing_study(tmp_path):
    with pytest.raises(ConfigError, match="no study 'nope'"):
        Tuner(spec(3), evaluator=FunctionEvaluator(f), storage=f"sqlite:///{tmp_path}/x.db", study="nope").report()


def test_storage_url_errors(tmp_path):
    with pytest.raises(ConfigError, match="storage must be an Optuna storage URL"):
        open_storage("not a url")
    with pytest.raises(ConfigError, match="supports sqlite, postgresql and mysql"):
        open_storage("oracle://u:p@h/db")
    s = open_storage(str(tmp_path / "x.db"))  # a bare .db path is a SQLite file
    assert s.kind == "sqlite" and s.display == f"sqlite:///{tmp_path}/x.db"
    s.close()
    if os.environ.get("TRAINLAB_REQUIRE_POSTGRES") != "1":
        with pytest.raises(ConfigError, match="cannot open storage postgresql"):
            open_storage("postgresql+psycopg2://u:secret@127.0.0.1:1/db")


def test_the_study_opens_in_optuna_dashboard(tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard")
    import io
    import json

    tuner(tmp_path, 4).run()
    app = dashboard.wsgi(optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/study.db"))

    def get(path):
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "wsgi.input": io.BytesIO(b""),
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
        status = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        return status[0], json.loads(body)

    status, studies = get("/api/studies")
    assert status == "200 OK" and [s["study_name"] for s in studies["study_summaries"]] == ["s"]
    status, study = get(f"/api/studies/{studies['study_summaries'][0]['study_id']}")
    assert status == "200 OK" and len(study["trials"]) == 4
