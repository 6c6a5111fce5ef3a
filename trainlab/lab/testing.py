"""Helpers for testing the lab (shipped with the package, like :mod:`trainlab.nn.testing`)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

__all__ = ["parse_sse", "browser_paths"]


def browser_paths() -> tuple[str, str] | None:
    """``(chromium, chromedriver)``: Debian's headless browser and its Selenium driver, when both and the
    ``selenium`` package are installed (the lab's browser tests and ``benchmarks/bench_lab_stacks.py``);
    None otherwise, for the caller to skip or fail with its own message."""
    def first(name: str) -> str | None:
        return next((p for p in (shutil.which(name), f"/usr/bin/{name}") if p and os.path.exists(p)), None)

    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    chromium, driver = first("chromium"), first("chromedriver")
    return (chromium, driver) if chromium is not None and driver is not None else None


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
