"""Small convnet training throughput: trainlab vs idiomatic PyTorch, side by side; conv population strategies.

The net (issue 4): Conv(1->30, 5x5) -> ReLU -> MaxPool 2x2 -> Flatten -> Linear(4320, 100)
-> ReLU -> Linear(100, 10), He init, SGD lr 0.01, batch 100, on the embedded MNIST
images (1x28x28). Both sides train on the same tensors in the same process with the
same batch order; the runs are interleaved and repeated, and medians are compared.

1. single model: trainlab (P = 1) vs torch.nn.Sequential + autograd + torch.optim.SGD
2. population: one trainlab run of P members vs P sequential PyTorch runs
3. ``--strategies``: forward + backward time of one Conv2d layer for each way of
   running the population axis (loop / grouped / wide) at several P -- the numbers
   behind ``Conv2d(strategy="auto")`` (docs/convolution.md).

Usage: python benchmarks/bench_conv.py [--repeats 5] [--steps 100] [--population 8]
       [--threads N] [--strategies] [--device cpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import _harness
from _harness import add_allocator_option, apply_allocator_option, batches, run_torch as _run_torch, run_trainlab as _run_trainlab, sgd_population, sync
from trainlab import nn
from trainlab.data import load_splits
from trainlab.nn._conv import Conv2d
from trainlab.nn._pool import Flatten, MaxPool2d
from trainlab.optim import SGD
from trainlab.population import Population


def trainlab_model(P: int, device: torch.device) -> tuple[nn.Sequential, SGD, nn.SoftmaxCrossEntropy]:
    model = nn.Sequential([Conv2d(1, 30, 5, init="he_normal"), nn.ReLU(), MaxPool2d(2), Flatten(),
                           nn.Linear(None, 100, init="he_normal"), nn.ReLU(), nn.Linear(None, 10, init="he_normal")])
    return sgd_population(model, (1, 28, 28), P, device)


def torch_model(device: torch.device, seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 30, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                              torch.nn.Linear(4320, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
    for m in net:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    net = net.to(device)
    return net, torch.optim.SGD(net.parameters(), lr=0.01)


def run_trainlab(P: int, data, device) -> float:
    return _run_trainlab(trainlab_model, P, data, device)


def run_torch(runs: int, data, device) -> float:
    return _run_torch(torch_model, runs, data, device)


# ---- population strategies of one Conv2d layer ------------------------------------------------

#: (label, N, C_in, C_out, H, k, padding, shared input, input gradient)
STRATEGY_CASES = [
    ("first layer, shared input: 1->30, 5x5, 28x28", 100, 1, 30, 28, 5, 0, True, False),
    ("first layer, per-member input (augmented): 1->30, 5x5, 28x28", 100, 1, 30, 28, 5, 0, False, False),
    ("hidden: 30->64, 3x3, 12x12", 100, 30, 64, 12, 3, 0, False, True),
    ("hidden: 16->32, 3x3, 28x28, padding 1", 100, 16, 32, 28, 3, 1, False, True),
]


#: the clock of the strategy timings: wall time, or this process' CPU time (``--clock cpu``:
#: immune to being descheduled on a machine shared with other work; counts every thread)
CLOCK = time.perf_counter


def time_strategy(strategy: str, P: int, case, device: torch.device, repeats: int) -> float:
    _, N, cin, cout, H, k, pad, shared, dx = case
    layer = Conv2d(cin, cout, k, padding=pad, strategy=strategy)
    layer.build((cin, H, H), Population(P), device=device)
    layer.input_grad = dx
    x = torch.randn(1 if shared else P, N, cin, H, H, device=device)
    g = None
    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            sync(device)
            t = CLOCK()
            y = layer.forward(x, training=True)
            if g is None:
                g = torch.randn_like(y)
            layer.backward(g)
            sync(device)
            if i:  # the first call warms up
                times.append(CLOCK() - t)
    return statistics.median(times)


def strategies(device: torch.device, repeats: int, sizes: list[int]) -> list[dict]:
    rows = []
    for case in STRATEGY_CASES:
        shared = case[7]
        for P in sizes:
            names = ["loop"] + (["grouped"] if P > 1 else []) + (["wide"] if shared and P > 1 else [])
            res = {name: [] for name in names}
            for _ in range(repeats):  # interleaved: each round times every strategy once
                for name in names:
                    res[name].append(time_strategy(name, P, case, device, 3))
            med = {name: statistics.median(v) * 1e3 for name, v in res.items()}
            probe = Conv2d(case[2], case[3], case[5])
            probe.build((case[2], case[4], case[4]), Population(P), device=device)
            auto = probe._choose(shared, device)
            rows.append({"case": case[0], "P": P, "ms": med, "fastest": min(med, key=med.get), "auto": auto})
    return rows


def training(a: argparse.Namespace, device: torch.device) -> dict:
    """Sections 1 and 2: the convnet trained by both, interleaved."""
    s = load_splits("mnist-5k", val=0, test=0, flatten=False, device=device)
    x, y = s.train.x, s.train.y
    data = batches(x, y, a.steps, a.batch, 0)
    pop_data = data[: a.pop_steps]
    run_trainlab(1, data[:10], device), run_torch(1, data[:10], device)  # warm-up
    single_tl, single_pt, pop_tl, pop_pt = [], [], [], []
    for _ in range(a.repeats):
        single_tl.append(run_trainlab(1, data, device))
        single_pt.append(run_torch(1, data, device))
        if a.population > 1:
            pop_tl.append(run_trainlab(a.population, pop_data, device))
            pop_pt.append(run_torch(a.population, pop_data, device))
    med = statistics.median
    n1 = a.steps * a.batch
    res: dict = {"single": {"trainlab_samples_per_s": n1 / med(single_tl), "pytorch_samples_per_s": n1 / med(single_pt),
                            "ratio": med(single_pt) / med(single_tl),
                            "trainlab_s": sorted(single_tl), "pytorch_s": sorted(single_pt),
                            "ratio_per_repeat": [round(p / t, 3) for t, p in zip(single_tl, single_pt)]}}
    if a.population > 1:
        nP = a.pop_steps * a.batch * a.population
        res["population"] = {"members": a.population, "trainlab_samples_per_s": nP / med(pop_tl),
                             "pytorch_sequential_samples_per_s": nP / med(pop_pt),
                             "ratio": med(pop_pt) / med(pop_tl),
                             "ratio_per_repeat": [round(p / t, 3) for t, p in zip(pop_tl, pop_pt)]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--pop-steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--strategies", action="store_true", help="also time the Conv2d population strategies")
    ap.add_argument("--strategy-sizes", default="1,4,16")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall clock, or process CPU time (steadier on a shared machine; counts every thread): the "
                         "training loops and the strategy timings")
    ap.add_argument("--skip-training", action="store_true", help="only the strategy timings")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    add_allocator_option(ap)
    a = ap.parse_args()
    allocator = apply_allocator_option(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    _harness.CLOCK = CLOCK
    device = torch.device(a.device)
    res: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {device}, {allocator}",
        "torch": torch.__version__, "clock": a.clock, "repeats": a.repeats, "steps": a.steps, "pop_steps": a.pop_steps,
        "batch": a.batch,
    }
    if not a.skip_training:
        res.update(training(a, device))
    if a.strategies:
        res["strategies"] = strategies(device, a.repeats, [int(v) for v in a.strategy_sizes.split(",")])
    if a.json:
        print(json.dumps(res))
        return
    print(f"machine: {res['machine']}, torch {res['torch']}; medians of {a.repeats} interleaved repeats, "
          f"{a.clock} clock")
    r = res.get("single")
    if r:
        print(f"single model  : trainlab {r['trainlab_samples_per_s']:>8.0f} samples/s | PyTorch "
              f"{r['pytorch_samples_per_s']:>8.0f} samples/s | trainlab/PyTorch = {r['ratio']:.2f}x")
    if "population" in res:
        r = res["population"]
        print(f"population {a.population:>2}: trainlab {r['trainlab_samples_per_s']:>8.0f} samples/s | PyTorch "
              f"x{a.population} {r['pytorch_sequential_samples_per_s']:>6.0f} samples/s | trainlab/PyTorch = "
              f"{r['ratio']:.2f}x")
    for row in res.get("strategies", []):
        times = "  ".join(f"{k} {v:7.1f} ms" for k, v in row["ms"].items())
        print(f"{row['case']:<62} P={row['P']:<3} {times}  fastest: {row['fastest']}, auto: {row['auto']}")
    if "strategies" in res:
        print(f"(strategy times: {a.clock} clock, forward + backward of one layer, N = 100)")


if __name__ == "__main__":
    main()
