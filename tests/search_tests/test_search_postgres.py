"""Many workers on one PostgreSQL study (a real server, started here): exactly-once trials, a SIGKILLed
worker's trial failed and retried, bounded connections, nothing leaked.

Needs PostgreSQL's server binaries (initdb, pg_ctl; Debian: apt-get install postgresql) and psycopg2.
Skipped when they are missing, unless TRAINLAB_REQUIRE_POSTGRES=1 (CI), which makes that a failure.
"""

from __future__ import annotations

import json
import os
import threading
import time

import optuna
import pytest

from trainlab.search import FunctionEvaluator, Tuner, load_search
from trainlab.search.testing import (PostgresUnavailable, died_with, kill_all, postgres_server, start_worker,
                                     tiny_search_config, wait_for, write_toml)

TRIALS = 30


@pytest.fixture(scope="module")
def postgres_url():
    why = None
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        why = "psycopg2 is not installed (pip install psycopg2-binary)"
    if why is None:
        try:
            with postgres_server() as url:
                yield url
                return
        except PostgresUnavailable as e:
            why = str(e)
    if os.environ.get("TRAINLAB_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (TRAINLAB_REQUIRE_POSTGRES=1): {why}")
    pytest.skip(f"no PostgreSQL: {why}")


def _engine(url):
    import sqlalchemy

    from trainlab.search._storage import with_installed_driver

    return sqlalchemy.create_engine(with_installed_driver(url), poolclass=sqlalchemy.pool.NullPool)


def _scalar(engine, sql, **args):
    import sqlalchemy

    try:
        with engine.connect() as c:
            return c.execute(sqlalchemy.text(sql), args).scalar()
    except sqlalchemy.exc.ProgrammingError:  # the workers have not created Optuna's tables yet
        return 0


def _running_of(engine, pid):
    return _scalar(engine, """
        SELECT count(*) FROM trials t JOIN trial_system_attributes a ON a.trial_id = t.trial_id
        WHERE t.state = 'RUNNING' AND a.key = 'trainlab:worker' AND a.value_json LIKE :pat""",
                   pat=f'%"pid": {pid},%')


def _complete(engine):
    return _scalar(engine, "SELECT count(*) FROM trials WHERE state = 'COMPLETE'") or 0


@pytest.mark.slow
def test_three_workers_share_one_postgres_study_and_survive_a_sigkill(postgres_url, tmp_path):
    # rounds long enough (about a second with three workers on two cores) that the poll cannot miss them all
    cfg = tiny_search_config(data={"train": 2000}, model={"hidden": [64]}, train={"epochs": 30},
                             search={"trials": TRIALS, "population": 2, "heartbeat": 1, "grace": 6})
    path = write_toml(tmp_path / "pg.toml", cfg)
    eng = _engine(postgres_url)
    peak = [0]
    stop = threading.Event()

    def watch():  # connections the workers hold, sampled while they run
        while not stop.is_set():
            n = _scalar(eng, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'trainlab' "
                             "AND pid <> pg_backend_pid()")
            peak[0] = max(peak[0], n or 0)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    procs = [start_worker(path, "--storage", postgres_url, "--study", "pg", "--out", str(tmp_path / f"out{i}"),
                          log=tmp_path / f"w{i}.log") for i in range(3)]
    try:
        victim = procs[0]
        wait_for(lambda: _complete(eng) >= 4 and _running_of(eng, victim.pid) >= 1, 240, interval=0.02,
                 what="the first worker mid-trial", alive=victim, log=tmp_path / "w0.log")
        victim.kill()  # SIGKILL: no chance to mark anything
        victim.wait(timeout=30)
        for i, p in enumerate(procs[1:], start=1):
            assert p.wait(timeout=400) == 0, (tmp_path / f"w{i}.log").read_text()
        # ... and a restart finds the study complete (or finishes what is left)
        again = start_worker(path, "--storage", postgres_url, "--study", "pg", "--out", str(tmp_path / "out9"),
                             log=tmp_path / "w9.log")
        assert again.wait(timeout=300) == 0, (tmp_path / "w9.log").read_text()
    finally:
        kill_all(procs)
        stop.set()
        watcher.join()

    left_open = _scalar(eng, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'trainlab' "
                             "AND pid <> pg_backend_pid()")  # every worker has exited: none may linger
    from trainlab.search._storage import with_installed_driver

    assert postgres_url.startswith("postgresql://")  # the documented form, no driver named (issue 17)
    study = optuna.load_study(study_name="pg", storage=with_installed_driver(postgres_url))
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.system_attrs["trainlab:slot"] for t in done) == list(range(TRIALS))  # each exactly once
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    dead = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert dead, "the killed worker's trial should be recorded as failed"
    for t in dead:
        assert died_with(t.user_attrs["fail_reason"], victim.pid), t.user_attrs
        retries = [x for x in trials if x.system_attrs.get("trainlab:retry_of") == t.number]
        # a kill during the claim can leave a trial with only some parameters drawn: the retry keeps them
        assert len(retries) == 1 and {k: retries[0].params[k] for k in t.params} == t.params
    assert len(trials) == TRIALS + len(dead)
    # the points are the study seed's, whoever ran them
    _, spec = load_search(path)
    ref = Tuner(spec, evaluator=FunctionEvaluator(lambda v: 0.0), storage="memory", study="ref").run()
    expected = {r["slot"]: (r["optim.lr"], r["optim.weight_decay"]) for r in ref.trials}
    assert {t.system_attrs["trainlab:slot"]: (t.params["optim.lr"], t.params["optim.weight_decay"])
            for t in done} == expected
    # bounded pools: each worker holds at most 4 pooled connections + 1 for the study lock; none leak
    print(f"peak connections held by the workers: {peak[0]}")
    assert 0 < peak[0] <= 3 * 5, peak[0]
    assert left_open == 0
    eng.dispose()


def test_the_lab_viewer_finds_a_study_kept_in_postgres(postgres_url, tmp_path):
    """A study whose trials live in PostgreSQL has no study.db in its --out: tune records the server there
    (storage.json, without the password) and the lab's viewer lists it, reads its trials and follows it."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from trainlab.cli import main
    from trainlab.lab import _viewer

    root = tmp_path / "lab"
    out = root / "studies" / "pg"
    cfg = write_toml(tmp_path / "view.toml", tiny_search_config(search={"trials": 3, "population": 3}))
    with_password = postgres_url.replace("postgres@", "postgres:s3cret-pw@")  # trust auth: the server ignores it
    assert main(["tune", str(cfg), "--storage", with_password, "--study", "viewed", "--out", str(out),
                 "--quiet"]) == 0
    text = (out / "storage.json").read_text()
    assert "s3cret" not in text and not (out / "study.db").exists()
    assert json.loads(text) == {"storage": postgres_url, "study": "viewed"}

    runs, studies = _viewer.find_entries(root)
    assert studies == [out] and runs == []
    info = _viewer.study_info(root, out)
    assert info["status"] == "finished" and info["study"] == "viewed" and info["path"] == "studies/pg"
    assert info["counts"]["complete"] == 3 and len(info["trials"]) == 3 and info["best"] is not None

    app = Starlette(routes=_viewer.routes())
    app.state.root = root
    # a storage.json naming a SQLite file is not opened (nor is the file made): listed as unreadable, with why
    elsewhere = tmp_path / "elsewhere.db"
    (root / "studies" / "odd").mkdir()
    (root / "studies" / "odd" / "storage.json").write_text(json.dumps({"storage": f"sqlite:///{elsewhere}"}))
    with TestClient(app) as client:
        listed = {s["path"]: s for s in client.get("/api/viewer/list").json()["studies"]}
        assert listed["studies/pg"]["status"] == "finished" and listed["studies/pg"]["counts"]["complete"] == 3
        assert listed["studies/odd"]["status"] == "unreadable" and "names no database server" in \
            listed["studies/odd"]["error"]
        one = client.get("/api/viewer/study", params={"path": "studies/pg"}).json()
        assert [t["state"] for t in one["trials"]] == ["COMPLETE"] * 3
    assert not elsewhere.exists()
