"""Small data sets in the official formats, written from scratch for tests and CI (no download).

``write_cifar10(folder, ...)`` writes CIFAR-10-format batch files (and optionally the
``cifar-10-binary.tar.gz`` archive) whose images a small net can learn: every class has its
own smooth colour template, and each image is that template plus noise. The writer follows
the published record layout (1 label byte, then the red, green and blue 32x32 planes) and
does not use trainlab's reader.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

__all__ = ["cifar10_records", "write_cifar10"]

_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))


def cifar10_records(n: int, *, seed: int, noise: float = 40.0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` records as bytes, with the images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` they encode."""
    templates_rng = np.random.default_rng(12345)  # the same class templates in every file
    coarse = templates_rng.uniform(30, 225, size=(10, 3, 4, 4))
    templates = np.kron(coarse, np.ones((1, 1, 8, 8)))  # 4x4 colour blocks of 8x8 pixels
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = np.clip(templates[labels] + rng.normal(0, noise, size=(n, 3, 32, 32)), 0, 255).astype(np.uint8)
    records = np.concatenate([labels[:, None], images.reshape(n, 3072)], axis=1)
    return records.tobytes(), images, labels.astype(np.int64)


def write_cifar10(folder: str | os.PathLike[str], *, train_per_batch: int = 20, test: int = 40, seed: int = 0,
                  archive: bool = False, subfolder: bool = False) -> Path:
    """Write ``data_batch_1..5.bin`` (``train_per_batch`` records each) and ``test_batch.bin``.

    ``subfolder=True`` puts them in ``folder/cifar-10-batches-bin/`` as the archive unpacks;
    ``archive=True`` writes ``folder/cifar-10-binary.tar.gz`` instead (members under
    ``cifar-10-batches-bin/``). Returns ``folder``.
    """
    folder = Path(folder)
    target = folder / "cifar-10-batches-bin" if subfolder else folder
    target.mkdir(parents=True, exist_ok=True)
    files = {name: cifar10_records(train_per_batch, seed=seed + i)[0] for i, name in enumerate(_BATCHES)}
    files["test_batch.bin"] = cifar10_records(test, seed=seed + 100)[0]
    files["batches.meta.txt"] = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                           "ship", "truck"]).encode() + b"\n"
    if archive:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        (folder / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
        return folder
    for name, data in files.items():
        (target / name).write_bytes(data)
    return folder
