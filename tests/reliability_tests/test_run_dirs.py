"""Issue 17: a run directory is never overwritten by accident, never shared by two processes, never left
mixed by a failed start; write errors (disk full, read-only, permission, quota, name too long) are one line;
a saved model is checked by SHA-256 and read only as a regular file of the declared size.

The CLI is called in-process (``trainlab.cli.main``): the same code path as the command, seconds faster."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest

from trainlab.cli import main

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--quiet", "--set", "data.train=200", "--set", "data.val=100", "--set", "data.test=100",
         "--set", "train.epochs=2", "--set", "model.hidden=[16]"]


def train(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["train", str(REPO / "examples" / "mlp.toml"), *SMALL, *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip() and "warning" not in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file() and p.name != ".trainlab.lock"}


# ---- 1. never overwrite without --overwrite; replace only after the first checkpoint -------------------------
def test_a_finished_run_is_not_overwritten_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, "--out", str(out))[0] == 0
    before = snapshot(out)
    rc, _, err = train(capsys, "--out", str(out), "--set", "optim.lr=0.5")
    line = one_line(err)
    assert rc == 2 and str(out) in line and "finished run" in line
    assert "--overwrite" in line and "new --out" in line
    assert snapshot(out) == before


def test_an_unfinished_run_offers_resume_and_a_foreign_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.toml").write_text("seed = 0\n")
    rc, _, err = train(capsys, "--out", str(out))
    assert rc == 2 and f"--resume {out}" in one_line(err) and "unfinished" in err
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    rc, _, err = train(capsys, "--out", str(foreign))
    assert rc == 2 and "not a trainlab run" in one_line(err)
    assert (foreign / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_overwrite_that_fails_to_start_leaves_the_old_run_whole(tmp_path, capsys, monkeypatch):
    """The issue's case: the new run fails after set-up; before, the old summary/checkpoints/metrics were gone
    while the old model stayed under the new config.toml."""
    from trainlab.train import Trainer

    out = tmp_path / "run"
    assert train(capsys, "--out", str(out))[0] == 0
    before = snapshot(out)

    def broken(self, xb, yb):
        raise RuntimeError("the new model does not train")

    monkeypatch.setattr(Trainer, "train_step", broken)
    with pytest.raises(RuntimeError):
        train(capsys, "--out", str(out), "--overwrite", "--set", "optim.lr=0.5")
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".run*")), list(tmp_path.iterdir())  # no staging directory left


def test_overwrite_replaces_the_run_once_the_new_one_has_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(capsys, "--out", str(out))[0] == 0
    old = snapshot(out)
    rc, _, err = train(capsys, "--out", str(out), "--overwrite", "--set", "optim.lr=0.5")
    assert rc == 0, err
    new = snapshot(out)
    assert "lr = 0.5" in new["config.toml"].decode() and new["model.safetensors"] != old["model.safetensors"]
    assert json.loads(new["summary.json"])["finished"] is True
    # one run only: metrics of the new run, checkpoint of the new run
    assert [json.loads(x)["step"] for x in new["metrics.jsonl"].decode().splitlines()] == [2, 4]
    assert not list(tmp_path.glob(".run*"))


def test_without_out_a_fresh_timestamped_directory_is_used_and_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc1, _, err1 = train(capsys)
    rc2, _, err2 = train(capsys)
    assert rc1 == rc2 == 0
    dirs = sorted(p for p in (tmp_path / "runs").iterdir())
    assert len(dirs) == 2 and all(p.name.startswith("mlp-") for p in dirs)
    assert f"runs/{dirs[0].name}" in err1 + err2 and f"runs/{dirs[1].name}" in err1 + err2


def test_json_output_names_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, _ = train(capsys, "--out", str(out), "--json")
    assert rc == 0 and json.loads(stdout)["run_dir"] == str(out)


# ---- 2. one process per run directory --------------------------------------------------------------------
def test_a_locked_run_directory_names_its_holder(tmp_path, capsys):
    from trainlab._rundir import RunLock

    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):  # a second open file description: flock conflicts even within one process
        rc, _, err = train(capsys, "--out", str(out))
    line = one_line(err)
    assert rc == 2 and "in use by another trainlab process" in line and f"pid {os.getpid()}" in line
    assert "started" in line and "on host" in line
    assert not (out / "config.toml").exists()  # the second process wrote nothing


@pytest.mark.slow
def test_two_processes_into_one_directory_the_second_is_refused(tmp_path, capsys):
    """The issue's case: two `train` processes 0.3 s apart into one --out both exited 0, metrics interleaved."""
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "trainlab.cli", "train", str(REPO / "examples" / "mlp.toml"),
                          "--out", str(out), *SMALL[:-2], "--set", "train.epochs=200", "--set",
                          "model.hidden=[16]"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        from trainlab.search.testing import wait_for

        wait_for(lambda: (out / "checkpoint.json").exists(), 300, what="the first run's checkpoint", alive=p)
        rc, _, err = train(capsys, "--out", str(out))
        assert rc == 2 and f"pid {p.pid}" in one_line(err)
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=120) == 130
    assert f"trainlab train --resume {out}" in p.stderr.read()  # the real path, not "DIR"


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid %d on host x, started then' % os.getpid()); "
        "print('locked', flush=True); time.sleep(600)"), str(out / ".trainlab.lock")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    rc, _, err = train(capsys, "--out", str(out))
    assert rc == 2 and f"pid {holder.pid}" in err
    holder.kill()
    holder.wait()
    rc, _, err = train(capsys, "--out", str(out))  # the kernel dropped the dead holder's lock: taken over
    assert rc == 0, err
    assert (out / ".trainlab.lock").read_text().startswith(f"pid {os.getpid()} ")


# ---- 3. every OSError on a write path: one line, exit 2, the data kept -------------------------------------
@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT", "EACCES", "EROFS", "ENAMETOOLONG", "EIO"])
def test_a_write_error_mid_run_is_one_line_and_the_checkpoint_survives(tmp_path, capsys, monkeypatch, code):
    import trainlab.checkpoint
    from trainlab import io

    out = tmp_path / "run"
    real = io.atomic_write_bytes
    calls = {"n": 0}

    def failing(path, data):
        calls["n"] += 1
        if calls["n"] == 2:  # the 1st checkpoint's tensor file is written, the 2nd one's fails
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(path))
        return real(path, data)

    monkeypatch.setattr(trainlab.checkpoint, "atomic_write_bytes", failing)
    rc, _, err = train(capsys, "--out", str(out), "--set", "train.epochs=3")
    line = one_line(err)
    assert rc == 2 and line.startswith("trainlab: error: cannot write ") and f"({code})" in line, line
    assert f"trainlab train --resume {out}" in line
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0  # the last complete checkpoint is intact


def test_a_full_disk_while_writing_the_model_keeps_the_checkpoint(tmp_path, capsys, monkeypatch):
    import trainlab.io as io

    real = io.atomic_write_bytes

    def full(path, data):
        if Path(path).name == "model.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", full)
    out = tmp_path / "run"
    rc, _, err = train(capsys, "--out", str(out))
    assert rc == 2 and "no space left on the device" in one_line(err) and "(ENOSPC)" in err
    assert not (out / "summary.json").exists() and (out / "checkpoint.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--quiet"]) == 0


def test_a_read_only_output_directory_is_one_line(tmp_path, capsys, read_only):
    out = tmp_path / "ro"
    out.mkdir()
    with read_only(out):
        rc, _, err = train(capsys, "--out", str(out))
    line = one_line(err)
    assert rc == 2 and "cannot write" in line and ("read-only" in line or "permission denied" in line), line


def test_an_unfinished_run_on_a_read_only_disk_resumes_with_one_line(tmp_path, capsys, monkeypatch, read_only):
    out = tmp_path / "run"
    import trainlab.run as run_mod

    real = run_mod.save_model
    monkeypatch.setattr(run_mod, "save_model", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    rc, _, err = train(capsys, "--out", str(out))
    assert rc == 130 and f"trainlab train --resume {out}" in err
    monkeypatch.setattr(run_mod, "save_model", real)
    before = snapshot(out)
    with read_only(out):
        rc = main(["train", "--resume", str(out), "--quiet"])
        err = capsys.readouterr().err
    assert rc == 2 and "cannot write" in one_line(err)
    assert snapshot(out) == before


def test_a_name_too_long_is_one_line(tmp_path, capsys):
    rc, _, err = train(capsys, "--out", str(tmp_path / ("x" * 300)))
    assert rc == 2 and "too long" in one_line(err).lower()


# ---- 7. the saved model's integrity ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "run"
    assert main(["train", str(REPO / "examples" / "mlp.toml"), *SMALL, "--out", str(out)]) == 0
    return out


def _copy(saved: Path, tmp_path: Path) -> Path:
    import shutil

    d = tmp_path / "copy"
    d.mkdir()
    for name in ("model.json", "model.safetensors"):
        shutil.copy(saved / name, d / name)
    return d


def test_flipped_bytes_in_the_model_are_caught_by_its_sha256(saved, tmp_path, capsys):
    d = _copy(saved, tmp_path)
    meta = json.loads((d / "model.json").read_text())
    assert len(meta["tensors"]["sha256"]) == 64 and meta["tensors"]["bytes"] == (d / "model.safetensors").stat().st_size
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-100:-90] = bytes(10)  # same size, some weights changed: loaded silently before (loss 1.45e6)
    (d / "model.safetensors").write_bytes(bytes(data))
    rc = main(["evaluate", str(d)])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and "SHA-256 does not match" in line


@contextlib.contextmanager
def _deadline(seconds: int):
    def boom(*_):
        raise TimeoutError("hung reading the model")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("kind", ["urandom", "fifo", "bigger"])
def test_non_regular_or_oversized_model_files_are_refused_at_once(saved, tmp_path, capsys, kind):
    d = _copy(saved, tmp_path)
    st = d / "model.safetensors"
    st.unlink()
    if kind == "urandom":
        st.symlink_to("/dev/urandom")  # made evaluate hang, growing 400 MB/s
    elif kind == "fifo":
        os.mkfifo(st)
    else:
        st.write_bytes((saved / "model.safetensors").read_bytes() + b"\0" * 1000)
    t0 = time.monotonic()
    with _deadline(30):
        rc = main(["evaluate", str(d)])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and time.monotonic() - t0 < 30
    assert ("not a regular file" in line) if kind != "bigger" else ("the metadata declares" in line), line


def test_model_json_itself_must_be_a_regular_file(saved, tmp_path, capsys):
    d = _copy(saved, tmp_path)
    (d / "model.json").unlink()
    (d / "model.json").symlink_to("/dev/zero")
    with _deadline(30):
        rc = main(["evaluate", str(d)])
    assert rc == 2 and "not a regular file" in one_line(capsys.readouterr().err)


def test_a_temp_file_left_by_a_kill_inside_a_write_is_cleared_on_resume(tmp_path, capsys, monkeypatch):
    """Found by the randomized fault test: kill -9 inside an atomic write leaves `.model.safetensors.*.tmp`."""
    import trainlab.run as run_mod

    out = tmp_path / "run"
    real = run_mod.save_model
    monkeypatch.setattr(run_mod, "save_model", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert train(capsys, "--out", str(out))[0] == 130
    monkeypatch.setattr(run_mod, "save_model", real)
    (out / ".model.safetensors.x1y2.tmp").write_bytes(b"half a model")
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert not list(out.glob(".*.tmp"))
