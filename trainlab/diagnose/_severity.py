"""The doctor's words for how bad something is: a finding's severity and a step's verdict.

A leaf (it imports nothing of trainlab), so every module of the doctor -- the steps, the
findings, the report, the HTML -- shares these names without importing each other. The values
are what ``doctor.json`` holds and what the console and the HTML show; a :class:`Severity` is a
``str`` (``Severity.WARN == "warn"``), so scripts that read the JSON or compare with the plain
word keep working.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = ["Severity", "worst"]


class Severity(StrEnum):
    """A finding's severity, or a step's verdict (``SKIP``: the step did not run; ``INFO`` never raises one)."""

    OK = "ok"
    INFO = "info"
    SKIP = "skip"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """0 for ok/info/skip, 1 for warn, 2 for fail: what decides the worst of several."""
        return _RANK[self]


_RANK = {Severity.OK: 0, Severity.INFO: 0, Severity.SKIP: 0, Severity.WARN: 1, Severity.FAIL: 2}


def worst(severities: Iterable[Severity | str], base: Severity | str = Severity.OK) -> Severity:
    """The most severe of ``severities``, starting from ``base`` (the first of equals wins: ``info`` never
    replaces ``ok``)."""
    out = Severity(base)
    for s in severities:
        s = Severity(s)
        if s.rank > out.rank:
            out = s
    return out
