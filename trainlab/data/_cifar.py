"""The CIFAR-10 *binary* distribution: fixed-length label + pixel records, read without unpickling.

The archive ``cifar-10-binary.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html) holds
``cifar-10-batches-bin/data_batch_1.bin`` .. ``data_batch_5.bin`` (the 50,000 training images)
and ``test_batch.bin`` (the 10,000 test images), besides ``batches.meta.txt`` and
``readme.html``. Each ``.bin`` file is a run of 3,073-byte records::

    <1 byte label 0..9><1024 bytes red><1024 bytes green><1024 bytes blue>

each colour plane 32x32 in row-major order, so a record's pixels reshape directly to
``(3, 32, 32)`` -- trainlab's (C, H, W) layout. An official batch has 10,000 records.

The archive is read in one streaming pass, without extracting anything to disk; only the six
batch files are read, and they must be regular files (a link or device under one of their
names, an absolute path or a ``..`` in any member name refuses the archive). The "python
version" of CIFAR-10 is a pickle, which can run code when loaded: trainlab never reads it.
"""

from __future__ import annotations

import functools
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from trainlab.errors import DataError

__all__ = ["CIFAR_RECORD_BYTES", "CIFAR_ARCHIVE", "CIFAR_FOLDER", "CIFAR_BATCHES", "read_cifar_batch",
           "read_cifar_archive", "read_cifar_folder"]

CIFAR_ARCHIVE = "cifar-10-binary.tar.gz"
#: the folder the archive unpacks to
CIFAR_FOLDER = "cifar-10-batches-bin"
_SHAPE = (3, 32, 32)
CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32  # 3073
#: part -> its batch files, in the order their images are concatenated
CIFAR_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
_NUM_CLASSES = 10


def read_cifar_batch(data: bytes, name: str, *, num_classes: int = _NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Parse one batch file's bytes: ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    Raises:
        DataError: one line naming ``name`` for an empty file, a length that is not a whole
            number of 3,073-byte records (truncated or padded), or a label outside
            ``[0, num_classes)``.
    """
    n, rest = divmod(len(data), CIFAR_RECORD_BYTES)
    if len(data) == 0:
        raise DataError(f"{name}: empty file; a CIFAR-10 batch is a run of {CIFAR_RECORD_BYTES}-byte records")
    if rest:
        raise DataError(f"{name}: {len(data)} bytes is not a whole number of {CIFAR_RECORD_BYTES}-byte records "
                        f"(1 label byte + 3072 pixel bytes); the file is truncated or corrupt")
    records = np.frombuffer(data, dtype=np.uint8).reshape(n, CIFAR_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{name}: label {int(labels[i])} in record {i} is outside [0, {num_classes}) "
                        f"({bad.size} bad records); the file is corrupt or not a CIFAR-10 batch")
    images = np.ascontiguousarray(records[:, 1:]).reshape(n, *_SHAPE)
    return images, labels


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or "\\" in name


@functools.lru_cache(maxsize=1)
def _archive_arrays(path: str, size: int, mtime_ns: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch of the archive, parsed once per (file, size, mtime) and kept for the next part."""
    del size, mtime_ns  # part of the cache key only: a replaced file is read again
    wanted = {f"{CIFAR_FOLDER}/{b}": b for part in CIFAR_BATCHES.values() for b in part}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    label = Path(path).name
    try:
        # "r|gz": one sequential pass over the stream, nothing written to disk.
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if _unsafe(member.name):
                    raise DataError(f"{label}: unsafe archive member {member.name!r} (absolute path or '..'); "
                                    "refusing the archive")
                if name not in wanted:
                    continue
                batch = wanted[name]
                if not member.isreg():
                    raise DataError(f"{label}: member {member.name!r} is not a regular file (a link or device); "
                                    "refusing the archive")
                if batch in found:
                    raise DataError(f"{label}: member {member.name!r} appears twice; refusing the archive")
                handle = tar.extractfile(member)
                assert handle is not None  # a regular file always has data
                found[batch] = read_cifar_batch(handle.read(), f"{label}:{name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{label}: not a readable tar.gz archive ({exc}); the download is truncated or "
                        "corrupt") from None
    missing = [b for b in wanted.values() if b not in found]
    if missing:
        raise DataError(f"{label}: the archive has no {', '.join(f'{CIFAR_FOLDER}/{m}' for m in missing)}; "
                        f"it is not the CIFAR-10 binary distribution")
    return found


def read_cifar_archive(path: str | os.PathLike[str], part: str) -> tuple[np.ndarray, np.ndarray]:
    """One part (``"train"`` or ``"test"``) of ``cifar-10-binary.tar.gz``, read from the archive in memory.

    The checksum is not checked here (:func:`~trainlab.data.fetch` does that before).
    """
    if part not in CIFAR_BATCHES:
        raise DataError(f"cifar10 has no part {part!r}; expected one of: {', '.join(CIFAR_BATCHES)}")
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror or exc}") from None
    arrays = _archive_arrays(str(p.resolve()), st.st_size, st.st_mtime_ns)
    return _concat([arrays[b] for b in CIFAR_BATCHES[part]])


def read_cifar_folder(folder: str | os.PathLike[str], part: str) -> tuple[np.ndarray, np.ndarray]:
    """One part from the extracted batch files in ``folder`` (or in ``folder/cifar-10-batches-bin``).

    No checksum is published for the single files, so they are checked by structure only:
    whole records, labels in range.
    """
    if part not in CIFAR_BATCHES:
        raise DataError(f"cifar10 has no part {part!r}; expected one of: {', '.join(CIFAR_BATCHES)}")
    base = Path(folder).expanduser()
    if not (base / CIFAR_BATCHES[part][0]).exists() and (base / CIFAR_FOLDER).is_dir():
        base = base / CIFAR_FOLDER
    parts = []
    for batch in CIFAR_BATCHES[part]:
        path = base / batch
        if not path.is_file():
            raise DataError(f"{batch} not found in data directory {base} (CIFAR-10 {part} needs "
                            f"{', '.join(CIFAR_BATCHES[part])})")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        parts.append(read_cifar_batch(data, str(path)))
    return _concat(parts)


def has_cifar_batches(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` (or its ``cifar-10-batches-bin``) holds extracted batch files."""
    base = Path(folder).expanduser()
    return any((b / "test_batch.bin").is_file() or (b / "data_batch_1.bin").is_file()
               for b in (base, base / CIFAR_FOLDER))
