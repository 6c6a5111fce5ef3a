"""Fixtures for the data tests: IDX bytes, a toy data set, a local HTTP server (the real MNIST folder: tests/conftest.py)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.data import DATASETS, DatasetInfo

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}

TOY_PARTS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as an IDX file (big-endian), written independently of trainlab's reader."""
    code = _TYPE_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run the data tests on one intra-op thread, restored after each module.

    MKL's multithreaded eigh (whitening) is 10-30x slower when another process or an
    xdist worker competes for the cores (its threads spin-wait); on one thread a
    784x784 eigh takes ~0.1 s every time. The other data operations are too small to
    gain from threads.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def toy_arrays(n: int, *, seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 uint8 images and balanced-ish labels in [0, num_classes)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    rng.shuffle(labels)
    return images, labels


@pytest.fixture
def register_toy(monkeypatch: pytest.MonkeyPatch) -> Callable[..., DatasetInfo]:
    """Register an IDX data set named ``name`` whose MD5s are those of ``files`` (name -> bytes).

    The registration is undone after the test.
    """

    def register(
        files: dict[str, bytes], *, name: str = "toy", mirrors: tuple[str, ...] = ()
    ) -> DatasetInfo:
        info = DatasetInfo(
            name=name,
            title="toy data set written by the tests",
            num_classes=10,
            classes=tuple(str(d) for d in range(10)),
            image_shape=(1, 28, 28),
            mirrors=mirrors,
            md5={filename: md5_bytes(data) for filename, data in files.items()},
            parts={p: f for p, f in TOY_PARTS.items() if f[0] in files and f[1] in files},
            label_preserving=frozenset({"shift"}),
        )
        monkeypatch.setitem(DATASETS, name, info)
        return info

    return register


@pytest.fixture
def toy_idx_dir(tmp_path: Path, register_toy: Callable[..., DatasetInfo]) -> Path:
    """A folder with a registered toy IDX data set "toy": 200 training and 50 test images."""
    files = {}
    for part, n, seed in (("train", 200, 1), ("test", 50, 2)):
        images, labels = toy_arrays(n, seed=seed)
        images_file, labels_file = TOY_PARTS[part]
        files[images_file] = gzip.compress(idx_bytes(images))
        files[labels_file] = gzip.compress(idx_bytes(labels))
    folder = tmp_path / "toy-data"
    folder.mkdir()
    for filename, data in files.items():
        (folder / filename).write_bytes(data)
    register_toy(files)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Records each request path instead of printing a log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str, list[str]]]:
    """A local HTTP server on 127.0.0.1 in a thread: (folder it serves, base URL, request log)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def make_idx() -> Callable[[np.ndarray], bytes]:
    """The IDX encoder, for tests that write their own files."""
    return idx_bytes
