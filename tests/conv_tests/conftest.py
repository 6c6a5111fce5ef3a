"""Fixtures of the convolution and augmentation tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    """The layers here are small: intra-op threads only add synchronization, and on a machine
    shared with other work their spin-waits cost 10-100x. Restored after each test."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
