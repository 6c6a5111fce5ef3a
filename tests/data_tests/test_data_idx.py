"""read_idx: real MNIST files, round trips of written files, and every malformed-file error."""

from __future__ import annotations

import gzip
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainlab.data import DATASETS, md5_file, read_idx
from trainlab.errors import DataError

MakeIdx = Callable[[np.ndarray], bytes]


# -- the real files ------------------------------------------------------------------


def test_real_test_images_and_labels(mnist_dir: Path) -> None:
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert images.min() == 0 and images.max() == 255
    # The first test digits of MNIST, well known from every tutorial.
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000
    assert counts.min() >= 892 and counts.max() <= 1135


def test_real_train_labels(mnist_dir: Path) -> None:
    labels = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,)
    counts = np.bincount(labels, minlength=10)
    assert len(counts) == 10
    assert counts.min() == 5421 and counts.max() == 6742  # fives are rarest, ones commonest


def test_real_md5s_match_registry_and_md5sums(mnist_dir: Path) -> None:
    listed = {}
    md5sums = mnist_dir / "MD5SUMS"
    if md5sums.is_file():
        for line in md5sums.read_text().splitlines():
            digest, name = line.split()
            listed[name] = digest
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        found = md5_file(mnist_dir / name)
        assert found == DATASETS["mnist"].md5[name]
        if name in listed:
            assert found == listed[name]


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_round_trip_labels_and_images(tmp_path: Path, make_idx: MakeIdx, compress: bool) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=37, dtype=np.uint8)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    for name, array in (("labels", labels), ("images", images)):
        data = make_idx(array)
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if compress else data)
        back = read_idx(path)
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
        assert back.flags.writeable


def test_gzip_detected_by_magic_not_name(tmp_path: Path, make_idx: MakeIdx) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    plain_named_gz = tmp_path / "plain.gz"
    plain_named_gz.write_bytes(make_idx(array))
    packed_no_suffix = tmp_path / "packed-idx2-ubyte"
    packed_no_suffix.write_bytes(gzip.compress(make_idx(array)))
    np.testing.assert_array_equal(read_idx(plain_named_gz), array)
    np.testing.assert_array_equal(read_idx(packed_no_suffix), array)


_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    dtype=st.sampled_from(_DTYPES),
    compress=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_round_trip_any_type_and_rank(
    make_idx: MakeIdx, shape: list[int], dtype: type, compress: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    data = make_idx(array)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.idx"
        path.write_bytes(gzip.compress(data) if compress else data)
        back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


# -- errors: the exact one-line messages -----------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_truncated_data(tmp_path: Path, make_idx: MakeIdx) -> None:
    data = make_idx(np.zeros((10000, 28, 28), dtype=np.uint8))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[: 16 + 123]))
    assert _error(path) == (
        "t10k-images-idx3-ubyte.gz: truncated IDX file: header says 10000x28x28 = 7840000 bytes of data, found 123"
    )


def test_truncated_data_wider_type(tmp_path: Path, make_idx: MakeIdx) -> None:
    data = make_idx(np.zeros((3, 2), dtype=np.int32))
    path = tmp_path / "ints"
    path.write_bytes(data[:-1])
    assert _error(path) == "ints: truncated IDX file: header says 3x2 = 24 bytes of data, found 23"


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">I", 5))
    assert _error(path) == "short: truncated IDX header: 3 dimensions need 16 header bytes, found 8"


def test_shorter_than_magic(tmp_path: Path) -> None:
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")
    assert _error(path) == "tiny: not an IDX file: 2 bytes, shorter than the 4-byte magic number"


def test_trailing_bytes(tmp_path: Path, make_idx: MakeIdx) -> None:
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(make_idx(np.zeros(60, dtype=np.uint8)) + b"extra")
    assert _error(path) == (
        "labels-idx1-ubyte: 5 bytes of trailing data: header says 60 = 60 bytes of data, found 65"
    )


def test_wrong_magic(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"PK\x03\x04 not idx at all")
    assert _error(path) == (
        "notes.txt: not an IDX file: magic number is 0x504B0304, "
        "expected two zero bytes, a type code and the number of dimensions"
    )


def test_wrong_type_code(tmp_path: Path) -> None:
    path = tmp_path / "odd-type"
    path.write_bytes(bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00")
    assert _error(path) == (
        "odd-type: unsupported IDX type code 0x07; expected one of 0x08 (uint8), 0x09 (int8), "
        "0x0B (int16), 0x0C (int32), 0x0D (float32), 0x0E (float64)"
    )


@pytest.mark.parametrize("ndim", [0, 5])
def test_wrong_number_of_dimensions(tmp_path: Path, ndim: int) -> None:
    path = tmp_path / "dims"
    path.write_bytes(bytes([0, 0, 8, ndim]) + b"\x00\x00\x00\x01" * ndim + b"\x00")
    assert _error(path) == f"dims: IDX file has {ndim} dimensions; expected 1 to 4"


def test_corrupt_gzip_crc(tmp_path: Path, make_idx: MakeIdx) -> None:
    packed = bytearray(gzip.compress(make_idx(np.arange(100, dtype=np.uint8))))
    packed[-8] ^= 0xFF  # first byte of the CRC32 in the gzip trailer
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(packed))
    assert _error(path) == (
        "train-labels-idx1-ubyte.gz: corrupt gzip file: CRC check failed; expected a complete, valid gzip stream"
    )


def test_corrupt_gzip_length(tmp_path: Path, make_idx: MakeIdx) -> None:
    packed = bytearray(gzip.compress(make_idx(np.arange(100, dtype=np.uint8))))
    packed[-1] ^= 0xFF  # last byte of ISIZE, the uncompressed length
    path = tmp_path / "x.gz"
    path.write_bytes(bytes(packed))
    assert _error(path) == "x.gz: corrupt gzip file: length check failed; expected a complete, valid gzip stream"


def test_truncated_gzip(tmp_path: Path, make_idx: MakeIdx) -> None:
    packed = gzip.compress(make_idx(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(packed[: len(packed) // 2])
    assert _error(path) == (
        "t10k-labels-idx1-ubyte.gz: corrupt gzip file: the gzip stream ends early (truncated download?); "
        "expected a complete, valid gzip stream"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.gz"
    assert _error(path) == f"absent.gz: no such file: {path}"
