"""Issue 17, item 3 for ``reproduce`` and ``doctor``: an output directory that cannot be written is one line
*before* the work, not after it.

Found auditing issue 17: ``trainlab reproduce optimizers --out RO`` on a read-only file system trained the
experiment (46 s), printed "held", and only then said ``cannot write RO`` -- every result lost; ``doctor``
the same after its steps. Now both check the directory first (without creating anything) and stop at once.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from trainlab.cli import main

REPO = Path(__file__).resolve().parents[2]


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip() and "warning" not in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", [["reproduce", "optimizers"],
                                     ["doctor", str(REPO / "examples" / "faults" / "lr_too_low.toml"), "--quick",
                                      "--steps", "1"]],
                         ids=["reproduce", "doctor"])
@pytest.mark.parametrize("below", [False, True], ids=["the directory", "a directory inside it"])
def test_a_read_only_output_is_refused_before_any_work(tmp_path, capsys, command, below, read_only):
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / "new" / "deeper" if below else ro
    with read_only(ro):
        rc = main([*command, "--out", str(out)])
    cap = capsys.readouterr()
    line = one_line(cap.err)
    assert rc == 2 and "cannot write" in line and ("read-only" in line or "permission denied" in line), line
    assert "nothing was computed yet" in line, line
    assert cap.out == "", cap.out  # no experiment ran, no doctor step
    assert list(ro.iterdir()) == []


def test_the_check_names_the_errno_and_leaves_nothing(tmp_path, monkeypatch):
    from trainlab._rundir import check_writable
    from trainlab.errors import WriteError

    target = tmp_path / "a" / "b"
    check_writable(target)  # writable: nothing raised, nothing created
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "access", lambda path, mode, **k: False)
    with pytest.raises(WriteError, match=r"cannot write .*: permission denied.*\(EACCES\)") as e:
        check_writable(target)
    assert str(tmp_path) in str(e.value) and errno.EACCES and list(tmp_path.iterdir()) == []
