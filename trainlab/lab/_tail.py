"""Following files that another process appends to: complete lines by byte offset, and server-sent events.

``metrics.jsonl`` (``trainlab train``) and a lesson's ``events.jsonl`` grow one JSON line at a time
while their writer runs. A reader keeps a byte offset; :func:`read_lines` returns the complete lines
after it and the offset just past the last newline, so a line the writer has half written is never
returned (it comes whole on the next read). When the file was truncated or rewritten under the
reader (``trainlab train --resume`` rewrites metrics.jsonl to the checkpoint's evaluations) the
offset no longer sits after a newline, or lies past the end: the read says ``reset`` and starts
again from 0, and the client drops what it had.

:func:`sse` formats one server-sent event (the ``text/event-stream`` format of the HTML standard);
:func:`follow` is the async generator behind every stream of the lab's viewer and lessons.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Chunk", "read_lines", "read_records", "sse", "follow", "jsonable", "with_root", "POLL_SECONDS"]

#: how often a stream looks at its files: four times a second (the issue asks for at least two updates a second)
POLL_SECONDS = 0.25
#: the most bytes one read returns (a client catching up on a long run gets the rest on the next read)
MAX_READ = 4 << 20


@dataclass
class Chunk:
    """What one read found: the complete ``lines``, the ``offset`` to read from next, and whether the
    file was rewritten (``reset``: the lines start from the beginning of the file again)."""

    lines: list[str]
    offset: int
    reset: bool = False


def read_lines(path: Path, offset: int, *, max_bytes: int = MAX_READ) -> Chunk:
    """The complete lines of ``path`` after byte ``offset`` (see the module docstring). A missing file
    is empty. ``offset`` must be one a previous read returned (or 0)."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return Chunk([], 0, reset=offset > 0)
    with f:
        size = os.fstat(f.fileno()).st_size
        reset = False
        if offset > size:
            reset = True
        elif offset > 0:
            f.seek(offset - 1)
            if f.read(1) != b"\n":  # rewritten: the old offset is no longer a line boundary
                reset = True
        if reset:
            offset = 0
        f.seek(offset)
        data = f.read(max_bytes)
    end = data.rfind(b"\n")
    if end < 0:
        if len(data) >= max_bytes:  # one line longer than max_bytes: skip it rather than stall for ever
            return Chunk([], offset + len(data), reset)
        return Chunk([], offset, reset)
    text = data[:end + 1].decode("utf-8", "replace")
    return Chunk([ln for ln in text.split("\n") if ln.strip()], offset + end + 1, reset)


def read_records(path: Path, offset: int, *, max_bytes: int = MAX_READ) -> tuple[list[dict[str, Any]], int, bool]:
    """:func:`read_lines`, each line parsed as JSON (a line that is not a JSON object is skipped)."""
    chunk = read_lines(path, offset, max_bytes=max_bytes)
    records = []
    for ln in chunk.lines:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records, chunk.offset, chunk.reset


def jsonable(v: Any) -> Any:
    """``v`` with non-finite floats as ``None`` (JSON has no NaN), tuples as lists, keys as text."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        try:
            return jsonable(v.item())
        except (TypeError, ValueError):
            return str(v)
    return v


def sse(data: Any, *, event: str | None = None, id: str | None = None) -> bytes:
    """One server-sent event: ``event:``/``id:`` lines and ``data:`` (JSON), ended by a blank line."""
    head = ""
    if event:
        head += f"event: {event}\n"
    if id is not None:
        head += f"id: {id}\n"
    body = json.dumps(jsonable(data), separators=(",", ":"), allow_nan=False)
    return (head + f"data: {body}\n\n").encode()


async def follow(poll: Callable[[], Awaitable[tuple[list[bytes], bool]]], *,
                 disconnected: Callable[[], Awaitable[bool]], interval: float = POLL_SECONDS,
                 keepalive: float = 15.0) -> AsyncIterator[bytes]:
    """Call ``poll()`` every ``interval`` seconds and yield the events it returns, until it says it is
    done (``(events, True)``: the run ended and everything was sent) or the client went away. A comment
    line every ``keepalive`` seconds keeps proxies from closing a quiet stream."""
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while True:
        events, done = await poll()
        for e in events:
            yield e
        if events:
            quiet_since = loop.time()
        if done:
            yield sse({}, event="end")
            return
        if await disconnected():
            return
        if loop.time() - quiet_since > keepalive:
            yield b": keepalive\n\n"
            quiet_since = loop.time()
        await asyncio.sleep(interval)


def client_gone(request: Any) -> Callable[[], Awaitable[bool]]:
    """The end condition of a stream: its client went away, or the server is stopping.

    When the lab stops (Ctrl-C), :func:`trainlab.lab.begin_shutdown` sets ``app.state.stopping``: every open
    stream then ends within its poll interval instead of holding the server in uvicorn's graceful shutdown
    for its whole timeout (and a cancelled-task traceback after it). The page's EventSource reconnects, with
    ``Last-Event-ID``, to the next server started on the root."""
    stopping = getattr(request.app.state, "stopping", None)

    async def gone() -> bool:
        return (stopping is not None and stopping.is_set()) or bool(await request.is_disconnected())

    return gone


def with_root(endpoint: Callable[[Any], Awaitable[Any]], root: Any) -> Callable[[Any], Awaitable[Any]]:
    """``endpoint`` with the lab root fixed to ``root`` (``None``: the app's ``state.root`` at request time).

    The viewer's and the lessons' ``routes(root=None)`` use it, so an app may either pass its root
    when it mounts them or set ``app.state.root``. The root travels in the request's scope."""
    if root is None:
        return endpoint

    async def bound(request: Any) -> Any:
        request.scope["trainlab_lab_root"] = Path(root)
        return await endpoint(request)

    bound.__name__ = getattr(endpoint, "__name__", "endpoint")
    bound.__doc__ = endpoint.__doc__
    return bound
