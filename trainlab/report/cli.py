"""``trainlab reproduce``: parse the arguments, call :func:`trainlab.report.reproduce`, show progress (a
:class:`trainlab._command.Command`; :func:`trainlab.cli.all_commands` lists it)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from trainlab._command import Command
from trainlab.experiments import PRESETS, REGISTRY
from trainlab.report._reproduce import ProgressEvent, reproduce

__all__ = ["ReproduceCommand", "ProgressPrinter"]


class ProgressPrinter:
    """One line per experiment on ``stream``; on a terminal the line shows "running" while it runs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.width = max(len(n) for n in REGISTRY) if len(REGISTRY) else 10
        self.ran: list[float] = []  # seconds of each experiment that ran here

    def left(self, ev: ProgressEvent) -> str:
        """Time left at the mean pace so far (experiments differ, so it is a rough estimate)."""
        remaining = ev.total - ev.index + (1 if ev.kind == "start" else 0)
        if not self.ran or remaining <= 0:
            return ""
        from trainlab.train import format_duration

        return f"; ~{format_duration(sum(self.ran) / len(self.ran) * remaining)} left at this pace"

    def __call__(self, ev: ProgressEvent) -> None:
        head = f"[{ev.index:>2}/{ev.total}] {ev.name:<{self.width}}"
        if ev.kind == "start":
            if self.tty:
                self.stream.write(f"{head}  running ... ({time.perf_counter() - self.t0:.0f} s so far{self.left(ev)})")
                self.stream.flush()
            return
        if ev.kind == "done" and ev.seconds is not None:
            self.ran.append(float(ev.seconds))
        if ev.kind == "skip":
            line = f"{head}  not available: {ev.reason}"
        elif ev.status == "error":
            line = f"{head}  ERROR: {ev.reason}"
        else:
            line = f"{head}  {ev.status:<12} {ev.passed}/{ev.checks} checks  {ev.seconds:6.1f} s"
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()


def typical_run_times() -> dict:
    """The measured seconds per experiment (trainlab/experiments/run_times.json; scripts/run_times.py)."""
    from importlib.resources import files

    try:
        return json.loads(files("trainlab.experiments").joinpath("run_times.json").read_text())
    except (OSError, ValueError):
        return {}


class ReproduceCommand(Command):
    name = "reproduce"
    help = "rerun the course's experiments and write report.html and results.json"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("names", nargs="*", metavar="NAME",
                       help=f"experiments to run (default: all): {', '.join(REGISTRY)}")
        p.add_argument("--preset", default="quick", choices=list(PRESETS),
                       help="quick: minutes on 2 CPU cores, embedded data (default); textbook: the textbook's exact "
                            "settings, full MNIST when present; smoke: seconds, for tests")
        p.add_argument("--data", default=None,
                       help="data set (default: the embedded mnist-5k; textbook: full MNIST when present locally)")
        p.add_argument("--data-dir", default=None, help="directory with local IDX files")
        p.add_argument("--out", default=None, help="output directory (default runs/reproduce-<preset>)")
        p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
        p.add_argument("--docs-url", default=None,
                       help="base URL (or folder) of the docs pages the report links to (default: this checkout's "
                            "docs/, relative to the report)")
        p.add_argument("--threads", type=int, default=1,
                       help="CPU threads for torch (default 1: the nets are small, so more threads gain little and "
                            "oversubscribe a shared machine; see docs/experiments.md)")
        p.add_argument("--strict", action="store_true", help="exit with status 1 when a claim did not hold")
        p.add_argument("--list", action="store_true",
                       help="list the experiments, each one's typical run time, and whether it is available")
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress lines")

    def run(self, args: argparse.Namespace) -> int:
        if args.list:
            times = typical_run_times()
            print(f"{'experiment':<20} {'typical time':>12}  (quick preset, measured {times.get('measured', '?')} "
                  "on 2 cores, how in trainlab/experiments/run_times.json; grows with --preset textbook)")
            for name in REGISTRY:
                ok, why = REGISTRY[name].available()
                sec = times.get("seconds", {}).get(name)
                shown = "-" if sec is None else f"{sec:.0f} s" if sec >= 1 else "< 1 s"
                print(f"{name:<20} {shown:>12}  {'available' if ok else 'not available: ' + why}")
            return 0
        out = args.out or f"runs/reproduce-{args.preset}"
        from trainlab._rundir import check_writable

        check_writable(out)  # before the experiments run, not after
        progress = None if (args.quiet or args.json) else ProgressPrinter()
        report = reproduce(args.names, preset=args.preset, data=args.data, data_dir=args.data_dir, out=out,
                           seed=args.seed, docs_base=args.docs_url, threads=args.threads, progress=progress)
        s = report.results["summary"]
        if args.json:
            print(json.dumps({"summary": s, "seconds": report.results["seconds"],
                              "report": str(report.html_path), "results": str(report.json_path)}))
        elif not args.quiet:
            ran = s["held"] + s["did_not_hold"]
            print(f"{s['held']} of {ran} experiments held ({s['checks_passed']}/{s['checks']} checks), "
                  f"{s['not_available']} not available, {s['errors']} errors, in {report.results['seconds']:.0f} s; "
                  f"wrote {report.html_path} and {report.json_path}")
        if s["errors"]:
            return 1
        if args.strict and s["did_not_hold"]:
            return 1
        return 0
