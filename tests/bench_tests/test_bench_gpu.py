"""benchmarks/bench_gpu.py runs end to end (on a CPU, small sizes), so the GPU measurement is a
script known to work when a GPU is lent."""

from __future__ import annotations

from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_gpu  # noqa: E402


def test_bench_gpu_runs_on_cpu_with_small_sizes(capsys):
    res = bench_gpu.main(["--device", "cpu", "--sizes", "1,3", "--steps", "2", "--repeats", "1",
                          "--sequential-cap", "2", "--json"])
    assert [r["population"] for r in res["rows"]] == [1, 3]
    for r in res["rows"]:
        assert set(r["member_steps_per_s"]) == {"eager", "graphs", "sequential", "vmap"}
        assert all(v > 0 for v in r["member_steps_per_s"].values())
        assert r["peak_memory_mib"]["graphs"] is None  # no GPU memory on a CPU
    assert res["rows"][1]["sequential_runs_timed"] == 2  # capped, then scaled to 3
    assert '"rows"' in capsys.readouterr().out
