"""The command line: outputs of train/evaluate, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SMALL = ["--set", "data.train=400", "--set", "data.val=100", "--set", "data.test=100", "--set", "train.epochs=2"]


def trainlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "trainlab.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=300)


def test_train_writes_every_output_and_evaluate_reads_it(tmp_path):
    out = tmp_path / "run"
    r = trainlab("train", str(REPO / "examples" / "mlp.toml"), "--out", str(out), "--quiet",
                 "--set", "population.size=2", "--set", "optim.lr=[0.05, 0.01]", *SMALL)
    assert r.returncode == 0, r.stderr
    for name in ("metrics.jsonl", "summary.json", "model.safetensors", "model.json", "config.toml", "curves.png",
                 "history.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] is True and len(summary["members"]) == 2
    assert summary["environment"]["torch"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 and {r["member"] for r in rows} == {0, 1}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    ev = trainlab("evaluate", str(out), "--json")
    assert ev.returncode == 0, ev.stderr
    res = json.loads(ev.stdout)
    for m in range(2):
        assert res["members"][m]["acc"] == pytest.approx(summary["members"][m]["final_test_acc"], abs=1e-9)


def test_train_json_output(tmp_path):
    r = trainlab("train", str(REPO / "examples" / "mlp.toml"), "--out", str(tmp_path / "r"), "--json", *SMALL)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["finished"] is True


@pytest.mark.parametrize("args, message", [
    (["train", "nope.toml"], "trainlab: error: config file not found: nope.toml"),
    (["train", "examples/mlp.toml", "--set", "optim.lr=-1"], "trainlab: error: config: optim.lr must be > 0, got -1.0"),
    (["train", "examples/mlp.toml", "--set", "optim.lrr=1"], "trainlab: error: config: unknown key 'optim.lrr'"),
    (["train", "examples/mlp.toml", "--set", "data.name=cifar"], "trainlab: error: config: data.name must be one of"),
    (["train", "examples/mlp.toml", "--set", "data.train=4900"], "trainlab: error: mnist-5k has 5000 images"),
    (["train", "examples/mlp.toml", "--device", "cuda:7"], "trainlab: error: config: device"),
    (["train", "examples/mlp.toml", "--set", "model.hidden=[]", "--set", "model.init=bogus"], "trainlab: error: unknown init 'bogus'"),
    (["evaluate", "/nonexistent/run"], "trainlab: error: /nonexistent/run: no such run directory or model file"),
    (["frobnicate"], "trainlab: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_one_line_exit_2(args, message):
    r = trainlab(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(message), lines[0]


def test_corrupt_model_is_one_line_error(tmp_path):
    out = tmp_path / "run"
    assert trainlab("train", "examples/mlp.toml", "--out", str(out), "--quiet", *SMALL).returncode == 0
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[: len(data) // 2])
    r = trainlab("evaluate", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model.safetensors: corrupt or truncated" in r.stderr


def test_evaluate_ensemble_and_snapshots(tmp_path):
    out = tmp_path / "run"
    r = trainlab("train", "examples/mlp.toml", "--out", str(out), "--quiet", "--set", "population.size=3",
                 "--set", "train.snapshot_every=1", *SMALL)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["epoch-00001", "epoch-00002"]
    for args in (["--ensemble"], ["--ensemble", "vote", "--members", "0,2"], ["--ensemble", "snapshots"]):
        ev = trainlab("evaluate", str(out), "--json", *args)
        assert ev.returncode == 0, ev.stderr
        e = json.loads(ev.stdout)["ensemble"]
        assert 0.0 <= e["acc"] <= 1.0 and 0.0 <= e["ece"] <= 1.0
    bad = trainlab("evaluate", str(out), "--ensemble", "--members", "0,7")
    assert bad.returncode == 2 and "ensemble members [7] do not exist" in bad.stderr
