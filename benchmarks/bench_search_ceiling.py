"""How fast could a population of search trials be on this machine? The matrix products alone.

A trial of an MLP search spends its arithmetic in matrix products: per layer ``(in, out)``
and batch ``B``, the forward ``2 B in out`` flops, the weight gradient as many, the
input gradient as many again (not for the first layer: nobody needs d(loss)/d(data)),
plus a forward over each evaluated split after every epoch. This script

1. counts those flops for one trial of ``--config`` (default: the textbook random search),
2. times trainlab training one trial alone and ``--population`` trials as one population
   (``Trainer.fit``, as ``trainlab tune`` runs them, medians),
3. times the same products *and nothing else* (``baddbmm``/``bmm`` with the population's
   shapes, for the trial's whole schedule of steps and evaluations): what a population
   would take if every other operation (activations, loss, optimizer, bookkeeping) were free,
4. times one large ``2048 x 2048`` product, the machine's practical peak for float32,
5. times the strongest PyTorch peer for the same sweep: the ``--population`` trials as one
   ``torch.func`` ensemble (``stack_module_state`` + ``functional_call`` under ``vmap``, a per-model
   SGD step with each trial's learning rate and weight decay, a ``vmap`` forward over each evaluated
   split after every epoch) on the same schedule,

6. times trainlab's own kernels for the population and nothing else (``kernels_floor``: every kernel of
   trainlab's population step and evaluation, straight-line, into preallocated outputs),

and prints the ratio trainlab reaches, the bound ``alone / products-only population`` -- no
population, however its other operations were written, can beat that bound -- the share of the
bound trainlab reaches, the share its own kernels permit (products-only / kernels-only population), and
trainlab's ratio to the vmap ensemble.

Usage: python benchmarks/bench_search_ceiling.py [--config ...] [--population 25] [--repeats 5] [--threads N]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from _harness import add_allocator_option, apply_allocator_option



def on_schedule(step, evaluate, batches, epochs, evals):
    """A trial: ``epochs`` times a ``step`` on every batch size of ``batches``, then an ``evaluate`` of every
    split size of ``evals`` (the schedule both the products-only population and the vmap peer follow)."""
    def trial() -> None:
        for _ in range(epochs):
            for B in batches:
                step(B)
            for N in evals:
                evaluate(N)

    return trial


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def trial_values(spec, P: int) -> list[dict]:
    """``P`` points of the search space, drawn at random (seed 0) as a random search would."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dists = spec.space.distributions()
    return [spec.space.decode(study.ask(fixed_distributions=dists).params) for _ in range(P)]


def build(base, values: list[dict]):
    """A built run training the trials ``values`` as one population, as ``trainlab tune`` does."""
    from trainlab.build import build_run
    from trainlab.search._population import population_config, trial_config

    seeds = range(len(values))
    return build_run(population_config([trial_config(base, v, seed=i) for i, v in zip(seeds, values)], seeds))


def schedule(run):
    """(layer shapes, batch sizes of one epoch's steps, epochs, evaluated split sizes) of a built MLP run."""
    from trainlab.nn import Linear

    layers = [m for m in run.model.layers if isinstance(m, Linear)]
    other = [type(m).__name__ for m in run.model.layers
             if not isinstance(m, Linear) and type(m).__name__ not in ("ReLU", "Flatten", "Identity")]
    if not layers or other:
        raise SystemExit(f"bench_search_ceiling: needs an MLP of Linear + ReLU layers; this config also has {other}")
    tr = run.trainer
    n = run.splits.train.x.shape[0]
    batches = [min(tr.batch_size, n - i) for i in range(0, n, tr.batch_size)]
    evals = ([n] if tr.eval_train else []) + ([run.splits.val.x.shape[0]] if run.splits.val is not None else [])
    return [(m.in_features, m.out_features) for m in layers], batches, tr.epochs, evals


def trial_flops(shapes, batches, epochs, evals) -> float:
    per_step = lambda B: sum((2 if i == 0 else 3) * 2 * B * a * b for i, (a, b) in enumerate(shapes))  # noqa: E731
    per_eval = sum(2 * N * a * b for N in evals for a, b in shapes)
    return epochs * (sum(per_step(B) for B in batches) + per_eval)


def products_only(shapes, batches, epochs, evals, P: int):
    """A function doing exactly the trial schedule's matrix products for ``P`` members."""
    g = torch.Generator().manual_seed(0)
    W = [torch.randn(P, a, b, generator=g) * (2 / a) ** 0.5 for a, b in shapes]
    bias = [torch.zeros(P, 1, b) for _, b in shapes]
    dW = [torch.empty_like(w) for w in W]
    x_of = {N: torch.rand(1, N, shapes[0][0], generator=g) for N in set(batches) | set(evals)}

    def step(B: int) -> None:
        h = x_of[B].expand(P, B, shapes[0][0])
        inputs = []
        for w, b in zip(W, bias):
            inputs.append(h)
            h = torch.baddbmm(b, h, w)
        grad = h
        for i in reversed(range(len(W))):
            torch.bmm(inputs[i].transpose(1, 2), grad, out=dW[i])
            if i > 0:
                grad = torch.bmm(grad, W[i].transpose(1, 2))

    def evaluate(N: int) -> None:
        h = x_of[N].expand(P, N, shapes[0][0])
        for w, b in zip(W, bias):
            h = torch.baddbmm(b, h, w)

    return on_schedule(step, evaluate, batches, epochs, evals)


def kernels_floor(shapes, batches, epochs, evals, values: list[dict]):
    """A function doing the trial schedule with trainlab's own kernels for the ``values`` trials as one
    population and nothing else: the floor of trainlab's population, as ``bench_single_ceiling.ops_floor`` is
    the floor of one model. Each step runs exactly the kernels of trainlab's population step, in its order
    (``tests/bench_tests/test_search_ceiling.py`` checks it with torch's profiler): the products with their
    biases, the ReLUs in place, the log-sum-exp cross-entropy and its backward, the divergence check, the
    bias-gradient sums, ``threshold_backward`` into the gradient, the step counter, the coupled weight decay
    ``g + wd w`` into a kept buffer per weight and one ``_foreach_addcmul_`` update, the batch-loss sum -- as a
    straight-line script into preallocated outputs. Each evaluation runs the forward, the loss and the
    accuracy kernels. No layer objects, no trainer, no data loader, no allocation the kernels do not make
    themselves: an implementation running these kernels cannot be faster, so ``products-only / this`` is the
    most of the products-only bound that trainlab's kernels permit -- a share above it needs fewer kernels
    (fused ones), not leaner code."""
    P = len(values)
    g = torch.Generator().manual_seed(0)
    C, L = shapes[-1][1], len(shapes)
    W = [torch.randn(P, a, b, generator=g) * (2 / a) ** 0.5 for a, b in shapes]
    bias = [torch.zeros(P, 1, b) for _, b in shapes]
    WT = [w.transpose(1, 2) for w in W]
    dW, dB = [torch.empty_like(w) for w in W], [torch.empty_like(b) for b in bias]
    decayed = [torch.empty_like(w) for w in W]
    lr = torch.tensor([float(v.get("optim.lr", 0.01)) for v in values]).view(P, 1, 1)
    wd = torch.tensor([float(v.get("optim.weight_decay", 0.0)) for v in values]).view(P, 1, 1)
    params = [t for pair in zip(W, bias) for t in pair]  # trainlab's order: each layer's weight, then its bias
    grads = [t for pair in zip(decayed, dB) for t in pair]
    lrs = [lr] * len(params)
    thr = torch.ops.aten.threshold_backward.grad_input
    steps, alive = torch.zeros(P), torch.ones(P, dtype=torch.bool)
    loss, loss_sum = torch.empty(P), torch.zeros(P, dtype=torch.float64)
    sizes = set(batches) | set(evals)
    x_of = {N: torch.rand(1, N, shapes[0][0], generator=g) for N in sizes}
    y_of = {N: torch.randint(0, C, (N,), generator=g) for N in sizes}
    Z = {N: [torch.empty(P, N, b) for _, b in shapes] for N in sizes}
    G = {N: [torch.empty(P, N, a) for a, _ in shapes] for N in sizes}
    logp = {N: torch.empty(P, N, C) for N in sizes}
    gz = {N: torch.empty(P, N, C) for N in sizes}
    picked = {N: torch.empty(P, N, 1) for N in sizes}
    minus_ones = {N: torch.full((P, N, 1), -1.0) for N in sizes}

    def forward(N: int) -> torch.Tensor:
        h = x_of[N].expand(P, N, shapes[0][0])
        for i in range(L):
            torch.baddbmm(bias[i], h, W[i], out=Z[N][i])
            h = torch.relu_(Z[N][i]) if i < L - 1 else Z[N][i]
        idx = y_of[N].view(1, N, 1).expand(P, N, 1)
        torch.sub(h, torch.logsumexp(h, 2, keepdim=True), out=logp[N])
        torch.gather(logp[N], 2, idx, out=picked[N])
        torch.mean(picked[N], (1, 2), out=loss).neg_()
        return idx

    def step(B: int) -> None:
        idx = forward(B)
        bool((~torch.isfinite(loss) & alive).any())  # the divergence check
        gr = torch.exp(logp[B], out=gz[B])
        gr.scatter_add_(2, idx, minus_ones[B])
        gr.div_(B)
        x = x_of[B]
        for i in reversed(range(L)):
            torch.bmm(x.expand(P, B, shapes[0][0]).transpose(1, 2) if i == 0 else Z[B][i - 1].transpose(1, 2), gr,
                      out=dW[i])
            torch.sum(gr, 1, keepdim=True, out=dB[i])
            if i:
                gr = thr(torch.bmm(gr, WT[i], out=G[B][i]), Z[B][i - 1], 0, grad_input=G[B][i])
        steps.add_(1)
        for w, d, out in zip(W, dW, decayed):
            torch.addcmul(d, wd, w, out=out)
        torch._foreach_addcmul_(params, grads, lrs, value=-1.0)
        loss_sum.add_(loss.double())

    def evaluate(N: int) -> None:
        forward(N)
        (Z[N][-1].argmax(dim=-1) == y_of[N].unsqueeze(0)).sum(dim=1).double()

    trial = on_schedule(step, evaluate, batches, epochs, evals)
    trial.step = step  # type: ignore[attr-defined]
    return trial


def vmap_ensemble_trial(shapes, batches, epochs, evals, values: list[dict]):
    """A function training the trials ``values`` as one ``torch.func`` ensemble on the trial schedule:
    each epoch a per-model SGD step on every batch (coupled weight decay on the weights only, as
    trainlab's SGD), then a forward and the loss of every model over each evaluated split."""
    import copy

    from torch.func import functional_call, grad, stack_module_state, vmap

    P = len(values)
    nets = []
    for i in range(P):
        torch.manual_seed(i)
        mods: list[torch.nn.Module] = []
        for j, (a, b) in enumerate(shapes):
            mods.append(torch.nn.Linear(a, b))
            if j < len(shapes) - 1:
                mods.append(torch.nn.ReLU())
        nets.append(torch.nn.Sequential(*mods))
    params, buffers = stack_module_state(nets)
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(nets[0]).to("meta")
    names = list(params)
    lr = torch.tensor([float(v.get("optim.lr", 0.01)) for v in values])
    wd = torch.tensor([float(v.get("optim.weight_decay", 0.0)) for v in values])
    view = lambda t, k: t.view((P,) + (1,) * (params[k].ndim - 1))  # noqa: E731
    lr_v = [view(lr, k) for k in names]
    wd_v = [view(wd, k) if k.endswith("weight") and bool((wd != 0).any()) else None for k in names]

    def loss_of(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads_of = vmap(grad(loss_of), in_dims=(0, 0, None, None))
    predict = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), in_dims=(0, 0, None))
    g = torch.Generator().manual_seed(0)
    C = shapes[-1][1]
    x_of = {N: torch.rand(N, shapes[0][0], generator=g) for N in set(batches) | set(evals)}
    y_of = {N: torch.randint(0, C, (N,), generator=g) for N in set(batches) | set(evals)}

    def step(B: int) -> None:
        grads = grads_of(params, buffers, x_of[B], y_of[B])
        gs = [grads[k] if w is None else torch.addcmul(grads[k], w, params[k]) for k, w in zip(names, wd_v)]
        torch._foreach_addcmul_([params[k] for k in names], gs, lr_v, value=-1.0)

    def evaluate(N: int) -> None:
        with torch.no_grad():
            out = predict(params, buffers, x_of[N])
            torch.nn.functional.cross_entropy(out.reshape(P * N, C), y_of[N].repeat(P), reduction="none")
            out.argmax(dim=-1)

    trial = on_schedule(step, evaluate, batches, epochs, evals)
    trial.params = params  # type: ignore[attr-defined]
    return trial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/search/textbook_random.toml")
    ap.add_argument("--population", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="override the config's train.epochs")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-vmap", action="store_true", help="leave out the torch.func vmap ensemble peer")
    ap.add_argument("--trace-step", action="store_true",
                    help="train trainlab's runs with train.trace_step = true (the recorded step, replayed)")
    ap.add_argument("--json", action="store_true")
    add_allocator_option(ap)
    a = ap.parse_args()
    allocator = apply_allocator_option(a)
    if a.threads:
        torch.set_num_threads(a.threads)
    from trainlab.search import load_search

    base, spec = load_search(a.config)
    if a.epochs:
        base = {**base, "train": {**base.get("train", {}), "epochs": a.epochs}}
    if a.trace_step:
        base = {**base, "train": {**base.get("train", {}), "trace_step": True}}
    P = a.population
    values = trial_values(spec, P)
    alone_run = build(base, values[:1])
    shapes, batches, epochs, evals = schedule(alone_run)
    flops = trial_flops(shapes, batches, epochs, evals)

    # The machine's speed drifts (other virtual machines on the same host), so every round times
    # each of the five in turn and the medians over rounds are compared. fit() continues where it
    # stopped, so each fit gets a freshly built run (building is not timed); alone, the round's
    # trial is the next of the population's trials.
    prod_pop_f = products_only(shapes, batches, epochs, evals, P)
    prod_alone_f = products_only(shapes, batches, epochs, evals, 1)
    floor_f = kernels_floor(shapes, batches, epochs, evals, values)
    big = torch.randn(2048, 2048)
    vmap_f = None if a.no_vmap else vmap_ensemble_trial(shapes, batches, epochs, evals, values)

    def fit_seconds(vals: list[dict]) -> float:
        r = build(base, vals)
        return _timed(lambda: r.trainer.fit(r.splits.train, r.splits.val)) / len(vals)

    timings: dict[str, list[float]] = {k: [] for k in ("alone", "pop", "prod_pop", "prod_alone", "floor", "mm",
                                                       "vmap")}
    for rnd in range(a.repeats + 1):  # round 0 is a warm-up
        t = {"alone": fit_seconds([values[rnd % P]]), "pop": fit_seconds(values),
             "prod_pop": _timed(prod_pop_f) / P, "prod_alone": _timed(prod_alone_f), "floor": _timed(floor_f) / P,
             "mm": min(_timed(lambda: big @ big) for _ in range(3))}
        if vmap_f is not None:
            t["vmap"] = _timed(vmap_f) / P
        if rnd:
            for k, v in t.items():
                timings[k].append(v)
    alone, pop, prod_pop, prod_alone, floor = (statistics.median(timings[k]) for k in ("alone", "pop", "prod_pop",
                                                                                       "prod_alone", "floor"))
    peak = 2 * 2048 ** 3 / statistics.median(timings["mm"])
    ratios = [al / po for al, po in zip(timings["alone"], timings["pop"])]
    gf = lambda s: round(flops / s / 1e9, 1)  # noqa: E731
    res = {
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "allocator": allocator},
        "config": a.config, "population": P, "trace_step": a.trace_step, "gflop_per_trial": round(flops / 1e9, 2),
        "sgemm_2048_gflops": round(peak / 1e9, 1),
        "alone_s_per_trial": round(alone, 4), "alone_gflops": gf(alone),
        "population_s_per_trial": round(pop, 4), "population_gflops": gf(pop),
        "products_only_population_s_per_trial": round(prod_pop, 4), "products_only_population_gflops": gf(prod_pop),
        "products_only_alone_s_per_trial": round(prod_alone, 4),
        "ratio_trainlab": round(alone / pop, 2),
        "ratio_trainlab_per_round": [round(r, 2) for r in ratios],
        "ratio_bound_products_only": round(alone / prod_pop, 2),
        "ratio_bound_peak": round(alone / (flops / peak), 2),
        "share_of_bound": round(prod_pop / pop, 3),
        "share_of_bound_per_round": [round(pp / po, 3) for pp, po in zip(timings["prod_pop"], timings["pop"])],
        # trainlab's own kernels and nothing else (kernels_floor): the most of the bound they permit
        "floor_population_s_per_trial": round(floor, 4),
        "floor_share_of_bound": round(prod_pop / floor, 3),
        "floor_share_of_bound_per_round": [round(pp / fl, 3) for pp, fl in zip(timings["prod_pop"],
                                                                               timings["floor"])],
        "share_of_floor": round(floor / pop, 3),
    }
    if vmap_f is not None:
        vm = statistics.median(timings["vmap"])
        res["vmap_population_s_per_trial"] = round(vm, 4)
        res["ratio_vs_vmap"] = round(vm / pop, 2)
        res["ratio_vs_vmap_per_round"] = [round(v / p, 2) for v, p in zip(timings["vmap"], timings["pop"])]
    s_ = "s" if a.repeats > 1 else ""
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"one trial: {res['gflop_per_trial']} GFLOP in matrix products; float32 peak (2048^3 mm) "
          f"{res['sgemm_2048_gflops']} GFLOP/s on {res['machine']['threads']} thread(s)")
    print(f"medians of {a.repeats} round{s_}, each timing all of these in turn:")
    if a.trace_step:
        print("trainlab's runs with train.trace_step = true")
    print(f"trainlab alone:            {alone:.3f} s/trial ({res['alone_gflops']} GFLOP/s)")
    print(f"trainlab population of {P}: {pop:.3f} s/trial ({res['population_gflops']} GFLOP/s) "
          f"-> {res['ratio_trainlab']}x (per round: {', '.join(map(str, res['ratio_trainlab_per_round']))})")
    print(f"products only, population: {prod_pop:.3f} s/trial ({res['products_only_population_gflops']} GFLOP/s) "
          f"-> at most {res['ratio_bound_products_only']}x; products only, alone: {prod_alone:.3f} s")
    print(f"at the 2048^3 peak:        {flops / peak:.3f} s/trial -> at most {res['ratio_bound_peak']}x")
    print(f"trainlab's kernels only:   {floor:.3f} s/trial -> they permit {100 * res['floor_share_of_bound']:.0f}% "
          f"of the products-only bound; trainlab runs at {100 * res['share_of_floor']:.0f}% of their speed")
    print(f"trainlab's ratio is {100 * res['share_of_bound']:.0f}% of the products-only bound "
          f"(products-only population / trainlab population, per trial)")
    if vmap_f is not None:
        print(f"torch.func vmap ensemble of {P}: {res['vmap_population_s_per_trial']:.3f} s/trial -> trainlab/vmap = "
              f"{res['ratio_vs_vmap']}x (per round: {', '.join(map(str, res['ratio_vs_vmap_per_round']))})")


if __name__ == "__main__":
    main()
