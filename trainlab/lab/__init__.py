"""``trainlab lab``: watch and steer populations train, live, in the browser (docs/lab.md).

A Starlette server (:func:`create_app`) over the same API as the command line: the form is
generated from the config schema and validated with the CLI's messages (:mod:`._form`), each run
trains in a worker process through :func:`trainlab.run.train_run` into an ordinary run directory
under the root (:mod:`._worker`, :mod:`._runs`), its events stream to the page as server-sent
events, and the page steers it (:mod:`._steer`: pause, resume, stop, a member's optimizer
settings, fork). Needs the ``lab`` extra: ``pip install 'trainlab[lab]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "begin_shutdown", "Lab"]


def __getattr__(name: str) -> Any:  # the server stack is imported only when asked for
    if name == "create_app":
        from trainlab.lab._app import create_app

        return create_app
    if name == "begin_shutdown":
        from trainlab.lab._app import begin_shutdown

        return begin_shutdown
    if name == "Lab":
        from trainlab.lab._runs import Lab

        return Lab
    raise AttributeError(name)
