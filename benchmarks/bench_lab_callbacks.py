"""What the lab's worker adds to a training by itself, without the server, the viewers or a second process.

`bench_lab.py` compares a run inside `trainlab lab` (a worker process, the server and its viewers sharing the
machine) with `trainlab train`. On runs of under a second its ratio moves between 0.86 and 0.95 from round to
round. This script separates the lab's own callbacks from that: in one process it trains the same config
(`bench_lab.py`'s, through :func:`trainlab.run.train_run`) with

* ``plain``: no callback (what `trainlab train` runs);
* ``lab``: the callbacks the lab's worker adds (:class:`~trainlab.lab._steer.Steering` reading its control
  queue every step, :class:`~trainlab.lab._worker.LabStream` with its progress every 0.2 s, and the
  per-layer probe on its time budget, writing probes.jsonl), their events collected in a list;
* ``stream``: Steering and LabStream only; ``probe``: the probe only;

in interleaved rounds (the order reversed every other round), and prints each variant's median training
seconds (``summary.json``'s "seconds") and the speed of each against ``plain``.

Usage: python benchmarks/bench_lab_callbacks.py [--members 1] [--steps 300] [--rounds 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
from pathlib import Path
import statistics
import sys
import tempfile
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lab import fields  # noqa: E402  (the config bench_lab.py trains)

VARIANTS = ("plain", "lab", "stream", "probe")


def callbacks(variant: str, out: Path, cfg: Any, control: Any) -> list[Any]:
    """The lab worker's callbacks for ``variant``, as :func:`trainlab.lab._worker.worker_main` builds them."""
    from trainlab.lab._steer import Steering
    from trainlab.lab._worker import LabStream, ProbeLog, _make_probe

    if variant == "plain":
        return []
    events: list[dict[str, Any]] = []
    log = ProbeLog(out / "probes.jsonl", events.append)
    cbs: list[Any] = []
    if variant in ("lab", "stream"):
        cbs.append(Steering(control, events.append, out, cfg, server_pid=os.getpid()))
        cbs.append(LabStream(events.append, interval=0.2, server_pid=os.getpid(), probes=log.path))
    if variant in ("lab", "probe"):
        cbs.append(_make_probe({"probe_every": 20}, log))
    return cbs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from trainlab.config import RunConfig
    from trainlab.lab._form import compose, given_to_toml
    from trainlab.run import train_run
    from trainlab.runtime import keep_freed_memory

    torch.set_num_threads(1)  # as the lab's worker and bench_lab.py's runs
    keep_freed_memory()
    work = Path(tempfile.mkdtemp(prefix="bench-lab-callbacks-"))
    given, _ = compose(**fields(args.members, args.steps))
    (work / "config.toml").write_text(given_to_toml(given))
    cfg = RunConfig.load(work / "config.toml")
    control: Any = mp.get_context("spawn").Queue()
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
            out = work / f"{v}-{r}"
            _, summary = train_run(cfg, out, callbacks=callbacks(v, out, cfg, control))
            seconds[v].append(float(summary["seconds"]))
    med = {v: statistics.median(s) for v, s in seconds.items()}
    result = {"work": str(work), "members": args.members, "steps": args.steps, "rounds": args.rounds, "load": os.getloadavg(),
              "seconds": seconds, "median": med, "speed_vs_plain": {v: med["plain"] / med[v] for v in VARIANTS}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.members} member(s), {args.steps} steps, {args.rounds} interleaved rounds, "
              f"load {result['load'][0]:.2f}")
        print(f"{'variant':<8} {'median s':>9} {'speed vs plain':>15}  per round")
        for v in VARIANTS:
            print(f"{v:<8} {med[v]:>9.3f} {result['speed_vs_plain'][v]:>15.3f}  "
                  + ", ".join(f"{s:.3f}" for s in seconds[v]))
    return result


if __name__ == "__main__":
    main()
