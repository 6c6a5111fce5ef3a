"""Ctrl-C and SIGTERM during ``trainlab tune``: a flag, checked at safe points, never an exception
thrown into the middle of a database write.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread
happens to be: inside SQLAlchemy's connection pool, a ``__del__`` or a weakref callback
(where Python prints "Exception ignored ..." and goes on, so the interrupt is lost), or
half-way through telling a trial. Inside :func:`graceful_stop` the first SIGINT/SIGTERM
only sets a flag. It is checked

* by the trainer of a running population, at its next step boundary
  (:class:`StopOnSignal`), so a study stops within one training step;
* by the tuner between claiming, training, telling and waiting (:func:`check`,
  :func:`sleep`), and right after opening or creating the study.

``check`` raises ``KeyboardInterrupt``; the tuner then marks the trials it holds as
failed-for-retry (not counted against ``max_retries``) and the CLI exits 130 with the
command that resumes (the same ``tune`` command). A second signal raises at once, for a
user who wants out now (the trials it held are then retried after the heartbeat grace).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from trainlab.train import Callback

__all__ = ["graceful_stop", "requested", "check", "sleep", "StopOnSignal"]

_state: dict[str, Any] = {"depth": 0, "signals": 0, "name": ""}


def requested() -> bool:
    """Whether a SIGINT/SIGTERM arrived inside :func:`graceful_stop`."""
    return _state["signals"] > 0


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested."""
    if _state["signals"]:
        raise KeyboardInterrupt(f"interrupted ({_state['name']})")


def sleep(seconds: float) -> None:
    """``time.sleep`` that ends early (raising ``KeyboardInterrupt``) when a stop is requested."""
    end = time.monotonic() + seconds
    while True:
        check()
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))


def _handler(signum: int, frame: Any) -> None:  # noqa: ARG001
    _state["signals"] += 1
    _state["name"] = signal.Signals(signum).name
    if _state["signals"] >= 2:
        raise KeyboardInterrupt(f"interrupted twice ({_state['name']})")


@contextlib.contextmanager
def graceful_stop() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM set the stop flag instead of raising (main thread only; nests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer = _state["depth"] == 0
    if outer:
        _state["signals"], _state["name"] = 0, ""
        old = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if outer:
            for sig, h in old.items():
                signal.signal(sig, h)


def active() -> bool:
    return _state["depth"] > 0


class StopOnSignal(Callback):
    """Asks the trainer to stop at the next step boundary once a stop was requested."""

    def on_step_end(self, trainer: Any, loss: Any) -> None:
        if _state["signals"]:
            trainer.interrupt_requested = True
