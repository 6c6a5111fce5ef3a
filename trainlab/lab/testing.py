"""Helpers for testing the lab (shipped with the package, like :mod:`trainlab.nn.testing`)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_sse"]


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """The ``(event name, JSON data)`` pairs of a server-sent event stream's text; blocks without data
    (comments, keep-alives) are skipped and an unnamed event is ``"message"``, as browsers name it."""
    out: list[tuple[str, Any]] = []
    for block in text.split("\n\n"):
        event, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            out.append((event, data))
    return out
