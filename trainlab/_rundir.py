"""Run directories: who may write one, and when an old run may be replaced.

The promises (docs/reliability.md, "Run directories"):

* **One writer.** A process that trains into a directory holds an OS-level lock on
  ``DIR/.trainlab.lock`` (``fcntl.flock``) for as long as it runs. A second process is
  refused with one line naming the holder (pid, host, start time, from the lock
  file's text). The kernel drops the lock when its holder dies -- ``kill -9``, a
  power cut of the process -- so a lock file left by a killed process is stale by
  construction: the next process locks it and takes it over.
* **Never overwrite by accident.** A new run goes only into a missing or empty
  directory. A finished run, an unfinished one (``--resume`` continues it) or a
  foreign directory is refused with one line naming it and the choices, unless
  ``overwrite=True`` (``--overwrite``).
* **Replace only once the new run exists.** With ``--overwrite`` the new run is
  written into a staging directory beside the old one; when its first checkpoint
  is on disk the two directories are exchanged in one ``renameat2(RENAME_EXCHANGE)``
  (Linux; elsewhere two renames) and the old run is deleted. A run that fails to
  start (a bad option, a full disk, Ctrl-C) therefore leaves the old run whole.

Without ``--out`` the CLI picks a fresh timestamped directory (:func:`fresh_run_dir`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import errno
import fcntl
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from trainlab.errors import ConfigError

__all__ = ["LOCK_NAME", "RunLock", "classify", "check_new_run", "check_study_dir", "check_writable", "fresh_run_dir",
           "exchange_dirs", "staging_dir"]

LOCK_NAME = ".trainlab.lock"
_STAGING = ".trainlab-new"


def _in_use_message(path: Path, holder: str) -> str:
    return (f"{path.parent} is in use by another trainlab process ({holder or 'holder unknown'}); "
            "wait for it to finish, or write to another --out")


class RunLock:
    """An exclusive ``flock`` on ``directory/.trainlab.lock``, with the holder's pid/host/start in the file.

    ``acquire`` never blocks: if another live process holds the lock it raises a
    :class:`ConfigError` saying who. A lock file whose process died is simply locked
    again (the kernel released it with the process), and its text rewritten.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(_in_use_message(self.path, self.holder())) from None
            raise
        started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        self.fd = fd
        return self

    def holder(self) -> str:
        try:
            with open(self.path, "rb") as f:
                return f.read(400).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def classify(directory: str | Path) -> str:
    """``"absent"``, ``"empty"`` (nothing but a lock file / staging leftovers), ``"finished"``
    (``summary.json``), ``"unfinished"`` (a trainlab run without a summary) or ``"foreign"``."""
    d = Path(directory)
    if not d.exists():
        return "absent"
    if not d.is_dir():
        return "foreign"
    # the lock, and temp files of atomic writes a kill -9 cut short (cleared when the next run starts)
    names = {p.name for p in d.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))} - {LOCK_NAME}
    if not names:
        return "empty"
    if "summary.json" in names:
        return "finished"
    if "config.toml" in names or "checkpoint.json" in names:
        return "unfinished"
    return "foreign"


_WHAT = {"finished": "holds a finished run", "unfinished": "holds an unfinished run",
         "foreign": "is not empty and is not a trainlab run"}


def check_new_run(directory: str | Path, *, overwrite: bool) -> str:
    """Refuse to start a new run in ``directory`` unless it is missing/empty or ``overwrite``; returns its kind."""
    d = Path(directory)
    kind = classify(d)
    if kind in ("absent", "empty") or overwrite:
        if kind == "foreign" and not d.is_dir():
            raise ConfigError(f"--out {d} is a file, not a directory; choose another --out")
        return kind
    choices = (f"--resume {d} to continue it, " if kind == "unfinished" else "") + \
        "--overwrite to replace it, or a new --out"
    raise ConfigError(f"{d} {_WHAT[kind]}; use {choices}")


# what only a train run writes at its top level (a study keeps its best model's files in best/)
_TRAIN_FILES = ("checkpoint.json", "config.toml", "metrics.jsonl", "model.safetensors", "history.json")


def check_study_dir(directory: str | Path) -> None:
    """Refuse a study's output directory (``tune --out``) that would mix a study into something else.

    A study writes ``summary.json``, ``trials.csv``, ``best.toml``, ``best/`` and figures into its directory,
    and a rerun of the same command reuses it (that is how a study resumes). A directory holding a train
    run, or a ``summary.json`` that is not a study's, is refused with one line instead of being overwritten.
    """
    d = Path(directory)
    if classify(d) in ("absent", "empty"):
        return
    if not d.is_dir():
        raise ConfigError(f"--out {d} is a file, not a directory; choose another --out")
    found = [n for n in _TRAIN_FILES if (d / n).exists()]
    if found:
        raise ConfigError(f"{d} holds a trainlab train run ({', '.join(found)}); a study would mix its files "
                          "(summary.json, figures) into it: choose another --out for tune")
    summary = d / "summary.json"
    if summary.exists():
        import json

        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
            ours = isinstance(data, dict) and "study" in data
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise ConfigError(f"{summary} is not a study's summary and tune would overwrite it: "
                              "choose another --out for tune")


def check_writable(directory: str | Path) -> None:
    """Refuse, before any work, an output directory that cannot be written (read-only file system, no
    permission), creating nothing: a command that computes for minutes and then cannot save loses it all.

    The directory, or the nearest parent that exists, must be writable (``os.access``: it reports a read-only
    file system, and permissions as they apply to this user). A disk that fills later is still the write
    paths' one-line error.
    """
    from trainlab.errors import WriteError, describe_oserror

    d = Path(directory).absolute()
    existing = d
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    code = errno.EROFS if read_only else errno.ENOTDIR if not existing.is_dir() else errno.EACCES
    raise WriteError(describe_oserror(OSError(code, os.strerror(code), str(existing)),
                                      then=f"nothing was computed yet; choose another --out than {directory}"))


def fresh_run_dir(parent: str | Path, stem: str) -> Path:
    """``parent/<stem>-YYYYmmdd-HHMMSS`` (``-2``, ``-3``... if taken): a directory no run has used."""
    base = Path(parent) / f"{stem}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    p, i = base, 1
    while p.exists():
        i += 1
        p = base.with_name(f"{base.name}-{i}")
    return p


def staging_dir(directory: str | Path) -> Path:
    """Where ``--overwrite`` writes the new run until its first checkpoint (beside the old one)."""
    d = Path(directory)
    return d.with_name(f".{d.name}{_STAGING}")


def _renameat2_exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def exchange_dirs(a: str | Path, b: str | Path) -> None:
    """Swap two directories' names, atomically where the OS can (Linux ``renameat2``)."""
    a, b = Path(a), Path(b)
    if _renameat2_exchange(a, b):
        return
    tmp = a.with_name(a.name + ".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)


def remove_tree(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
