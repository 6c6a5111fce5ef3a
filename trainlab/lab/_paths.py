"""The one place where a path from a request becomes a path on disk.

The lab serves only what lies under its ``--root``. Every route that takes a path from a
request (a run's name, a file inside a run) passes it through :func:`safe_path`; nothing
joins request text onto a directory any other way.

What is refused, and why each rule exists:

* **NUL** (``\\x00``): the OS cuts the name there, so what is checked and what is opened
  would differ.
* **Absolute paths** (``/etc/passwd``, ``C:/x``, ``\\\\server\\share``): ``root / "/etc"`` is ``/etc``.
* **``..`` as any component** (``a/../../b``), even where it would land inside the root
  again: a request never needs it, and refusing it outright is simpler to trust than
  normalising it.
* **Backslashes**: a separator on Windows (``..\\..``); no run or file trainlab writes has one.
* **Symlinks that resolve outside the root** (a link ``root/x -> /etc``, at any depth, or
  a chain of links): the path is resolved with every link followed and must still be
  inside the resolved root. Links that stay inside the root are followed.

The check is done on the resolved path, and the resolved path is what is returned, so the
caller opens the file it checked (a link swapped in between check and open by someone who
can write under the root is outside this function's reach: such a person can already write
the runs).

Errors: :class:`PathRefused` (HTTP 403: the request named something outside the root or
malformed) and :class:`PathMissing` (HTTP 404: a well-formed path under the root that does
not exist, only with ``must_exist=True``). Both carry ``.status`` for the routes and are
:class:`trainlab.errors.TrainlabError` (so ``ValueError``) for Python callers.
"""

from __future__ import annotations

import re
from pathlib import Path

from trainlab.errors import TrainlabError

__all__ = ["PathRefused", "PathMissing", "safe_path"]

_DRIVE = re.compile(r"^[A-Za-z]:")


class PathRefused(TrainlabError):
    """A requested path that would leave the root, or cannot be a name under it (HTTP 403)."""

    status = 403


class PathMissing(TrainlabError):
    """A well-formed path under the root that names nothing (HTTP 404)."""

    status = 404


def safe_path(root: Path | str, relative: str, *, must_exist: bool = False) -> Path:
    """``root / relative`` resolved, after checking that it stays under ``root`` (see the module docstring).

    ``relative`` is text from a request: ``""`` or ``"."`` is the root itself, ``"a/b"`` a
    path below it. Returns the fully resolved path (symlinks followed). Raises
    :class:`PathRefused` for NUL, absolute paths, ``..``, backslashes and symlinks out of the
    root; :class:`PathMissing` if ``must_exist`` and nothing is there.
    """
    if not isinstance(relative, str):
        raise PathRefused(f"path must be text, got {type(relative).__name__}")
    shown = repr(relative[:200])
    if "\x00" in relative:
        raise PathRefused(f"path {shown} contains a NUL character; only names under the lab root are allowed")
    if "\\" in relative:
        raise PathRefused(f"path {shown} contains a backslash; use '/' between names under the lab root")
    if relative.startswith("/") or _DRIVE.match(relative):
        raise PathRefused(f"path {shown} is absolute; only paths relative to the lab root are allowed")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"path {shown} contains '..'; only paths below the lab root are allowed")
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()  # strict=False: a missing tail is fine, links are followed
    if target != base and base not in target.parents:
        raise PathRefused(f"path {shown} leads outside the lab root (through a symbolic link); refused")
    if must_exist and not target.exists():
        raise PathMissing(f"path {shown} does not exist under the lab root")
    return target
