"""Reading IDX files, the format MNIST, Fashion-MNIST and KMNIST are published in.

An IDX file is a 4-byte magic number, one 4-byte size per dimension, then the data:

    bytes 0-1   0x00 0x00
    byte  2     type code: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions (trainlab accepts 1 to 4)
    then        ndim unsigned 32-bit big-endian sizes
    then        prod(sizes) items, big-endian, row-major (last index fastest)

The published files are gzip-compressed. :func:`read_idx` recognizes gzip by its
magic bytes ``1f 8b``, never by the file name, so an unpacked file named ``.gz`` (or a
packed one without the suffix) reads the same.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from trainlab.errors import DataError

__all__ = ["read_idx", "IDX_TYPES"]

_GZIP_MAGIC = b"\x1f\x8b"

#: IDX type code -> (big-endian numpy dtype, name used in messages).
IDX_TYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "uint8"),
    0x09: (">i1", "int8"),
    0x0B: (">i2", "int16"),
    0x0C: (">i4", "int32"),
    0x0D: (">f4", "float32"),
    0x0E: (">f8", "float64"),
}

_MAX_DIMS = 4


def _allowed_types() -> str:
    return ", ".join(f"0x{code:02X} ({name})" for code, (_, name) in IDX_TYPES.items())


def _gunzip(raw: bytes, name: str) -> bytes:
    """Decompress a whole gzip stream, turning every kind of damage into a DataError."""
    try:
        return gzip.decompress(raw)
    except EOFError:
        reason = "the gzip stream ends early (truncated download?)"
    except gzip.BadGzipFile as exc:
        text = str(exc)
        if "CRC" in text:
            reason = "CRC check failed"
        elif "length" in text.lower():
            reason = "length check failed"
        else:
            reason = text
    except zlib.error as exc:
        reason = f"invalid compressed data ({exc})"
    raise DataError(f"{name}: corrupt gzip file: {reason}; expected a complete, valid gzip stream")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a numpy array.

    Returns an array of the file's shape in native byte order with the dtype its type
    code names (``uint8`` for the image and label files of MNIST and its relatives).
    The array owns its memory and is writable, so ``torch.from_numpy`` can share it.

    Raises :class:`~trainlab.errors.DataError` -- one line that starts with the file's
    name -- when the file is missing, is not IDX, uses an unknown type code, has 0 or
    more than 4 dimensions, is shorter or longer than its header says, or is a damaged
    gzip stream.
    """
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{name}: no such file: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a directory, expected an IDX file: {path}") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None

    if raw[:2] == _GZIP_MAGIC:
        raw = _gunzip(raw, name)

    if len(raw) < 4:
        raise DataError(
            f"{name}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic number"
        )
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0:
        raise DataError(
            f"{name}: not an IDX file: magic number is 0x{raw[:4].hex().upper()}, "
            "expected two zero bytes, a type code and the number of dimensions"
        )
    if type_code not in IDX_TYPES:
        raise DataError(
            f"{name}: unsupported IDX type code 0x{type_code:02X}; expected one of {_allowed_types()}"
        )
    if not 1 <= ndim <= _MAX_DIMS:
        raise DataError(
            f"{name}: IDX file has {ndim} dimensions; expected 1 to {_MAX_DIMS}"
        )

    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(
            f"{name}: truncated IDX header: {ndim} dimensions need {header_len} header bytes, "
            f"found {len(raw)}"
        )
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = np.dtype(IDX_TYPES[type_code][0])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_len
    dims = "x".join(str(s) for s in shape)
    if found < expected:
        raise DataError(
            f"{name}: truncated IDX file: header says {dims} = {expected} bytes of data, found {found}"
        )
    if found > expected:
        raise DataError(
            f"{name}: {found - expected} bytes of trailing data: header says {dims} = "
            f"{expected} bytes of data, found {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    # astype to native order always copies, so the result is writable and owns its memory.
    return data.astype(dtype.newbyteorder("="))
