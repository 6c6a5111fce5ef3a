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

4. **trainlab's own kernels without its layers** (``ops_floor``): every compute kernel trainlab's step
   runs -- the products, the in-place ReLUs and their backward, the bias-gradient sums, the log-sum-exp
   cross-entropy, BatchNorm's kernels, counter and gradient copies, the pooling and convolution kernels, the
   SGD update -- in its order, as a straight-line script into preallocated outputs. ``floor = PyTorch step /
   this`` is what trainlab would reach if its Python layers, extra views and allocations cost nothing: a target
   above the floor needs fewer kernels (fused ones), not leaner Python.

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

from _harness import (add_allocator_option, apply_allocator_option, batches, torch_step, trainlab_step,
                      trainlab_traced_step)
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


def ops_floor(workload: str, batch: int) -> Step:
    """trainlab's own step with its layers taken away: every compute kernel trainlab's step runs, in the
    same order, with the same arguments and layouts (``baddbmm``/``bmm`` with a population axis of 1, the
    ReLUs in place, ``threshold_backward`` into the gradient, the bias-gradient sums, the log-sum-exp
    cross-entropy and its backward, BatchNorm's native kernels with its step counter and gradient copies,
    the convolution and pooling kernels, the step counter and one ``_foreach_addcmul_`` SGD update) as a
    straight-line script into preallocated outputs: no Python layer objects, only the views the layouts need
    (a transpose per weight gradient, the labels' shape), no allocation that the
    kernels do not make themselves. ``tests/bench_tests/test_single_ceiling.py`` checks that it runs
    exactly trainlab's kernels. ``floor = PyTorch step / this``: what trainlab would reach if its Python
    layers, extra views and allocations cost nothing -- any target above it needs fewer kernels, not leaner code."""
    g = torch.Generator().manual_seed(0)
    N = batch
    thr = torch.ops.aten.threshold_backward.grad_input
    C = 10
    z_out = torch.empty(1, N, C)
    lse_logp, gz = torch.empty(1, N, C), torch.empty(1, N, C)
    picked, loss = torch.empty(1, N, 1), torch.empty(1)
    minus_ones = torch.full((1, N, 1), -1.0)
    steps = torch.zeros(1)
    lr = torch.full((1, 1, 1), 0.01)

    def affine(shapes: list[tuple[int, int]]):
        W = [torch.randn(1, a, b, generator=g) * (2 / a) ** 0.5 for a, b in shapes]
        B = [torch.zeros(1, 1, b) for _, b in shapes]
        return W, B, [w.transpose(1, 2) for w in W], [torch.empty_like(w) for w in W], [torch.empty_like(b) for b in B]

    def loss_forward_backward(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        lse = torch.logsumexp(z, 2, keepdim=True)
        torch.sub(z, lse, out=lse_logp)
        torch.gather(lse_logp, 2, idx, out=picked)
        torch.mean(picked, (1, 2), out=loss).neg_()
        torch.exp(lse_logp, out=gz)
        gz.scatter_add_(2, idx, minus_ones)
        return gz.div_(N)

    if workload in ("mlp", "bn"):
        w = _mlp_widths(workload)
        shapes = list(zip(w[:-1], w[1:]))
        L = len(shapes)
        W, B, WT, dW, dB = affine(shapes)
        Z = [torch.empty(1, N, b) for _, b in shapes]
        G = [torch.empty(1, N, a) for a, _ in shapes]
        params, grads = W + B, dW + dB
        lrs = [lr] * len(params)
        if workload == "mlp":
            def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
                x = xb.unsqueeze(0)
                h = x
                for i in range(L):
                    torch.baddbmm(B[i], h, W[i], out=Z[i])
                    h = torch.relu_(Z[i]) if i < L - 1 else Z[i]
                gr = loss_forward_backward(h, yb.view(1, N, 1))
                for i in reversed(range(L)):
                    torch.bmm(x.transpose(1, 2) if i == 0 else Z[i - 1].transpose(1, 2), gr, out=dW[i])
                    torch.sum(gr, 1, keepdim=True, out=dB[i])
                    if i:
                        gr = thr(torch.bmm(gr, WT[i], out=G[i]), Z[i - 1], 0, grad_input=G[i])
                steps.add_(1)
                torch._foreach_addcmul_(params, grads, lrs, value=-1.0)
            return step
        F = w[1]
        gamma = [torch.ones(F) for _ in range(L - 1)]
        beta = [torch.zeros(F) for _ in range(L - 1)]
        dgamma, dbeta = [torch.empty(F) for _ in range(L - 1)], [torch.empty(F) for _ in range(L - 1)]
        rmean, rvar = [torch.zeros(F) for _ in range(L - 1)], [torch.ones(F) for _ in range(L - 1)]
        tracked = [torch.zeros(1, dtype=torch.long) for _ in range(L - 1)]
        bn_bwd = torch.ops.aten.native_batch_norm_backward.default
        params, grads = params + gamma + beta, grads + dgamma + dbeta
        lrs = [lr.view((1,) * t.ndim) for t in params]

        def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
            x = xb.unsqueeze(0)
            h, saved = x, []
            for i in range(L):
                torch.baddbmm(B[i], h, W[i], out=Z[i])
                if i < L - 1:
                    y, mean, invstd = torch.native_batch_norm(Z[i].view(N, F), gamma[i], beta[i], rmean[i], rvar[i],
                                                              True, 0.1, 1e-5)
                    tracked[i].add_(1)
                    h = torch.relu_(y).view(1, N, F)
                    saved.append((h, mean, invstd))
                else:
                    h = Z[i]
            gr = loss_forward_backward(h, yb.view(1, N, 1))
            for i in reversed(range(L)):
                inp = x if i == 0 else saved[i - 1][0]
                torch.bmm(inp.transpose(1, 2), gr, out=dW[i])
                torch.sum(gr, 1, keepdim=True, out=dB[i])
                if i:
                    y, mean, invstd = saved[i - 1]
                    thr(torch.bmm(gr, WT[i], out=G[i]), y, 0, grad_input=G[i])
                    dz, dg, db = bn_bwd(G[i].view(N, F), Z[i - 1].view(N, F), gamma[i - 1], None, None, mean, invstd,
                                        True, 1e-5, [True, True, True])
                    dgamma[i - 1].copy_(dg)
                    dbeta[i - 1].copy_(db)
                    gr = dz.view(1, N, F)
            steps.add_(1)
            torch._foreach_addcmul_(params, grads, lrs, value=-1.0)
        return step
    # the convnet: conv 1->30 5x5 -> ReLU -> max pool 2x2 -> flatten -> Linear(4320, 100) -> ReLU -> Linear(100, 10)
    W, B, WT, dW, dB = affine([(4320, 100), (100, 10)])
    Wc, bc = torch.randn(30, 1, 5, 5, generator=g) * 0.2, torch.zeros(30)
    dWc, dbc = torch.empty_like(Wc), torch.empty_like(bc)
    Z0, G1, G0 = torch.empty(1, N, 100), torch.empty(1, N, 100), torch.empty(1, N, 4320)
    conv_bwd = torch.ops.aten.convolution_backward.default
    pool, pool_bwd = torch.ops.aten.max_pool2d_with_indices.default, torch.ops.aten.max_pool2d_with_indices_backward.default
    params, grads = [Wc, bc] + W + B, [dWc, dbc] + dW + dB
    lrs = [lr.view((1,) * t.ndim) for t in params]

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        c = torch.relu_(torch.nn.functional.conv2d(xb, Wc, bc, [1, 1], [0, 0], [1, 1]))
        p, idx = pool(c, [2, 2], [2, 2], [0, 0], [1, 1], False)
        f = p.view(1, N, 4320)
        h = torch.relu_(torch.baddbmm(B[0], f, W[0], out=Z0))
        gr = loss_forward_backward(torch.baddbmm(B[1], h, W[1], out=z_out), yb.view(1, N, 1))
        torch.bmm(h.transpose(1, 2), gr, out=dW[1])
        torch.sum(gr, 1, keepdim=True, out=dB[1])
        gr = thr(torch.bmm(gr, WT[1], out=G1), h, 0, grad_input=G1)
        torch.bmm(f.transpose(1, 2), gr, out=dW[0])
        torch.sum(gr, 1, keepdim=True, out=dB[0])
        gp = torch.bmm(gr, WT[0], out=G0)
        dc = pool_bwd(gp.view(N, 30, 12, 12), c, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)
        thr(dc, c, 0, grad_input=dc)
        _, dw, db = conv_bwd(dc, xb, Wc, [30], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True])
        dWc.copy_(dw)
        dbc.copy_(db)
        steps.add_(1)
        torch._foreach_addcmul_(params, grads, lrs, value=-1.0)
    return step


def _run(step: Step, data, no_grad: bool) -> tuple[float, float]:
    """Wall and process CPU seconds of ``step`` on every batch of ``data``."""
    ctx = torch.no_grad() if no_grad else torch.enable_grad()
    with ctx:
        w, c = time.perf_counter(), time.process_time()
        for xb, yb in data:
            step(xb, yb)
        return time.perf_counter() - w, time.process_time() - c


SIDES = ("pytorch", "trainlab", "trainlab_traced", "ops_floor", "kernels_mm", "kernels_bmm")


def measure(workload: str, data, threads: list[int], repeats: int) -> dict[int, dict[str, dict[str, list[float]]]]:
    """``{threads: {side: {"wall"|"cpu": [seconds per step, one per round]}}}``, the sides timed in turn
    every round at every thread count; models are built fresh every round (not timed)."""
    batch = data[0][0].shape[0]
    kern = {"kernels_mm": kernels_only(workload, batch, "mm"), "kernels_bmm": kernels_only(workload, batch, "bmm"),
            "ops_floor": ops_floor(workload, batch)}
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
                elif side == "trainlab_traced":  # Trainer(trace_step=True), recorded and checked before the clock
                    wall, cpu = _run(trainlab_traced_step(*trainlab_model(workload), data[:3]), data, no_grad=True)
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
        tt = med(timings["trainlab_traced"][clock])
        fl = med(timings["ops_floor"][clock])
        mm, bmm = med(timings["kernels_mm"][clock]), med(timings["kernels_bmm"][clock])
        kern = min(mm, bmm)
        res[clock] = {
            "pytorch_ms": round(pt * 1e3, 4), "trainlab_ms": round(tl * 1e3, 4),
            "kernels_ms": round(kern * 1e3, 4), "kernels_mm_ms": round(mm * 1e3, 4),
            "kernels_bmm_ms": round(bmm * 1e3, 4),
            "ops_floor_ms": round(fl * 1e3, 4), "floor": round(pt / fl, 3),
            "ceiling": round(pt / kern, 3), "trainlab_vs_pytorch": round(pt / tl, 3),
            "share_of_ceiling": round(kern / tl, 3), "share_of_floor": round(fl / tl, 3),
            "traced_ms": round(tt * 1e3, 4), "traced_vs_pytorch": round(pt / tt, 3),
            "traced_vs_pytorch_per_round": [round(p / t, 3) for p, t in zip(timings["pytorch"][clock],
                                                                            timings["trainlab_traced"][clock])],
            "trainlab_vs_pytorch_per_round": [round(p / t, 3) for p, t in zip(timings["pytorch"][clock],
                                                                              timings["trainlab"][clock])],
            "floor_per_round": [round(p / f, 3) for p, f in zip(timings["pytorch"][clock], timings["ops_floor"][clock])],
            "product_gflops": round(flops / (kern * 1e9), 1) if workload != "conv" else None,
        }
    res["target_reachable"] = {clock: res[clock]["ceiling"] >= TARGETS[workload] for clock in ("wall", "cpu")}
    res["target_within_floor"] = {clock: res[clock]["floor"] >= TARGETS[workload] for clock in ("wall", "cpu")}
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
    print(f"{'workload':<28} {'thr':>3} {'clock':>5} | {'PyTorch':>8} {'trainlab':>8} {'traced':>8} {'floor':>8} "
          f"{'kernels':>8} (mm / bmm)         | {'ceiling':>7} {'floor':>6} {'tl/PT':>6} {'tr/PT':>6} {'share':>6} | target")
    for workload, w in res["workloads"].items():
        for T, r in w["threads"].items():
            for clock in ("wall", "cpu"):
                c = r[clock]
                verdict = "reachable" if r["target_reachable"][clock] else "ABOVE the ceiling"
                below = "" if r["target_within_floor"][clock] else ", above the floor"
                print(f"{w['name']:<28} {T:>3} {clock:>5} | {c['pytorch_ms']:8.3f} {c['trainlab_ms']:8.3f} "
                      f"{c['traced_ms']:8.3f} {c['ops_floor_ms']:8.3f} {c['kernels_ms']:8.3f} ({c['kernels_mm_ms']:.3f} / "
                      f"{c['kernels_bmm_ms']:.3f}) | {c['ceiling']:6.2f}x {c['floor']:5.2f}x {c['trainlab_vs_pytorch']:5.2f}x "
                      f"{c['traced_vs_pytorch']:5.2f}x {100 * c['share_of_ceiling']:5.0f}% | {r['target']}x {verdict}{below}")
    print("ceiling = PyTorch step / kernels-only step (the faster layout); floor = PyTorch step / trainlab's own "
          "kernels as a straight-line script; tl/PT = trainlab/PyTorch; tr/PT = trainlab with trace_step/PyTorch; "
          "share = kernels-only / trainlab step")


if __name__ == "__main__":
    main()
