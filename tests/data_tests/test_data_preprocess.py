"""Preprocessors: formulas, fitted on train only, whitening properties, state round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainlab.data import (
    PREPROCESSORS,
    PCAWhiten,
    Standardize,
    ZCAWhiten,
    load_splits,
    make_preprocessor,
)
from trainlab.errors import CheckpointError, DataError


RAW_SPLIT = {"train": 1000, "val": 300, "test": 0, "seed": 1}


@pytest.fixture(scope="module")
def raw() -> tuple[torch.Tensor, torch.Tensor]:
    """Raw mnist-5k pixels (0..255) as float32: (train 1000, val 300)."""
    s = load_splits(preprocess="none", **RAW_SPLIT)
    assert s.val is not None
    return s.train.x, s.val.x


@pytest.fixture(scope="module")
def pca(raw: tuple[torch.Tensor, torch.Tensor]) -> PCAWhiten:
    return PCAWhiten(eps=1e-2).fit(raw[0])


@pytest.fixture(scope="module")
def zca(raw: tuple[torch.Tensor, torch.Tensor]) -> ZCAWhiten:
    return ZCAWhiten(eps=1e-2).fit(raw[0])


def _covariance(y: torch.Tensor) -> torch.Tensor:
    y = y.double()
    centered = y - y.mean(0)
    return centered.T @ centered / len(y)


def test_none_is_raw_float(raw: tuple[torch.Tensor, torch.Tensor]) -> None:
    train, _ = raw
    out = make_preprocessor("none").fit(train).transform(train.to(torch.uint8))
    assert out.dtype == torch.float32 and torch.equal(out, train)


def test_minmax_global(raw: tuple[torch.Tensor, torch.Tensor]) -> None:
    train, val = raw
    p = make_preprocessor("minmax").fit(train)
    assert p.state_dict() == {"num_features": 784, "min": 0.0, "max": 255.0}
    torch.testing.assert_close(p.transform(val), val / 255.0)


def test_minmax_per_feature_constant_pixels_map_to_zero(raw: tuple[torch.Tensor, torch.Tensor]) -> None:
    train, val = raw
    p = make_preprocessor("minmax-feature").fit(train)
    out = p.transform(train)
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0)
    constant = train.amax(0) == train.amin(0)
    assert constant.any()
    assert bool((p.transform(val)[:, constant] == 0).all())


def test_standardize_formula_and_constant_pixels(raw: tuple[torch.Tensor, torch.Tensor]) -> None:
    train, val = raw
    p = Standardize().fit(train)
    out = p.transform(train).double()
    varying = train.std(0) > 0
    torch.testing.assert_close(out[:, varying].mean(0), torch.zeros(int(varying.sum()), dtype=torch.float64), atol=1e-5, rtol=0)
    # Population std (divide by N): exactly 1 on train.
    torch.testing.assert_close(out[:, varying].std(0, correction=0), torch.ones(int(varying.sum()), dtype=torch.float64), atol=1e-4, rtol=0)
    # Pixels constant on train map to 0 on every split, even where val has ink.
    assert bool((p.transform(val)[:, ~varying] == 0).all())
    assert bool((out[:, ~varying] == 0).all())


def test_fitted_on_train_only() -> None:
    kwargs = {"train": 500, "val": 200, "test": 300, "seed": 2}
    raw = load_splits(preprocess="none", **kwargs)
    done = load_splits(preprocess="standardize", **kwargs)
    assert raw.val is not None and raw.test is not None and done.val is not None and done.test is not None
    reference = Standardize().fit(raw.train.x)
    torch.testing.assert_close(done.preprocessor.state_dict()["mean"], reference.state_dict()["mean"])
    torch.testing.assert_close(done.val.x, reference.transform(raw.val.x))
    torch.testing.assert_close(done.test.x, reference.transform(raw.test.x))
    # Refitting on val would have given a different result.
    refit = Standardize().fit(raw.val.x).transform(raw.val.x)
    assert not torch.allclose(done.val.x, refit, atol=1e-3)


def test_whitening_fitted_on_train_only(raw: tuple[torch.Tensor, torch.Tensor], zca: ZCAWhiten) -> None:
    done = load_splits(preprocess="zca-whiten", **RAW_SPLIT)
    assert done.val is not None
    # The same as the reference fitted on the raw training part (the `zca` fixture).
    torch.testing.assert_close(done.val.x, zca.transform(raw[1]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(done.train.x, zca.transform(raw[0]), atol=1e-4, rtol=1e-4)


def test_pca_whitened_covariance_is_diagonal(raw: tuple[torch.Tensor, torch.Tensor], pca: PCAWhiten) -> None:
    train, _ = raw
    p = pca
    cov = _covariance(p.transform(train))
    lam = p.eigenvalues_
    assert lam is not None
    expected = torch.diag(lam / (lam + 1e-2))
    torch.testing.assert_close(cov, expected, atol=2e-4, rtol=0)
    # Leading directions (variance >> eps) come out with unit variance.
    assert float(cov.diagonal()[:20].min()) > 0.9


def test_zca_whitened_covariance(raw: tuple[torch.Tensor, torch.Tensor], zca: ZCAWhiten) -> None:
    train, _ = raw
    p = zca
    out = p.transform(train)
    assert out.shape == train.shape
    u, lam = p.eigenvectors_, p.eigenvalues_
    assert u is not None and lam is not None
    expected = (u * (lam / (lam + 1e-2))) @ u.T
    torch.testing.assert_close(_covariance(out), expected, atol=2e-4, rtol=0)
    assert p.matrix_ is not None
    torch.testing.assert_close(p.matrix_, p.matrix_.T, atol=1e-12, rtol=0)  # W = U D U^T is symmetric


def test_exact_whitening_on_full_rank_data() -> None:
    gen = torch.Generator().manual_seed(0)
    mixing = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    x = torch.randn(4000, 6, generator=gen, dtype=torch.float64) @ mixing + 3.0
    for p in (PCAWhiten(eps=1e-12, scale=1.0), ZCAWhiten(eps=1e-12, scale=1.0)):
        out = p.fit(x).transform(x)
        assert out.dtype == torch.float64
        torch.testing.assert_close(_covariance(out), torch.eye(6, dtype=torch.float64), atol=1e-8, rtol=0)


def test_zca_moves_the_data_least(
    raw: tuple[torch.Tensor, torch.Tensor], pca: PCAWhiten, zca: ZCAWhiten
) -> None:
    train, _ = raw
    x = train.double()
    centered = x / 255.0 - x.mean(0) / 255.0
    zca_out = zca.transform(x)

    def distance(y: torch.Tensor) -> float:
        return float(((y - centered) ** 2).sum(1).mean())

    best = distance(zca_out)
    assert best < distance(pca.transform(x))  # PCA whitening = ZCA followed by the rotation U^T
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        q, _ = torch.linalg.qr(torch.randn(784, 784, generator=gen, dtype=torch.float64))
        assert best < distance(zca_out @ q)  # any other whitening of the same data


def test_pca_components(raw: tuple[torch.Tensor, torch.Tensor], pca: PCAWhiten) -> None:
    train, _ = raw
    s = load_splits(preprocess="pca-whiten", preprocess_options={"n_components": 30}, **RAW_SPLIT)
    assert s.input_shape == (30,) and s.train.x.shape == (1000, 30) and s.val is not None
    assert s.val.x.shape == (300, 30)
    # The leading components of the full PCA whitening.
    torch.testing.assert_close(s.train.x, pca.transform(train)[:, :30], atol=1e-4, rtol=1e-4)
    with pytest.raises(DataError, match=r"^pca-whiten: n_components=900 exceeds the 784 features of x$"):
        PCAWhiten(n_components=900).fit(train)


@pytest.mark.parametrize("name", list(PREPROCESSORS))
def test_state_round_trip_through_safetensors_and_json(
    name: str, raw: tuple[torch.Tensor, torch.Tensor], tmp_path: Path
) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    train, val = raw
    options = {"channels": 1} if name == "standardize-channel" else {}  # flat MNIST rows: one channel
    p = make_preprocessor(name, **options).fit(train[:300])
    state = p.state_dict()
    tensors = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    numbers = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    assert all(isinstance(v, (int, float)) for v in numbers.values())
    safetensors_torch.save_file(tensors, str(tmp_path / "pre.safetensors"))
    (tmp_path / "pre.json").write_text(json.dumps({"name": name, "options": p.options(), "state": numbers}))

    meta = json.loads((tmp_path / "pre.json").read_text())
    loaded = make_preprocessor(meta["name"], **meta["options"])
    loaded.load_state_dict({**meta["state"], **safetensors_torch.load_file(str(tmp_path / "pre.safetensors"))})
    torch.testing.assert_close(loaded.transform(val), p.transform(val))


def test_load_state_dict_rejects_wrong_keys() -> None:
    with pytest.raises(CheckpointError) as info:
        make_preprocessor("standardize").load_state_dict({"num_features": 3, "mean": torch.zeros(3)})
    assert str(info.value) == "standardize preprocessor state has keys ['mean', 'num_features']; expected ['mean', 'num_features', 'std']"


def test_factory_and_misuse(raw: tuple[torch.Tensor, torch.Tensor]) -> None:
    with pytest.raises(DataError) as info:
        make_preprocessor("whiten")
    assert str(info.value) == (
        "unknown preprocessing 'whiten'; allowed: none, minmax, minmax-feature, standardize, pca-whiten, zca-whiten, "
        "standardize-channel"
    )
    with pytest.raises(DataError) as info:
        make_preprocessor("zca-whiten", epsilon=0.1)
    assert str(info.value) == "unknown option epsilon for preprocessing 'zca-whiten'; allowed: eps, scale"
    with pytest.raises(DataError, match=r"^zca-whiten: eps must be a positive finite number, got eps=0$"):
        make_preprocessor("zca-whiten", eps=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        make_preprocessor("minmax").transform(raw[0])
    p = make_preprocessor("standardize").fit(raw[0])
    with pytest.raises(DataError) as info:
        p.transform(torch.zeros(2, 10))
    assert str(info.value) == (
        "standardize: x has 10 features per sample (shape (2, 10)); the preprocessor was fitted on 784"
    )
    assert make_preprocessor("pca-whiten", n_components=5).options() == {"eps": 1e-2, "scale": 255.0, "n_components": 5}
