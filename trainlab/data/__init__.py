"""Data: the embedded MNIST subset, IDX data sets (download, checksum, cache), splits and
preprocessing.

Quick start (offline: the 5,000 embedded MNIST digits)::

    from trainlab.data import load_splits
    splits = load_splits("mnist-5k", train=300, val=500, test=1000, seed=0)
    splits.train.x.shape   # (300, 784), float32 in [0, 1]; 30 images of each digit

Full data sets (downloaded once into the cache, or read from ``data_dir``)::

    splits = load_splits("fashion-mnist", val=5000, data_dir="~/data/fashion")

See docs/data.md for the formats, mirrors, split rules and preprocessing formulas.
"""

from __future__ import annotations

from trainlab.data._datasets import Dataset, embedded_mnist_path, load_dataset
from trainlab.data._download import default_cache_dir, fetch, md5_file
from trainlab.data._idx import IDX_TYPES, read_idx
from trainlab.data._cifar import read_cifar_archive, read_cifar_batch, read_cifar_folder
from trainlab.data._preprocess import (
    PREPROCESSORS,
    Identity,
    MinMax,
    MinMaxPerFeature,
    PCAWhiten,
    Preprocessor,
    Standardize,
    ZCAWhiten,
    ChannelStandardize,
    make_preprocessor,
)
from trainlab.data import _preprocess
from trainlab.data._faults import FAULT_KEYS, plant_faults
from trainlab.data._registry import DATASETS, GEOMETRIC_TRANSFORMS, DatasetInfo, get_dataset_info
from trainlab.data._splits import Arrays, Splits, load_splits, split_indices

__all__ = [
    "plant_faults",
    "FAULT_KEYS",
    # files
    "read_idx",
    "IDX_TYPES",
    "read_cifar_batch",
    "read_cifar_archive",
    "read_cifar_folder",
    "fetch",
    "md5_file",
    "default_cache_dir",
    # data sets
    "DATASETS",
    "DatasetInfo",
    "GEOMETRIC_TRANSFORMS",
    "get_dataset_info",
    "Dataset",
    "load_dataset",
    "embedded_mnist_path",
    # splits
    "Arrays",
    "Splits",
    "load_splits",
    "split_indices",
    # preprocessing
    *_preprocess.__all__,
]
