"""keep_freed_memory: a 64 MB tensor comes from the heap (reused after free), not from fresh mmap'ed pages.

Checked in fresh processes with glibc's own bookkeeping (mallinfo2: ``hblkhd`` is the bytes
held in mmap'ed blocks). Linux/glibc only.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc only")

PROBE = r"""
import ctypes, sys
import torch
from trainlab.runtime import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "on" else False
t = torch.empty(16 * 1024 * 1024)  # 64 MB
t.fill_(1.0)
print(applied, libc.mallinfo2().hblkhd)
"""


def _probe(mode: str, **env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_large_tensors_come_from_the_heap_when_applied():
    applied, mmapped = _probe("on")
    assert applied and mmapped < 32 * 2**20
    applied, mmapped = _probe("off")
    assert not applied and mmapped >= 64 * 2**20


def test_opt_out_with_the_environment():
    applied, mmapped = _probe("on", TRAINLAB_MALLOC="system")
    assert not applied and mmapped >= 64 * 2**20


def test_cli_applies_it(monkeypatch):
    import trainlab.runtime as rt
    from trainlab import cli

    calls = []
    monkeypatch.setattr(rt, "keep_freed_memory", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert calls
