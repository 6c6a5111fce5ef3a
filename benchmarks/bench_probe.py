"""The live probe's cost: training a config with and without :class:`trainlab.train.LayerProbe`.

Trains ``examples/mlp.toml`` (784-100-100-10 ReLU, momentum, batch 100, 3,500 embedded MNIST
images) for ``--epochs`` epochs at population sizes 1 and 32, once without a probe and once with
``LayerProbe(every=50, batch=256, bins=30)``, interleaved and repeated; reports the medians,
the probe's own time (``LayerProbe.seconds``) and its share of the training time. Evaluation,
checkpoints and files are left out (``Trainer.fit`` only), so the share is of training alone.

Usage: python benchmarks/bench_probe.py [--epochs 5] [--repeats 3] [--every 50] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from trainlab.build import build_run
from trainlab.config import load_config
from trainlab.train import LayerProbe

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "mlp.toml"


def one(P: int, epochs: int, every: int | None, device: str) -> tuple[float, float, int]:
    cfg = load_config(CONFIG, [f"population.size={P}", f"train.epochs={epochs}", f"device={device}"])
    run = build_run(cfg)
    probe = None
    if every is not None:
        probe = LayerProbe(every=every, keep=0)
        run.trainer.sinks.append(probe)
    run.trainer.eval_train = False
    t0 = time.perf_counter()
    run.trainer.fit(run.splits.train, run.splits.val)
    dt = time.perf_counter() - t0
    return dt, (probe.seconds if probe else 0.0), run.trainer.step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--population", type=int, nargs="+", default=[1, 32])
    a = ap.parse_args()
    rows = []
    for P in a.population:
        one(P, 1, a.every, a.device)  # warm-up
        base, probed, own = [], [], []
        steps = 0
        for _ in range(a.repeats):
            t, _, steps = one(P, a.epochs, None, a.device)
            base.append(t)
            t, s, _ = one(P, a.epochs, a.every, a.device)
            probed.append(t)
            own.append(s)
        b, p, s = statistics.median(base), statistics.median(probed), statistics.median(own)
        records = steps // a.every + 1 + (steps % a.every != 0)
        rows.append({"P": P, "steps": steps, "every": a.every, "records": records, "train_s": round(b, 3),
                     "train_with_probe_s": round(p, 3), "probe_s": round(s, 4),
                     "ms_per_record": round(1000 * s / records, 2), "probe_share": round(s / b, 4),
                     "slowdown": round(p / b - 1, 4)})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
