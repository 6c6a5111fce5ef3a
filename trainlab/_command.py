"""The protocol of a ``trainlab`` sub-command, the argument helpers sub-commands share, and the one-line
error printing of every command-line entry point.

A leaf: it imports only :mod:`trainlab.errors`. The front (:mod:`trainlab.cli`) and the packages'
command modules (``trainlab.diagnose.cli``, ``trainlab.report.cli``, ``trainlab.search``'s tune
command) import it, and none of them imports :mod:`trainlab.cli`: the front depends on the commands,
never the other way round.

A sub-command is a :class:`Command`: ``name`` and ``help``, ``add_arguments(parser)`` declares its flags,
``run(args)`` calls the API and returns the exit status. Errors the user can fix are raised as
:class:`~trainlab.errors.TrainlabError` (a :class:`~trainlab.errors.ConfigError` for a bad config);
:func:`run_with_one_line_errors` turns them into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
import contextlib
import json
import os
import sys
from typing import ClassVar, NoReturn

from trainlab.errors import Interrupted, TrainlabError, describe_oserror, shorten

__all__ = ["Command", "CommandParser", "add_overrides", "add_device", "config_overrides", "error_line",
           "run_with_one_line_errors"]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are the commands' errors: one line, exit status 2 (argparse itself
    prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        raise TrainlabError(message)


class Command:
    """One sub-command: ``add_arguments`` declares flags, ``run`` calls the API and returns the exit status."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""

    def add_arguments(self, p: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


# ---- argument helpers -----------------------------------------------------------------------------
def add_overrides(p: argparse.ArgumentParser, *,
                  help: str = "override a config key, e.g. --set optim.lr=0.1 (repeatable)") -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_device(p: argparse.ArgumentParser, *, help: str = "cpu or cuda (overrides the config's device)") -> None:
    """``--device NAME`` in ``args.device`` (None: the config's)."""
    p.add_argument("--device", default=None, help=help)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, then ``--device`` as the override ``device="..."`` when it is given."""
    device = getattr(args, "device", None)
    return list(args.overrides) + ([f"device={json.dumps(device)}"] if device else [])


# ---- one-line errors --------------------------------------------------------------------------------
def error_line(e: BaseException) -> str:
    """What an entry point prints for an error that ended a command (without a traceback)."""
    if isinstance(e, KeyboardInterrupt):
        # Interrupted: stopped after saving, with the command that continues; otherwise stopped before
        # anything was running (parsing, loading): nothing to save
        return f"trainlab: {e}" if isinstance(e, Interrupted) else "trainlab: interrupted"
    if isinstance(e, OSError) and not isinstance(e, TrainlabError):
        return f"trainlab: error: {describe_oserror(e)}"  # a write path the commands did not wrap: still one line
    return f"trainlab: error: {shorten(' '.join(str(e).split(chr(10))))}"


def run_with_one_line_errors(body: Callable[[], int]) -> int:
    """``body()``'s exit status; a :class:`TrainlabError` or an ``OSError`` is one line on stderr and
    status 2, Ctrl-C (or SIGTERM made one) is one line and status 130."""
    try:
        return body()
    except BrokenPipeError:  # `trainlab reproduce --list | head`: the reader left; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout at exit; keep it quiet
        except OSError:
            pass
        return 0
    except (TrainlabError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(error_line(e), file=sys.stderr)
        return 130
    except Exception as e:
        if not _from_an_interrupt(e):
            raise
        print("trainlab: interrupted", file=sys.stderr)  # Ctrl-C while modules were still importing
        return 130


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives while the block runs, and raise it as ``KeyboardInterrupt`` when
    the block ends.

    For imports of torch: its initialization runs C++ (pybind11) that calls back into Python, and a
    KeyboardInterrupt raised in such a callback leaves the C++ as an uncaught exception, which aborts the
    process (``terminate called after throwing an instance of 'pybind11::error_already_set'``, SIGABRT,
    status -6; CI of 2026-12-07, a SIGINT 0.5 s after ``trainlab train`` started). Held, the interrupt costs
    the rest of the import (a few seconds at most) and is then the usual one line and status 130. Outside
    the main thread (where signal handlers cannot be set) the block runs as it is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if held:
        raise KeyboardInterrupt


def _from_an_interrupt(e: BaseException) -> bool:
    """Whether ``e`` was raised because of a Ctrl-C: Python turns a KeyboardInterrupt inside a class body's
    ``__set_name__`` into a RuntimeError (its ``__cause__``), and one inside a C extension's initialization
    into ``ImportError: initialization failed`` (its ``__context__``). Anything else keeps its traceback."""
    seen: BaseException | None = e.__cause__ or e.__context__
    for _ in range(8):  # a short chain: deeper is not Python's wrapping of an interrupt
        if seen is None or isinstance(seen, KeyboardInterrupt):
            return seen is not None
        seen = seen.__cause__ or seen.__context__
    return False
