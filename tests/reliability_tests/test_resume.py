"""Checkpoints and resume: kill -9 at random points, resume, get the same run bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from trainlab.build import build_run
from trainlab.checkpoint import load_checkpoint, save_checkpoint
from trainlab.config import load_config
from trainlab.errors import CheckpointError
from trainlab.search.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
# dropout (member RNG), early stopping (callback state), an L2 penalty and Adam (optimizer
# state) and BatchNorm (buffers): everything that must survive a restart
SETTINGS = ["--set", "data.train=500", "--set", "data.val=200", "--set", "data.test=200",
            "--set", "train.epochs=8", "--set", "population.size=2", "--set", "model.dropout=[0.1, 0.3]",
            "--set", "model.norm=batchnorm", "--set", "optim.name=adam", "--set", "optim.lr=[0.001, 0.003]",
            "--set", "regularize.l2=0.0001", "--set", "early_stopping.enabled=true",
            "--set", "early_stopping.patience=4", "--set", "train.eval_every=3", "--set", "model.hidden=[64, 64]"]


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainlab.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, **kw)


def same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    ha, hb = json.loads((a / "history.json").read_text()), json.loads((b / "history.json").read_text())
    assert ha == hb


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    r = cli("train", "examples/mlp.toml", "--out", str(out), "--quiet", *SETTINGS)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_point_then_resume_equals_uninterrupted(tmp_path, reference, seed):
    rng = random.Random(seed)
    out = tmp_path / "run"
    lines_total = len((reference / "metrics.jsonl").read_text().splitlines())
    kill_after = rng.randint(1, lines_total // 2 - 1) * 2  # metrics lines (2 members per evaluation)
    extra_delay = rng.uniform(0.0, 0.3)
    p = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "train", "examples/mlp.toml", "--out", str(out),
                          "--quiet", *SETTINGS], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
            break
        if p.poll() is not None:
            break
        time.sleep(0.005)
    time.sleep(extra_delay)
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists() or p.returncode == 0  # an unfinished run is never marked finished
    r = cli("train", "--resume", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["finished"] is True
    same_run(reference, out)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_at_a_step_boundary_and_resumes(tmp_path, reference):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "train", "examples/mlp.toml", "--out", str(out),
                          "--quiet", *SETTINGS], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 2, 120, interval=0.005,
             what="the first evaluation", alive=p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "everything computed so far is saved" in err and "Traceback" not in err
    assert json.loads((out / "checkpoint.json").read_text())["state"]["step"] >= 3
    r = cli("train", "--resume", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    same_run(reference, out)


def small_cfg(tmp_path: Path, **over) -> dict:
    sets = ["data.train=200", "data.val=100", "data.test=0", "train.epochs=2", "model.hidden=[16]",
            "model.dropout=0.2"] + [f"{k}={v}" for k, v in over.items()]
    return load_config(REPO / "examples" / "mlp.toml", sets)


def test_resume_in_process_bitwise(tmp_path):
    """API level: train 1 epoch, checkpoint, continue in a fresh trainer == straight 2 epochs."""
    cfg = small_cfg(tmp_path)
    ref = build_run(cfg)
    ref.trainer.fit(ref.splits.train, ref.splits.val)
    a = build_run(cfg)
    a.trainer.steps = 3  # stop mid-epoch (2 steps per epoch)
    a.trainer.fit(a.splits.train, a.splits.val)
    save_checkpoint(tmp_path, a.trainer)
    b = build_run(cfg)
    load_checkpoint(tmp_path, b.trainer)
    h = b.trainer.fit(b.splits.train, b.splits.val)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    # the interrupted run also evaluated where it stopped (step 3), which restarts the batch-loss
    # average; every other number of every other evaluation is identical
    def strip(records):
        return [{k: v for k, v in r.items() if k != "batch_loss"} for r in records if r["step"] != 3]

    assert strip(h.to_dict()["records"]) == strip(ref.trainer.history.to_dict()["records"])


def test_truncated_checkpoint_falls_back_to_previous_with_warning(tmp_path):
    cfg = small_cfg(tmp_path)
    a = build_run(cfg)
    a.trainer.steps = 1
    a.trainer.fit(a.splits.train)
    save_checkpoint(tmp_path, a.trainer)
    a.trainer.steps = 2
    a.trainer.fit(a.splits.train)
    save_checkpoint(tmp_path, a.trainer)
    newest = tmp_path / json.loads((tmp_path / "checkpoint.json").read_text())["tensors"]
    newest.write_bytes(newest.read_bytes()[:100])
    b = build_run(cfg)
    with pytest.warns(UserWarning, match=r"corrupt or truncated checkpoint .*using the previous checkpoint"):
        meta = load_checkpoint(tmp_path, b.trainer)
    assert meta["state"]["step"] == 1 and b.trainer.step == 1
    prev = tmp_path / json.loads((tmp_path / "checkpoint.prev.json").read_text())["tensors"]
    prev.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or truncated checkpoint"):
        load_checkpoint(tmp_path, build_run(cfg).trainer)


def test_mismatched_checkpoints_are_one_line_errors(tmp_path):
    cfg = small_cfg(tmp_path)
    a = build_run(cfg)
    a.trainer.steps = 1
    a.trainer.fit(a.splits.train)
    save_checkpoint(tmp_path, a.trainer)
    with pytest.raises(CheckpointError, match="checkpoint has 1 member\\(s\\), this run has 2"):
        load_checkpoint(tmp_path, build_run(small_cfg(tmp_path, **{"population.size": 2})).trainer)
    with pytest.raises(CheckpointError, match=r"does not fit this model: .*shape mismatch 0.weight: expected \(1, 784, 32\), got \(1, 784, 16\)"):
        load_checkpoint(tmp_path, build_run(small_cfg(tmp_path, **{"model.hidden": "[32]"})).trainer)
    js = tmp_path / "checkpoint.json"
    meta = json.loads(js.read_text())
    meta["version"] = 99
    js.write_text(json.dumps(meta))
    (tmp_path / "checkpoint.prev.json").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="checkpoint version 99 is not supported"):
        load_checkpoint(tmp_path, build_run(cfg).trainer)


def test_resume_with_a_different_config_names_the_keys(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "examples/mlp.toml", "--out", str(out), "--quiet", "--set", "train.epochs=1",
            "--set", "data.train=200")
    assert r.returncode == 0
    (out / "summary.json").unlink()  # pretend it was interrupted
    r = cli("train", "examples/mlp.toml", "--resume", str(out), "--set", "optim.lr=0.5", "--set", "train.epochs=1",
            "--set", "data.train=200")
    assert r.returncode == 2
    assert "cannot resume" in r.stderr and "optim.lr (0.05 in the run, 0.5 now)" in r.stderr
    r = cli("train", "--resume", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_disk_full_during_checkpoint_leaves_previous_intact(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path)
    a = build_run(cfg)
    a.trainer.steps = 1
    a.trainer.fit(a.splits.train)
    save_checkpoint(tmp_path, a.trainer)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    a.trainer.steps = 2
    a.trainer.fit(a.splits.train)
    import trainlab.io as tio

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(tio.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, a.trainer)
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # nothing partial, previous checkpoint untouched
    b = build_run(cfg)
    assert load_checkpoint(tmp_path, b.trainer)["state"]["step"] == 1


def test_planted_pickle_is_never_unpickled(tmp_path):
    """A checkpoint whose tensor file is a pickle payload is rejected without running it."""
    cfg = small_cfg(tmp_path)
    a = build_run(cfg)
    a.trainer.steps = 1
    a.trainer.fit(a.splits.train)
    save_checkpoint(tmp_path, a.trainer)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    js = tmp_path / "checkpoint.json"
    meta = json.loads(js.read_text())
    evil = pickle.dumps(Payload())
    (tmp_path / meta["tensors"]).write_bytes(evil)
    import hashlib

    meta["sha256"] = hashlib.sha256(evil).hexdigest()  # even with a matching checksum
    meta["bytes"] = len(evil)  # ... and size
    js.write_text(json.dumps(meta))
    (tmp_path / "checkpoint.prev.json").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(tmp_path, build_run(cfg).trainer)
    assert not marker.exists()
    # the same for a saved model
    (tmp_path / "model.json").write_text(json.dumps({"format": "trainlab-model", "format_version": 1}))
    (tmp_path / "model.safetensors").write_bytes(evil)
    from trainlab.io import load_model

    with pytest.raises(CheckpointError):
        load_model(tmp_path)
    assert not marker.exists()


def test_no_pickle_anywhere_in_the_package():
    pkg = REPO / "trainlab"
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        assert "import pickle" not in text and "torch.load(" not in text, f
