"""The console sink: a line per epoch that stays, plain off a terminal, a live bar on one (a pty),
best/median/worst for large populations, the resume message, integers printed as integers."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import re
import select
import subprocess
import sys
import time

import pytest
import torch

from trainlab import Population, nn
from trainlab.optim import SGD
from trainlab.train import ConsoleSink, Trainer
from trainlab.train._console import format_duration, format_number

REPO = Path(__file__).resolve().parents[2]
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  \S+")


def _data(n: int = 120, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return (x, y)


def _trainer(lrs, *, epochs=3, labels=None, sinks=(), steps=None) -> Trainer:
    model = nn.Sequential([nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)])
    model.build((6,), Population(len(lrs), seed=0))
    return Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=list(lrs)), epochs=epochs,
                   steps=steps, batch_size=40, labels=labels, sinks=sinks)


def test_plain_lines_one_per_epoch_without_control_characters():
    out = io.StringIO()
    t = _trainer([0.1], sinks=[ConsoleSink(stream=out)])
    t.fit(_data(), val=_data(60, 1))
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert [EPOCH_LINE.match(l).groups() for l in lines] == [("1", "3"), ("2", "3"), ("3", "3")]
    # time, then train and val loss and accuracy, with the values the history holds
    last = lines[-1]
    h = t.history
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert f"{key} {h[key][-1, 0]:.4f}" in last
    assert "left ~" in lines[0] and "left ~" not in last  # time left, until there is none


def test_population_block_names_members_by_their_labels():
    out = io.StringIO()
    t = _trainer([0.01, 0.1, 1.0], labels=["lr=0.01", "lr=0.1", "lr=1"], sinks=[ConsoleSink(stream=out)])
    t.fit(_data(), val=_data(60, 1))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 * 4  # a head line and one line per member, per epoch
    assert EPOCH_LINE.match(lines[4])
    assert [l.split()[0] for l in lines[1:4]] == ["lr=0.01", "lr=0.1", "lr=1"]
    assert f"val_acc {t.history['val_acc'][0, 2]:.4f}" in lines[3]


def test_large_population_shows_best_median_worst_unless_all_asked():
    lrs = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
    labels = [f"lr={v}" for v in lrs]
    out = io.StringIO()
    t = _trainer(lrs, epochs=2, labels=labels, sinks=[ConsoleSink(stream=out)])
    t.fit(_data(), val=_data(60, 1))
    block = out.getvalue().splitlines()[-4:]
    assert EPOCH_LINE.match(block[0])
    va = t.history["val_acc"][-1]
    order = sorted(range(6), key=lambda m: -va[m])  # the sink's ranking (stable for ties)
    assert block[1].strip().startswith(f"best ({labels[order[0]]})")
    assert block[2].strip().startswith(f"median ({labels[order[3]]})")
    assert block[3].strip().startswith(f"worst ({labels[order[-1]]})")
    out = io.StringIO()
    _trainer(lrs, epochs=2, labels=labels, sinks=[ConsoleSink(stream=out, members="all")]).fit(
        _data(), val=_data(60, 1))
    assert len(out.getvalue().splitlines()) == 2 * 7


def test_resume_message_names_step_total_and_epoch():
    t = _trainer([0.1], epochs=4)
    t.steps = 5  # stop part-way through epoch 2 (3 steps per epoch)
    t.fit(_data(), val=_data(60, 1))
    tensors, meta = t.state_dict()
    out = io.StringIO()
    t2 = _trainer([0.1], epochs=4, sinks=[ConsoleSink(stream=out)])
    t2.load_state_dict(tensors, meta)
    t2.fit(_data(), val=_data(60, 1))
    lines = out.getvalue().splitlines()
    assert lines[0] == "Resuming from step 5 of 12 (epoch 1.67)"
    assert [EPOCH_LINE.match(l).group(1) for l in lines[1:]] == ["2", "3", "4"]


def test_diverged_member_gets_a_line_and_stays_marked():
    out = io.StringIO()
    t = _trainer([0.1, 1e6], epochs=2, labels=["lr=0.1", "lr=1e+06"], sinks=[ConsoleSink(stream=out)])
    t.fit(_data(), val=_data(60, 1))
    text = out.getvalue()
    assert 1 in t.history.diverged
    assert re.search(r"lr=1e\+06: loss became \S+ at step \d+ \(epoch [\d.]+\); frozen there", text)
    assert re.search(r"lr=1e\+06\s+diverged at step \d+", text.splitlines()[-1])


def test_numbers_and_durations():
    assert format_number(8.0) == "8" and format_number(8) == "8" and format_number(0.91234) == "0.9123"
    assert format_number(1.0) == "1.0000"  # an accuracy of 1 stays a fraction
    assert format_duration(3.21) == "3.2s" and format_duration(65) == "1m05s" and format_duration(3725) == "1h02m"


def test_sinks_are_not_saved_in_checkpoints_and_do_not_change_training():
    a = _trainer([0.1, 0.3], sinks=[ConsoleSink(stream=io.StringIO())])
    b = _trainer([0.1, 0.3])
    ha, hb = a.fit(_data(), val=_data(60, 1)), b.fit(_data(), val=_data(60, 1))
    assert ha.records == hb.records
    assert a.state_dict()[1]["callbacks"] == {}


# ---- the CLI, on a terminal (a pty) and off one ------------------------------------------------
ARGS = ["train", "examples/mlp.toml", "--set", "data.train=600", "--set", "data.val=200", "--set", "data.test=200",
        "--set", "train.epochs=3", "--set", "model.hidden=[32]", "--set", "population.size=2",
        "--set", "optim.lr=[0.01, 0.1]"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}


def test_cli_off_a_terminal_prints_plain_epoch_lines_and_labelled_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "trainlab.cli", *ARGS, "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert not CONTROL.search(r.stdout) and not CONTROL.search(r.stderr)
    lines = r.stdout.splitlines()
    heads = [l for l in lines if EPOCH_LINE.match(l)]
    assert [h.split()[1] for h in heads] == ["1/3", "2/3", "3/3"]
    assert sum(1 for l in lines if l.startswith("  lr=0.01  ")) == 3
    table = lines[lines.index(next(l for l in lines if l.startswith("member"))):]
    assert table[1].startswith("lr=0.01") and table[2].startswith("lr=0.1")
    best_epoch_col = table[0].split().index("best_epoch")
    assert re.fullmatch(r"\d+", table[1].split()[best_epoch_col])  # "3", not "3.0000"


def _run_in_pty(argv: list[str], timeout: float = 300) -> tuple[int, str]:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of 30 rows and 100 columns
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.chdir(REPO)
        os.execvpe(sys.executable, [sys.executable, "-m", "trainlab.cli", *argv], _env())
    chunks, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 1.0)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_cli_on_a_terminal_shows_a_live_bar_and_lines_that_stay(tmp_path):
    code, text = _run_in_pty([*ARGS, "--set", "data.train=2000", "--set", "train.batch_size=20",
                              "--out", str(tmp_path / "run")])
    assert code == 0, text
    assert "\r" in text and "epoch 1/3:" in text  # tqdm's bar, redrawn in place, with the epoch counter
    # What stays on the screen: replay carriage returns and tqdm's clears line by line.
    screen = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        screen.append(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw.split("\r")[-1]))
    kept = [l for l in screen if EPOCH_LINE.match(l)]
    assert [k.split()[1] for k in kept] == ["1/3", "2/3", "3/3"]


def test_cli_resume_says_where_it_resumes(tmp_path, monkeypatch):
    import trainlab.run as run_mod
    from trainlab.config import load_config
    from trainlab.train import Callback

    class StopAt(Callback):
        def on_step_end(self, trainer, loss):
            if trainer.step == 7:
                trainer.interrupt_requested = True

    real = run_mod.build_run
    monkeypatch.setattr(run_mod, "build_run", lambda cfg, **kw: _with(real(cfg, **kw), StopAt()))
    cfg = load_config(REPO / "examples/mlp.toml", [a for a in ARGS[2:] if a != "--set"])
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_mod.train_run(cfg, out)
    r = subprocess.run([sys.executable, "-m", "trainlab.cli", "train", "--resume", str(out)],
                       capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "Resuming from step 7 of 18 (epoch 1.17)"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] is True and summary["member_labels"] == ["lr=0.01", "lr=0.1"]


def _with(run, cb):
    run.trainer.callbacks.append(cb)
    return run


def test_reproduce_progress_shows_time_left_on_a_terminal():
    from trainlab.report._reproduce import ProgressEvent
    from trainlab.report.cli import ProgressPrinter

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    p = ProgressPrinter(out)
    p(ProgressEvent("start", 1, 3, "a"))
    assert "left" not in out.getvalue()  # nothing to estimate from yet
    p(ProgressEvent("done", 1, 3, "a", status="held", seconds=10.0, passed=1, checks=1))
    p(ProgressEvent("start", 2, 3, "b"))
    assert out.getvalue().endswith("~20s left at this pace)")  # two experiments to go at 10 s each
