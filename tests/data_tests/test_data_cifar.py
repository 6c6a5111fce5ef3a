"""CIFAR-10's binary distribution: the record layout, extracted files, the archive (safe, in memory),
the checksum, download into the cache, offline errors, per-channel normalization and hflip."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trainlab.data import (DATASETS, ChannelStandardize, load_dataset, load_splits, make_preprocessor,
                           read_cifar_archive, read_cifar_batch, read_cifar_folder)
from trainlab.data.testing import cifar10_records, write_cifar10
from trainlab.errors import ConfigError, DataError

ARCHIVE = "cifar-10-binary.tar.gz"
BATCHES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _good_members(n: int = 3) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [_member(f"cifar-10-batches-bin/{b}", cifar10_records(n, seed=i)[0]) for i, b in enumerate(BATCHES)]


# ---- the record layout ------------------------------------------------------------------------------


def test_record_layout_label_then_red_green_blue_planes() -> None:
    """One hand-made record: label 7, then R, G, B planes of 32x32 in row-major order."""
    r = np.zeros((32, 32), np.uint8)
    r[1, 2] = 200  # row 1, column 2 of the red plane
    g = np.full((32, 32), 20, np.uint8)
    b = np.full((32, 32), 30, np.uint8)
    record = bytes([7]) + r.tobytes() + g.tobytes() + b.tobytes()
    images, labels = read_cifar_batch(record + record, "two.bin")
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert labels.tolist() == [7, 7] and labels.dtype == np.int64
    assert images[0, 0, 1, 2] == 200 and images[0, 0].sum() == 200
    assert (images[0, 1] == 20).all() and (images[0, 2] == 30).all()


def test_batch_matches_the_writer() -> None:
    data, images, labels = cifar10_records(25, seed=3)
    got_images, got_labels = read_cifar_batch(data, "x.bin")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize("cut, text", [
    (lambda d: d[:-1], "x.bin: 6145 bytes is not a whole number of 3073-byte records (1 label byte + 3072 pixel "
                       "bytes); the file is truncated or corrupt"),
    (lambda d: d + b"\0" * 10, "x.bin: 6156 bytes is not a whole number of 3073-byte records"),
    (lambda d: b"", "x.bin: empty file; a CIFAR-10 batch is a run of 3073-byte records"),
    (lambda d: d[:3073] + bytes([200]) + d[3074:], "x.bin: label 200 in record 1 is outside [0, 10) (1 bad records); "
                                                   "the file is corrupt or not a CIFAR-10 batch"),
])
def test_truncated_or_corrupt_batch_is_one_line(cut, text) -> None:
    data = cifar10_records(2, seed=0)[0]
    assert text in _error(read_cifar_batch, cut(data), "x.bin")


# ---- extracted files in data_dir ----------------------------------------------------------------------


@pytest.mark.parametrize("subfolder", [False, True])
def test_extracted_files_in_data_dir(tmp_path: Path, subfolder: bool) -> None:
    write_cifar10(tmp_path, train_per_batch=4, test=6, seed=0, subfolder=subfolder)
    train = load_dataset("cifar10", part="train", data_dir=tmp_path)
    test = load_dataset("cifar10", part="test", data_dir=tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.classes[0] == "airplane" and train.num_classes == 10
    # batches 1..5 in order
    expected = np.concatenate([cifar10_records(4, seed=i)[1] for i in range(5)])
    np.testing.assert_array_equal(train.images.numpy(), expected)


def test_missing_batch_file_and_empty_dir(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_per_batch=2, test=2)
    (tmp_path / "data_batch_3.bin").unlink()
    assert _error(load_dataset, "cifar10", part="train", data_dir=tmp_path) == (
        f"data_batch_3.bin not found in data directory {tmp_path} (CIFAR-10 train needs data_batch_1.bin, "
        "data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin)")
    assert load_dataset("cifar10", part="test", data_dir=tmp_path).images.shape[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _error(load_dataset, "cifar10", data_dir=empty) == (
        f"neither {ARCHIVE} nor the extracted batch files (data_batch_1..5.bin, test_batch.bin) are in data "
        f"directory {empty}")


def test_truncated_file_in_data_dir_names_it(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_per_batch=2, test=2)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    assert _error(load_dataset, "cifar10", part="test", data_dir=tmp_path).startswith(
        f"{path}: 6046 bytes is not a whole number of 3073-byte records")


# ---- the archive ----------------------------------------------------------------------------------------


def test_archive_read_in_memory_equals_the_files(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "a", train_per_batch=3, test=5, archive=True)
    write_cifar10(tmp_path / "f", train_per_batch=3, test=5)
    for part in ("train", "test"):
        a = read_cifar_archive(tmp_path / "a" / ARCHIVE, part)
        f = read_cifar_folder(tmp_path / "f", part)
        np.testing.assert_array_equal(a[0], f[0])
        np.testing.assert_array_equal(a[1], f[1])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [ARCHIVE]  # nothing extracted


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize("members, text", [
    (lambda: [_link("cifar-10-batches-bin/test_batch.bin", "/etc/passwd"), *_good_members()],
     "member 'cifar-10-batches-bin/test_batch.bin' is not a regular file (a link or device); refusing the archive"),
    (lambda: [_member("../evil.txt", b"x"), *_good_members()],
     "unsafe archive member '../evil.txt' (absolute path or '..'); refusing the archive"),
    (lambda: [_member("/abs/evil.txt", b"x"), *_good_members()],
     "unsafe archive member '/abs/evil.txt'"),
    (lambda: [*_good_members(), _good_members()[0]],
     "member 'cifar-10-batches-bin/data_batch_1.bin' appears twice; refusing the archive"),
    (lambda: _good_members()[1:],
     "the archive has no cifar-10-batches-bin/data_batch_1.bin; it is not the CIFAR-10 binary distribution"),
    (lambda: [_member("cifar-10-batches-bin/data_batch_1.bin", b"\1" * 100), *_good_members()[1:]],
     "data_batch_1.bin: 100 bytes is not a whole number of 3073-byte records"),
])
def test_unsafe_or_incomplete_archive_is_refused(tmp_path: Path, members, text) -> None:
    path = tmp_path / f"{hashlib.md5(text.encode()).hexdigest()}.tar.gz"
    path.write_bytes(_tar_gz(members()))
    assert text in _error(read_cifar_archive, path, "test")


def test_truncated_archive_is_one_line(tmp_path: Path) -> None:
    data = _tar_gz(_good_members())
    for cut, name in ((len(data) // 2, "half.tar.gz"), (10, "head.tar.gz")):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        msg = _error(read_cifar_archive, path, "train")
        assert msg.startswith(f"{name}: not a readable tar.gz archive (") and "truncated or corrupt" in msg
    path = tmp_path / "garbage.tar.gz"
    path.write_bytes(gzip.compress(b"not a tar at all" * 100))
    assert "not a readable tar.gz archive" in _error(read_cifar_archive, path, "train")


def test_archive_in_data_dir_is_checked_against_the_published_md5(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_per_batch=2, test=2, archive=True)
    found = hashlib.md5((tmp_path / ARCHIVE).read_bytes(), usedforsecurity=False).hexdigest()
    assert _error(load_dataset, "cifar10", data_dir=tmp_path) == (
        f"{ARCHIVE} in data directory {tmp_path}: MD5 checksum mismatch: expected "
        f"c32a1d4ab5d03f1284b67883e8d87530, found {found}")
    assert DATASETS["cifar10"].mirrors == ("https://www.cs.toronto.edu/~kriz/",)


# ---- download into the cache, offline ---------------------------------------------------------------------


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _fixture_registry(monkeypatch: pytest.MonkeyPatch, archive: bytes, mirrors: tuple[str, ...]) -> None:
    md5 = hashlib.md5(archive, usedforsecurity=False).hexdigest()
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(DATASETS["cifar10"], mirrors=mirrors,
                                                                 md5={ARCHIVE: md5}))


def test_download_into_the_cache_then_offline(http_root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, base, requests = http_root
    write_cifar10(root, train_per_batch=6, test=10, archive=True)
    archive = (root / ARCHIVE).read_bytes()
    _fixture_registry(monkeypatch, archive, (f"{base}/",))
    cache = tmp_path / "cache"
    s = load_splits("cifar10", val=10, test=None, cache_dir=cache, flatten=False)
    assert (cache / "cifar10" / ARCHIVE).read_bytes() == archive
    assert requests == [f"/{ARCHIVE}"]  # one download for both parts
    assert s.train.x.shape == (20, 3, 32, 32) and s.test.x.shape == (10, 3, 32, 32)
    again = load_splits("cifar10", val=10, test=None, cache_dir=cache, flatten=False, download=False)
    torch.testing.assert_close(again.train.x, s.train.x)
    assert len(requests) == 1


def test_offline_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    refused = _closed_port_url()
    _fixture_registry(monkeypatch, b"whatever", (refused,))
    msg = _error(load_dataset, "cifar10", cache_dir=tmp_path)
    assert msg == (f"could not download cifar10/{ARCHIVE} from any mirror ({refused}{ARCHIVE}: Connection refused); "
                   "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config")
    assert _error(load_dataset, "cifar10", cache_dir=tmp_path, download=False) == (
        f"cifar10/{ARCHIVE} is not in the cache {tmp_path / 'cifar10'} and download is off; "
        "download it yourself and pass --data-dir DIR (train, evaluate) or set data.data_dir in the config")


# ---- splits, per-channel normalization, flips -------------------------------------------------------------


def test_splits_images_and_flat_rows(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_per_batch=10, test=20)
    img = load_splits("cifar10", val=10, test=None, data_dir=tmp_path, flatten=False, preprocess="standardize-channel")
    flat = load_splits("cifar10", val=10, test=None, data_dir=tmp_path, flatten=True, preprocess="standardize-channel")
    assert img.input_shape == (3, 32, 32) and flat.input_shape == (3072,)
    assert img.train.x.shape == (40, 3, 32, 32) and img.val.x.shape == (10, 3, 32, 32)
    torch.testing.assert_close(flat.train.x, img.train.x.reshape(40, -1))
    torch.testing.assert_close(flat.test.x, img.test.x.reshape(20, -1))
    x = img.train.x.double()
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-6,
                               rtol=0)
    # Per-pixel preprocessing still works on colour images, flattened or not.
    a = load_splits("cifar10", val=10, data_dir=tmp_path, test=None, flatten=False, preprocess="standardize")
    b = load_splits("cifar10", val=10, data_dir=tmp_path, test=None, flatten=True, preprocess="standardize")
    torch.testing.assert_close(a.train.x.reshape(40, -1), b.train.x)


def test_channel_standardize_matches_a_direct_computation() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 5, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 50.0, 200.0]).view(3, 1, 1)
    p = ChannelStandardize().fit(x)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(p.mean_, mean)
    torch.testing.assert_close(p.std_, std)
    y = torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(p.transform(y), (y - mean.view(3, 1, 1)) / std.view(3, 1, 1))
    # flat channel-major rows with channels=3 give the same numbers
    q = make_preprocessor("standardize-channel", channels=3).fit(x.reshape(7, -1))
    torch.testing.assert_close(q.transform(y.reshape(2, -1)), p.transform(y).reshape(2, -1))
    # saved and restored
    r = make_preprocessor("standardize-channel").load_state_dict(p.state_dict())
    torch.testing.assert_close(r.transform(y), p.transform(y))
    # a constant channel maps to 0
    x[:, 1] = 4.0
    assert ChannelStandardize().fit(x).transform(x)[:, 1].abs().max() == 0
    assert _error(ChannelStandardize().fit, x.reshape(7, -1)) == (
        "standardize-channel: needs images (N, C, H, W), or channels=C for flat rows; got x of shape (7, 60)")


def test_hflip_allowed_for_cifar_refused_for_digits() -> None:
    from trainlab.augment import Augmenter, Geometric
    from trainlab.population import Population

    aug = Augmenter([Geometric(hflip=True, shift=3.0)], population=Population(2, seed=0), dataset="cifar10")
    x = torch.rand(1, 4, 3, 32, 32)
    out, y = aug(x, torch.tensor([0, 1, 2, 3]))
    assert out.shape == (2, 4, 3, 32, 32)
    flat, _ = aug(x.reshape(1, 4, -1), torch.tensor([0, 1, 2, 3]))  # flatten=True data are viewed as images
    assert flat.shape == (2, 4, 3072)
    for digits in ("mnist", "mnist-5k", "kmnist"):
        with pytest.raises(ConfigError, match=f"hflip is not label-preserving for {digits}"):
            Augmenter([Geometric(hflip=True)], population=Population(1), dataset=digits)
