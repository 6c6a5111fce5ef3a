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

from trainlab._command import Command, add_device, add_overrides, run_with_one_line_errors
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


class TuneCommand(Command):
    """The ``tune`` sub-command (exported as ``trainlab.search.TuneCommand``; :func:`trainlab.cli.all_commands`
    lists it, and ``python -m trainlab.search`` runs it alone). Like every sub-command it imports the leaf
    :mod:`trainlab._command`, never :mod:`trainlab.cli`."""

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
        add_overrides(p, help="override a config key, e.g. --set train.epochs=10 or --set search.pruner=\"median\"")
        add_device(p, help="cpu or cuda")
        p.add_argument("--report", action="store_true",
                       help="only write the outputs of the study as it stands (no trials run)")
        p.add_argument("--json", action="store_true", help="print summary.json")
        p.add_argument("--quiet", action="store_true", help="no progress bar or table")
        p.add_argument("--tensorboard", metavar="DIR", default=None,
                       help="also write each finished trial as a TensorBoard run in DIR: its values as hparams, "
                            "its objective and curves (needs the tensorboard package; docs/tensorboard.md)")

    def run(self, args: argparse.Namespace) -> int:
        from trainlab.search._api import report, tune

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
                                  progress=not (args.quiet or args.json), tensorboard=args.tensorboard)
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
    """``python -m trainlab.search``: the tune command alone, with the CLI's one-line errors."""
    p = argparse.ArgumentParser(prog="python -m trainlab.search", description=TuneCommand.help)
    cmd = TuneCommand()
    cmd.add_arguments(p)
    return run_with_one_line_errors(lambda: cmd.run(p.parse_args(argv)))
