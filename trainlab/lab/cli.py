"""``trainlab lab``: the command class (:func:`trainlab.cli.all_commands` lists it; it follows the protocol
of :mod:`trainlab._command` and does not import :mod:`trainlab.cli`)."""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import sys
from pathlib import Path
from types import FrameType

from trainlab._command import Command
from trainlab.errors import TrainlabError

__all__ = ["LabCommand", "INSTALL_HINT"]

INSTALL_HINT = "trainlab lab needs the web server packages: pip install 'trainlab[lab]' (starlette, uvicorn)"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LabCommand(Command):
    name = "lab"
    help = "watch and steer populations train, live, in the browser (a local web server; docs/lab.md)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; any other address "
                            "requires a token, printed in the URL)")
        p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
        p.add_argument("--root", default="runs/lab", help="where the lab's runs live; it serves nothing else "
                       "(default runs/lab)")
        p.add_argument("--token", default=None, help="the token every request must carry (default: none on "
                       "127.0.0.1, a random one on any other address)")
        p.add_argument("--max-parallel", type=int, default=2, metavar="N",
                       help="trainings at once; more wait in a queue (default 2)")
        p.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads per training worker (default: torch's choice)")
        p.add_argument("--probe-every", type=int, default=20, metavar="STEPS",
                       help="steps between per-layer probes (histograms, gradient norms; default 20; 0: none)")

    def run(self, args: argparse.Namespace) -> int:
        try:
            import starlette  # noqa: F401
            import uvicorn
        except ImportError:
            raise TrainlabError(INSTALL_HINT) from None
        from trainlab.lab._app import create_app

        if not 0 <= args.port <= 65535:
            raise TrainlabError(f"--port must be 0 to 65535, got {args.port}")
        if args.max_parallel < 1:
            raise TrainlabError(f"--max-parallel must be >= 1, got {args.max_parallel}")
        if args.probe_every < 0:
            raise TrainlabError(f"--probe-every must be >= 0, got {args.probe_every}")
        if args.threads is not None and args.threads < 1:
            raise TrainlabError(f"--threads must be >= 1, got {args.threads}")
        token = args.token
        if token is None and not _is_loopback(args.host):
            token = secrets.token_urlsafe(24)
        if token is not None and len(token) < 8:
            raise TrainlabError("--token must be at least 8 characters")
        root = Path(args.root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrainlabError(f"cannot create --root {root}: {e.strerror}") from None
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((args.host, args.port))
            sock.listen(2048)  # from now on connections queue: the printed URL works at once
        except OSError as e:
            sock.close()
            raise TrainlabError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
        port = sock.getsockname()[1]
        shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
        hosts = None
        if _is_loopback(args.host):  # DNS rebinding: a page of another site must not reach us by a name of its own
            hosts = {f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]", shown)}
        app = create_app(root, token=token, max_parallel=args.max_parallel, threads=args.threads,
                         probe_every=args.probe_every, hosts=hosts)
        url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
        print(f"trainlab lab: serving {url}  (runs under {root}/; Ctrl-C stops, trainings checkpoint)",
              file=sys.stderr, flush=True)
        from trainlab.lab._app import begin_shutdown

        class LabServer(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                begin_shutdown(app)  # the open event streams end, so the server does not wait on them
                super().handle_exit(sig, frame)

        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        server = LabServer(config)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the lab has shut down cleanly by now
            pass
        print("trainlab lab: stopped; interrupted runs resume from the page (or trainlab train --resume DIR)",
              file=sys.stderr, flush=True)
        return 0
