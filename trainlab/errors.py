"""User-facing errors.

A :class:`TrainlabError` is a mistake in what the user gave (a config key, a value,
a file). The CLI prints its message as one line and exits with status 2; the API
raises it as a ``ValueError`` so Python users can catch it the usual way.
"""

from __future__ import annotations

__all__ = ["TrainlabError", "ConfigError", "DataError", "CheckpointError", "WriteError", "Interrupted",
           "describe_oserror", "shorten"]


class TrainlabError(ValueError):
    """A problem with the user's input: the message names the thing and what is allowed."""


class ConfigError(TrainlabError):
    """A bad configuration key or value."""


class DataError(TrainlabError):
    """A missing, corrupt or inconsistent data file, or an impossible split."""


class CheckpointError(TrainlabError):
    """A missing, corrupt or mismatched checkpoint / saved model."""


class WriteError(TrainlabError):
    """Writing a result failed in the operating system (disk full, read-only, permission, quota, name too
    long). The message names the file and the cause; what was written before is intact."""


_ERRNO_ADVICE = {
    "ENOSPC": "no space left on the device: free some space",
    "EDQUOT": "disk quota exceeded: free some space or raise the quota",
    "EROFS": "the file system is read-only: write somewhere else",
    "EACCES": "permission denied: write to a directory you may write to",
    "EPERM": "operation not permitted: write to a directory you may write to",
    "ENAMETOOLONG": "the file name is too long: choose a shorter path",
    "EIO": "input/output error from the device",
}


def describe_oserror(e: OSError, *, then: str = "") -> str:
    """One line for an OSError while writing: the file, the cause (with its errno name) and what to do."""
    import errno as _errno
    import os as _os

    name = _errno.errorcode.get(e.errno or 0, "")
    cause = _ERRNO_ADVICE.get(name) or (e.strerror or str(e))
    where = e.filename if e.filename is not None else "a file"
    code = f" ({name})" if name else ""
    text = f"cannot write {_os.fsdecode(where) if not isinstance(where, int) else where}: {cause}{code}"
    return f"{text}; {then}" if then else text


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command after it saved its work; ``resume`` is the command to continue."""

    def __init__(self, what: str, resume: str) -> None:
        super().__init__(what)
        self.what, self.resume = what, resume

    def __str__(self) -> str:
        return f"{self.what}; everything computed so far is saved; to continue: {self.resume}"


def shorten(message: str, *, longest: int = 200) -> str:
    """``message`` with every run of more than ``longest`` non-blank characters cut to its start and end and
    the number of characters left out (a 100 KB ``--set`` value is not echoed back whole)."""
    import re

    def cut(m: "re.Match[str]") -> str:
        t = m.group(0)
        return f"{t[:80]}...[{len(t) - 110} characters]...{t[-30:]}"

    return re.sub(r"\S{%d,}" % (longest + 1), cut, message)
