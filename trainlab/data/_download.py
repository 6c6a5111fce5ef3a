"""Finding a data set's file: a local folder, the cache, or a download from its mirrors.

Where :func:`fetch` looks, in order:

1. ``data_dir`` when given -- the file must be there (``data_dir/filename``); the
   cache and the network are not consulted.
2. the cache: ``<cache root>/<dataset>/<filename>``, where the cache root is
   ``cache_dir``, else ``$TRAINLAB_CACHE``, else ``$XDG_CACHE_HOME/trainlab``, else
   ``~/.cache/trainlab``. The per-data-set folder is always added because the data
   sets share file names.
3. the data set's mirrors, in order, when ``download`` is true.

Every file is checked against the MD5 in the registry. A download is written to a
temporary file in the cache folder and renamed onto the final name only after its
checksum matched, so an interrupted or corrupt download never sits at the final path.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from trainlab.data._registry import DatasetInfo, get_dataset_info
from trainlab.errors import DataError

__all__ = ["fetch", "md5_file", "default_cache_dir"]

_CHUNK = 1 << 20
_USER_AGENT = "trainlab (+https://pypi.org/project/trainlab/)"


def md5_file(path: str | os.PathLike[str]) -> str:
    """The MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$TRAINLAB_CACHE``, else the user cache + ``trainlab``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("TRAINLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "trainlab"


def _checked_info(dataset_name: str, filename: str) -> DatasetInfo:
    info = get_dataset_info(dataset_name)
    if info.embedded:
        raise DataError(
            f"{dataset_name} is embedded (its images ship with an installed package) "
            "and has no files to fetch; use load_dataset or load_splits"
        )
    if filename not in info.md5:
        raise DataError(
            f"{dataset_name} has no file {filename!r}; its files are: {', '.join(info.files)}"
        )
    return info


def _mismatch(label: str, expected: str, found: str) -> str:
    return f"{label}: MD5 checksum mismatch: expected {expected}, found {found}"


def _describe(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed download attempt."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return f"timed out after {timeout:g} s"
        return str(getattr(reason, "strerror", None) or reason)
    return str(exc) or type(exc).__name__


def _download(url: str, folder: Path, filename: str, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``folder``; return (temp path, MD5).

    The temporary file is removed here if anything goes wrong; on success the caller
    owns it (and must rename or remove it).
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    handle, temp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
    temp = Path(temp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, digest.hexdigest()


def fetch(
    dataset_name: str,
    filename: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Return the path of a verified copy of one of a data set's files.

    Args:
        dataset_name: a key of :data:`~trainlab.data.DATASETS` with files (not the
            embedded ``mnist-5k``).
        filename: one of the data set's files, e.g. ``"t10k-images-idx3-ubyte.gz"``.
        data_dir: a folder holding the file already (the CLI's ``--data-dir``). When
            given, only ``data_dir/filename`` is used; nothing is downloaded.
        cache_dir: cache root (see the module docstring); the file lives in
            ``cache_root/dataset_name/``.
        download: try the mirrors when the file is not in the cache.
        timeout: seconds a mirror may stay silent before the next one is tried.

    Every file returned matched its registered MD5. A cached file that does not match
    is downloaded again (and replaced) when ``download`` is true.

    Raises:
        DataError: one line naming the file, for a missing file, a checksum mismatch,
            or a download that failed on every mirror.
    """
    info = _checked_info(dataset_name, filename)
    expected = info.md5[filename]
    label = f"{dataset_name}/{filename}"

    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        path = folder / filename
        if not path.is_file():
            raise DataError(f"{filename} not found in data directory {folder}")
        found = md5_file(path)
        if found != expected:
            raise DataError(_mismatch(f"{filename} in data directory {folder}", expected, found))
        return path

    folder = default_cache_dir(cache_dir) / dataset_name
    path = folder / filename
    stale: str | None = None
    if path.is_file():
        found = md5_file(path)
        if found == expected:
            return path
        stale = found
    if not download:
        if stale is not None:
            raise DataError(_mismatch(f"{filename} in cache {folder}", expected, stale))
        raise DataError(
            f"{label} is not in the cache {folder} and download is off; "
            "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config"
        )
    if not info.mirrors:
        raise DataError(f"{label} has no download mirrors; download it yourself and pass --data-dir DIR "
                        "(train, evaluate) or set data.data_dir in the config")

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache directory {folder} for {label}: {exc.strerror or exc}") from None

    last_reason = ""
    mismatch: str | None = None
    for mirror in info.mirrors:
        url = mirror + filename
        try:
            temp, found = _download(url, folder, filename, timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # OSError covers HTTPError, URLError, timeouts, resets and a full disk;
            # HTTPException a connection cut mid-body; ValueError a malformed URL.
            last_reason = f"{url}: {_describe(exc, timeout)}"
            continue
        if found != expected:
            temp.unlink(missing_ok=True)
            mismatch = _mismatch(f"{label} from {url}", expected, found)
            last_reason = f"{url}: MD5 {found}, expected {expected}"
            continue
        try:
            os.replace(temp, path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise DataError(f"cannot write {path} for {label}: {exc.strerror or exc}") from None
        return path

    if mismatch is not None:
        raise DataError(f"{mismatch}; the download is corrupt or the mirror serves another file")
    raise DataError(
        f"could not download {label} from any mirror ({last_reason}); "
        "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config"
    )
