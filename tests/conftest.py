"""Shared fixtures: real MNIST locations and small data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of real MNIST files (test set + training labels): $TRAINLAB_MNIST_DIR, else
    <repo>/../shared/datasets/mnist. Missing: skip, unless TRAINLAB_REQUIRE_REAL_DATA=1 (CI: fail)."""
    env = os.environ.get("TRAINLAB_MNIST_DIR")
    folder = Path(env) if env else REPO.parent / "shared" / "datasets" / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        message = f"real MNIST files not found in {folder} (set TRAINLAB_MNIST_DIR)"
        if os.environ.get("TRAINLAB_REQUIRE_REAL_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def small_splits():
    """300 training / 200 validation / 200 test embedded MNIST images, min-max scaled."""
    from trainlab.data import load_splits

    return load_splits("mnist-5k", train=300, val=200, test=200, seed=0)
