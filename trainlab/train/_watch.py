"""Watching every training of a block of code from outside it: :func:`watch_training`.

An experiment builds its own :class:`~trainlab.train.Trainer` objects (often several, one population
each) and returns only when all have trained. The lab's live lessons show those trainings as they
happen; the experiment's code does not change for it. Inside ``with watch_training(cb):`` every
Trainer calls ``cb`` after its own callbacks and sinks (``on_train_begin``, ``on_evaluate``,
``on_step_end``, ``on_diverged``, ``on_train_end``), like a sink: a watcher reports, it must not
change the trainer or the record (it is not part of the trainer's state, and not checkpointed).

The watchers are a :class:`contextvars.ContextVar`: context-local (a thread or asyncio task sees only
its own), and outside any ``with`` block a Trainer sees none (one variable read per step).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

__all__ = ["watch_training", "watchers"]

_WATCHERS: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("trainlab_training_watchers",
                                                                           default=())


@contextlib.contextmanager
def watch_training(callback: Any) -> Iterator[None]:
    """Every Trainer that trains inside the block also reports to ``callback``, a
    :class:`~trainlab.train.Callback` (subclass it: the Trainer calls every hook)."""
    token = _WATCHERS.set(_WATCHERS.get() + (callback,))
    try:
        yield
    finally:
        _WATCHERS.reset(token)


def watchers() -> tuple[Any, ...]:
    """The watchers of the current context (usually none)."""
    return _WATCHERS.get()
