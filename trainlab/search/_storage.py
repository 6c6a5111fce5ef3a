"""Where a study lives, how workers take turns, and how dead workers are noticed.

Storage URLs (``--storage``):

``sqlite:///path/study.db`` (or a path ending in .db/.sqlite/.sqlite3)
    The default (``study.db`` in the output directory). Opened in WAL mode
    (readers never block the writer) with a 60 s busy timeout and
    ``synchronous=NORMAL`` (a killed process loses nothing committed; a power cut
    may lose the last commits, never corrupts the file). Good for the workers of
    one machine; not on network file systems.
``postgresql://user:pass@host/db`` (any Optuna RDB URL)
    Many processes on many machines. A bare ``postgresql://`` uses the installed
    driver (psycopg v3 if present, else psycopg2 from the ``[postgres]`` extra:
    :func:`with_installed_driver`); ``postgresql+psycopg2://`` names one. Each worker keeps at most 4 connections
    (pool 2 + overflow 2, pre-ping, recycled every 5 min) and opens one more,
    briefly, for the study lock.
``journal:path/study.log``
    Optuna's journal file storage (append-only log, file locks): an alternative to
    SQLite for several processes on one machine or a shared file system that
    supports locks.
``memory``
    In-process only (tests, notebooks).

The study lock serializes the short "claim" step of every worker (sweep dead
trials, queue retries, hand out slots, ask and sample): a file lock (``fcntl``)
beside a SQLite or journal file, a PostgreSQL advisory lock, a MySQL named lock,
or a thread lock in memory. The OS or the database server drops it when its
holder dies, even by ``kill -9``.

Heartbeats: each running trial's worker records one every ``heartbeat`` seconds
(Optuna's heartbeat table for RDB storages, a trial attribute otherwise). A
RUNNING trial is *stale* when its last heartbeat is older than ``grace`` seconds,
or at once when its worker ran on this machine and that process no longer exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
import datetime as _dt
import fcntl
import hashlib
import os
from pathlib import Path
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard
import warnings

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from trainlab.errors import ConfigError
from trainlab.search._vocab import HEARTBEAT, NEVER_BEAT, PROCESS_GONE, SILENT, STORAGE_RECORD, WORKER

if TYPE_CHECKING:  # imported where used: only the RDB storages need SQLAlchemy
    import sqlalchemy

__all__ = ["StudyStorage", "open_storage", "worker_identity", "worker_is_dead_here", "HEARTBEAT", "WORKER",
           "LOCK_TIMEOUT", "record_storage", "recorded_storage", "server_url_without_password"]

#: seconds a worker waits for the study lock before giving up with an error
LOCK_TIMEOUT = 600.0
_PG_POOL = {"pool_size": 2, "max_overflow": 2, "pool_pre_ping": True, "pool_recycle": 300, "pool_timeout": 60}


def _quiet_optuna() -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed to be used with Study.optimize.*")


# ---- worker identity ----------------------------------------------------------------------------
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    # the command name may contain spaces and parentheses: fields restart after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def worker_identity() -> dict[str, Any]:
    """This process: host name, boot id, pid and its start time (so a reused pid is not mistaken for it)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "start": _process_start(pid) or ""}


def worker_is_dead_here(worker: object) -> TypeGuard[dict[str, Any]]:
    """True when ``worker`` (a :func:`worker_identity`) ran on this machine since its last boot and its
    process is gone. Workers of other machines are never judged here (their heartbeats are)."""
    if not isinstance(worker, dict):
        return False
    me = worker_identity()
    if worker.get("host") != me["host"] or worker.get("boot") != me["boot"] or not me["boot"]:
        return False
    try:
        pid = int(worker["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    start = _process_start(pid)
    if start is None:
        return True
    return bool(worker.get("start")) and bool(start) and start != worker.get("start")


# ---- locks ----------------------------------------------------------------------------------------
class _StudyLock(Protocol):
    """A lock one worker holds during a claim (an SQL lock also has ``dispose``, called after release)."""

    def acquire(self, timeout: float) -> None: ...

    def release(self) -> None: ...


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(f"could not lock {self.path} within {timeout:.0f} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class _SqlLock:
    """A PostgreSQL advisory lock / MySQL named lock on its own short-lived connection."""

    def __init__(self, url: str, name: str, dialect: str) -> None:
        import sqlalchemy

        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.name, self.dialect = name, dialect
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._conn: sqlalchemy.engine.Connection | None = None

    def acquire(self, timeout: float) -> None:
        import sqlalchemy

        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        args: dict[str, int | str]
        if self.dialect == "postgresql":
            stmt, args = sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}
        else:
            stmt, args = sqlalchemy.text("SELECT GET_LOCK(:k, 0)"), {"k": self.name[:64]}
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not conn.execute(stmt, args).scalar():
            if time.monotonic() > deadline:
                conn.close()
                raise TimeoutError(f"could not take the study lock '{self.name}' within {timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        self._conn = conn

    def release(self) -> None:
        import sqlalchemy

        if self._conn is None:
            return
        try:
            if self.dialect == "postgresql":
                self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            else:
                self._conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": self.name[:64]})
        finally:
            self._conn.close()  # closing the session drops the lock in any case
            self._conn = None

    def dispose(self) -> None:
        self._engine.dispose()


class _ThreadLock:
    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock

    def acquire(self, timeout: float) -> None:
        if not self._lock.acquire(timeout=timeout):
            raise TimeoutError(f"could not take the study lock within {timeout:.0f} s")

    def release(self) -> None:
        self._lock.release()


# ---- the storage ----------------------------------------------------------------------------------
def server_url_without_password(url: str) -> str | None:
    """``url`` with its password taken out, when it names a database server (a ``postgresql`` or ``mysql``
    URL); None for anything else (a SQLite file, a journal, memory, not a URL)."""
    try:
        import sqlalchemy

        u = sqlalchemy.engine.make_url(url)
    except Exception:  # not an SQLAlchemy URL, or no SQLAlchemy
        return None
    if u.get_backend_name() not in ("postgresql", "mysql"):
        return None
    # (URL.set(password=None) would keep the password: None means "unchanged" there)
    u = sqlalchemy.engine.URL.create(u.drivername, username=u.username, host=u.host, port=u.port,
                                     database=u.database,
                                     query={k: v for k, v in u.query.items() if k.lower() != "password"})
    return u.render_as_string(hide_password=False)


def record_storage(out: Path, url: str | None, study: str) -> None:
    """Note in a study's directory ``out`` which database server holds its trials: ``storage.json``,
    ``{"storage": URL, "study": NAME}``, written atomically, **without the password**. A study kept in
    PostgreSQL has no ``study.db`` in its directory; this is how the lab's viewer finds it and opens it.
    Where the viewer runs, the password comes from the database driver's own sources (for PostgreSQL,
    ``PGPASSWORD`` or ``~/.pgpass``), never from a file trainlab writes. Nothing is written for a storage
    that is not a server (the default ``study.db``, another SQLite file, a journal, memory)."""
    safe = None if url is None else server_url_without_password(url)
    if safe is None:
        return
    import json

    from trainlab.io import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / STORAGE_RECORD, json.dumps({"storage": safe, "study": study}, indent=1) + "\n")


def recorded_storage(d: Path) -> tuple[str, str | None]:
    """The ``(URL, study name)`` that :func:`record_storage` wrote into ``d``; a :class:`ConfigError` (one line)
    when the file is unreadable or names no database server (only ``postgresql``/``mysql`` URLs are opened:
    a file under the lab root must not make the viewer create or open a SQLite file elsewhere)."""
    import json

    p = d / STORAGE_RECORD
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p} is not readable: {e}") from None
    url = data.get("storage") if isinstance(data, dict) else None
    if not isinstance(url, str) or server_url_without_password(url) is None:
        raise ConfigError(f"{p} names no database server (a postgresql:// or mysql:// URL under \"storage\")")
    study = data.get("study")
    return url, study if isinstance(study, str) and study else None


def _mask(url: str) -> str:
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (journal:, memory)
        return url


def storage_failure(e: BaseException) -> str | None:
    """The database's own first line when ``e`` is, or was raised from, an operational failure of the study
    storage (SQLite "database or disk is full", "attempt to write a readonly database", "disk I/O error", a
    lost PostgreSQL connection); None for anything else (a bug must keep its traceback)."""
    import sqlalchemy

    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, sqlalchemy.exc.OperationalError):
            text = str(getattr(seen, "orig", None) or seen).strip()
            return text.splitlines()[0] if text else type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    return None


class StudyStorage:
    """An Optuna storage plus the study lock and heartbeats that trainlab's workers need.

    Attributes:
        url: the storage URL as given (password hidden in :attr:`display`).
        kind: ``"sqlite"``, ``"postgresql"``, ``"mysql"``, ``"rdb"`` (another dialect), ``"journal"``,
            ``"memory"``.
        storage: the Optuna storage to pass to ``optuna.create_study``/``load_study``.
    """

    def __init__(self, url: str, kind: str, storage: BaseStorage, raw: BaseStorage,
                 lock_factory: Callable[[str], _StudyLock], *, heartbeat: int, grace: int,
                 path: Path | None = None) -> None:
        self.url, self.kind, self.storage, self.raw = url, kind, storage, raw
        self._lock_factory = lock_factory
        self.heartbeat, self.grace, self.path = heartbeat, grace, path
        self.native_heartbeat = isinstance(raw, RDBStorage)

    @property
    def display(self) -> str:
        return _mask(self.url)

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        lk = self._lock_factory(name)
        try:
            lk.acquire(timeout)
        except TimeoutError as e:
            raise ConfigError(f"{e}: another worker holds the study lock (is one stuck?)") from None
        try:
            yield
        finally:
            lk.release()
            if hasattr(lk, "dispose"):
                lk.dispose()

    # ---- heartbeats -------------------------------------------------------------------------------
    def beat(self, trial_ids: Sequence[int]) -> None:
        for tid in trial_ids:
            try:
                if isinstance(self.raw, RDBStorage):  # self.native_heartbeat
                    self.raw.record_heartbeat(tid)
                else:
                    self.storage.set_trial_system_attr(tid, HEARTBEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # finished meanwhile (e.g. declared dead by another worker)

    def stale_trials(self, study_id: int, trials: Sequence[FrozenTrial]) -> dict[int, str]:
        """RUNNING trials whose worker is gone: trial_id -> why."""
        out: dict[int, str] = {}
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not running:
            return out
        # the most specific reason wins: a worker of this machine whose process is gone is named as such even
        # when its heartbeat has also gone stale (a restart more than `grace` seconds after a kill -9)
        # optuna's own stale-trial query (private, but what its fail_stale_trials uses) where it keeps heartbeats
        silent = set(self.raw._get_stale_trial_ids(study_id)) if isinstance(self.raw, RDBStorage) else set()
        now = time.time()
        started_limit = _dt.datetime.now() - _dt.timedelta(seconds=self.grace + self.heartbeat)
        for t in running:
            worker = t.system_attrs.get(WORKER)
            if worker_is_dead_here(worker):
                out[t._trial_id] = PROCESS_GONE.format(pid=worker.get("pid"), host=worker.get("host"))
            elif t._trial_id in silent or (not self.native_heartbeat and HEARTBEAT in t.system_attrs
                                           and now - float(t.system_attrs[HEARTBEAT]) > self.grace):
                out[t._trial_id] = SILENT.format(grace=self.grace)
            elif worker is None and t.datetime_start is not None and t.datetime_start < started_limit:
                out[t._trial_id] = NEVER_BEAT
        return out

    def close(self) -> None:
        """Give back every pooled connection (RDB)."""
        if isinstance(self.raw, RDBStorage):
            with contextlib.suppress(Exception):
                self.raw.remove_session()
            with contextlib.suppress(Exception):
                self.raw.engine.dispose()


def _sqlite_prepare(path: Path) -> None:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=60)
    try:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            con.execute("PRAGMA journal_mode=WAL")  # persistent: stored in the file
    finally:
        con.close()


def _driver_hint(e: BaseException) -> str:
    """The pip package for the module an ImportError names (the driver actually missing)."""
    name = getattr(e, "name", None) or str(e).rsplit(" ", 1)[-1].strip("'\"")
    pips = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pymysql": "PyMySQL",
            "MySQLdb": "mysqlclient"}
    return f"pip install '{pips[name]}'" if name in pips else f"install the Python module '{name}'"


def _rdb(url: str, kind: str, *, heartbeat: int, grace: int) -> RDBStorage:
    import sqlalchemy

    kwargs: dict[str, Any]
    if kind == "sqlite":
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        kwargs = dict(_PG_POOL)
    try:
        raw = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=grace)
    except ImportError as e:
        raise ConfigError(f"storage {_mask(url)}: the database driver is not installed ({e.__cause__ or e}); "
                          f"{_driver_hint(e.__cause__ or e)}") from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError) as e:
        first = str(e.orig if hasattr(e, "orig") and e.orig is not None else e).strip().splitlines()[0]
        raise ConfigError(f"cannot open storage {_mask(url)}: {first}") from None
    if kind == "sqlite":
        @sqlalchemy.event.listens_for(raw.engine, "connect")
        def _pragmas(dbapi_con: Any, _record: Any) -> None:  # the DB-API connection (sqlite3) and its pool record
            dbapi_con.execute("PRAGMA synchronous=NORMAL")
            dbapi_con.execute("PRAGMA busy_timeout=60000")

        raw.engine.dispose()  # connections opened during set-up lack the pragmas
    return raw


#: PostgreSQL drivers trainlab can use, in order of preference: SQLAlchemy's module name for each
_PG_DRIVERS = (("psycopg", "psycopg", "psycopg[binary]"), ("psycopg2", "psycopg2", "psycopg2-binary"))


def with_installed_driver(url: str) -> str:
    """``postgresql://...`` without a driver -> the same URL naming an installed one.

    SQLAlchemy 2.x reads a bare ``postgresql://`` as psycopg2 (1.x/2.0) or psycopg v3 (2.1+), whichever its
    version prefers, installed or not. trainlab picks what is installed: psycopg (v3) if present, else psycopg2
    (what the ``[postgres]`` extra installs). A URL that names its driver (``postgresql+psycopg2://``) is
    used as written. No driver at all is one line naming both and the extra.
    """
    import importlib.util

    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return url
    if parsed.drivername != "postgresql":
        if parsed.get_backend_name() == "postgresql":
            driver = parsed.get_driver_name()
            for module, name, pip in _PG_DRIVERS:
                if driver == name and importlib.util.find_spec(module) is None:
                    raise ConfigError(f"storage {_mask(url)}: the URL names the PostgreSQL driver '{driver}', which "
                                      f"is not installed: pip install '{pip}' (or write postgresql:// to use "
                                      "whichever driver is installed)")
        return url
    for module, name, _pip in _PG_DRIVERS:
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=f"postgresql+{name}").render_as_string(hide_password=False)
    raise ConfigError(f"storage {_mask(url)}: no PostgreSQL driver is installed (neither psycopg nor psycopg2): "
                      "pip install 'trainlab[postgres]'")


def open_storage(url: str | None, *, default: Path | None = None, heartbeat: int = 10,
                 grace: int = 60) -> StudyStorage:
    """Open (creating if needed) the storage at ``url``; ``None`` means a SQLite file at ``default``."""
    _quiet_optuna()
    if url is None:
        if default is None:
            raise ConfigError("no storage given and no output directory for the default study.db")
        url = f"sqlite:///{Path(default).resolve()}"
    if not isinstance(url, str) or not url:
        raise ConfigError(f"storage must be a URL string, got {url!r}")
    if url in ("memory", ":memory:"):
        memory = InMemoryStorage()
        mutex = threading.Lock()
        return StudyStorage(url, "memory", memory, memory, lambda name: _ThreadLock(mutex), heartbeat=heartbeat,
                            grace=grace)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):].removeprefix("//")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(path.name + ".trainlab-lock")
        journal = JournalStorage(JournalFileBackend(str(path)))
        return StudyStorage(url, "journal", journal, journal, lambda name: _FileLock(lock_path), heartbeat=heartbeat,
                            grace=grace, path=path)
    if "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3")):
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"storage must be an Optuna storage URL (sqlite:///file.db, postgresql://..., "
                          f"journal:file.log or memory), got {url!r}") from None
    dialect = parsed.get_backend_name()
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("storage sqlite:// in memory cannot be shared; use storage 'memory' or a file")
        path = Path(parsed.database).expanduser().resolve()
        lock_path = path.with_name(path.name + ".trainlab-lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            lk = _FileLock(lock_path)
            lk.acquire(LOCK_TIMEOUT)
            stack.callback(lk.release)  # one creator at a time: no "table already exists" races
            _sqlite_prepare(path)
            raw = _rdb(url, "sqlite", heartbeat=heartbeat, grace=grace)
        return StudyStorage(url, "sqlite", optuna.storages.get_storage(raw), raw,
                            lambda name: _FileLock(lock_path), heartbeat=heartbeat, grace=grace, path=path)
    kind = dialect if dialect in ("postgresql", "mysql") else "rdb"
    if kind == "postgresql":
        url = with_installed_driver(url)
    if kind == "rdb":
        raise ConfigError(f"storage {_mask(url)}: trainlab tune supports sqlite, postgresql and mysql URLs "
                          f"(and journal: files); got the '{dialect}' dialect")
    try:
        create_lock = _SqlLock(url, "trainlab:create-tables", kind)
        create_lock.acquire(LOCK_TIMEOUT)
    except ImportError as e:
        raise ConfigError(f"storage {_mask(url)}: the database driver is not installed ({e}); "
                          f"{_driver_hint(e)}") from None
    except sqlalchemy.exc.OperationalError as e:
        first = str(e.orig if e.orig is not None else e).strip().splitlines()[0]
        raise ConfigError(f"cannot open storage {_mask(url)}: {first}") from None
    try:
        raw = _rdb(url, kind, heartbeat=heartbeat, grace=grace)
    finally:
        create_lock.release()
        create_lock.dispose()
    return StudyStorage(url, kind, optuna.storages.get_storage(raw), raw,
                        lambda name: _SqlLock(url, f"trainlab:{name}", kind), heartbeat=heartbeat, grace=grace)
