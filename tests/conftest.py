"""Shared fixtures: real MNIST locations and small data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def real_mnist_dir() -> Path | None:
    """The real MNIST files (test set + training labels) shipped beside the repo, if present."""
    env = os.environ.get("TRAINLAB_MNIST_DIR")
    p = Path(env) if env else REPO.parent / "shared" / "datasets" / "mnist"
    return p if (p / "t10k-images-idx3-ubyte.gz").exists() else None


@pytest.fixture
def mnist_dir() -> Path:
    p = real_mnist_dir()
    if p is None:
        if os.environ.get("TRAINLAB_REQUIRE_REAL_DATA") == "1":
            pytest.fail("real MNIST files not found (set TRAINLAB_MNIST_DIR)")
        pytest.skip("real MNIST files not found (set TRAINLAB_MNIST_DIR)")
    return p


@pytest.fixture(scope="session")
def small_splits():
    """300 training / 200 validation / 200 test embedded MNIST images, min-max scaled."""
    from trainlab.data import load_splits

    return load_splits("mnist-5k", train=300, val=200, test=200, seed=0)
