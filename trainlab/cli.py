"""Command-line front: parses arguments and calls the API; nothing else.

Every user mistake ends as one line on stderr (``trainlab: error: ...``) and exit
status 2, without a traceback. The command protocol, the shared flags and the error
printing live in the leaf :mod:`trainlab._command`; the sub-commands of the packages
(``doctor``, ``tune``, ``reproduce``) import it, not this module (docs/engine.md, "Structure").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from trainlab._command import (Command, CommandParser, add_device, add_overrides, config_overrides, ctrl_c_held,
                               run_with_one_line_errors)
from trainlab.errors import TrainlabError

__all__ = ["main", "build_parser", "all_commands", "Command"]


def _print_table(rows: list[dict[str, Any]], keys: list[str]) -> None:
    keys = [k for k in keys if any(k in r for r in rows)]
    widths = [max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys]
    # text columns (member labels) align left, numbers right
    left = [all(isinstance(r.get(k), str) for r in rows) for k in keys]
    just = [(str.ljust if lft else str.rjust) for lft in left]
    print("  ".join(j(k, w) for k, w, j in zip(keys, widths, just)).rstrip())
    for r in rows:
        print("  ".join(j(_fmt(r.get(k)), w) for k, w, j in zip(keys, widths, just)).rstrip())


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, dict):
        return f"step {v.get('step', v.get('epoch'))}"
    return str(v)


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """``kill PID`` stops ``train`` like Ctrl-C also outside training (start-up, the final writes)."""
    import signal

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("interrupted (SIGTERM)")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class TrainCommand(Command):
    name = "train"
    help = "train a model (or a population of models) from a TOML config"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("config", nargs="?", default=None, help="TOML config file (see examples/)")
        p.add_argument("--out", default=None, help="run directory, missing or empty (default: a new "
                       "runs/<config name>-<date>-<time>)")
        p.add_argument("--resume", metavar="DIR", default=None,
                       help="continue an interrupted run in DIR from its last checkpoint")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (only once the new run's first checkpoint exists)")
        p.add_argument("--data-dir", default=None, metavar="DIR",
                       help="folder with the data set's files already downloaded (sets data.data_dir)")
        add_overrides(p)
        add_device(p)
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress bar or table")
        p.add_argument("--members", choices=["auto", "all", "summary"], default="auto",
                       help="which members of a population the per-epoch lines show: every member up to 4 "
                            "(auto, default), all, or the best/median/worst (summary)")
        p.add_argument("--tensorboard", metavar="DIR", default=None,
                       help="also write TensorBoard event files to DIR: scalars and layer histograms per member, "
                            "member settings as hparams (needs the tensorboard package; docs/tensorboard.md)")

    def run(self, args: argparse.Namespace) -> int:
        from trainlab.config import RunConfig
        from trainlab.run import train_run

        overrides = config_overrides(args) + ([f"data.data_dir={json.dumps(str(args.data_dir))}"] if args.data_dir
                                              else [])
        if args.resume and args.overwrite:
            raise TrainlabError("--resume continues a run and --overwrite replaces one; give only one of them")
        if args.resume:
            if args.out and Path(args.out) != Path(args.resume):
                raise TrainlabError("--resume DIR continues the run in DIR; leave out --out (or give the same DIR)")
            cfg = RunConfig.load(args.config, overrides) if (args.config or overrides) else None
            if cfg is not None and args.config is None:
                cfg = RunConfig.load(Path(args.resume) / "config.toml", overrides)
            out = Path(args.resume)
        else:
            if args.config is None:
                raise TrainlabError("train needs a CONFIG file (or --resume DIR)")
            cfg = RunConfig.load(args.config, overrides)
            if args.out:
                out = Path(args.out)
            else:
                from trainlab._rundir import fresh_run_dir

                out = fresh_run_dir("runs", Path(args.config).stem)

        def announce(where: Path) -> None:  # no --out: say where the run goes, once it is sure to start
            if not args.out and not args.resume:
                print(f"trainlab: writing the run to {where}/", file=sys.stderr, flush=True)

        with _sigterm_as_ctrl_c():
            _, summary = train_run(cfg, out, progress=not (args.quiet or args.json), resume=bool(args.resume),
                                   overwrite=args.overwrite, on_start=announce, members=args.members,
                                   tensorboard=args.tensorboard)
        if args.json:
            print(json.dumps({"run_dir": str(out), **summary}))
        elif not args.quiet:
            rows = [{**r, "member": r.get("member_label", r["member"])} for r in summary["members"]]
            _print_table(rows, ["member", "final_train_acc", "final_val_acc", "final_test_acc",
                                              "best_val_acc", "best_epoch", "diverged"])
            print(f"{summary['steps']} steps in {summary['seconds']:.1f} s; wrote {out}/")
        return 0


class EvaluateCommand(Command):
    name = "evaluate"
    help = "evaluate a saved model on a data split"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("run", help="run directory written by 'trainlab train' (or a model.json)")
        p.add_argument("--split", default="test", choices=["train", "val", "test"])
        p.add_argument("--data", default=None, help="data set name (default: the run's)")
        p.add_argument("--data-dir", default=None, help="directory with local IDX files")
        p.add_argument("--device", default="cpu")
        p.add_argument("--ensemble", nargs="?", const="mean", choices=["mean", "vote", "snapshots"], default=None,
                       help="also score the members together: averaged probabilities (default), majority vote, "
                            "or the run's snapshots")
        p.add_argument("--members", default=None, help="comma-separated member indices for --ensemble")
        p.add_argument("--metrics", default=None,
                       help="more metrics per member, comma-separated: topK (e.g. top5), f1 (macro), per_class, "
                            "confusion (also writes a figure)")
        p.add_argument("--figure", default=None, help="where --metrics confusion writes its figure "
                                                      "(default RUN/confusion_<split>.png)")
        p.add_argument("--json", action="store_true")
        p.add_argument("--quiet", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        from trainlab.evaluate import evaluate_saved

        members = None
        if args.members:
            try:
                members = [int(m) for m in args.members.split(",")]
            except ValueError:
                raise TrainlabError(f"--members expects comma-separated integers, got {args.members!r}") from None
        result = evaluate_saved(args.run, split=args.split, data=args.data, data_dir=args.data_dir,
                                device=args.device, ensemble=args.ensemble, members=members,
                                progress=not (args.quiet or args.json), metrics=args.metrics, figure=args.figure)
        if args.json:
            print(json.dumps(result))
        elif not args.quiet:
            _print_table([{**r, "member": r.get("member_label", r["member"])} for r in result["members"]],
                         ["member", "loss", "acc"] + sorted(
                (k for k in result["members"][0] if k.startswith("top")), key=lambda k: int(k[3:-4])) + ["macro_f1"])
            from trainlab.metrics import print_extra

            print_extra(result)
            if "ensemble" in result:
                e = result["ensemble"]
                who = "; ".join(map(str, e.get("member_labels", e["members"])))
                print(f"ensemble ({e['method']}, members {who}): acc {e['acc']:.4f}, ECE {e['ece']:.4f}, "
                      f"mean disagreement {e['mean_disagreement']:.4f}")
            print(f"{result['data']} {result['split']}: {result['examples']} examples")
        return 0


COMMANDS: list[Command] = [TrainCommand(), EvaluateCommand()]


def all_commands() -> list[Command]:
    """The core commands plus those defined in the packages (``doctor``, ``tune``, ``reproduce``, ``lab``). Imported
    here, when the parser is built inside :func:`main`'s error handling: a Ctrl-C while they (and torch)
    load is one line too. (They import :mod:`trainlab._command`, never this module: no cycle.)"""
    from trainlab.diagnose.cli import DoctorCommand
    from trainlab.lab.cli import LabCommand
    from trainlab.report.cli import ReproduceCommand
    from trainlab.search import TuneCommand

    return [*COMMANDS, DoctorCommand(), TuneCommand(), ReproduceCommand(), LabCommand()]


def build_parser() -> argparse.ArgumentParser:
    from trainlab import __version__

    parser = CommandParser(prog="trainlab", description="A laboratory for the art of training deep networks.")
    parser.add_argument("--version", action="version", version=f"trainlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for c in all_commands():
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        c.add_arguments(p)
        p.set_defaults(_command=c)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    from trainlab.errors import shorten

    return f"trainlab: warning: {shorten(' '.join(str(message).split()))}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _one_line_warning

    def body() -> int:
        from trainlab.runtime import keep_freed_memory  # inside: a Ctrl-C while it imports is one line

        keep_freed_memory()  # reuse freed activation memory (docs/benchmarks.md); TRAINLAB_MALLOC=system: off
        with ctrl_c_held():  # the commands import torch, whose C++ aborts on a Ctrl-C raised inside it
            parser = build_parser()
        args = parser.parse_args(argv)
        args._argv = list(sys.argv[1:] if argv is None else argv)
        if not getattr(args, "_command", None):
            parser.print_help()
            return 2
        return args._command.run(args)

    # a TrainlabError or OSError: one line, status 2; Ctrl-C: one line, status 130 (trainlab._command)
    return run_with_one_line_errors(body)


if __name__ == "__main__":
    sys.exit(main())
