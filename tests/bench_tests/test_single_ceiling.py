"""benchmarks/bench_single_ceiling.py at a tiny size: its output's structure, its products' flop count
(counted by torch's profiler), and that the kernels alone take less time than either full step."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_single_ceiling as bench  # noqa: E402
from _harness import kernels_of  # noqa: E402


@pytest.mark.parametrize("workload", ["mlp", "bn"])
@pytest.mark.parametrize("layout", ["mm", "bmm"])
def test_kernels_only_does_the_counted_products(workload, layout):
    # 784-100x6-10: forward and weight gradient of every layer, the input gradient of all but the first
    assert bench.product_flops("mlp", 100) == 2 * 2 * 100 * 784 * 100 + 5 * 3 * 2 * 100 * 100 * 100 + 3 * 2 * 100 * 100 * 10
    step = bench.kernels_only(workload, 8, layout)
    xb, yb = torch.rand(8, 784), torch.randint(0, 10, (8,))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as prof:
        step(xb, yb)
    ops = ("aten::mm", "aten::addmm") if layout == "mm" else ("aten::bmm", "aten::baddbmm")
    counted = sum(e.flops for e in prof.key_averages() if e.key in ops)
    assert counted == bench.product_flops(workload, 8)
    names = {e.key for e in prof.key_averages()}
    assert ("aten::native_batch_norm_backward" in names) == (workload == "bn")


@pytest.mark.parametrize("workload", ["mlp", "bn", "conv"])
def test_the_ops_floor_runs_exactly_trainlabs_kernels(workload):
    # the floor is trainlab's step without its layers: the same kernels in the same order, nothing else
    x = torch.rand(8, 1, 28, 28) if workload == "conv" else torch.rand(8, 784)
    y = torch.randint(0, 10, (8,))
    trainlab = bench.trainlab_step(*bench.trainlab_model(workload))
    with torch.no_grad():
        trainlab(x, y)  # the first step builds what later steps reuse
    floor = bench.ops_floor(workload, 8)
    mine = kernels_of(trainlab, x, y)
    assert mine == kernels_of(floor, x, y)
    assert "aten::_foreach_addcmul_" in mine and "aten::relu_" in mine


def test_runs_at_a_tiny_size_and_the_kernels_are_cheaper_than_either_step():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench_single_ceiling.py"), "--workloads", "mlp,bn,conv", "--threads", "1",
         "--steps", "4", "--conv-steps", "2", "--repeats", "3", "--batch", "10", "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    res = json.loads(out)
    assert set(res["workloads"]) == {"mlp", "bn", "conv"}
    assert res["load_average_start"] >= 0 and res["load_average_end"] >= 0
    for name, w in res["workloads"].items():
        r = w["threads"]["1"]
        assert r["target"] == bench.TARGETS[name]
        for clock in ("wall", "cpu"):
            c = r[clock]
            assert c["kernels_ms"] == min(c["kernels_mm_ms"], c["kernels_bmm_ms"]) > 0
            # the kernels alone are a part of each step: cheaper than PyTorch's and trainlab's whole step (at
            # batch 10 the rest of a step is a large share of it, so the comparison has room on a busy machine)
            assert c["kernels_ms"] < c["pytorch_ms"] and c["kernels_ms"] < c["trainlab_ms"] < 1e3
            # trainlab with trace_step: the same kernels, replayed; timed after its recording and check
            assert c["kernels_ms"] < c["traced_ms"]
            assert c["traced_vs_pytorch"] == pytest.approx(c["pytorch_ms"] / c["traced_ms"], rel=1e-2)
            assert len(c["traced_vs_pytorch_per_round"]) == 3
            assert c["ceiling"] == pytest.approx(c["pytorch_ms"] / c["kernels_ms"], rel=1e-2)
            assert c["trainlab_vs_pytorch"] == pytest.approx(c["pytorch_ms"] / c["trainlab_ms"], rel=1e-2)
            assert c["share_of_ceiling"] == pytest.approx(c["kernels_ms"] / c["trainlab_ms"], rel=1e-2)
            assert r["target_reachable"][clock] == (c["ceiling"] >= r["target"])
            # trainlab's kernels without its layers: between the kernels alone and trainlab's whole step
            assert c["kernels_ms"] < c["ops_floor_ms"]
            assert c["floor"] == pytest.approx(c["pytorch_ms"] / c["ops_floor_ms"], rel=1e-2)
            assert c["share_of_floor"] == pytest.approx(c["ops_floor_ms"] / c["trainlab_ms"], rel=1e-2)
            assert r["target_within_floor"][clock] == (c["floor"] >= r["target"])
