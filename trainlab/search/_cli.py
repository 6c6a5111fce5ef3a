"""``trainlab tune``: the command-line front of :func:`trainlab.search.tune` (parses, calls, prints).

Also runnable as ``python -m trainlab.search CONFIG.toml ...`` (same flags).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from trainlab.errors import TrainlabError

__all__ = ["TuneCommand", "main"]


def _resume_command(args: argparse.Namespace) -> str:
    argv = getattr(args, "_argv", None)
    if argv is None:
        argv = sys.argv[1:]
        argv0 = (sys.argv[0] if sys.argv else "").replace("\\", "/").replace("/", ".")
        prog = "python -m trainlab.search" if "trainlab.search" in argv0 else "trainlab tune"
    else:
        prog = "trainlab"  # argv starts with the sub-command
    return "rerun the same command: " + shlex.join([*prog.split(), *argv])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class TuneCommand:
    """The ``tune`` sub-command. It follows :class:`trainlab.cli.Command`'s protocol (``name``, ``help``,
    ``add_arguments``, ``run``) without importing trainlab.cli, so trainlab.cli can import it at the top
    and ``python -m trainlab.search`` can run it without an import cycle."""

    name = "tune"
    help = "search hyperparameters (grid, random, coarse-to-fine, TPE, GP), trials trained as populations"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="TOML config with a [search] table (see examples/search/)")
        p.add_argument("--trials", type=int, default=None, help="trials with a result to reach (resuming "
                       "continues to this number, never N more)")
        p.add_argument("--strategy", default=None,
                       help="manual, grid, random, coarse-to-fine, tpe or gp (overrides search.strategy)")
        p.add_argument("--population", type=int, default=None, metavar="K",
                       help="train up to K trials together as one population")
        p.add_argument("--storage", default=None, metavar="URL",
                       help="Optuna storage: sqlite:///file.db (default: OUT/study.db), postgresql://..., "
                            "journal:file.log")
        p.add_argument("--study", default=None, metavar="NAME", help="study name (default: the config's name)")
        p.add_argument("--out", default=None, metavar="DIR", help="output directory (default runs/<config>-tune)")
        p.add_argument("--seed", type=int, default=None, help="study seed (overrides search.seed)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set train.epochs=10 or --set search.pruner=\"median\"")
        p.add_argument("--device", default=None, help="cpu or cuda")
        p.add_argument("--report", action="store_true",
                       help="only write the outputs of the study as it stands (no trials run)")
        p.add_argument("--json", action="store_true", help="print summary.json")
        p.add_argument("--quiet", action="store_true", help="no progress bar or table")

    def run(self, args: argparse.Namespace) -> int:
        from trainlab.search import report, tune

        from trainlab.errors import Interrupted
        from trainlab.search._stop import graceful_stop

        if args.trials is not None and args.trials < 1:
            raise TrainlabError(f"--trials must be at least 1 (trials with a result to reach), got {args.trials}")
        out = Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}-tune"
        if args.report:
            result = report(args.config, trials=args.trials, strategy=args.strategy, storage=args.storage,
                            study=args.study, out=out, seed=args.seed, overrides=list(args.overrides))
        else:
            try:
                with graceful_stop():  # Ctrl-C / SIGTERM: stop at the next safe point (trainlab.search._stop)
                    result = tune(args.config, trials=args.trials, strategy=args.strategy,
                                  population=args.population, storage=args.storage, study=args.study, out=out,
                                  seed=args.seed, overrides=list(args.overrides), device=args.device,
                                  progress=not (args.quiet or args.json))
            except KeyboardInterrupt:
                raise Interrupted("interrupted; finished trials are in the study and the running ones will be "
                                  "retried", _resume_command(args)) from None
        if args.json:
            print(json.dumps(result.summary))
            return 0
        if args.quiet:
            return 0
        s = result.summary
        c = s["trials"]
        print(f"study '{result.study}' ({s['strategy']['name']}): {c['with_result']}/{c['budget']} trials with a "
              f"result ({c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed; {c['retries']} "
              f"retried)")
        rows = s["top"][:5]
        if rows:
            names = list(rows[0]["params"])
            print("  ".join(["#".rjust(4), s["metric"].rjust(8)] + [n.rjust(12) for n in names]))
            for r in rows:
                print("  ".join([str(r["number"]).rjust(4), _fmt(r["value"]).rjust(8)]
                                + [_fmt(r["params"].get(n)).rjust(12) for n in names]))
        if result.test:
            t = result.test.get("test") or {}
            shown = ", ".join(f"{k} {_fmt(v)}" for k, v in t.items()) or result.test.get("note", "-")
            print(f"best trial #{result.best['number']}: {s['metric']} {result.best['value']:.4f} (validation); "
                  f"test split, evaluated once: {shown}")
        if result.files:
            print(f"wrote {out}/ (trials.csv, summary.json, best.toml, figures)")
        if s.get("dashboard"):
            print(f"browse it: {s['dashboard']}")
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m trainlab.search``: the tune command alone, with the CLI's error handling."""
    p = argparse.ArgumentParser(prog="python -m trainlab.search", description=TuneCommand.help)
    cmd = TuneCommand()
    cmd.add_arguments(p)
    try:
        args = p.parse_args(argv)
        return cmd.run(args)
    except TrainlabError as e:
        from trainlab.errors import shorten

        print(f"trainlab: error: {shorten(' '.join(str(e).split()))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from trainlab.errors import Interrupted

        print(f"trainlab: {e}" if isinstance(e, Interrupted) else "trainlab: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        from trainlab.errors import describe_oserror

        print(f"trainlab: error: {describe_oserror(e)}", file=sys.stderr)
        return 2
