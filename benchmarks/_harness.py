"""What the side-by-side benchmarks share: the batch list both sides train on, and the timed
training loops (trainlab's explicit forward/backward vs idiomatic PyTorch: nn + autograd + optim).

Each benchmark passes its own model factories:
``make_trainlab(P, device) -> (model, optimizer, loss)`` and
``make_torch(device, seed) -> (net, optimizer)``.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from trainlab import nn
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.runtime import keep_freed_memory


def batches(x: torch.Tensor, y: torch.Tensor, steps: int, batch: int, seed: int):
    """``steps`` mini-batches of seeded shuffles (epochs end where a full batch no longer fits)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    n = x.shape[0]
    while len(out) < steps:
        perm = torch.randperm(n, generator=g).to(x.device)
        for i in range(0, n - batch + 1, batch):
            out.append((x[perm[i:i + batch]], y[perm[i:i + batch]]))
            if len(out) == steps:
                break
    return out


def sgd_population(model: nn.Sequential, in_shape: tuple[int, ...], P: int, device: torch.device, lr: float = 0.01):
    """Build ``model`` for ``P`` members and give it what a training step needs: ``(model, SGD, loss)``
    (no gradient for the data: the first layer skips it, as ``Trainer`` does)."""
    model.build(in_shape, Population(P), device=device)
    model.input_grad = False
    loss = nn.SoftmaxCrossEntropy()
    loss.build(P, device=device)
    return model, SGD(model.parameters(), lr=lr), loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


#: the clock of the timed loops (``--clock``): wall time, or this process' CPU time (all its threads;
#: immune to being descheduled on a machine shared with other work)
CLOCK: Callable[[], float] = time.perf_counter


def trainlab_step(model: nn.Sequential, opt: SGD, loss: nn.SoftmaxCrossEntropy) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One trainlab training step on a batch, as ``Trainer`` takes it (call it under ``torch.no_grad()``)."""
    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        out = model.forward(xb.unsqueeze(0), training=True)
        loss.forward(out, yb)
        model.backward(loss.backward())
        opt.step()
    return step


def trainlab_traced_step(model: nn.Sequential, opt: SGD, loss: nn.SoftmaxCrossEntropy,
                         warm: list[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """trainlab's step with ``Trainer(trace_step=True)``: ``Trainer.train_step``, its bookkeeping included, after
    the first eager step, the recording and its check against the eager step have run on the three ``warm``
    batches (not timed: they happen once per batch shape)."""
    from trainlab.train import Trainer

    tr = Trainer(model, loss, opt, batch_size=warm[0][0].shape[0], trace_step=True)
    tr.steps_per_epoch = 1  # as fit sets it: only read when a member diverges
    with torch.no_grad():
        for xb, yb in warm[:3]:
            tr.train_step(xb, yb)
    if tr.trace_refused is not None:
        raise RuntimeError(f"trace_step refused: {tr.trace_refused}")
    return tr.train_step


def torch_step(net: torch.nn.Module, opt: torch.optim.Optimizer) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One idiomatic PyTorch training step on a batch: zero_grad, forward, loss, autograd, optimizer."""
    lossf = torch.nn.CrossEntropyLoss()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        lossf(net(xb), yb).backward()
        opt.step()
    return step


def run_trainlab(make_trainlab: Callable, P: int, data, device: torch.device) -> float:
    """Seconds for one trainlab population of ``P`` members to take a step on every batch."""
    step = trainlab_step(*make_trainlab(P, device))
    sync(device)
    t = CLOCK()
    with torch.no_grad():
        for xb, yb in data:
            step(xb, yb)
    sync(device)
    return CLOCK() - t


def run_torch(make_torch: Callable, runs: int, data, device: torch.device) -> float:
    """Seconds for ``runs`` PyTorch models, one after another, to take a step on every batch."""
    steps = [torch_step(*make_torch(device, seed)) for seed in range(runs)]
    sync(device)
    t = CLOCK()
    for step in steps:
        for xb, yb in data:
            step(xb, yb)
    sync(device)
    return CLOCK() - t


def vmap_ensemble(make_torch: Callable, runs: int, device: torch.device, lr: float = 0.01):
    """``runs`` PyTorch models as one ``torch.func`` ensemble: the models' parameters stacked
    (``stack_module_state``), every model's loss gradient from one ``functional_call`` under ``vmap``,
    and a per-model SGD step on the stacked tensors -- how a PyTorch user trains many small models at
    once today (the torch.func "model ensembling" recipe). Returns ``(params, step)``: the stacked
    parameters by name, and ``step(xb, yb)`` taking one SGD step of every model on the batch."""
    import copy

    from torch.func import functional_call, grad, stack_module_state, vmap

    nets = [make_torch(device, seed)[0] for seed in range(runs)]
    params, buffers = stack_module_state(nets)
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")

    def loss_of(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads_of = vmap(grad(loss_of), in_dims=(0, 0, None, None))
    names = list(params)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        grads = grads_of(params, buffers, xb, yb)
        torch._foreach_add_([params[k] for k in names], [grads[k] for k in names], alpha=-lr)

    return params, step


def run_vmap(make_torch: Callable, runs: int, data, device: torch.device, lr: float = 0.01) -> float:
    """Seconds for ``runs`` PyTorch models, trained at once as a :func:`vmap_ensemble`, to take a step
    on every batch."""
    _, step = vmap_ensemble(make_torch, runs, device, lr)
    sync(device)
    t = CLOCK()
    for xb, yb in data:
        step(xb, yb)
    sync(device)
    return CLOCK() - t


def add_clock_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time the training loops by the wall clock, or by this process' CPU time (steadier on a "
                         "machine shared with other work; counts every thread)")


def apply_clock_option(a: argparse.Namespace) -> None:
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter


def add_allocator_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's allocator as it is (default: trainlab.runtime.keep_freed_memory(), as the "
                         "trainlab command line does; it applies to both sides of the comparison)")


def apply_allocator_option(a: argparse.Namespace) -> str:
    """Set the allocator as asked; the setting in words, for the result line."""
    if a.system_malloc:
        return "system malloc"
    return "malloc keeps freed memory" if keep_freed_memory() else "system malloc (keep_freed_memory unavailable)"


#: view calls: they compute nothing, and a straight-line script needs other ones than layers do
VIEW_OPS = {"aten::unsqueeze", "aten::view", "aten::reshape", "aten::transpose", "aten::select", "aten::expand",
            "aten::squeeze", "aten::t", "aten::as_strided", "aten::alias"}


def kernels_of(step: Callable[[torch.Tensor, torch.Tensor], object], x: torch.Tensor, y: torch.Tensor) -> list[str]:
    """The top-level ATen calls of one ``step(x, y)`` that compute something (views left out), in order: how the
    tests check that a floor script runs exactly the kernels of trainlab's step."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(x, y)
    return [e.name for e in prof.events() if e.cpu_parent is None and e.name not in VIEW_OPS]
