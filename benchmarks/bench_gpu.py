"""Populations on the GPU: trainlab (with and without CUDA graphs) vs sequential PyTorch runs vs a
``torch.func`` vmap ensemble, for populations of textbook MLPs (784-100x6-10, ReLU, SGD lr 0.01,
batch 100, the embedded MNIST images kept on the device).

For each population size P (default 1, 32, 256, 1000) it measures, medians of ``--repeats``
interleaved repeats of ``--steps`` steps each:

* trainlab, one population of P members, eager steps (``Trainer.train_step``);
* trainlab, the same with ``Trainer(cuda_graphs=True)`` (forward graph + update graph per step);
* P idiomatic PyTorch runs one after another (``nn`` + autograd + ``torch.optim.SGD``); with
  ``--sequential-cap K`` only ``min(P, K)`` runs are timed and the time is scaled by ``P / K``
  (every run does the same work; the output says when it was scaled);
* one ``torch.func`` ensemble of P models (``benchmarks/_harness.py: vmap_ensemble``),

as member-steps per second (P * steps / seconds) and peak GPU memory of each (``max_memory_allocated``
after ``reset_peak_memory_stats``; not measured on a CPU). The ratios are trainlab / peer.

Usage: python benchmarks/bench_gpu.py --device cuda [--sizes 1,32,256,1000] [--steps 50] [--repeats 3]
       [--sequential-cap 32] [--json]

On a CPU it runs too (small sizes: ``--device cpu --sizes 1,2 --steps 3``), which is how its test
knows the script works; CUDA graphs are then the same static-buffer step run eagerly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable

import torch

from _harness import batches, run_torch, vmap_ensemble
import bench_mlp
from trainlab import nn
from trainlab.train import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(device: torch.device, f: Callable[[], float]) -> tuple[float, float | None]:
    """(seconds, peak GPU memory in MiB or None on a CPU) of ``f``, which returns its own seconds."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    s = f()
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return s, mem


def run_trainlab(P: int, data, device: torch.device, cuda_graphs: bool) -> float:
    model, opt, _ = bench_mlp.trainlab_model(P, device)
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, cuda_graphs=cuda_graphs)
    tr.steps_per_epoch = len(data)
    with torch.no_grad():
        tr.train_step(*data[0])  # the first step captures the graphs (and warms up): not timed
        _sync(device)
        t = time.perf_counter()
        for xb, yb in data[1:]:
            tr.train_step(xb, yb)
        _sync(device)
    return time.perf_counter() - t


def run_sequential(P: int, data, device: torch.device, cap: int | None) -> tuple[float, int]:
    runs = P if cap is None else min(P, cap)
    return run_torch(bench_mlp.torch_model, runs, data[1:], device) * (P / runs), runs


def run_vmap(P: int, data, device: torch.device) -> float:
    _, step = vmap_ensemble(bench_mlp.torch_model, P, device)
    step(*data[0])  # warm-up, not timed
    _sync(device)
    t = time.perf_counter()
    for xb, yb in data[1:]:
        step(xb, yb)
    _sync(device)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default="1,32,256,1000")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sequential-cap", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: --device cuda but torch sees no CUDA device")
    from trainlab.data import load_splits

    s = load_splits("mnist-5k", val=0, test=0, device=device)
    data = batches(s.train.x, s.train.y, a.steps + 1, 100, 0)
    sizes = [int(v) for v in a.sizes.split(",")]
    rows = []
    for P in sizes:
        t: dict[str, list[float]] = {k: [] for k in ("eager", "graphs", "sequential", "vmap")}
        mem: dict[str, float | None] = {}
        runs = P
        for _ in range(a.repeats):
            for name, f in (("eager", lambda: run_trainlab(P, data, device, False)),
                            ("graphs", lambda: run_trainlab(P, data, device, True)),
                            ("vmap", lambda: run_vmap(P, data, device))):
                sec, m = _measure(device, f)
                t[name].append(sec)
                mem[name] = m if mem.get(name) is None else max(mem[name], m)  # type: ignore[type-var]
            (sec, runs), m = _measure(device, lambda: run_sequential(P, data, device, a.sequential_cap))
            t["sequential"].append(sec)
            mem["sequential"] = m
        med = {k: statistics.median(v) for k, v in t.items()}
        member_steps = P * a.steps
        rows.append({
            "population": P,
            "member_steps_per_s": {k: member_steps / v for k, v in med.items()},
            "peak_memory_mib": mem,
            "graphs_vs_sequential": med["sequential"] / med["graphs"],
            "graphs_vs_vmap": med["vmap"] / med["graphs"],
            "eager_vs_sequential": med["sequential"] / med["eager"],
            "eager_vs_vmap": med["vmap"] / med["eager"],
            "sequential_runs_timed": runs,
        })
    res = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "steps": a.steps, "repeats": a.repeats, "batch": 100, "rows": rows}
    if a.json:
        print(json.dumps(res))
        return res
    print(f"{res['device']}, torch {res['torch']}; {a.steps} steps, medians of {a.repeats} repeats; member-steps/s")
    print(f"{'P':>5} | {'eager':>10} | {'graphs':>10} | {'sequential':>10} | {'vmap':>10} | graphs/seq | graphs/vmap "
          f"| peak MiB (eager, graphs, seq, vmap)")
    for r in rows:
        v = r["member_steps_per_s"]
        scaled = "" if r["sequential_runs_timed"] == r["population"] else f" (seq. from {r['sequential_runs_timed']} runs)"
        m = r["peak_memory_mib"]
        mems = ", ".join("-" if m[k] is None else f"{m[k]:.0f}" for k in ("eager", "graphs", "sequential", "vmap"))
        print(f"{r['population']:>5} | {v['eager']:>10.0f} | {v['graphs']:>10.0f} | {v['sequential']:>10.0f} | "
              f"{v['vmap']:>10.0f} | {r['graphs_vs_sequential']:>9.2f}x | {r['graphs_vs_vmap']:>10.2f}x | {mems}"
              f"{scaled}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
