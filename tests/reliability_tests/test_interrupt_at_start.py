"""Ctrl-C while a command starts (its modules still importing) is one line and status 130, not a traceback.

Found by the 200-interruption fault campaign of 2026-12-07 (seed 2, docs/reliability.md): 3 of its 200
signals were a SIGINT during start-up, each exiting 1 with a traceback (the run itself resumed fine):

* Python turns a KeyboardInterrupt inside a class body's ``__set_name__`` (a dataclass being defined) into
  ``RuntimeError: Error calling __set_name__ ...``, and one inside a C extension's initialization
  (matplotlib's ``_backend_agg``) into ``ImportError: initialization failed``;
* ``main`` imported ``trainlab.runtime`` before the one-line error handling began.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from trainlab._command import ctrl_c_held, run_with_one_line_errors
from trainlab.cli import main


class _Interrupting:
    """A dataclass field default whose ``__set_name__`` is where Ctrl-C lands."""

    def __set_name__(self, owner, name):  # noqa: ANN001
        raise KeyboardInterrupt


def _define_a_class() -> int:
    @dataclasses.dataclass
    class Step:  # noqa: F841 - defined to be interrupted
        failures: int = 0
        where = _Interrupting()

    return 0


def _import_a_c_extension() -> int:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise ImportError("initialization failed") from None  # what CPython's module init does, __context__ kept


@pytest.mark.parametrize("body", [_define_a_class, _import_a_c_extension], ids=["__set_name__", "C extension"])
def test_ctrl_c_turned_into_another_exception_by_python_is_still_an_interrupt(capsys, body):
    assert run_with_one_line_errors(body) == 130
    assert capsys.readouterr().err == "trainlab: interrupted\n"


def test_a_bug_is_not_disguised_as_an_interrupt():
    def bug() -> int:
        raise RuntimeError("a real bug")

    with pytest.raises(RuntimeError, match="a real bug"):
        run_with_one_line_errors(bug)


def test_ctrl_c_in_mains_first_import_is_one_line(capsys, monkeypatch):
    import trainlab.runtime

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trainlab.runtime, "keep_freed_memory", interrupted)
    assert main(["--version"]) == 130
    assert capsys.readouterr().err == "trainlab: interrupted\n"


def test_the_command_line_front_imports_no_torch_before_main():
    """``trainlab`` (the console script: ``from trainlab.cli import main``) imported torch through
    ``trainlab/__init__`` before ``main`` began, seconds in which Ctrl-C printed Python's traceback. Now the
    package is light; torch loads inside main's one-line handling."""
    import subprocess
    import sys

    code = ("import sys, trainlab.cli, trainlab\n"
            "assert 'torch' not in sys.modules, 'torch imported before main'\n"
            "assert trainlab.Population.__name__ == 'Population' and 'torch' in sys.modules\n"
            "from trainlab import *\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_a_ctrl_c_held_while_torch_imports_is_raised_when_the_import_ends():
    """A SIGINT inside torch's C++ start-up aborted the process (SIGABRT, CI of 2026-12-07); held, the block
    finishes and the interrupt comes after it, once."""
    import os
    import signal

    finished = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("the block ran to its end")
    assert finished == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back


def test_no_ctrl_c_no_interrupt_and_errors_pass_through():
    with ctrl_c_held():
        pass
    with pytest.raises(ValueError):
        with ctrl_c_held():
            raise ValueError("an error inside is not swallowed")


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.5, 1.5])
def test_a_real_ctrl_c_while_train_starts_is_one_line(tmp_path, delay):
    """The real thing: ``python -m trainlab.cli train`` and SIGINT while torch imports (3-15 s on a loaded
    2-core machine). Before: Python's KeyboardInterrupt traceback from inside torch, status -2."""
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "train", "examples/mlp.toml", "--quiet",
                          "--out", str(tmp_path / "run")], cwd=Path(__file__).resolve().parents[2],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130 and err.count("\n") == 1 and err.startswith("trainlab: interrupted"), err
