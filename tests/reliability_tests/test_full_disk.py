"""Issue 17, item 3 on a real full disk and for ``tune``: every write failure is one line, exit 2, and the
command the line names continues the work.

Found auditing issue 17 (the earlier tests inject an OSError that carries its file name at trainlab's write
layer; a real ENOSPC does not):

* ``train`` on a really full disk said ``cannot write a file: ... nothing of the run is lost`` -- no file
  named (``f.write`` raises ENOSPC without one), and no way on (the same command is then refused, the
  directory holds an unfinished run; ``--resume`` is the way);
* ``tune`` on a full disk (SQLite: "database or disk is full") or a read-only study ended in a traceback
  (Optuna's StorageInternalError), exit 1.

The real-disk tests mount a tiny tmpfs (root only; skipped where mounting is not allowed); the injected
ones run everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
import sqlite3
import subprocess

import pytest

from trainlab.cli import main
from trainlab.search.testing import tiny_search_config, write_toml

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--quiet", "--set", "data.train=200", "--set", "data.val=100", "--set", "data.test=100",
         "--set", "train.epochs=2", "--set", "model.hidden=[16]"]


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip() and "warning" not in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@contextlib.contextmanager
def tiny_disk(d: Path, size: str = "300k"):
    """A real file system of ``size`` at ``d`` (tmpfs); ``grow()`` makes it 50 MB (space freed)."""
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        yield lambda: subprocess.run(["mount", "-o", "remount,size=50m", str(d)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(d)], check=True)


@pytest.fixture(autouse=True)
def _no_study_figures(monkeypatch):
    """The study's figures are most of a tiny study's time and not what is tested here."""
    from trainlab.search import _plots

    monkeypatch.setattr(_plots, "draw_all", lambda *a, **k: {})


@pytest.fixture(scope="module")
def tune_cfg(tmp_path_factory) -> Path:
    return write_toml(tmp_path_factory.mktemp("c") / "tune.toml", tiny_search_config(search={"trials": 2,
                                                                                            "population": 2}))


def test_a_write_error_without_a_file_name_is_given_the_file(tmp_path, monkeypatch):
    import trainlab.io as io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")  # as f.write/fsync raise it: no file name

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError) as e:
        io.atomic_write_bytes(tmp_path / "model.safetensors", b"x" * 100)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []  # the temp file is gone


def test_train_on_a_really_full_disk_names_the_file_and_the_resume_that_works(tmp_path, capsys):
    d = tmp_path / "disk"
    with tiny_disk(d) as grow:
        out = d / "run"
        rc = main(["train", str(REPO / "examples" / "mlp.toml"), *SMALL, "--out", str(out)])
        line = one_line(capsys.readouterr().err)
        assert rc == 2 and "no space left" in line and "(ENOSPC)" in line, line
        assert f"cannot write {out}/" in line, line  # the file, not "a file"
        assert line.endswith(f"trainlab train --resume {out}"), line
        grow()
        assert main(["train", "--resume", str(out), "--quiet"]) == 0
        assert json.loads((out / "summary.json").read_text())["finished"] is True


def test_tune_on_a_really_full_disk_is_one_line_and_the_rerun_completes(tmp_path, tune_cfg, capsys):
    d = tmp_path / "disk"
    with tiny_disk(d) as grow:
        out = d / "study"
        argv = ["tune", str(tune_cfg), "--out", str(out), "--quiet"]
        rc = main(argv)
        line = one_line(capsys.readouterr().err)
        assert rc == 2 and "disk is full" in line and str(out / "study.db") in line, line
        assert "rerun the same command" in line, line
        grow()
        assert main(argv) == 0
        trials = json.loads((out / "summary.json").read_text())["trials"]
        assert trials["complete"] == 2 and trials["running"] == 0, trials


@pytest.mark.parametrize("cause", ["database or disk is full", "attempt to write a readonly database",
                                   "disk I/O error"])
def test_a_failing_study_database_is_one_line(tmp_path, tune_cfg, capsys, monkeypatch, cause):
    import optuna
    import sqlalchemy

    real = optuna.storages.RDBStorage.set_trial_state_values

    def fail(self, *a, **k):  # the first tell: what Optuna raises when SQLite cannot write
        try:
            raise sqlalchemy.exc.OperationalError("UPDATE trials ...", {}, sqlite3.OperationalError(cause))
        except sqlalchemy.exc.OperationalError as e:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from e

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", fail)
    out = tmp_path / "study"
    rc = main(["tune", str(tune_cfg), "--out", str(out), "--quiet"])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and cause in line and f"trainlab tune {tune_cfg} --out {out}" in line, line
    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", real)
    assert main(["tune", str(tune_cfg), "--out", str(out), "--quiet"]) == 0


def test_a_programming_error_inside_the_storage_is_not_disguised(tmp_path, tune_cfg, monkeypatch):
    import optuna

    def bug(self, *a, **k):
        raise optuna.exceptions.StorageInternalError("invalid data in the commit")  # not the disk: a bug

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", bug)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        main(["tune", str(tune_cfg), "--out", str(tmp_path / "s"), "--quiet"])
