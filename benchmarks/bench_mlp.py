"""Textbook MLP training throughput: trainlab vs idiomatic PyTorch, side by side.

The textbook net (Saito, ch. 6): 784-100x6-10, ReLU, He init, SGD lr 0.01, batch 100,
on the embedded MNIST images. Both sides train on the same tensors in the same
process, with the same batch order; runs are interleaved and repeated, and the
medians are compared.

1. single model: trainlab (P = 1) vs torch.nn.Sequential + autograd + torch.optim.SGD
2. population: one trainlab run of P members vs P sequential PyTorch runs, and vs one
   ``torch.func`` ensemble of P models (stacked parameters, ``vmap`` of ``functional_call``)

``--bn``: the BatchNorm MLP instead, 784-100x5-10 with a BatchNorm after every hidden affine layer
(Linear -> BatchNorm -> ReLU; torch: ``BatchNorm1d``, momentum 0.1, eps 1e-5 on both sides).

Usage: python benchmarks/bench_mlp.py [--bn] [--repeats 5] [--steps 300] [--population 32] [--device cpu]
       [--clock wall|cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics

import torch

from _harness import (add_allocator_option, add_clock_option, apply_allocator_option, apply_clock_option, batches,
                      run_torch as _run_torch, run_trainlab as _run_trainlab, run_vmap as _run_vmap, sgd_population)
from trainlab import nn
from trainlab.data import load_splits
from trainlab.optim import SGD

WIDTHS = [784] + [100] * 6 + [10]
BN_WIDTHS = [784] + [100] * 5 + [10]
#: set by --bn: the BatchNorm MLP
BN = False


def trainlab_model(P: int, device: torch.device) -> tuple[nn.Sequential, SGD, nn.SoftmaxCrossEntropy]:
    widths = BN_WIDTHS if BN else WIDTHS
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, init="he_normal"))
        if i < len(widths) - 2:
            if BN:
                layers.append(nn.BatchNorm())
            layers.append(nn.ReLU())
    return sgd_population(nn.Sequential(layers), (784,), P, device)


def torch_model(device: torch.device, seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    widths = BN_WIDTHS if BN else WIDTHS
    mods: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        lin = torch.nn.Linear(a, b)
        torch.nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        torch.nn.init.zeros_(lin.bias)
        mods.append(lin)
        if i < len(widths) - 2:
            if BN:
                mods.append(torch.nn.BatchNorm1d(b))
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).to(device)
    return net, torch.optim.SGD(net.parameters(), lr=0.01)


def run_trainlab(P: int, data, device) -> float:
    return _run_trainlab(trainlab_model, P, data, device)


def run_torch(runs: int, data, device) -> float:
    return _run_torch(torch_model, runs, data, device)


def run_vmap(runs: int, data, device) -> float:
    return _run_vmap(torch_model, runs, data, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--population", type=int, default=32)
    ap.add_argument("--pop-steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bn", action="store_true", help="the BatchNorm MLP 784-100x5-10 + BN")
    add_allocator_option(ap)
    add_clock_option(ap)
    a = ap.parse_args()
    apply_clock_option(a)
    global BN
    BN = a.bn
    allocator = apply_allocator_option(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    s = load_splits("mnist-5k", val=0, test=0, device=device)
    x, y = s.train.x, s.train.y
    data = batches(x, y, a.steps, a.batch, 0)
    pop_data = data[: a.pop_steps]
    run_trainlab(1, data[:20], device), run_torch(1, data[:20], device)  # warm-up
    run_vmap(2, data[:5], device)  # warm-up
    single_tl, single_pt, pop_tl, pop_pt, pop_vm = [], [], [], [], []
    for _ in range(a.repeats):
        single_tl.append(run_trainlab(1, data, device))
        single_pt.append(run_torch(1, data, device))
        pop_tl.append(run_trainlab(a.population, pop_data, device))
        pop_pt.append(run_torch(a.population, pop_data, device))
        pop_vm.append(run_vmap(a.population, pop_data, device))
    med = statistics.median
    n1 = a.steps * a.batch
    nP = a.pop_steps * a.batch * a.population
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}, {allocator}",
        "torch": torch.__version__,
        "single": {"trainlab_samples_per_s": n1 / med(single_tl), "pytorch_samples_per_s": n1 / med(single_pt),
                   "ratio": med(single_pt) / med(single_tl),
                   "ratio_per_repeat": [round(p / t, 3) for t, p in zip(single_tl, single_pt)]},
        "population": {"members": a.population, "trainlab_samples_per_s": nP / med(pop_tl),
                       "pytorch_sequential_samples_per_s": nP / med(pop_pt), "ratio": med(pop_pt) / med(pop_tl),
                       "torch_func_vmap_samples_per_s": nP / med(pop_vm), "ratio_vs_vmap": med(pop_vm) / med(pop_tl),
                       "ratio_per_repeat": [round(p / t, 3) for t, p in zip(pop_tl, pop_pt)],
                       "ratio_vs_vmap_per_repeat": [round(v / t, 3) for t, v in zip(pop_tl, pop_vm)]},
        "model": "784-100x5-10 + BatchNorm" if BN else "784-100x6-10",
        "clock": a.clock, "repeats": a.repeats, "steps": a.steps, "pop_steps": a.pop_steps, "batch": a.batch,
    }
    if a.json:
        print(json.dumps(res))
        return
    print(f"machine: {res['machine']}, torch {res['torch']}; medians of {a.repeats} interleaved repeats, "
          f"{res['clock']} clock")
    r = res["single"]
    print(f"single model  : trainlab {r['trainlab_samples_per_s']:>10.0f} samples/s | PyTorch "
          f"{r['pytorch_samples_per_s']:>10.0f} samples/s | trainlab/PyTorch = {r['ratio']:.2f}x")
    r = res["population"]
    print(f"population {a.population:>2}: trainlab {r['trainlab_samples_per_s']:>10.0f} samples/s | PyTorch x{a.population} "
          f"{r['pytorch_sequential_samples_per_s']:>7.0f} samples/s | trainlab/PyTorch = {r['ratio']:.2f}x")
    print(f"              vs torch.func vmap ensemble of {a.population}: {r['torch_func_vmap_samples_per_s']:>10.0f} "
          f"samples/s | trainlab/vmap = {r['ratio_vs_vmap']:.2f}x")


if __name__ == "__main__":
    main()
