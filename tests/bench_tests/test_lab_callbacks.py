"""benchmarks/bench_lab_callbacks.py at a tiny size: every variant trains, the lab variants' callbacks really
ran (the probe wrote its records, the stream's run has its events), and the speeds are finite."""

from __future__ import annotations

import json
import math
from pathlib import Path
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_lab_callbacks as bench  # noqa: E402


def test_each_variant_adds_its_own_callbacks(tmp_path):
    from trainlab.config import RunConfig
    from trainlab.lab._form import compose, given_to_toml

    given, _ = compose(**bench.fields(2, 10))
    (tmp_path / "c.toml").write_text(given_to_toml(given))
    cfg = RunConfig.load(tmp_path / "c.toml")
    names = {v: sorted(type(c).__name__ for c in bench.callbacks(v, tmp_path / v, cfg, None)) for v in bench.VARIANTS}
    assert names == {"plain": [], "lab": ["BudgetedProbe", "LabStream", "Steering"],
                     "stream": ["LabStream", "Steering"], "probe": ["BudgetedProbe"]}


@pytest.mark.slow
def test_a_tiny_run_measures_every_variant(capsys):
    result = bench.main(["--members", "2", "--steps", "30", "--rounds", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["median"].keys() == set(bench.VARIANTS) == result["speed_vs_plain"].keys()
    assert all(len(s) == 2 and all(x > 0 for x in s) for s in out["seconds"].values())
    assert all(math.isfinite(v) and v > 0 for v in out["speed_vs_plain"].values())
    work = Path(out["work"])  # the probe ran where it was added, and only there
    assert {v: (work / f"{v}-0" / "probes.jsonl").is_file() for v in bench.VARIANTS} == {
        "plain": False, "lab": True, "stream": False, "probe": True}
