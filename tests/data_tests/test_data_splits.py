"""load_splits: sizes, determinism, disjointness, stratification, official test sets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainlab.data import Splits, load_dataset, load_splits, split_indices
from trainlab.errors import DataError


def _counts(y: torch.Tensor) -> list[int]:
    return torch.bincount(y, minlength=10).tolist()


def _check_disjoint(splits: Splits) -> None:
    assert splits.indices is not None
    parts = [set(v) for v in splits.indices.values()]
    for part, idx in zip(splits.indices, parts):
        assert len(idx) == len(splits.indices[part])  # no repeats inside a part
    assert len(set().union(*parts)) == sum(len(p) for p in parts)


def test_default_sizes_and_layout() -> None:
    s = load_splits()
    assert s.name == "mnist-5k" and s.num_classes == 10 and s.input_shape == (784,)
    assert (len(s.train), len(s.val), len(s.test)) == (3500, 500, 1000)  # type: ignore[arg-type]
    assert s.train.x.shape == (3500, 784) and s.train.x.dtype == torch.float32
    assert s.train.y.dtype == torch.int64
    assert float(s.train.x.min()) == 0.0 and float(s.train.x.max()) == 1.0
    assert s.indices is not None and set(s.indices) == {"train", "val", "test"}
    _check_disjoint(s)
    # Balanced pool, balanced parts.
    assert _counts(s.train.y) == [350] * 10
    assert _counts(s.val.y) == [50] * 10  # type: ignore[union-attr]
    assert _counts(s.test.y) == [100] * 10  # type: ignore[union-attr]
    # Classes are interleaved, not sorted as in the file.
    assert not torch.equal(s.train.y, s.train.y.sort().values)


def test_x_and_y_come_from_the_indexed_images() -> None:
    s = load_splits(train=50, val=20, test=30, seed=4, preprocess="none")
    pool = load_dataset("mnist-5k")
    for part in ("train", "val", "test"):
        arrays = getattr(s, part)
        idx = torch.tensor(s.indices[part])  # type: ignore[index]
        assert torch.equal(arrays.x, pool.images[idx].reshape(len(idx), -1).float())
        assert torch.equal(arrays.y, pool.labels[idx])


def test_same_seed_same_split_different_seed_different() -> None:
    a = load_splits(train=300, seed=7)
    b = load_splits(train=300, seed=7)
    c = load_splits(train=300, seed=8)
    assert a.indices == b.indices
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)  # type: ignore[union-attr]
    assert a.indices is not None and c.indices is not None
    for part in ("train", "val", "test"):
        assert a.indices[part] != c.indices[part]


def test_global_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_splits(train=100, seed=5)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_training_sets_are_stratified(seed: int) -> None:
    s = load_splits(train=300, seed=seed)
    assert _counts(s.train.y) == [30] * 10
    _check_disjoint(s)
    odd = load_splits(train=305, val=53, test=0, seed=seed)
    assert sorted(set(_counts(odd.train.y))) == [30, 31] and sum(_counts(odd.train.y)) == 305
    assert sorted(set(_counts(odd.val.y))) == [5, 6]  # type: ignore[union-attr]
    assert odd.test is None


def test_unstratified_split() -> None:
    s = load_splits(train=300, seed=0, stratify=False)
    assert len(s.train) == 300 and _counts(s.train.y) != [30] * 10
    _check_disjoint(s)


def test_whole_pool_can_be_used() -> None:
    s = load_splits(train=4000, val=500, test=500)
    assert s.indices is not None
    assert sorted(i for v in s.indices.values() for i in v) == list(range(5000))


def test_zero_val_and_test_are_none() -> None:
    s = load_splits(val=0, test=0, train=100)
    assert s.val is None and s.test is None
    assert s.indices is not None and set(s.indices) == {"train"}
    rest = load_splits(val=0, test=0)
    assert len(rest.train) == 5000


def test_flatten_false_and_dtype() -> None:
    s = load_splits(train=20, val=10, test=10, flatten=False, dtype=torch.float64)
    assert s.train.x.shape == (20, 1, 28, 28) and s.train.x.dtype == torch.float64
    assert s.input_shape == (1, 28, 28)


def _split_error(**kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_splits(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_size_errors() -> None:
    assert _split_error(train=4800) == "mnist-5k has 5000 images; train=4800 + val=500 + test=1000 exceeds it"
    assert _split_error(val=4000, test=1000) == "mnist-5k has 5000 images; val=4000 + test=1000 leaves none for train"
    assert _split_error(val=4500, test=1000) == "mnist-5k has 5000 images; val=4500 + test=1000 exceeds it"
    assert _split_error(train=-1) == "train must be >= 0, got train=-1"
    assert _split_error(val=-5) == "val must be >= 0, got val=-5"
    assert _split_error(test=-2) == "test must be >= 0, got test=-2"
    assert _split_error(train=0) == (
        "train must be >= 1 (the preprocessor and the model are fitted on it), got train=0"
    )
    assert _split_error(val=2.5) == "val must be a non-negative integer, got val=2.5"
    assert _split_error(name="nope").startswith("unknown data set 'nope'; known data sets: ")
    assert _split_error(preprocess="pca-whiten", flatten=False) == (
        "preprocess='pca-whiten' gives flat component scores, not images; "
        "use flatten=True (or 'zca-whiten', which keeps the image layout)"
    )


def test_full_data_set_uses_official_test_set(toy_idx_dir: Path) -> None:
    s = load_splits("toy", val=40, seed=3, data_dir=toy_idx_dir)
    assert (len(s.train), len(s.val), len(s.test)) == (160, 40, 50)  # type: ignore[arg-type]
    assert s.indices is not None
    assert s.indices["test"] == list(range(50))  # all of it, in file order
    assert set(s.indices["train"]).isdisjoint(s.indices["val"])
    official_test = load_dataset("toy", part="test", data_dir=toy_idx_dir)
    assert torch.equal(s.test.y, official_test.labels)  # type: ignore[union-attr]
    assert _counts(s.val.y) == [4] * 10  # type: ignore[union-attr]

    sub = load_splits("toy", train=50, val=20, test=20, seed=3, data_dir=toy_idx_dir)
    assert (len(sub.train), len(sub.val), len(sub.test)) == (50, 20, 20)  # type: ignore[arg-type]
    assert _counts(sub.test.y) == [2] * 10  # type: ignore[union-attr]
    assert sub.indices == load_splits("toy", train=50, val=20, test=20, seed=3, data_dir=toy_idx_dir).indices


def test_full_data_set_size_errors(toy_idx_dir: Path) -> None:
    assert _split_error(name="toy", test=60, data_dir=toy_idx_dir) == (
        "toy's official test set has 50 images; test=60 exceeds it"
    )
    assert _split_error(name="toy", train=190, val=20, data_dir=toy_idx_dir) == (
        "toy's official training set has 200 images; train=190 + val=20 exceeds it"
    )
    assert _split_error(name="toy", val=200, data_dir=toy_idx_dir) == (
        "toy's official training set has 200 images; val=200 leaves none for train"
    )


def test_split_indices_keeps_class_shares_of_unbalanced_pool() -> None:
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    gen = torch.Generator().manual_seed(0)
    a, b, c = split_indices(labels, [100, 50, 850], num_classes=3, generator=gen)
    assert torch.bincount(labels[a], minlength=3).tolist() == [60, 30, 10]
    assert torch.bincount(labels[b], minlength=3).tolist() == [30, 15, 5]
    assert torch.bincount(labels[c], minlength=3).tolist() == [510, 255, 85]
    assert len(set(torch.cat([a, b, c]).tolist())) == 1000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    kwargs = {"train": 200, "val": 50, "test": 50, "seed": 0, "preprocess": "zca-whiten"}
    cpu = load_splits(**kwargs)
    gpu = load_splits(device="cuda", **kwargs)
    assert gpu.train.x.is_cuda and gpu.train.y.is_cuda
    assert cpu.indices == gpu.indices
    torch.testing.assert_close(gpu.test.x.cpu(), cpu.test.x, atol=1e-4, rtol=1e-4)  # type: ignore[union-attr]
