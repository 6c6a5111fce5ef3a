"""Helpers for testing studies: tiny configs, worker subprocesses, a throwaway PostgreSQL server.

Used by trainlab's own tests (tests/search_tests/) and reusable by anyone testing a
study setup, as ``optuna.testing`` is for Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import copy
import glob
import os
from pathlib import Path
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["tiny_search_config", "write_toml", "start_worker", "sqlite_trial_states", "postgres_binaries",
           "postgres_server", "PostgresUnavailable", "wait_for", "kill_all", "died_with"]

_TINY: dict[str, Any] = {
    "seed": 0,
    "data": {"name": "mnist-5k", "train": 100, "val": 100, "test": 100},
    "model": {"hidden": [8]},
    "optim": {"name": "sgd"},
    "train": {"epochs": 3, "batch_size": 50, "eval_train": False},
    "search": {
        "strategy": "random", "trials": 6, "population": 2,
        "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 0.5, "log": True},
                  "optim.weight_decay": {"type": "float", "low": 1e-8, "high": 1e-4, "log": True}},
    },
}


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(a.get(k), dict) and k != "space":
            _merge(a[k], v)
        else:
            a[k] = copy.deepcopy(v)
    return a


def tiny_search_config(**tables: Any) -> dict[str, Any]:
    """A seconds-long search config (8-unit MLP, 100 training images, 3 epochs), tables merged in:
    ``tiny_search_config(search={"trials": 10}, train={"epochs": 5})``."""
    return _merge(copy.deepcopy(_TINY), tables)


def write_toml(path: str | Path, cfg: Mapping[str, Any]) -> Path:
    import tomli_w

    path = Path(path)
    path.write_text(tomli_w.dumps(dict(cfg)))
    return path


def start_worker(config: str | Path, *args: str, env: Mapping[str, str] | None = None,
                 log: str | Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m trainlab.search CONFIG ARGS...`` as a subprocess (stdout+stderr to ``log``)."""
    e = dict(os.environ)
    e.setdefault("OMP_NUM_THREADS", "1")  # workers share the machine's cores
    e.update(env or {})
    cmd = [sys.executable, "-m", "trainlab.search", str(config), "--quiet", *args]
    if log is None:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=e)
    with open(log, "ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=e)


def sqlite_trial_states(db: str | Path, study: str | None = None) -> dict[str, int]:
    """Trial counts by state, read with plain sqlite3 (read-only; a reader never disturbs the writers)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        q = "SELECT t.state, count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id"
        args: tuple[Any, ...] = ()
        if study is not None:
            q += " WHERE s.study_name = ?"
            args = (study,)
        rows = con.execute(q + " GROUP BY t.state", args).fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()
    return {str(s): int(n) for s, n in rows}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) here."""


def postgres_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl ($PATH, then Debian's /usr/lib/postgresql/*/bin)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists() and Path(d, "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(database: str = "trainlab") -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off) and yield the URL of a fresh
    database; stop it and delete it afterwards. As root, the server runs as the ``postgres`` user."""
    bindir = postgres_binaries()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")
    root = os.geteuid() == 0
    tmp = Path(tempfile.mkdtemp(prefix="trainlab-pg-"))
    prefix: list[str] = []
    if root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' user to run the server") from None
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = tmp / "data"
    port = _free_port()

    def run(*cmd: str) -> None:
        r = subprocess.run(prefix + list(cmd), capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(cmd[:2])} failed: {(r.stderr or r.stdout).strip()[-500:]}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log"), "-w", "-t", "60", "-o",
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start")
        try:
            import sqlalchemy

            admin = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
                                             poolclass=sqlalchemy.pool.NullPool)
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
            admin.dispose()
            yield f"postgresql://postgres@127.0.0.1:{port}/{database}"  # the form docs/search.md writes
        finally:
            subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
    finally:
        for _ in range(3):
            try:
                shutil.rmtree(tmp)
                break
            except OSError:
                time.sleep(0.5)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1, what: str = "condition",
             alive: subprocess.Popen[bytes] | None = None, log: str | Path | None = None) -> None:
    """Poll ``predicate()`` until true; raise TimeoutError naming ``what`` after ``timeout`` s.

    With ``alive``, a process the condition depends on: if it exits first, fail at once with its exit
    status and the tail of ``log`` instead of waiting out the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if alive is not None and alive.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-4000:] if log is not None and Path(log).exists() else ""
            raise AssertionError(f"process {alive.pid} exited ({alive.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill the given worker processes (by their own handles) and reap them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.wait(timeout=30)


def died_with(reason: str, pid: int) -> bool:
    """Is ``reason`` a fail reason the sweep gives a trial of worker process ``pid`` after a kill -9?

    Killed with its identity recorded: the process is named (``worker died (process PID on HOST is
    gone)``). Killed while claiming the trial (a few ms), it may have no identity yet: judged by its
    heartbeat a grace period later (``no heartbeat for more than G s``) or, before its first heartbeat,
    by its start time (``worker died before its first heartbeat``). The same outcome, another reason."""
    from trainlab.search._vocab import NEVER_BEAT, PROCESS_GONE, SILENT

    named = PROCESS_GONE.partition("{pid}")[0] + f"{pid} on "  # "worker died (process PID on "
    return reason == NEVER_BEAT or reason.startswith(named) or reason.startswith(SILENT.partition("{grace}")[0])
