"""benchmarks/bench_search_ceiling.py: its flop count is the textbook's, its products-only replay
does exactly those flops (counted by torch's profiler), and its kernels-only floor runs exactly the kernels
of trainlab's population step."""

from __future__ import annotations

from pathlib import Path
import sys

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_search_ceiling as bench  # noqa: E402
from _harness import kernels_of  # noqa: E402


def test_flop_count_by_hand():
    # layers (4, 3), (3, 2); steps of 2 and 1 examples; 2 epochs; one evaluated split of 5.
    # step(B): first layer forward + weight gradient 2 * 2B*4*3, second also the input gradient 3 * 2B*3*2
    per_step = lambda B: 2 * 2 * B * 12 + 3 * 2 * B * 6  # noqa: E731
    expected = 2 * (per_step(2) + per_step(1) + 2 * 5 * (12 + 6))
    assert bench.trial_flops([(4, 3), (3, 2)], [2, 1], 2, [5]) == expected == 864


@pytest.mark.parametrize("P", [1, 3])
def test_products_only_does_the_counted_flops(P):
    shapes, batches, epochs, evals = [(6, 5), (5, 4), (4, 3)], [4, 4, 2], 2, [7, 3]
    f = bench.products_only(shapes, batches, epochs, evals, P)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
        f()
    counted = sum(e.flops for e in prof.key_averages() if e.key in ("aten::bmm", "aten::baddbmm"))
    assert counted == P * bench.trial_flops(shapes, batches, epochs, evals)


def test_schedule_of_the_textbook_search():
    from trainlab.search import load_search

    base, spec = load_search(ROOT / "examples/search/textbook_random.toml")
    values = bench.trial_values(spec, 3)
    assert len({v["optim.lr"] for v in values}) == 3
    assert all(1e-6 <= v["optim.lr"] <= 1e-2 and 1e-8 <= v["optim.weight_decay"] <= 1e-4 for v in values)
    run = bench.build(base, values)
    assert run.model.size == 3
    shapes, batches, epochs, evals = bench.schedule(run)
    assert shapes == [(784, 100)] + [(100, 100)] * 5 + [(100, 10)]
    assert batches == [100] * 5 and epochs == 50 and evals == [500, 500]
    # 250 steps x 62 MFLOP + 50 x 1,000 evaluated images x 0.26 MFLOP (docs/benchmarks.md)
    assert bench.trial_flops(shapes, batches, epochs, evals) == pytest.approx(28.43e9, rel=1e-3)


def test_vmap_peer_trains_every_trial_of_the_schedule():
    shapes, batches, epochs, evals = [(6, 5), (5, 3)], [4, 2], 2, [7]
    values = [{"optim.lr": 0.1, "optim.weight_decay": 0.0}, {"optim.lr": 1e-9, "optim.weight_decay": 1e-3}]
    f = bench.vmap_ensemble_trial(shapes, batches, epochs, evals, values)
    before = {k: v.clone() for k, v in f.params.items()}
    f()
    moved = [max(float((f.params[k][i] - before[k][i]).abs().max()) for k in before) for i in range(2)]
    assert moved[0] > 1e-3 and 0 < moved[1] < 1e-6  # each model with its own learning rate


def test_the_kernels_floor_runs_exactly_trainlabs_population_step():
    # the floor is trainlab's population step without its layers, trainer and optimizer objects: the same
    # kernels in the same order (views left out), with coupled weight decay as the textbook search samples it
    from trainlab.search import load_search

    base, spec = load_search(ROOT / "examples/search/textbook_random.toml")
    values = bench.trial_values(spec, 3)
    run = bench.build(base, values)
    tr = run.trainer
    tr.steps_per_epoch = 1
    shapes, *_ = bench.schedule(run)
    x, y = torch.rand(8, 784), torch.randint(0, 10, (8,))
    with torch.no_grad():
        tr.train_step(x, y)  # the first step builds what later steps reuse
    floor = bench.kernels_floor(shapes, [8], 1, [5], values)
    mine = kernels_of(tr.train_step, x, y)
    assert mine == kernels_of(lambda xb, yb: floor.step(8), x, y)
    assert mine.count("aten::addcmul") == 7 and "aten::_foreach_addcmul_" in mine


def test_the_kernels_floor_trains_and_evaluates():
    shapes, batches, epochs, evals = [(6, 5), (5, 3)], [4, 2], 2, [7]
    values = [{"optim.lr": 0.1, "optim.weight_decay": 1e-3}, {"optim.lr": 0.0, "optim.weight_decay": 0.0}]
    f = bench.kernels_floor(shapes, batches, epochs, evals, values)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
        f()
    counted = sum(e.flops for e in prof.key_averages() if e.key in ("aten::bmm", "aten::baddbmm"))
    assert counted == 2 * bench.trial_flops(shapes, batches, epochs, evals)
    assert {"aten::argmax", "aten::logsumexp", "aten::threshold_backward"} <= {e.key for e in prof.key_averages()}
