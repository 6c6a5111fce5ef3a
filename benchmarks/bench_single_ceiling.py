"""How fast could one small model's training step be on this machine? Its unavoidable kernels alone.

For the single-model workloads of issue 20 -- the textbook MLP 784-100x6-10, the BatchNorm MLP
784-100x5-10 + BN, the convnet 30x5x5 -> pool -> 100 -> 10, batch 100 -- this script times, in one
process, on the same batches:

1. PyTorch's idiomatic step (``torch.nn`` + autograd + ``torch.optim.SGD``, as ``bench_mlp.py`` and
   ``bench_conv.py`` run it: ``_harness.torch_step``),
2. trainlab's step (``_harness.trainlab_step``: forward, loss, backward, SGD),
3. the step's **unavoidable kernels alone**, issued as a straight-line script into preallocated
   outputs (``out=``): the matrix products of forward (with the bias fused, ``addmm``) and backward
   (the weight gradient of every layer, the input gradient of every layer but the first: nobody
   needs d(loss)/d(data)); for the BN MLP also the native BatchNorm forward and backward kernels
   (``native_batch_norm`` and its backward, what ``torch.nn.BatchNorm1d`` runs, and what trainlab
   runs); for the convnet also the convolution forward and its backward (weight and bias gradients
   only: the first layer), and the max-pooling forward and backward. No activation, loss, bias
   gradient of a Linear layer, optimizer update or bookkeeping: every other operation is free.
   The products are timed in two layouts, PyTorch's (``addmm``/``mm`` on ``(N, F)``) and trainlab's
   (``baddbmm``/``bmm`` with a population axis of 1), and the faster one is the kernels-only time.

Each round times every side at every thread count in turn (``torch.set_num_threads``), by the
wall clock and by this process' CPU time (all its threads: steadier on a shared machine), and the
medians over the rounds are compared (round 0 is a warm-up). It prints, per workload and thread
count:

* ``ceiling = PyTorch step / kernels-only step``: the most any implementation that runs the same
  kernels can beat PyTorch by (the rest of its step would have to cost nothing);
* ``trainlab/PyTorch``, the ratio reached;
* trainlab's share of the ceiling, ``(trainlab/PyTorch) / ceiling = kernels-only / trainlab``.

A target ratio above the ceiling cannot be met on this machine by any implementation that runs
these kernels; one below it is reachable in principle, by cutting what is around the kernels.

Usage: python benchmarks/bench_single_ceiling.py [--workloads mlp,bn,conv] [--threads 1,2] [--steps 100]
       [--conv-steps 30] [--repeats 5] [--batch 100] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

import torch

from _harness import add_allocator_option, apply_allocator_option, batches, torch_step, trainlab_step
import bench_conv
import bench_mlp

#: issue 20's target for trainlab / PyTorch, one model
TARGETS = {"mlp": 1.5, "bn": 1.3, "conv": 1.0}
NAMES = {"mlp": "textbook MLP 784-100x6-10", "bn": "BN MLP 784-100x5-10 + BN", "conv": "convnet 30x5x5-pool-100-10"}

Step = Callable[[torch.Tensor, torch.Tensor], None]


def _mlp_widths(workload: str) -> list[int]:
    return bench_mlp.BN_WIDTHS if workload == "bn" else bench_mlp.WIDTHS


def trainlab_model(workload: str):
    """``(model, SGD, loss)`` of one trainlab member, as the side-by-side benchmarks build it."""
    if workload == "conv":
        return bench_conv.trainlab_model(1, torch.device("cpu"))
    bench_mlp.BN = workload == "bn"
    return bench_mlp.trainlab_model(1, torch.device("cpu"))


def torch_model(workload: str):
    """``(net, torch.optim.SGD)``, as the side-by-side benchmarks build it."""
    if workload == "conv":
        return bench_conv.torch_model(torch.device("cpu"), 0)
    bench_mlp.BN = workload == "bn"
    return bench_mlp.torch_model(torch.device("cpu"), 0)


def product_flops(workload: str, batch: int) -> int:
    """Flops of one step's matrix products: forward ``2 B in out`` per layer, the weight gradient as
    many, the input gradient as many again except for the first layer (convolution not counted)."""
    if workload == "conv":
        shapes = [(4320, 100), (100, 10)]
        return sum(3 * 2 * batch * a * b for a, b in shapes)  # neither Linear is the first layer
    w = _mlp_widths(workload)
    return sum((2 if i == 0 else 3) * 2 * batch * a * b for i, (a, b) in enumerate(zip(w[:-1], w[1:])))


def _products(shapes: list[tuple[int, int]], batch: int, layout: str, g: torch.Generator):
    """Preallocated weights, biases and outputs of a chain of affine layers ``(in, out)`` for one layout:
    ``"mm"``: PyTorch's (weight ``(out, in)``, activations ``(B, F)``); ``"bmm"``: trainlab's (weight
    ``(1, in, out)``, activations ``(1, B, F)``). Returns ``(forward, backward)``:
    ``forward(x, i) -> y`` (``y = x W + b`` into a preallocated output) and
    ``backward(g, x, i, input_grad) -> dx or None`` (the weight gradient, and the input gradient if asked)."""
    if layout == "mm":
        W = [torch.randn(b, a, generator=g) * (2 / a) ** 0.5 for a, b in shapes]
        bias = [torch.zeros(b) for _, b in shapes]
        Y = [torch.empty(batch, b) for _, b in shapes]
        dW = [torch.empty_like(w) for w in W]
        dX = [torch.empty(batch, a) for a, _ in shapes]
        Wt = [w.t() for w in W]

        def forward(x: torch.Tensor, i: int) -> torch.Tensor:
            return torch.addmm(bias[i], x, Wt[i], out=Y[i])

        def backward(gr: torch.Tensor, x: torch.Tensor, i: int, input_grad: bool) -> torch.Tensor | None:
            torch.mm(gr.t(), x, out=dW[i])  # dW = g^T x, (out, in): what autograd computes for nn.Linear
            return torch.mm(gr, W[i], out=dX[i]) if input_grad else None
    else:
        W = [torch.randn(1, a, b, generator=g) * (2 / a) ** 0.5 for a, b in shapes]
        bias = [torch.zeros(1, 1, b) for _, b in shapes]
        Y = [torch.empty(1, batch, b) for _, b in shapes]
        dW = [torch.empty_like(w) for w in W]
        dX = [torch.empty(1, batch, a) for a, _ in shapes]
        Wt = [w.transpose(1, 2) for w in W]

        def forward(x: torch.Tensor, i: int) -> torch.Tensor:
            return torch.baddbmm(bias[i], x, W[i], out=Y[i])

        def backward(gr: torch.Tensor, x: torch.Tensor, i: int, input_grad: bool) -> torch.Tensor | None:
            torch.bmm(x.transpose(1, 2), gr, out=dW[i])  # dW = x^T g, (1, in, out): what trainlab's Linear computes
            return torch.bmm(gr, Wt[i], out=dX[i]) if input_grad else None
    return forward, backward


def kernels_only(workload: str, batch: int, layout: str) -> Step:
    """One step's unavoidable kernels for ``workload``, straight-line, outputs preallocated where the
    kernel has a native ``out=`` form (the products); a function of the batch ``(xb, yb)`` like a step."""
    g = torch.Generator().manual_seed(0)
    if workload in ("mlp", "bn"):
        w = _mlp_widths(workload)
        shapes = list(zip(w[:-1], w[1:]))
        L = len(shapes)
        fwd, bwd = _products(shapes, batch, layout, g)
        grad_out = torch.randn((batch, w[-1]) if layout == "mm" else (1, batch, w[-1]), generator=g) * 1e-2
        if workload == "mlp":
            def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
                h = xb if layout == "mm" else xb.unsqueeze(0)
                inputs = []
                for i in range(L):
                    inputs.append(h)
                    h = fwd(h, i)
                gr = grad_out
                for i in reversed(range(L)):
                    gr = bwd(gr, inputs[i], i, i > 0)
            return step
        # BN after every hidden affine layer: the kernel torch.nn.BatchNorm1d runs, on (B, F) channels
        F = w[1]
        gamma, beta = torch.ones(F), torch.zeros(F)
        rmean, rvar = [torch.zeros(F) for _ in range(L - 1)], [torch.ones(F) for _ in range(L - 1)]
        bn_bwd = torch.ops.aten.native_batch_norm_backward.default
        flat = (lambda t: t) if layout == "mm" else (lambda t: t.view(batch, F))  # noqa: E731
        unflat = (lambda t: t) if layout == "mm" else (lambda t: t.view(1, batch, F))  # noqa: E731

        def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
            h = xb if layout == "mm" else xb.unsqueeze(0)
            inputs, saved = [], []
            for i in range(L):
                inputs.append(h)
                z = fwd(h, i)
                if i < L - 1:
                    zc = flat(z)
                    y, mean, invstd = torch.native_batch_norm(zc, gamma, beta, rmean[i], rvar[i], True, 0.1, 1e-5)
                    saved.append((zc, mean, invstd))
                    h = unflat(y)
                else:
                    h = z
            gr = bwd(grad_out, inputs[L - 1], L - 1, True)
            for i in reversed(range(L - 1)):
                zc, mean, invstd = saved[i]
                dz, _, _ = bn_bwd(flat(gr), zc, gamma, rmean[i], rvar[i], mean, invstd, True, 1e-5, [True, True, True])
                gr = bwd(unflat(dz), inputs[i], i, i > 0)
        return step
    # the convnet: conv 1->30 5x5 (bias) -> max pool 2x2 -> flatten -> Linear(4320, 100) -> Linear(100, 10)
    fwd, bwd = _products([(4320, 100), (100, 10)], batch, layout, g)
    Wc, bc = torch.randn(30, 1, 5, 5, generator=g) * 0.2, torch.zeros(30)
    grad_out = torch.randn((batch, 10) if layout == "mm" else (1, batch, 10), generator=g) * 1e-2
    conv_bwd = torch.ops.aten.convolution_backward.default
    pool_bwd = torch.ops.aten.max_pool2d_with_indices_backward.default
    pool = torch._C._nn.max_pool2d_with_indices

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        c = torch.convolution(xb, Wc, bc, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
        p, idx = pool(c, [2, 2], [2, 2], [0, 0], [1, 1], False)
        f = p.view(batch, 4320) if layout == "mm" else p.view(1, batch, 4320)
        h = fwd(f, 0)
        fwd(h, 1)
        gr = bwd(grad_out, h, 1, True)
        gf = bwd(gr, f, 0, True)
        dc = pool_bwd(gf.view(batch, 30, 12, 12), c, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)
        conv_bwd(dc, xb, Wc, [30], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True])
    return step


def _run(step: Step, data, no_grad: bool) -> tuple[float, float]:
    """Wall and process CPU seconds of ``step`` on every batch of ``data``."""
    ctx = torch.no_grad() if no_grad else torch.enable_grad()
    with ctx:
        w, c = time.perf_counter(), time.process_time()
        for xb, yb in data:
            step(xb, yb)
        return time.perf_counter() - w, time.process_time() - c


SIDES = ("pytorch", "trainlab", "kernels_mm", "kernels_bmm")


def measure(workload: str, data, threads: list[int], repeats: int) -> dict[int, dict[str, dict[str, list[float]]]]:
    """``{threads: {side: {"wall"|"cpu": [seconds per step, one per round]}}}``, the sides timed in turn
    every round at every thread count; models are built fresh every round (not timed)."""
    batch = data[0][0].shape[0]
    kern = {"kernels_mm": kernels_only(workload, batch, "mm"), "kernels_bmm": kernels_only(workload, batch, "bmm")}
    out = {T: {s: {"wall": [], "cpu": []} for s in SIDES} for T in threads}
    n = len(data)
    for rnd in range(repeats + 1):  # round 0 warms up
        for T in threads:
            torch.set_num_threads(T)
            for side in SIDES:
                if side == "pytorch":
                    wall, cpu = _run(torch_step(*torch_model(workload)), data, no_grad=False)
                elif side == "trainlab":
                    wall, cpu = _run(trainlab_step(*trainlab_model(workload)), data, no_grad=True)
                else:
                    wall, cpu = _run(kern[side], data, no_grad=True)
                if rnd:
                    out[T][side]["wall"].append(wall / n)
                    out[T][side]["cpu"].append(cpu / n)
    return out


def summarize(workload: str, timings: dict[str, dict[str, list[float]]], flops: int) -> dict:
    """Medians, the ceiling, trainlab's ratio and its share of the ceiling, for each clock."""
    med = statistics.median
    res: dict = {"target": TARGETS[workload]}
    for clock in ("wall", "cpu"):
        pt, tl = med(timings["pytorch"][clock]), med(timings["trainlab"][clock])
        mm, bmm = med(timings["kernels_mm"][clock]), med(timings["kernels_bmm"][clock])
        kern = min(mm, bmm)
        res[clock] = {
            "pytorch_ms": round(pt * 1e3, 4), "trainlab_ms": round(tl * 1e3, 4),
            "kernels_ms": round(kern * 1e3, 4), "kernels_mm_ms": round(mm * 1e3, 4),
            "kernels_bmm_ms": round(bmm * 1e3, 4),
            "ceiling": round(pt / kern, 3), "trainlab_vs_pytorch": round(pt / tl, 3),
            "share_of_ceiling": round(kern / tl, 3),
            "trainlab_vs_pytorch_per_round": [round(p / t, 3) for p, t in zip(timings["pytorch"][clock],
                                                                              timings["trainlab"][clock])],
            "product_gflops": round(flops / (kern * 1e9), 1) if workload != "conv" else None,
        }
    res["target_reachable"] = {clock: res[clock]["ceiling"] >= TARGETS[workload] for clock in ("wall", "cpu")}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="mlp,bn,conv", help="comma-separated: mlp, bn, conv")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch intra-op thread counts")
    ap.add_argument("--steps", type=int, default=100, help="steps per timed run of the MLPs")
    ap.add_argument("--conv-steps", type=int, default=30, help="steps per timed run of the convnet")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    add_allocator_option(ap)
    a = ap.parse_args()
    allocator = apply_allocator_option(a)
    workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    bad = [w for w in workloads if w not in TARGETS]
    if bad:
        raise SystemExit(f"bench_single_ceiling: unknown workload(s) {', '.join(bad)}; allowed: mlp, bn, conv")
    threads = [int(t) for t in a.threads.split(",")]
    from trainlab.data import load_splits

    # the machine may be shared: the load average before and after says how much other work ran meanwhile
    res: dict = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "allocator": allocator},
                 "repeats": a.repeats, "batch": a.batch, "load_average_start": round(os.getloadavg()[0], 2),
                 "workloads": {}}
    for workload in workloads:
        flat = workload != "conv"
        s = load_splits("mnist-5k", val=0, test=0, flatten=flat)
        steps = a.steps if flat else a.conv_steps
        data = batches(s.train.x, s.train.y, steps, a.batch, 0)
        timings = measure(workload, data, threads, a.repeats)
        flops = product_flops(workload, a.batch)
        res["workloads"][workload] = {"name": NAMES[workload], "steps": steps, "product_mflop_per_step":
                                      round(flops / 1e6, 2),
                                      "threads": {str(T): summarize(workload, timings[T], flops) for T in threads}}
    res["load_average_end"] = round(os.getloadavg()[0], 2)
    if a.json:
        print(json.dumps(res, indent=1))
        return
    s_ = "s" if a.repeats > 1 else ""
    print(f"{res['machine']['platform']}, torch {res['machine']['torch']}, {allocator}; batch {a.batch}; "
          f"medians of {a.repeats} interleaved round{s_}; ms per step; load average {res['load_average_start']} at the "
          f"start, {res['load_average_end']} at the end")
    print(f"{'workload':<28} {'thr':>3} {'clock':>5} | {'PyTorch':>8} {'trainlab':>8} {'kernels':>8} "
          f"(mm / bmm)         | {'ceiling':>7} {'tl/PT':>6} {'share':>6} | target")
    for workload, w in res["workloads"].items():
        for T, r in w["threads"].items():
            for clock in ("wall", "cpu"):
                c = r[clock]
                verdict = "reachable" if r["target_reachable"][clock] else "ABOVE the ceiling"
                print(f"{w['name']:<28} {T:>3} {clock:>5} | {c['pytorch_ms']:8.3f} {c['trainlab_ms']:8.3f} "
                      f"{c['kernels_ms']:8.3f} ({c['kernels_mm_ms']:.3f} / {c['kernels_bmm_ms']:.3f}) | "
                      f"{c['ceiling']:6.2f}x {c['trainlab_vs_pytorch']:5.2f}x {100 * c['share_of_ceiling']:5.0f}% | "
                      f"{r['target']}x {verdict}")
    print("ceiling = PyTorch step / kernels-only step (the faster layout); tl/PT = trainlab/PyTorch; "
          "share = kernels-only / trainlab step")


if __name__ == "__main__":
    main()
