"""examples/cifar10_resnet.toml end to end on a small CIFAR-format fixture, and the offline line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainlab.data.testing import write_cifar10

REPO = Path(__file__).resolve().parents[2]


def trainlab(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "trainlab.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)


TINY = ["--set", "data.val=20", "--set", "data.test=40", "--set", "train.epochs=1", "--set", "model.depth=8",
        "--set", "model.width=4", "--set", "train.batch_size=20"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["files", "subfolder"])
def test_cifar10_resnet_example_runs_on_a_fixture(tmp_path: Path, layout: str) -> None:
    data = write_cifar10(tmp_path / "cifar", train_per_batch=20, test=40, subfolder=layout != "files")
    out = tmp_path / "run"
    r = trainlab("train", str(REPO / "examples" / "cifar10_resnet.toml"), "--out", str(out), "--quiet",
                 "--set", f"data.data_dir={json.dumps(str(data))}", "--set", "population.size=2", *TINY)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] is True and summary["data"] == {"name": "cifar10", "train": 80, "val": 20, "test": 40}
    meta = json.loads((out / "model.json").read_text())
    assert meta["input_shape"] == [3, 32, 32] and meta["preprocess"]["name"] == "standardize-channel"
    assert any(layer["type"] == "residual" for layer in meta["layers"])
    ev = trainlab("evaluate", str(out), "--json")
    assert ev.returncode == 0, ev.stderr
    res = json.loads(ev.stdout)
    for m in range(2):
        assert res["members"][m]["acc"] == pytest.approx(summary["members"][m]["final_test_acc"], abs=1e-9)


def test_cifar10_not_cached_and_download_off_is_one_line(tmp_path: Path) -> None:
    r = trainlab("train", str(REPO / "examples" / "cifar10_resnet.toml"), "--out", str(tmp_path / "run"),
                 "--set", f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}", "--set", "data.download=false")
    assert r.returncode == 2
    assert r.stderr == (f"trainlab: error: cifar10/cifar-10-binary.tar.gz is not in the cache {tmp_path / 'cache'}"
                        "/cifar10 and download is off; download it yourself and pass --data-dir DIR (train, evaluate) or set "
                        "data.data_dir in the config\n")

