"""Shared by the experiment tests: one torch thread per test module, as `trainlab reproduce` uses."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Small matrices gain nothing from a second thread, and two threads per pytest
    # worker oversubscribe a 2-core machine (see docs/experiments.md, "Run time").
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
