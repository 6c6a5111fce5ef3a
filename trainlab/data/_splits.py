"""Train / validation / test splits, seeded and stratified, preprocessed on train statistics.

How the parts are drawn:

- ``mnist-5k`` (one pool of 5,000): one seeded permutation of the pool, then test
  takes the first ``test`` images, val the next ``val``, train the next ``train``
  (default: all the rest).
- full IDX data sets: test comes from the official test set (all 10,000 in file
  order, or ``test`` images drawn as above when ``test`` is given); val and train are
  drawn as above from the official training set. Official test images never land in
  train or val.

Stratified (the default): each part takes from every class its share of the images
still available, rounded by largest remainder (ties broken by a seeded random class
order), walking each class in the order of the seeded permutation. On the balanced
mnist-5k pool every part is then balanced up to one image per class: train=300 gets
exactly 30 of each digit, which a plain random draw would only give on average. Each
part keeps the order of the permutation, so classes are interleaved, not sorted.
``stratify=False`` slices the permutation directly.

All randomness comes from ``torch.Generator`` objects seeded with ``seed`` (never the
global RNG): the same seed always gives the same parts, on any device.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainlab.data._datasets import Dataset, load_dataset
from trainlab.data._preprocess import Preprocessor, make_preprocessor
from trainlab.data._registry import get_dataset_info
from trainlab.errors import DataError

__all__ = ["Arrays", "Splits", "load_splits", "split_indices"]

_EMBEDDED_TEST_DEFAULT = 1000


@dataclass
class Arrays:
    """One split.

    Attributes:
        x: float (``dtype`` of :func:`load_splits`), ``(N, D)`` when flattened, else
            the image shape of the data set (``(N, 1, 28, 28)``, ``(N, 3, 32, 32)``); already preprocessed.
        y: ``torch.int64``, ``(N,)``, labels in ``[0, num_classes)``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    """The parts of a data set ready for training.

    Attributes:
        train, val, test: the parts; ``val``/``test`` are ``None`` when their size is 0.
        num_classes: number of classes.
        name: the data set's registry name.
        input_shape: shape of one sample of ``x``: ``(784,)`` flattened (``(k,)`` for
            PCA with ``n_components=k``) or the image shape ``(C, H, W)``.
        preprocessor: the preprocessor fitted on ``train`` (and only on train).
        indices: part -> positions in its pool, for reproducibility records. For
            mnist-5k all three index the 5,000 in file order; for the full data sets
            ``"test"`` indexes the official test set and ``"train"``/``"val"`` the
            official training set. Only parts that are present are listed.
        classes: class names indexed by label.
    """

    train: Arrays
    val: Arrays | None
    test: Arrays | None
    num_classes: int
    name: str
    input_shape: tuple[int, ...]
    preprocessor: Preprocessor
    indices: dict[str, list[int]] | None = None
    classes: tuple[str, ...] = ()


def _quotas(size: int, available: list[int], class_order: list[int]) -> list[int]:
    """Split ``size`` over classes in proportion to ``available`` (largest remainder).

    Never exceeds ``available`` when ``size <= sum(available)``: floor(size*a/total)
    + 1 <= a whenever the division leaves a remainder.
    """
    total = sum(available)
    if total == 0:
        return [0] * len(available)
    quotas = [size * a // total for a in available]
    remainders = [size * a % total for a in available]
    rank = {c: i for i, c in enumerate(class_order)}
    leftover = size - sum(quotas)
    by_remainder = sorted(range(len(available)), key=lambda c: (-remainders[c], rank[c]))
    for c in by_remainder[:leftover]:
        quotas[c] += 1
    return quotas


def split_indices(
    labels: torch.Tensor,
    sizes: Sequence[int],
    *,
    num_classes: int,
    generator: torch.Generator,
    stratify: bool = True,
) -> list[torch.Tensor]:
    """Draw disjoint index sets of the given sizes from a pool with these labels.

    One permutation of the pool is drawn from ``generator``; the parts are taken in the
    order of ``sizes`` (see the module docstring for the stratified rule). Returns one
    int64 CPU tensor of pool positions per size. ``sum(sizes)`` must not exceed the pool.
    """
    labels = labels.to("cpu", torch.int64)
    n = len(labels)
    if sum(sizes) > n:
        raise DataError(f"sizes {list(sizes)} add up to {sum(sizes)}, more than the pool of {n}")
    perm = torch.randperm(n, generator=generator)
    if not stratify:
        bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
        return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    class_order = torch.randperm(num_classes, generator=generator).tolist()
    perm_labels = labels[perm]
    # by_class lists the positions of perm grouped by class, each class in perm order.
    by_class = torch.sort(perm_labels, stable=True).indices
    available = torch.bincount(labels, minlength=num_classes).tolist()
    starts = [sum(available[:c]) for c in range(num_classes)]
    taken = [0] * num_classes
    parts = []
    for size in sizes:
        quotas = _quotas(size, available, class_order)
        positions = torch.cat(
            [by_class[starts[c] + taken[c] : starts[c] + taken[c] + quotas[c]] for c in range(num_classes)]
        )
        parts.append(perm[positions.sort().values])  # back to permutation order
        taken = [t + q for t, q in zip(taken, quotas)]
        available = [a - q for a, q in zip(available, quotas)]
    return parts


def _check_size(key: str, value: int | None, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{key} must be a non-negative integer{' or None' if allow_none else ''}, got {key}={value!r}")
    if value < 0:
        raise DataError(f"{key} must be >= 0, got {key}={value}")


def _resolve_preprocessor(preprocess: str | Preprocessor, options: dict[str, Any] | None) -> Preprocessor:
    if isinstance(preprocess, Preprocessor):
        if options:
            raise DataError("preprocess_options only apply when preprocess is a name; got a Preprocessor object")
        return preprocess
    return make_preprocessor(preprocess, **(options or {}))


def _sizes_text(**sizes: int) -> str:
    return " + ".join(f"{k}={v}" for k, v in sizes.items())


def load_splits(
    name: str = "mnist-5k",
    *,
    train: int | None = None,
    val: int = 500,
    test: int | None = None,
    seed: int = 0,
    preprocess: str | Preprocessor = "minmax",
    flatten: bool = True,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    stratify: bool = True,
    preprocess_options: dict[str, Any] | None = None,
) -> Splits:
    """Load a data set and cut it into seeded train / val / test parts, preprocessed.

    Args:
        name: a registered data set (default the embedded ``"mnist-5k"``).
        train: training images; ``None`` takes all that val and test leave.
        val: validation images, carved from the training pool; 0 gives ``val=None``.
        test: test images. mnist-5k: default 1000, from the pool. Full data sets:
            ``None`` is the whole official test set; a number draws that many from it.
            0 gives ``test=None``.
        seed: seeds the ``torch.Generator`` behind every random choice.
        preprocess: a name accepted by :func:`make_preprocessor` or an unfitted
            :class:`Preprocessor`; either way it is fitted on the train part only and
            applied unchanged to val and test.
        preprocess_options: keyword options for the named preprocessor (e.g.
            ``{"eps": 0.1}`` or ``{"n_components": 50}``).
        flatten: ``x`` of shape ``(N, C*H*W)``; else ``(N, C, H, W)`` (MNIST ``(N, 1, 28, 28)``, CIFAR-10 ``(N, 3, 32, 32)``).
        data_dir, cache_dir, download: where IDX files come from; see :func:`fetch`.
        device, dtype: where ``x`` and ``y`` live and ``x``'s float dtype.
        stratify: draw each part class by class (see the module docstring).

    Raises:
        DataError: unknown data set or preprocessing, negative sizes, sizes that do not
            fit the pool, or data-file problems.
    """
    info = get_dataset_info(name)
    _check_size("train", train, allow_none=True)
    _check_size("val", val, allow_none=False)
    _check_size("test", test, allow_none=True)
    if train == 0:
        raise DataError("train must be >= 1 (the preprocessor and the model are fitted on it), got train=0")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"seed must be an integer, got seed={seed!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DataError(f"dtype must be a floating torch dtype such as torch.float32, got dtype={dtype!r}")
    preprocessor = _resolve_preprocessor(preprocess, preprocess_options)
    if not flatten and not preprocessor.keeps_shape:
        raise DataError(
            f"preprocess={preprocessor.name!r} gives flat component scores, not images; "
            "use flatten=True (or 'zca-whiten', which keeps the image layout)"
        )

    load = functools.partial(load_dataset, data_dir=data_dir, cache_dir=cache_dir, download=download)
    split = functools.partial(split_indices, num_classes=info.num_classes, stratify=stratify)
    chosen: dict[str, tuple[Dataset, torch.Tensor]] = {}

    if info.embedded:
        pool = load_dataset(name, part="train")
        n = len(pool)
        n_test = _EMBEDDED_TEST_DEFAULT if test is None else test
        n_train = n - val - n_test if train is None else train
        if train is None and n_train == 0:
            raise DataError(
                f"{name} has {n} images; {_sizes_text(val=val, test=n_test)} leaves none for train"
            )
        if n_train + val + n_test > n or n_train < 0:
            given = _sizes_text(val=val, test=n_test) if train is None else _sizes_text(
                train=n_train, val=val, test=n_test
            )
            raise DataError(f"{name} has {n} images; {given} exceeds it")
        generator = torch.Generator().manual_seed(seed)
        test_idx, val_idx, train_idx = split(pool.labels, [n_test, val, n_train], generator=generator)
        chosen = {"train": (pool, train_idx), "val": (pool, val_idx), "test": (pool, test_idx)}
    else:
        if test != 0:
            test_pool = load(name, part="test")
            n_test_pool = len(test_pool)
            if test is None:
                test_idx = torch.arange(n_test_pool)
            elif test > n_test_pool:
                raise DataError(
                    f"{name}'s official test set has {n_test_pool} images; test={test} exceeds it"
                )
            else:
                (test_idx,) = split(test_pool.labels, [test], generator=torch.Generator().manual_seed(seed))
            chosen["test"] = (test_pool, test_idx)
        train_pool = load(name, part="train")
        n = len(train_pool)
        n_train = n - val if train is None else train
        if train is None and n_train == 0:
            raise DataError(f"{name}'s official training set has {n} images; val={val} leaves none for train")
        if n_train + val > n or n_train < 0:
            given = f"val={val}" if train is None else _sizes_text(train=n_train, val=val)
            raise DataError(f"{name}'s official training set has {n} images; {given} exceeds it")
        val_idx, train_idx = split(train_pool.labels, [val, n_train], generator=torch.Generator().manual_seed(seed))
        chosen["train"] = (train_pool, train_idx)
        chosen["val"] = (train_pool, val_idx)

    def raw(part: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if part not in chosen or len(chosen[part][1]) == 0:
            return None
        pool, idx = chosen[part]
        # Images stay (N, C, H, W) through preprocessing (a per-channel statistic needs the
        # channels; every other preprocessor flattens internally), and are flattened after.
        x = pool.images[idx].to(device=device).to(dtype)
        return x, pool.labels[idx].to(device=device)

    raw_train = raw("train")
    assert raw_train is not None  # n_train >= 1 was checked above
    preprocessor.fit(raw_train[0])

    def finish(pair: tuple[torch.Tensor, torch.Tensor] | None) -> Arrays | None:
        if pair is None:
            return None
        x = preprocessor.transform(pair[0])
        return Arrays(x=x.reshape(len(x), -1) if flatten else x, y=pair[1])

    train_arrays = finish(raw_train)
    assert train_arrays is not None
    input_shape = (preprocessor.output_features(),) if flatten else tuple(info.image_shape)
    indices = {part: idx.tolist() for part, (_, idx) in chosen.items() if len(idx)}
    return Splits(
        train=train_arrays,
        val=finish(raw("val")),
        test=finish(raw("test")),
        num_classes=info.num_classes,
        name=name,
        input_shape=input_shape,
        preprocessor=preprocessor,
        indices=indices,
        classes=info.classes,
    )
