"""Shared fixtures of the reliability tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import os
from pathlib import Path
import subprocess
from typing import ContextManager

import pytest


@contextlib.contextmanager
def _read_only(d: Path) -> Iterator[None]:
    """A real read-only directory: chmod for a normal user; as root (which chmod does not stop) a read-only
    bind mount of it (skipped where mounting is not allowed)."""
    if os.geteuid() != 0:
        d.chmod(0o555)
        try:
            yield
        finally:
            d.chmod(0o755)
        return
    r = subprocess.run(["mount", "--bind", str(d), str(d)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"root, and cannot bind-mount to make a read-only directory: {r.stderr.decode().strip()}")
    try:
        r = subprocess.run(["mount", "-o", "remount,ro,bind", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.decode().strip()}")
        yield
    finally:
        subprocess.run(["umount", str(d)], check=True)



@pytest.fixture
def read_only() -> Callable[[Path], ContextManager[None]]:
    """``with read_only(directory):`` -- the directory is really read-only inside the block."""
    return _read_only
