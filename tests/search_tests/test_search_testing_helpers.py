"""The helpers the worker tests lean on: ``wait_for`` must fail fast, with the log, when the process a
condition depends on has exited, and must still time out when the condition never comes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from trainlab.search.testing import died_with, wait_for


def test_wait_for_fails_at_once_when_the_watched_process_exits(tmp_path):
    log = tmp_path / "p.log"
    log.write_text("worker said goodbye\n")
    p = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    p.wait(timeout=30)
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"exited \(3\) before the thing") as e:
        wait_for(lambda: False, 60, what="the thing", alive=p, log=log)
    assert "worker said goodbye" in str(e.value)
    assert time.monotonic() - t0 < 5


def test_wait_for_returns_when_true_and_times_out_when_never():
    n = [0]

    def third_time():
        n[0] += 1
        return n[0] >= 3

    wait_for(third_time, 10, interval=0.001)
    assert n[0] == 3
    with pytest.raises(TimeoutError, match="timed out after 0.05 s waiting for never"):
        wait_for(lambda: False, 0.05, interval=0.01, what="never")


@pytest.mark.parametrize("reason, ok", [
    ("worker died (process 4242 on host-a is gone)", True),
    ("worker died (process 42421 on host-a is gone)", False),  # another process
    ("worker died before its first heartbeat", True),
    ("worker died (no heartbeat for more than 5 s)", True),
    ("worker died (no heartbeat for more than 2.5 s)", True),
    ("interrupted (SIGINT)", False),
    ("ValueError: boom", False),
])
def test_died_with_accepts_the_sweeps_reasons_for_that_process_only(reason, ok):
    assert died_with(reason, 4242) is ok
