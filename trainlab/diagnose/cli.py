"""``trainlab doctor CONFIG.toml``: the command class (:func:`trainlab.cli.all_commands` lists it; it follows
the protocol of :mod:`trainlab._command` and does not import :mod:`trainlab.cli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainlab._command import Command, add_device, add_overrides, config_overrides

if TYPE_CHECKING:
    from trainlab.diagnose._doctor import DoctorReport
    from trainlab.diagnose._step import Figures, StepResult

__all__ = ["DoctorCommand"]


class DoctorCommand(Command):
    name = "doctor"
    help = ("run the six-step tuning recipe on a config and give a verdict per step "
            "(exit status 1 when the verdict is FAIL, 0 for OK or WARN, 2 for a bad config)")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("config", nargs="?", default=None,
                       help="TOML config file (see examples/healthy.toml, examples/faults/)")
        p.add_argument("--history", default=None, metavar="RUN_DIR",
                       help="read the learning curves of a finished (or interrupted) run directory instead: "
                            "plateau, early decay, over/underfitting, noise, a rising loss (no training)")
        p.add_argument("--out", default=None,
                       help="where to write doctor.json, doctor.html and the figures (default runs/doctor-<name>); "
                            "with --history: where to draw the curves (history_curves.png)")
        p.add_argument("--steps", default=None, metavar="LIST",
                       help="run only these steps, e.g. 1,2,6 or 1-3 (1 initial loss, 2 overfit a small sample, "
                            "3 LR range test, 4 coarse grid, 5 refined grid, 6 curves); default all")
        add_overrides(p)
        add_device(p)
        p.add_argument("--member", type=int, default=0, help="which member of a population config to diagnose")
        p.add_argument("--quick", action="store_true", help="smaller budgets (a first look in seconds)")
        p.add_argument("--json", action="store_true", help="print doctor.json instead of the text report")
        p.add_argument("--quiet", action="store_true", help="print nothing")
        p.add_argument("--apply", action="store_true",
                       help="write CONFIG.fixed.toml: the config with the doctor's first fix (largest measured gain)")
        p.add_argument("--train", action="store_true", help="with --apply: then train the fixed config "
                       "(into OUT/fixed-run)")

    def run(self, args: argparse.Namespace) -> int:
        if args.history is not None:
            return _history(args)
        if args.config is None:
            from trainlab.errors import ConfigError

            raise ConfigError("doctor needs a CONFIG.toml to diagnose, or --history RUN_DIR to read a run's curves")
        from trainlab.diagnose._doctor import DoctorOptions, doctor, format_step, parse_steps

        from trainlab.errors import TrainlabError

        if args.train and not args.apply:
            raise TrainlabError("--train trains the fixed config: use it with --apply")
        steps = parse_steps(args.steps)
        overrides = config_overrides(args)
        options = DoctorOptions.quick(member=args.member) if args.quick else DoctorOptions(member=args.member)
        out = Path(args.out) if args.out else Path("runs") / f"doctor-{Path(args.config).stem}"
        from trainlab._rundir import check_writable

        check_writable(out)  # before the steps run, not after
        talk = not (args.quiet or args.json)

        def echo(step: StepResult) -> None:
            if talk:
                print(format_step(step) + "\n", flush=True)

        report = doctor(args.config, steps=steps, options=options, out=out, overrides=overrides, echo=echo)
        report.close_figures()
        if args.json:
            print(json.dumps(report.to_dict()))
        elif not args.quiet:
            from trainlab.diagnose._fixes import format_fixes

            if report.fixes:
                print(format_fixes(report.fixes) + "\n")
            print(f"verdict: {report.verdict.upper()} ({report.seconds:.1f} s); wrote {out}/doctor.json and "
                  f"{out}/doctor.html")
        if args.apply:
            self._apply(args, report, out, overrides, talk or not args.quiet)
        return 1 if report.verdict == "fail" else 0  # exit status: 1 for a FAIL verdict (docs/doctor.md)

    @staticmethod
    def _apply(args: argparse.Namespace, report: DoctorReport, out: Path, overrides: list[str], talk: bool) -> None:
        from trainlab.diagnose._fixes import first_fix, write_fixed

        fix = first_fix(report.fixes)
        if fix is None:
            if talk:
                print("--apply: no finding warns or fails, nothing to fix; no file written")
            return
        path = write_fixed(args.config, fix)
        if talk:
            print(f"wrote {path} ({', '.join(fix['overrides'])})")
        if args.train:
            from trainlab.config import RunConfig
            from trainlab.run import train_run

            cfg = RunConfig.load(path, overrides)
            _, summary = train_run(cfg, out / "fixed-run", progress=False)
            if talk:
                m = summary["members"][0]
                print(f"trained {path}: final val acc {m.get('final_val_acc')}, best val acc {m.get('best_val_acc')}; "
                      f"wrote {out / 'fixed-run'}/")


def _history(args: argparse.Namespace) -> int:
    """``trainlab doctor --history RUN_DIR``: the curve reading of :mod:`trainlab.diagnose._curves`.

    Exit status 0 whatever the reading finds (its findings are a reading of finished curves, with no
    PASS/FAIL verdict as the recipe's steps have), 2 for a run directory it cannot read."""
    from trainlab.diagnose._curves import READING, format_findings, to_dict

    curves = READING.measure(args.history, args.member)
    findings = READING.judge(curves)
    if args.out is not None:  # the curves as a figure: OUT/history_curves.png
        _write_figures(Path(args.out), "history", READING.figures(curves))
    if args.json:
        print(json.dumps(to_dict(args.history, curves, findings)))
    elif not args.quiet:
        print(format_findings(args.history, curves, findings))
    return 0


def _write_figures(out: Path, prefix: str, figures: Figures) -> None:
    """Each figure as ``OUT/<prefix>_<name>.png`` (written whole or not at all), then closed."""
    import io

    import matplotlib.pyplot as plt

    from trainlab.errors import ConfigError
    from trainlab.io import atomic_write_bytes

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output directory {out}: {e.strerror}") from None
    for name, (fig, _caption) in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        atomic_write_bytes(out / f"{prefix}_{name}.png", buf.getvalue())
        plt.close(fig)
