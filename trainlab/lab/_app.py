"""The lab's web server: a Starlette app over :class:`~trainlab.lab._runs.Lab`.

Routes (JSON in and out; every error is ``{"error": "<one line>"}`` with its status):

=====================================  ==============================================================
``GET  /``                             the page (``static/index.html``); ``/static/*`` its scripts
``GET  /api/schema``                   the form: every config key with type, range, default, help
``POST /api/validate``                 ``{key, value}`` -> ``{message}`` (the CLI's, or null)
``POST /api/compose``                  ``{fields, compare, seeds}`` -> labels, memory estimate, TOML
``POST /api/toml``                     ``{text}`` -> ``{fields}`` (import a TOML config)
``GET  /api/runs``                     every run under the root, with status and step
``POST /api/runs``                     ``{fields, compare, seeds, name?}`` -> a queued run
``GET  /api/runs/{name}``              one run (and its config as TOML)
``GET  /api/runs/{name}/events``       server-sent events: every event of the run, then live ones
``POST /api/runs/{name}/{pause,resume,stop,restart,cancel}``
``POST /api/runs/{name}/set``          ``{member, key, value}``: a per-member optimizer setting
``POST /api/runs/{name}/fork``         ``{member, name?}``: a new run from the member's current state
``GET  /api/runs/{name}/files/{path}`` a file of the run (curves.png, config.toml, ...)
=====================================  ==============================================================

Security (docs/lab.md, "Security"): with a token (required for any address but loopback) every
request needs it -- ``?token=`` (the printed URL; the page then keeps it in a same-site cookie) or
``Authorization: token ...`` -- else 403. Requests that change something must be JSON
(``Content-Type: application/json``: a cross-site form cannot send that without a CORS preflight,
which the lab never grants) and at most 1 MiB. A request's Host must be the address the lab serves
(DNS rebinding). Paths from requests go through :func:`trainlab.lab._paths.safe_path`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
import json
from pathlib import Path
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from trainlab.config import RunConfig
from trainlab.errors import ConfigError, TrainlabError
from trainlab.lab._form import LabInputError, check_memory, compose, form_schema, given_to_toml, per_member_keys
from trainlab.lab._form import toml_to_fields, validate_field
from trainlab.lab._runs import NAME_RE, Lab, RunState
from trainlab.lab._tail import client_gone

__all__ = ["create_app", "STATIC"]

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20
COOKIE = "trainlab_lab_token"


class _Guard:
    """Token, Host and body-size checks in front of every route (pure ASGI, so streaming stays streaming)."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: set[str] | None) -> None:
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan: the server's own start and stop
            await self.app(scope, receive, send)
            return
        req = HTTPConnection(scope)
        refusal = self._refusal(req)
        if refusal is not None:
            if scope["type"] == "websocket":  # closed before it is accepted: the handshake gets HTTP 403
                await send({"type": "websocket.close", "code": 1008, "reason": refusal[:120]})
            else:
                await _error(403, refusal)(scope, receive, send)
            return
        if scope["type"] == "websocket":  # the lab serves none itself; one added to the app passes the same checks
            await self.app(scope, receive, send)
            return
        set_cookie = self.token is not None and req.query_params.get("token") is not None
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                await _error(415, "requests that change something must be JSON (Content-Type: application/json)")(
                    scope, receive, send)
                return
            length = req.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await _error(413, f"request body over {MAX_BODY} bytes")(scope, receive, send)
                return
        if not set_cookie:
            await self.app(scope, receive, send)
            return
        token = self.token

        async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"set-cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _refusal(self, req: HTTPConnection) -> str | None:
        """Why a request (or a WebSocket handshake) is refused: the Host is not the lab's address, the token is
        missing or wrong, or -- a WebSocket, which browsers open across sites -- its Origin is another site."""
        host = req.headers.get("host", "").lower()
        if self.hosts is not None and host not in self.hosts:
            return f"host {host[:100]!r} is not the lab's address"
        if self.token is not None:
            given = req.query_params.get("token") or req.cookies.get(COOKIE) or ""
            auth = req.headers.get("authorization", "")
            if auth.lower().startswith("token "):
                given = auth[6:].strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "a valid token is needed: open the URL the lab printed (with ?token=...)"
        origin = req.headers.get("origin")
        if req.scope["type"] == "websocket" and origin is not None and origin.split("://", 1)[-1].lower() != host:
            return f"a WebSocket from another site ({origin[:100]!r}) is not the lab's page"
        return None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise LabInputError(f"request body over {MAX_BODY} bytes")
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as e:
        raise LabInputError(f"request body is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise LabInputError(f"request body must be a JSON object, got {type(data).__name__}")
    return data


Endpoint = Callable[[Request], Awaitable[Response]]


def _handle(fn: Endpoint) -> Endpoint:
    """Route wrapper: user errors -> 400 (or the error's status) with the one-line message."""
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except LabInputError as e:
            return _error(400, str(e))
        except TrainlabError as e:
            return _error(getattr(e, "status", 400), str(e))
        except (ConfigError, ValueError, TypeError, KeyError, OverflowError) as e:
            return _error(400, f"{type(e).__name__}: {e}")
    wrapped.__name__ = fn.__name__
    return wrapped


def create_app(root: str | Path = "runs/lab", *, token: str | None = None, max_parallel: int = 2,
               threads: int | None = None, probe_every: int = 20, interval: float = 0.2,
               hosts: set[str] | None = None, lab: Lab | None = None) -> Starlette:
    """The lab's ASGI app serving the runs under ``root``.

    ``token``: required on every request when given (``trainlab lab`` gives one for any address
    but loopback). ``max_parallel``: trainings at once (the rest queue). ``threads``: torch threads
    per worker. ``probe_every``: steps between per-layer probes. ``interval``: seconds between
    progress events. ``hosts``: the Host headers accepted (None: any; the CLI passes the bound
    address's names).
    """
    lab = lab or Lab(root, max_parallel=max_parallel, threads=threads, probe_every=probe_every, interval=interval)

    def run_of(request: Request) -> RunState:
        name = request.path_params["name"]
        if not NAME_RE.match(name) or name not in lab.runs:
            if NAME_RE.match(name) and (lab.root / name / "config.toml").exists() and \
                    not (lab.root / name).is_symlink():
                return lab.refresh(name)
            raise _NotFound(f"no run {name[:100]!r} under the lab root")
        return lab.runs[name]

    @_handle
    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @_handle
    async def schema(request: Request) -> Response:
        return JSONResponse({"tables": form_schema(), "compare_keys": per_member_keys(), "root": str(lab.root),
                             "max_parallel": lab.max_parallel, "links": links})

    @_handle
    async def validate(request: Request) -> Response:
        body = await _body(request)
        return JSONResponse({"key": body.get("key"), "message": validate_field(body.get("key"), body.get("value"))})

    def _compose(body: dict[str, Any]) -> tuple[dict[str, Any], RunConfig, dict[str, Any]]:
        given, cfg = compose(body.get("fields"), body.get("compare"), body.get("seeds", 1))
        mem = check_memory(cfg)
        return given, cfg, mem

    @_handle
    async def compose_route(request: Request) -> Response:
        from trainlab.labels import member_labels

        body = await _body(request)
        given, cfg, mem = await asyncio.to_thread(_compose, body)
        return JSONResponse({"size": cfg.size, "labels": member_labels(cfg), "memory": mem,
                             "toml": given_to_toml(given)})

    @_handle
    async def toml_import(request: Request) -> Response:
        body = await _body(request)
        return JSONResponse({"fields": toml_to_fields(body.get("text"))})

    @_handle
    async def runs(request: Request) -> Response:
        return JSONResponse({"runs": [r.summary() for r in sorted(lab.runs.values(), key=lambda r: -r.created)],
                             "active": lab.active(), "queued": len(lab.queue), "max_parallel": lab.max_parallel})

    @_handle
    async def create(request: Request) -> Response:
        body = await _body(request)
        given, cfg, mem = await asyncio.to_thread(_compose, body)
        name = body.get("name")
        if name:
            if not isinstance(name, str) or not NAME_RE.match(name):
                raise LabInputError("name: letters, digits, '.', '_' and '-' only (1-100 characters, not starting "
                                    "with '.' or '-')")
            if name in lab.runs or (lab.root / name).exists():
                raise LabInputError(f"name: a run {name!r} already exists under the lab root")
        else:
            keys = [c.get("key", "") for c in (body.get("compare") or []) if isinstance(c, dict)]
            name = lab.new_name("-vs-".join(str(k).split(".")[-1] for k in keys) or "run")
        st = lab.submit(name, cfg)
        return JSONResponse({"name": st.name, "status": st.status, "memory": mem}, status_code=201)

    @_handle
    async def run_info(request: Request) -> Response:
        st = run_of(request)
        cfg_text = ""
        p = st.dir / "config.toml"
        if p.exists() and not p.is_symlink():
            cfg_text = p.read_text()
        elif st.cfg is not None:
            cfg_text = st.cfg.to_toml()
        return JSONResponse({**st.summary(), "config": cfg_text})

    async def events(request: Request) -> Response:
        try:
            st = run_of(request)
        except _NotFound as e:
            return _error(404, str(e))
        after = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            last = int(after)
        except ValueError:
            return _error(400, f"after must be an event number, got {after[:40]!r}")

        gone = client_gone(request)

        async def stream() -> AsyncIterator[str]:
            nonlocal last
            wake = asyncio.Event()
            st.waiters.add(wake)
            try:
                yield "retry: 1000\n\n"
                while True:
                    # events are in seq order; a resumed run's log starts again with a "begin" that
                    # carries its whole history, so a page never needs events it missed before that
                    new = st.events[bisect.bisect_right(st.events, last, key=lambda e: e["seq"]):]
                    for e in new:
                        yield f"id: {e['seq']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n"
                        last = e["seq"]
                    wake.clear()
                    try:
                        await asyncio.wait_for(wake.wait(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
                    if await gone():
                        break
            finally:
                st.waiters.discard(wake)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _control(cmd: str) -> Endpoint:
        @_handle
        async def route(request: Request) -> Response:
            st = run_of(request)
            await _body(request)
            lab.command(st, {"cmd": cmd})
            return JSONResponse({"name": st.name, "sent": cmd})
        route.__name__ = f"run_{cmd}"
        return route

    @_handle
    async def restart(request: Request) -> Response:
        st = run_of(request)
        await _body(request)
        if st.status not in ("interrupted", "failed") or not (st.dir / "config.toml").exists():
            raise LabInputError(f"run {st.name} is {st.status}; only an interrupted run can be resumed")
        if (st.dir / "summary.json").exists():
            raise LabInputError(f"run {st.name} is finished; nothing to resume")
        lab.resume(st)
        return JSONResponse({"name": st.name, "status": st.status})

    @_handle
    async def cancel(request: Request) -> Response:
        st = run_of(request)
        await _body(request)
        if not lab.cancel(st):
            raise LabInputError(f"run {st.name} is {st.status}, not queued; use stop")
        return JSONResponse({"name": st.name, "status": "cancelled"})

    @_handle
    async def set_route(request: Request) -> Response:
        st = run_of(request)
        body = await _body(request)
        key = body.get("key", "optim.lr")
        member = body.get("member")
        if member is not None and (not isinstance(member, int) or isinstance(member, bool)
                                   or not 0 <= member < max(st.size, 1)):
            raise LabInputError(f"member must be an integer from 0 to {max(st.size, 1) - 1} (or null: every "
                                f"member), got {member!r}")
        if not isinstance(key, str) or not key.startswith("optim.") or key not in per_member_keys():
            raise LabInputError(f"key: only per-member optimizer settings can change during training "
                                f"({', '.join(k for k in per_member_keys() if k.startswith('optim.'))}), got "
                                f"{str(key)[:80]!r}")
        msg = validate_field(key, body.get("value"))
        if msg:
            raise LabInputError(msg)
        from trainlab.lab._form import parse_value

        value = parse_value(key, body.get("value"))
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise LabInputError(f"{key}: one number for the member, got {str(body.get('value'))[:80]!r}")
        lab.command(st, {"cmd": "set", "member": member, "key": key, "value": float(value)})
        return JSONResponse({"name": st.name, "sent": "set", "key": key, "member": member, "value": value})

    @_handle
    async def fork(request: Request) -> Response:
        st = run_of(request)
        body = await _body(request)
        member = body.get("member")
        if not isinstance(member, int) or isinstance(member, bool) or not 0 <= member < max(st.size, 1):
            raise LabInputError(f"member must be an integer from 0 to {max(st.size, 1) - 1}, got {member!r}")
        name = body.get("name") or f"{st.name[:60]}-fork-m{member}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise LabInputError("name: letters, digits, '.', '_' and '-' only")
        if name in lab.runs or (lab.root / name).exists():
            name = lab.new_name(name)
        lab.fork(st, member, name)
        return JSONResponse({"name": name, "sent": "fork"})

    @_handle
    async def files(request: Request) -> Response:
        from trainlab.lab._paths import safe_path

        st = run_of(request)
        path = safe_path(lab.root, f"{st.name}/{request.path_params['path']}", must_exist=True)
        if not path.is_file():
            raise _NotFound("not a file")
        return FileResponse(path)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lab.loop = asyncio.get_running_loop()
        lab.scan()
        try:
            yield
        finally:
            await asyncio.to_thread(lab.shutdown)
            for proc in list(getattr(app.state, "lesson_processes", {}).values()):  # lessons: no state to keep
                with contextlib.suppress(Exception):
                    proc.terminate()
                    proc.join(timeout=5)

    routes = [
        Route("/", index),
        Route("/api/schema", schema),
        Route("/api/validate", validate, methods=["POST"]),
        Route("/api/compose", compose_route, methods=["POST"]),
        Route("/api/toml", toml_import, methods=["POST"]),
        Route("/api/runs", runs),
        Route("/api/runs", create, methods=["POST"]),
        Route("/api/runs/{name}", run_info),
        Route("/api/runs/{name}/events", events),
        *[Route(f"/api/runs/{{name}}/{c}", _control(c), methods=["POST"]) for c in ("pause", "resume", "stop")],
        Route("/api/runs/{name}/restart", restart, methods=["POST"]),
        Route("/api/runs/{name}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{name}/set", set_route, methods=["POST"]),
        Route("/api/runs/{name}/fork", fork, methods=["POST"]),
        Route("/api/runs/{name}/files/{path:path}", files),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    extra, links = _extra_routes(lab)
    routes += extra
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(_Guard, token=token, hosts=hosts)],
                    exception_handlers={404: _not_found_handler, 405: _method_handler})
    app.state.lab = lab
    app.state.root = lab.root  # the viewer's and the lessons' routes read it
    app.state.stopping = threading.Event()  # set by begin_shutdown: the open streams end
    return app


def begin_shutdown(app: Starlette) -> None:
    """The server is stopping (Ctrl-C, SIGTERM): every open event stream ends now, so the server stops at once
    rather than after uvicorn's graceful-shutdown timeout with a cancelled-task traceback (found by the stack
    benchmark). Safe from a signal handler: the run streams' wake-ups go through the loop's thread-safe call."""
    app.state.stopping.set()
    lab: Lab = app.state.lab
    loop = lab.loop
    if loop is None or loop.is_closed():
        return

    def wake_all() -> None:
        for st in list(lab.runs.values()):
            for w in list(st.waiters):
                w.set()

    loop.call_soon_threadsafe(wake_all)


def _extra_routes(lab: Lab) -> tuple[list[Any], list[dict[str, str]]]:
    """The viewer's and the lessons' routes (:mod:`trainlab.lab._viewer`: runs and studies of ``trainlab
    train``/``tune`` under the root, followed live; :mod:`trainlab.lab._lessons`: the experiments of
    ``trainlab reproduce`` as live lessons), bound to the root, and the page's links to them."""
    from trainlab.lab import _lessons, _viewer

    return ([*_viewer.routes(lab.root), *_lessons.routes(lab.root)],
            [{"href": "/runs", "title": "Runs & studies"}, {"href": "/lessons", "title": "Lessons"}])


class _NotFound(TrainlabError):
    status = 404


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    return _error(404, f"no such page: {request.url.path[:200]}")


async def _method_handler(request: Request, exc: Exception) -> Response:
    return _error(405, f"{request.method} is not allowed on {request.url.path[:200]}")
