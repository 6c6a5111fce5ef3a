"""Elastic distortion (Simard et al. 2003) and the 90-degree rotation op (issue 18, note 003)."""

from __future__ import annotations

import pytest
import torch

from trainlab.augment import Augmenter, Elastic, Geometric, from_config
from trainlab.augment._elastic import displace, gaussian_smooth
from trainlab.config import resolve_config
from trainlab.errors import ConfigError
from trainlab.population import Population

DT = torch.float64


def images(n: int, seed: int = 0, size: int = 12, dtype: torch.dtype = DT) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, n, 1, size, size, generator=g) + 0.5).to(dtype)


def labels(n: int) -> torch.Tensor:
    return torch.arange(n) % 10


# ---- elastic: the pieces ----------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [[4.0], [1.5, 4.0]])
def test_gaussian_smoothing_equals_scipys_gaussian_filter_per_member(sigma: list[float]) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    P = len(sigma)
    field = torch.rand(P, 3, 20, 20, dtype=DT, generator=torch.Generator().manual_seed(1)) * 2 - 1
    got = gaussian_smooth(field, torch.tensor(sigma, dtype=DT))
    for p in range(P):
        for m in range(3):
            want = ndimage.gaussian_filter(field[p, m].numpy(), sigma[p], mode="constant", cval=0.0, truncate=4.0)
            torch.testing.assert_close(got[p, m], torch.from_numpy(want), atol=1e-12, rtol=1e-10)


def test_displace_moves_by_whole_pixels_exactly_and_interpolates_bilinearly() -> None:
    x = images(2, size=8)[0]  # (2, 1, 8, 8)
    zeros = torch.zeros(2, 8, 8, dtype=DT)
    torch.testing.assert_close(displace(x, zeros, zeros), x, atol=1e-12, rtol=0)
    # dx = 2: the output at column j is the input at column j + 2, zeros past the edge
    out = displace(x, zeros + 2.0, zeros)
    torch.testing.assert_close(out[..., :6], x[..., 2:], atol=1e-12, rtol=0)
    assert torch.all(out[..., 6:] == 0)
    # dy = -1: the output at row i is the input at row i - 1
    out = displace(x, zeros, zeros - 1.0)
    torch.testing.assert_close(out[..., 1:, :], x[..., :-1, :], atol=1e-12, rtol=0)
    # half a pixel: the mean of the two neighbours
    out = displace(x, zeros + 0.5, zeros)
    torch.testing.assert_close(out[..., :7], 0.5 * (x[..., :7] + x[..., 1:]), atol=1e-12, rtol=0)


def test_elastic_is_simards_recipe_on_the_members_own_draws() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    el = Elastic([34.0, 8.0], sigma=[4.0, 3.0])
    aug = Augmenter([el], population=Population(2, seed=3), dataset="mnist-5k")
    x = images(3, size=28)
    xa, y = aug(x, labels(3))
    assert xa.shape == (2, 3, 1, 28, 28) and torch.equal(y, labels(3))
    # the raw U(-1, 1) fields, from a fresh transform with the same streams
    twin = Elastic([34.0, 8.0], sigma=[4.0, 3.0])
    twin.setup(Population(2, seed=3))
    u = 2.0 * twin.draw((3, 2, 28, 28), device=torch.device("cpu"), dtype=DT) - 1.0
    d = el.last_displacement
    for p, (alpha, sigma) in enumerate(((34.0, 4.0), (8.0, 3.0))):
        for n in range(3):
            for c in range(2):
                want = alpha * ndimage.gaussian_filter(u[p, n, c].numpy(), sigma, mode="constant", truncate=4.0)
                torch.testing.assert_close(d[p, n, c], torch.from_numpy(want), atol=1e-10, rtol=1e-9)
            torch.testing.assert_close(xa[p, n], displace(x[0, n:n + 1], d[p, n, 0:1], d[p, n, 1:2])[0],
                                       atol=1e-12, rtol=0)
    # Simard's setting moves pixels by about a pixel (not zero, not the whole image)
    mean = float(d[0].abs().mean())
    assert 0.3 < mean < 3.0, mean


def test_elastic_population_member_equals_member_alone_and_alpha_zero_is_identity() -> None:
    x = images(4, size=16)
    both = Augmenter([Elastic([0.0, 20.0], sigma=[4.0, 2.0])], population=Population(2, seeds=[5, 6]))
    alone = Augmenter([Elastic(20.0, sigma=2.0)], population=Population(1, seeds=[6]))
    xb, _ = both(x, labels(4))
    xa, _ = alone(x, labels(4))
    torch.testing.assert_close(xb[1], xa[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(xb[0], x[0], atol=1e-12, rtol=0)  # alpha 0: the image itself
    assert not torch.allclose(xb[1], x[0])


def test_elastic_probability_gates_examples() -> None:
    el = Elastic(30.0, p=0.5)
    aug = Augmenter([el], population=Population(1, seed=2))
    x = images(64, size=12)
    xa, _ = aug(x, labels(64))
    same = (xa[0] - x[0]).abs().flatten(1).max(dim=1).values < 1e-12
    assert 16 < int(same.sum()) < 48


def test_elastic_is_label_preserving_for_handwriting_only_and_comes_from_config() -> None:
    for name in ("mnist-5k", "mnist", "kmnist"):
        Augmenter([Elastic(34.0)], population=Population(1), dataset=name)
    with pytest.raises(ConfigError, match=r"^augment: elastic is not label-preserving for fashion-mnist; its "
                                          r"label-preserving transforms are: hflip, rotate, scale, shift\. Leave "
                                          r"elastic out, or set force=True"):
        Augmenter([Elastic(34.0)], population=Population(1), dataset="fashion-mnist")
    cfg = resolve_config({"augment": {"elastic": [34.0, 10.0], "elastic_sigma": 4.0, "elastic_p": 0.5},
                          "population": {"size": 2}})
    aug = from_config(cfg["augment"], Population(2), dataset="mnist-5k", image_shape=(1, 28, 28))
    (el,) = aug.transforms
    assert isinstance(el, Elastic) and el.settings() == {"alpha": [34.0, 10.0], "sigma": 4.0, "p": 0.5}
    with pytest.raises(ConfigError, match="elastic_sigma"):
        resolve_config({"augment": {"elastic": 34.0, "elastic_sigma": 0.0}})
    with pytest.raises(ConfigError, match="Elastic sigma must be > 0"):
        Elastic(34.0, sigma=0.0)


def test_elastic_on_flat_float32_batches_as_the_trainer_gives_them() -> None:
    aug = Augmenter([Elastic(34.0)], population=Population(2), dataset="mnist-5k")
    x = images(5, size=28, dtype=torch.float32).reshape(1, 5, 784)
    xa, _ = aug(x, labels(5))
    assert xa.shape == (2, 5, 784) and xa.dtype == torch.float32


# ---- 90-degree rotation -------------------------------------------------------------------


def test_rot90_is_refused_for_digits_and_clothes_with_one_clear_line() -> None:
    with pytest.raises(ConfigError) as e:
        Augmenter([Geometric(rot90=True)], population=Population(1), dataset="mnist-5k")
    assert str(e.value) == (
        "augment: rot90 is not label-preserving for mnist-5k (a 6 turned by 180 degrees reads as a 9, and a digit "
        "turned by 90 as none); its label-preserving transforms are: elastic, rotate, scale, shift. Leave rot90 "
        "out, or set force=True (config: augment.force = true) to use it anyway")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="augment: rot90 is not label-preserving for fashion-mnist"):
        Augmenter([Geometric(rot90=True)], population=Population(1), dataset="fashion-mnist")
    cfg = resolve_config({"augment": {"rot90": True}})
    with pytest.raises(ConfigError, match="augment: rot90 is not label-preserving for mnist"):
        from_config(cfg["augment"], Population(1), dataset="mnist")
    with pytest.warns(UserWarning, match="rot90 is not label-preserving .* used anyway because force"):
        Augmenter([Geometric(rot90=True)], population=Population(1), dataset="mnist-5k", force=True)


def test_rot90_turns_each_image_by_its_drawn_quarter_turns_exactly() -> None:
    geo = Geometric(rot90=True)
    aug = Augmenter([geo], population=Population(2, seed=4))  # no data set: your labels, your call
    x = images(200, size=10)
    xa, _ = aug(x, labels(200))
    k = geo.last_params["rot90"]
    assert k.shape == (2, 200) and set(k.unique().tolist()) == {0, 1, 2, 3}
    counts = torch.bincount(k.flatten(), minlength=4)
    assert int(counts.min()) > 60  # ~100 each of 400
    for p in range(2):
        for n in range(200):
            want = torch.rot90(x[0, n], int(k[p, n]), dims=(-2, -1))
            torch.testing.assert_close(xa[p, n], want, atol=1e-6, rtol=0)


def test_rot90_leaves_the_other_draws_alone() -> None:
    x = images(16, size=10)
    a, b = Geometric(rotate=10.0, shift=2.0), Geometric(rotate=10.0, shift=2.0, rot90=True)
    Augmenter([a], population=Population(1, seed=8))(x, labels(16))
    Augmenter([b], population=Population(1, seed=8))(x, labels(16))
    for key in ("angle", "shift_x", "shift_y", "zoom"):
        assert torch.equal(a.last_params[key], b.last_params[key])
    with pytest.raises(ConfigError, match="rot90 must be true or false"):
        Geometric(rot90=1)
