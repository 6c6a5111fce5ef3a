"""fetch: data_dir, cache and downloads from a local HTTP server (no external network)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from trainlab.data import DATASETS, DatasetInfo, default_cache_dir, fetch
from trainlab.errors import DataError

GOOD = b"the real file, as published\n" * 100
BAD = b"something else entirely\n" * 100
NAME = "data.bin"

Server = tuple[Path, str, list[str]]
Register = Callable[..., DatasetInfo]


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _serve(root: Path, folder: str, data: bytes) -> None:
    (root / folder).mkdir(exist_ok=True)
    (root / folder / NAME).write_bytes(data)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _error(**kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        fetch("toy", NAME, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_download_success_then_cache_hit(
    http_root: Server, register_toy: Register, tmp_path: Path
) -> None:
    root, base, requests = http_root
    _serve(root, "good", GOOD)
    register_toy({NAME: GOOD}, mirrors=(f"{base}/good/",))
    cache = tmp_path / "cache"
    path = fetch("toy", NAME, cache_dir=cache)
    assert path == cache / "toy" / NAME
    assert path.read_bytes() == GOOD
    assert sorted(p.name for p in path.parent.iterdir()) == [NAME]  # no temp file left
    assert requests == [f"/good/{NAME}"]
    # Second call: served from the cache, without the network.
    assert fetch("toy", NAME, cache_dir=cache, download=False) == path
    assert fetch("toy", NAME, cache_dir=cache) == path
    assert len(requests) == 1


def test_corrupt_download_leaves_nothing(
    http_root: Server, register_toy: Register, tmp_path: Path
) -> None:
    root, base, _ = http_root
    _serve(root, "bad", BAD)
    register_toy({NAME: GOOD}, mirrors=(f"{base}/bad/",))
    cache = tmp_path / "cache"
    message = _error(cache_dir=cache)
    assert message == (
        f"toy/{NAME} from {base}/bad/{NAME}: MD5 checksum mismatch: expected {md5_bytes(GOOD)}, "
        f"found {md5_bytes(BAD)}; the download is corrupt or the mirror serves another file"
    )
    assert not (cache / "toy" / NAME).exists()
    assert list((cache / "toy").iterdir()) == []  # the temporary file is gone too


def test_404_then_second_mirror(http_root: Server, register_toy: Register, tmp_path: Path) -> None:
    root, base, requests = http_root
    _serve(root, "good", GOOD)
    register_toy({NAME: GOOD}, mirrors=(f"{base}/missing/", f"{base}/good/"))
    path = fetch("toy", NAME, cache_dir=tmp_path)
    assert path.read_bytes() == GOOD
    assert requests == [f"/missing/{NAME}", f"/good/{NAME}"]
    assert sorted(p.name for p in path.parent.iterdir()) == [NAME]


def test_corrupt_mirror_then_good_mirror(http_root: Server, register_toy: Register, tmp_path: Path) -> None:
    root, base, _ = http_root
    _serve(root, "bad", BAD)
    _serve(root, "good", GOOD)
    register_toy({NAME: GOOD}, mirrors=(f"{base}/bad/", f"{base}/good/"))
    assert fetch("toy", NAME, cache_dir=tmp_path).read_bytes() == GOOD


def test_all_mirrors_fail_404_last(http_root: Server, register_toy: Register, tmp_path: Path) -> None:
    _, base, _ = http_root
    refused = _closed_port_url()
    register_toy({NAME: GOOD}, mirrors=(refused, f"{base}/missing/"))
    message = _error(cache_dir=tmp_path)
    assert message == (
        f"could not download toy/{NAME} from any mirror ({base}/missing/{NAME}: HTTP 404 File not found); "
        "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config"
    )
    assert list((tmp_path / "toy").iterdir()) == []


def test_all_mirrors_fail_offline(register_toy: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    refused = _closed_port_url()
    register_toy({NAME: GOOD}, mirrors=(refused,))
    message = _error(cache_dir=tmp_path)
    assert message == (
        f"could not download toy/{NAME} from any mirror ({refused}{NAME}: Connection refused); "
        "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config"
    )
    assert not (tmp_path / "toy" / NAME).exists()


def test_stale_cache_is_replaced(http_root: Server, register_toy: Register, tmp_path: Path) -> None:
    root, base, _ = http_root
    _serve(root, "good", GOOD)
    register_toy({NAME: GOOD}, mirrors=(f"{base}/good/",))
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / NAME).write_bytes(BAD)
    assert _error(cache_dir=tmp_path, download=False) == (
        f"{NAME} in cache {tmp_path / 'toy'}: MD5 checksum mismatch: expected {md5_bytes(GOOD)}, "
        f"found {md5_bytes(BAD)}"
    )
    assert fetch("toy", NAME, cache_dir=tmp_path).read_bytes() == GOOD


def test_not_cached_and_download_off(register_toy: Register, tmp_path: Path) -> None:
    register_toy({NAME: GOOD}, mirrors=("http://127.0.0.1:9/",))
    assert _error(cache_dir=tmp_path, download=False) == (
        f"toy/{NAME} is not in the cache {tmp_path / 'toy'} and download is off; "
        "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config"
    )


def test_data_dir(register_toy: Register, tmp_path: Path) -> None:
    register_toy({NAME: GOOD}, mirrors=("http://127.0.0.1:9/",))
    folder = tmp_path / "mine"
    folder.mkdir()
    assert _error(data_dir=folder) == f"{NAME} not found in data directory {folder}"
    (folder / NAME).write_bytes(BAD)
    assert _error(data_dir=folder) == (
        f"{NAME} in data directory {folder}: MD5 checksum mismatch: expected {md5_bytes(GOOD)}, "
        f"found {md5_bytes(BAD)}"
    )
    (folder / NAME).write_bytes(GOOD)
    assert fetch("toy", NAME, data_dir=folder) == folder / NAME


def test_real_mnist_data_dir(mnist_dir: Path) -> None:
    path = fetch("mnist", "t10k-labels-idx1-ubyte.gz", data_dir=mnist_dir)
    assert path == mnist_dir / "t10k-labels-idx1-ubyte.gz"


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("TRAINLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "trainlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "trainlab"


def test_env_cache_used_by_fetch(
    http_root: Server, register_toy: Register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base, _ = http_root
    _serve(root, "good", GOOD)
    register_toy({NAME: GOOD}, mirrors=(f"{base}/good/",))
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "env-cache"))
    assert fetch("toy", NAME) == tmp_path / "env-cache" / "toy" / NAME


def test_bad_requests() -> None:
    with pytest.raises(DataError, match=r"^mnist-5k is embedded"):
        fetch("mnist-5k", "mnist_5k.csv.gz")
    with pytest.raises(DataError) as info:
        fetch("mnist", "train-images.gz")
    assert str(info.value) == (
        "mnist has no file 'train-images.gz'; its files are: train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
    )
    with pytest.raises(DataError, match=r"^unknown data set 'mnistt'; known data sets: "):
        fetch("mnistt", "x")


def test_registry_entries() -> None:
    assert {"mnist-5k", "mnist", "fashion-mnist", "kmnist"} <= set(DATASETS)
    for name in ("mnist", "fashion-mnist", "kmnist"):
        info = DATASETS[name]
        assert info.num_classes == 10 and len(info.classes) == 10
        assert info.image_shape == (1, 28, 28)
        assert len(info.md5) == 4 and all(len(v) == 32 for v in info.md5.values())
        assert all(m.endswith("/") for m in info.mirrors) and info.mirrors
    assert DATASETS["mnist"].mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert DATASETS["mnist"].md5["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    # A flipped 6 reads as a 9: no flips for digits or kana; clothes may be mirrored.
    assert "hflip" not in DATASETS["mnist"].label_preserving
    assert "hflip" not in DATASETS["kmnist"].label_preserving
    assert "hflip" in DATASETS["fashion-mnist"].label_preserving
    assert {"rotate", "shift", "scale"} <= DATASETS["mnist-5k"].label_preserving
