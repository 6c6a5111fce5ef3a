"""Augmentation transforms: exact targets of Mixup/CutMix, Cutout's square, geometry, label-preserving
rules, the Beta sampler, batches of any size, per-member streams and reproducibility."""

from __future__ import annotations

import warnings

import pytest
import torch

from trainlab.augment import (
    Augmenter,
    CutMix,
    Cutout,
    Geometric,
    InputNoise,
    Mixup,
    from_config,
    sample_beta,
)
from trainlab.errors import CheckpointError, ConfigError, DataError
from trainlab.population import Population

C = 10


def images(n: int, seed: int = 0, size: int = 12) -> torch.Tensor:
    """``(1, n, 1, size, size)`` distinct, strictly positive pixels (so a zero can only come from cutout)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, n, 1, size, size, generator=g) + 0.5


def labels(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, C, (n,), generator=torch.Generator().manual_seed(seed))


def onehot(y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(y, C).float()


# ---- Mixup ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 32])
def test_mixup_targets_weigh_labels_by_the_mixing_coefficient(n: int) -> None:
    P = 3
    mix = Mixup([0.2, 1.0, 4.0])
    aug = Augmenter([mix], population=Population(P, seed=4), num_classes=C)
    x, y = images(n), labels(n)
    xa, t = aug(x, y)
    lam, perm = mix.last_lam, mix.last_perm
    assert xa.shape == (P, n, 1, 12, 12) and t.shape == (P, n, C) and t.dtype == x.dtype
    for p in range(P):
        lp = float(lam[p])
        expect_x = lp * x[0] + (1 - lp) * x[0][perm[p]]
        torch.testing.assert_close(xa[p], expect_x, atol=1e-6, rtol=0)
        expect_t = lp * onehot(y) + (1 - lp) * onehot(y[perm[p]])
        torch.testing.assert_close(t[p], expect_t, atol=1e-6, rtol=0)
        # the label weight of each example's own class is lambda (plus the partner's share if the same class)
        own = t[p, torch.arange(n), y]
        same = (y == y[perm[p]]).float()
        torch.testing.assert_close(own, lp + (1 - lp) * same, atol=1e-6, rtol=0)
    torch.testing.assert_close(t.sum(-1), torch.ones(P, n))


def test_mixup_batch_of_one_and_alpha_zero_are_the_identity() -> None:
    aug = Augmenter([Mixup([0.0, 0.5])], population=Population(2), num_classes=C)
    x, y = images(1), labels(1)
    xa, t = aug(x, y)
    assert torch.equal(xa[0], x[0]) and torch.equal(xa[1], x[0])  # bit for bit
    assert torch.equal(t, onehot(y).expand(2, 1, C))
    xa, t = aug(images(9), labels(9))
    assert float(aug.transforms[0].last_lam[0]) == 1.0  # alpha = 0: member 0 is not mixed
    assert torch.equal(xa[0], images(9)[0]) and torch.equal(t[0], onehot(labels(9)))


# ---- CutMix ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 16])
def test_cutmix_pastes_a_box_and_weighs_labels_by_its_area(n: int) -> None:
    P, H = 4, 12
    cm = CutMix([0.5, 1.0, 2.0, 1.0])
    aug = Augmenter([cm], population=Population(P, seed=2), num_classes=C)
    x, y = images(n, size=H), labels(n)
    xa, t = aug(x, y)
    for p in range(P):
        top, left, bottom, right = cm.last_boxes[p].tolist()
        inside = torch.zeros(H, H, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        partner = x[0][cm.last_perm[p]]
        assert torch.equal(xa[p][..., inside], partner[..., inside])  # pasted exactly the box
        assert torch.equal(xa[p][..., ~inside], x[0][..., ~inside])  # and nothing else
        area = inside.sum().item() / (H * H)
        assert abs(float(cm.last_lam[p]) - (1 - area)) < 1e-12
        expect = (1 - area) * onehot(y) + area * onehot(y[cm.last_perm[p]])
        torch.testing.assert_close(t[p], expect, atol=1e-6, rtol=0)


def test_cutmix_box_area_follows_lambda() -> None:
    """Over many draws the pasted area averages 1 - E[lambda] = 1/2 for Beta(a, a), minus border clipping."""
    cm = CutMix(1.0)
    aug = Augmenter([cm], population=Population(1, seed=0), num_classes=C)
    areas = []
    for _ in range(400):
        aug(images(2, size=32), labels(2))
        areas.append(1 - float(cm.last_lam[0]))
    mean = sum(areas) / len(areas)
    assert 0.2 < mean < 0.5  # box sides floor(H sqrt(1 - lam)), centred anywhere: clipped boxes are smaller
    assert min(areas) >= 0.0 and max(areas) <= 1.0


# ---- Cutout ---------------------------------------------------------------------------------------


def test_cutout_zeroes_exactly_the_chosen_square() -> None:
    P, n, H = 3, 20, 12
    co = Cutout([4, 5, 0])
    aug = Augmenter([co], population=Population(P, seed=1))
    x, y = images(n, size=H), labels(n)
    xa, t = aug(x, y)
    assert t is y  # labels untouched
    boxes = co.last_boxes
    assert boxes.shape == (P, n, 4)
    for p in range(P):
        for i in range(n):
            top, left, bottom, right = boxes[p, i].tolist()
            inside = torch.zeros(H, H, dtype=torch.bool)
            inside[top:bottom, left:right] = True
            assert torch.all(xa[p, i][..., inside] == 0)
            assert torch.equal(xa[p, i][..., ~inside], x[0, i][..., ~inside])
            side = [4, 5, 0][p]
            assert bottom - top <= side and right - left <= side
            if 2 <= top and bottom <= H - 2 and 2 <= left and right <= H - 2:
                assert (bottom - top, right - left) == (side, side)  # away from the borders: the whole square
    assert float(xa[2].eq(0).sum()) == 0  # size 0: off


# ---- geometric ------------------------------------------------------------------------------------


def test_geometric_without_strength_is_the_identity() -> None:
    aug = Augmenter([Geometric()], population=Population(2))
    x = images(5, size=28)
    xa, _ = aug(x, labels(5))
    torch.testing.assert_close(xa, x.expand(2, *x.shape[1:]), atol=1e-5, rtol=0)


def test_geometric_hflip_mirrors_half_the_images() -> None:
    geo = Geometric(hflip=True)
    aug = Augmenter([geo], population=Population(1, seed=3))
    x = images(64, size=10)
    xa, _ = aug(x, labels(64))
    flip = geo.last_params["flip"][0]
    assert 16 < int(flip.sum()) < 48
    torch.testing.assert_close(xa[0][flip], x[0][flip].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(xa[0][~flip], x[0][~flip], atol=1e-5, rtol=0)


def test_geometric_shift_moves_the_centre_of_mass_by_the_drawn_shift() -> None:
    geo = Geometric(shift=3.0)
    aug = Augmenter([geo], population=Population(1, seed=5))
    x = torch.zeros(1, 16, 1, 20, 20)
    x[..., 8:12, 7:11] = 1.0  # a blob well inside the image: nothing leaves it
    xa, _ = aug(x, labels(16))
    rows = torch.arange(20.0).view(20, 1)
    cols = torch.arange(20.0).view(1, 20)

    def centre(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = img.sum(dim=(-1, -2))
        return (img * cols).sum(dim=(-1, -2)) / m, (img * rows).sum(dim=(-1, -2)) / m

    cx0, cy0 = centre(x[0, :, 0])
    cx1, cy1 = centre(xa[0, :, 0])
    torch.testing.assert_close(cx1 - cx0, geo.last_params["shift_x"][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(cy1 - cy0, geo.last_params["shift_y"][0], atol=1e-4, rtol=0)
    assert float(geo.last_params["shift_x"].abs().max()) <= 3.0


def test_geometric_rotation_and_zoom_keep_digits_recognisable() -> None:
    from trainlab.data import load_splits

    s = load_splits("mnist-5k", train=100, val=0, test=0, flatten=False)
    geo = Geometric(rotate=15, scale=0.1)
    aug = Augmenter([geo], population=Population(1, seed=0), dataset="mnist-5k")
    xa, _ = aug(s.train.x.unsqueeze(0), s.train.y)
    assert float(geo.last_params["angle"].abs().max()) <= 15.0
    z = geo.last_params["zoom"]
    assert float(z.min()) >= 0.9 and float(z.max()) <= 1.1
    # the ink moves, but stays: total intensity changes little, and images differ from the originals
    ratio = xa[0].sum(dim=(1, 2, 3)) / s.train.x.sum(dim=(1, 2, 3))
    assert float((ratio - z[0] ** 2).abs().max()) < 0.1  # a zoom z scales the inked area by z^2
    assert float((xa[0] - s.train.x).abs().mean()) > 0.01


# ---- label-preserving rules -----------------------------------------------------------------------


def test_forbidden_transforms_are_a_clear_error() -> None:
    pop = Population(1)
    with pytest.raises(ConfigError) as e:
        Augmenter([Geometric(hflip=True)], population=pop, dataset="mnist-5k")
    assert str(e.value) == (
        "augment: hflip is not label-preserving for mnist-5k (a mirrored digit can read as another digit, or as "
        "none); its label-preserving transforms are: elastic, rotate, scale, shift. Leave hflip out, or set "
        "force=True "
        "(config: augment.force = true) to use it anyway")
    with pytest.raises(ConfigError) as e:
        Augmenter([Geometric(rotate=[10, 90])], population=Population(2), dataset="mnist")
    assert str(e.value) == (
        "augment: rotate=90 degrees is beyond what mnist declares label-preserving: small rotation, |angle| <= 15 "
        "degrees (a 6 rotated far enough reads as a 9); use rotate <= 15, or set force=True (config: "
        "augment.force = true) to use it anyway")
    with pytest.raises(ConfigError, match=r"augment: shift=5 pixels is beyond what kmnist declares"):
        Augmenter([Geometric(shift=5)], population=pop, dataset="kmnist")
    with pytest.raises(ConfigError, match=r"augment: scale=0.3 is beyond"):
        Augmenter([Geometric(scale=0.3)], population=pop, dataset="fashion-mnist")
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        Augmenter([Geometric(rotate=5)], population=pop, dataset="cifar")


def test_allowed_and_forced_transforms() -> None:
    pop = Population(1)
    Augmenter([Geometric(rotate=15, shift=3, scale=0.1)], population=pop, dataset="mnist-5k")
    Augmenter([Geometric(hflip=True, rotate=10)], population=pop, dataset="fashion-mnist")
    Augmenter([Geometric(hflip=True, rotate=90)], population=pop)  # no data set: your labels, your call
    with pytest.warns(UserWarning, match="hflip is not label-preserving for mnist-5k .* used anyway because force"):
        Augmenter([Geometric(hflip=True)], population=pop, dataset="mnist-5k", force=True)


# ---- the Beta sampler -----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.2, 1.0, 3.0])
def test_beta_sampler_matches_scipy(alpha: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    mix = Mixup(alpha)
    mix.setup(Population(1, seed=0))
    draws = torch.cat([sample_beta(mix, torch.tensor([alpha], dtype=torch.float64), torch.device("cpu"))
                       for _ in range(3000)]).numpy()
    assert ((draws >= 0) & (draws <= 1)).all()
    assert stats.kstest(draws, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


# ---- streams: per member, per step, seeded, resumable --------------------------------------------


def pipeline() -> list:
    return [Geometric(rotate=10, shift=2, scale=0.1), CutMix(1.0), Mixup(0.4), Cutout(4), InputNoise(0.1)]


def test_member_i_of_a_population_draws_what_it_would_draw_alone() -> None:
    x, y = images(6, size=16), labels(6)
    pop = Augmenter(pipeline(), population=Population(3, seed=7), num_classes=C, dataset="mnist-5k")
    first, t_first = pop(x, y)
    second, _ = pop(x, y)
    for i in range(3):
        one = Augmenter(pipeline(), population=Population(1, seed=7 + i), num_classes=C, dataset="mnist-5k")
        a, ta = one(x, y)
        b, _ = one(x, y)
        assert torch.equal(a[0], first[i]) and torch.equal(ta[0], t_first[i]) and torch.equal(b[0], second[i])
    assert not torch.equal(first[0], first[1])  # members differ
    assert not torch.equal(first, second)  # steps differ


def test_a_transform_stream_does_not_depend_on_the_others() -> None:
    x, y = images(6, size=16), labels(6)
    alone = Augmenter([Cutout(4)], population=Population(2, seed=1))
    mixed = Augmenter([Mixup(0.3), Cutout(4)], population=Population(2, seed=1), num_classes=C)
    alone(x, y), mixed(x, y)
    assert torch.equal(alone.transforms[0].last_boxes, mixed.transforms[1].last_boxes)


def test_state_dict_resumes_the_very_next_draws() -> None:
    x, y = images(5, size=16), labels(5)
    a = Augmenter(pipeline(), population=Population(2, seed=0), num_classes=C)
    a(x, y)
    state = {k: v.clone() for k, v in a.state_dict().items()}
    assert all(v.dtype == torch.uint8 for v in state.values())
    expect = a(x, y)
    b = Augmenter(pipeline(), population=Population(2, seed=0), num_classes=C)
    b.load_state_dict(state)
    got = b(x, y)
    assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
    with pytest.raises(CheckpointError, match="transforms this run does not use: cutmix.cpu.0"):
        Augmenter([Mixup(0.2)], population=Population(2), num_classes=C).load_state_dict(state)


# ---- shapes, errors, config -----------------------------------------------------------------------


def test_flat_inputs_are_viewed_as_the_data_sets_images() -> None:
    aug = Augmenter([Geometric(shift=2), Cutout(5)], population=Population(2), dataset="mnist-5k")
    x = torch.rand(1, 4, 784) + 0.5
    xa, _ = aug(x, labels(4))
    assert xa.shape == (2, 4, 784)
    assert bool((xa == 0).any())
    with pytest.raises(ConfigError, match="Geometric, Cutout need image inputs .*PCA/whitened"):
        aug(torch.rand(1, 4, 50), labels(4))
    noise_only = Augmenter([InputNoise([0.0, 1.0])], population=Population(2))
    xn, _ = noise_only(torch.zeros(1, 4, 50), labels(4))
    assert torch.equal(xn[0], torch.zeros(4, 50)) and float(xn[1].std()) > 0.5


def test_mixing_needs_the_number_of_classes_and_valid_labels() -> None:
    aug = Augmenter([Mixup(0.2)], population=Population(1))
    with pytest.raises(ConfigError, match="need the number of classes"):
        aug(images(3), labels(3))
    aug = Augmenter([Mixup(0.2)], population=Population(1), num_classes=5)
    with pytest.raises(ConfigError, match=r"labels must be class indices in \[0, 5\)"):
        aug(images(3), torch.tensor([0, 7, 1]))


@pytest.mark.parametrize("make,text", [
    (lambda: Mixup(-0.1), "Mixup alpha must be >= 0.0, got -0.1"),
    (lambda: Cutout(2.5), "Cutout size must be an integer >= 0"),
    (lambda: Geometric(rotate=200), "Geometric rotate must be <= 180.0, got 200.0"),
    (lambda: Geometric(scale=1.0), "Geometric scale must be < 1.0, got 1.0"),
    (lambda: Geometric(hflip="yes"), "Geometric hflip must be true or false"),
    (lambda: Augmenter([Mixup(0.1), Mixup(0.2)], population=Population(1)), "Mixup is listed twice"),
    (lambda: Augmenter([Mixup([0.1, 0.2])], population=Population(3)), "Mixup alpha lists 2 values but the "
                                                                        "population has 3 members"),
])
def test_bad_settings(make, text: str) -> None:
    with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_from_config() -> None:
    pop = Population(2)
    assert from_config({"rotate": 0.0, "mixup": [0.0, 0.0], "hflip": False}, pop) is None
    aug = from_config({"rotate": 10.0, "shift": 0.0, "scale": 0.05, "hflip": False, "force": False, "noise": [0.0, 0.1],
                       "cutout": 6, "mixup": [0.2, 0.0], "cutmix": 1.0}, pop, dataset="mnist-5k", num_classes=10)
    assert [type(t).__name__ for t in aug.transforms] == ["Geometric", "CutMix", "Mixup", "Cutout", "InputNoise"]
    with pytest.raises(ConfigError, match="^augment: hflip is not label-preserving for mnist-5k"):
        from_config({"hflip": True}, pop, dataset="mnist-5k")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert from_config({"hflip": True, "force": True}, pop, dataset="mnist-5k") is not None
    with pytest.raises(ConfigError, match="^config: augment: Mixup alpha lists 3 values"):
        from_config({"mixup": [0.1, 0.2, 0.3]}, pop)


def test_figures_of_augmented_samples(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from trainlab.augment._figures import write_figures

    paths = write_figures(tmp_path)
    assert {p.name for p in paths} == {"aug_geometric.png", "aug_noise.png", "aug_cutout.png", "aug_mixup.png",
                                       "aug_cutmix.png", "aug_forbidden.png", "aug_label_smoothing.png"}
    assert all(p.stat().st_size > 5000 for p in paths)
