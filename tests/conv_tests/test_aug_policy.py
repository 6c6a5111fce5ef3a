"""Augmentation policies: RandAugment (N ops per image at magnitude M) and AutoAugment-style per-op
probabilities -- exact op counts, identity at magnitude 0, only label-preserving ops, per-member streams,
resume, and the config keys."""

from __future__ import annotations

import pytest
import torch

from trainlab.augment import (
    POLICY_RANGES,
    Augmenter,
    Cutout,
    Geometric,
    InputNoise,
    RandAugment,
    from_config,
    policy_ops_for,
)
from trainlab.checkpoint import load_checkpoint, save_checkpoint
from trainlab.config import resolve_config
from trainlab.data import get_dataset_info
from trainlab.errors import ConfigError
from trainlab.nn import Flatten, Linear, Sequential, SoftmaxCrossEntropy
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.train import Trainer

DIGIT_OPS = policy_ops_for(get_dataset_info("mnist-5k"))


def images(n: int, seed: int = 0, size: int = 28) -> torch.Tensor:
    """``(1, n, 1, size, size)`` strictly positive pixels (a zero can only come from an op)."""
    return torch.rand(1, n, 1, size, size, generator=torch.Generator().manual_seed(seed)) + 0.5


def labels(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.long)


def test_each_image_gets_exactly_n_ops_drawn_uniformly() -> None:
    ra = RandAugment([0, 1, 3, 2], [5.0, 5.0, 9.0, 0.0], ops=DIGIT_OPS)
    aug = Augmenter([ra], population=Population(4, seed=2), dataset="mnist-5k")
    counts = torch.zeros(len(DIGIT_OPS))
    for _ in range(5):
        aug(images(40, size=14), labels(40))
        assert ra.last_ops.shape == (4, 40, 3)
        active = ra.last_ops >= 0
        assert active.sum(-1).tolist() == [[n] * 40 for n in (0, 1, 3, 2)]
        for p, n in enumerate((0, 1, 3, 2)):  # member p fills its first n slots, no others
            assert bool(active[p, :, :n].all()) and not bool(active[p, :, n:].any())
        counts += torch.bincount(ra.last_ops[active], minlength=len(DIGIT_OPS)).float()
    expect = counts.sum() / len(DIGIT_OPS)  # 1,200 draws, 171 per op
    assert float(((counts - expect) ** 2 / expect).sum()) < 22.5  # chi-square, 6 dof, p = 0.001


def test_magnitude_zero_is_the_identity_bit_for_bit() -> None:
    x = images(16)
    aug = Augmenter([RandAugment(4, 0.0)], population=Population(2), dataset="mnist-5k")
    xa, _ = aug(x, labels(16))
    assert torch.equal(xa, x.expand(2, *x.shape[1:]))
    # and n = 0 is the identity whatever the magnitude (flat MLP inputs too)
    flat = torch.rand(1, 5, 784)
    xa, _ = Augmenter([RandAugment(0, 10.0)], population=Population(1), dataset="mnist-5k")(flat, labels(5))
    assert torch.equal(xa, flat)


def test_each_op_does_what_its_magnitude_says() -> None:
    x = torch.zeros(1, 8, 1, 28, 28)
    x[..., 10:18, 8:14] = 1.0  # a bar well inside the image
    # shift_x at M = 10: exactly +-3 pixels, no other change
    ra = RandAugment(1, 10.0, ops=["shift_x"])
    xa, _ = Augmenter([ra], population=Population(1, seed=1))(x, labels(8))
    for n in range(8):
        s = int(ra.last_signs[0, n, 0])
        torch.testing.assert_close(xa[0, n], torch.roll(x[0, n], 3 * s, dims=-1), atol=1e-5, rtol=0)
    # cutout at M = 5: a square of side round(0.5 * 0.5 * 28) = 7, clipped at the borders
    ra = RandAugment(1, 5.0, ops=["cutout"])
    xa, _ = Augmenter([ra], population=Population(1, seed=1))(images(50), labels(50))
    zeros = (xa[0] == 0).flatten(1).sum(1)
    assert int(zeros.max()) == 49 and int(zeros.min()) >= 16  # a 7x7 square, at least a 4x4 corner of it
    # noise at M = 10: std 0.3; hflip: the mirror image
    ra = RandAugment(1, 10.0, ops=["noise"])
    x = images(64)
    xa, _ = Augmenter([ra], population=Population(1))(x, labels(64))
    assert abs(float((xa - x).std()) - POLICY_RANGES["noise"]) < 0.01
    xa, _ = Augmenter([RandAugment(1, 0.0, ops=["hflip"])], population=Population(1))(x, labels(64))
    assert torch.equal(xa[0], x[0].flip(-1))  # no magnitude: a mirror even at M = 0


def test_only_the_data_sets_label_preserving_ops_are_drawn() -> None:
    assert DIGIT_OPS == ("identity", "rotate", "shift_x", "shift_y", "scale", "cutout", "noise")
    assert "hflip" in policy_ops_for(get_dataset_info("fashion-mnist"))
    aug = from_config({"policy_ops": 3, "policy_magnitude": 10.0}, Population(2), dataset="mnist-5k")
    ra = aug.transforms[0]
    assert ra.ops == DIGIT_OPS
    x = images(200, size=14)
    for _ in range(3):
        xa, _ = aug(x, labels(200))
        used = set(ra.last_ops[ra.last_ops >= 0].tolist())
        assert used == set(range(len(DIGIT_OPS)))  # every allowed op is drawn, nothing else exists
        assert not any(torch.equal(xa[p, n], x[0, n].flip(-1)) for p in range(2) for n in range(200))
    fashion = from_config({"policy_ops": 2}, Population(1), dataset="fashion-mnist").transforms[0]
    assert fashion.ops[-3:] == ("hflip", "cutout", "noise")
    with pytest.raises(ConfigError, match="^augment: hflip is not label-preserving for mnist-5k"):
        Augmenter([RandAugment(1, 5.0, ops=["rotate", "hflip"])], population=Population(1), dataset="mnist-5k")
    with pytest.raises(ConfigError, match="RandAugment ops must be a non-empty list of distinct names"):
        RandAugment(1, 5.0, ops=["rotate", "shear"])


def test_member_i_draws_what_it_would_draw_alone() -> None:
    x = images(6, size=16)
    ns, ms = [2, 0, 3], [7.0, 4.0, 10.0]
    pop = Augmenter([RandAugment(ns, ms)], population=Population(3, seed=7), dataset="mnist-5k")
    first, _ = pop(x, labels(6))
    second, _ = pop(x, labels(6))
    for i in range(3):
        one = Augmenter([RandAugment(ns[i], ms[i])], population=Population(1, seed=7 + i), dataset="mnist-5k")
        assert torch.equal(one(x, labels(6))[0][0], first[i]) and torch.equal(one(x, labels(6))[0][0], second[i])
    assert not torch.equal(first[0], first[2]) and not torch.equal(first, second)
    # the same seed and settings: the same draws; another seed: others
    again = Augmenter([RandAugment(ns, ms)], population=Population(3, seed=7), dataset="mnist-5k")
    assert torch.equal(again(x, labels(6))[0], first)
    other = Augmenter([RandAugment(ns, ms)], population=Population(3, seed=8), dataset="mnist-5k")
    assert not torch.equal(other(x, labels(6))[0], first)


def test_state_dict_resumes_the_very_next_draws() -> None:
    def make() -> Augmenter:
        return Augmenter([RandAugment([1, 3], [5.0, 8.0]), Geometric(rotate=10, rotate_p=[0.5, 1.0]),
                          Cutout(4, p=0.3), InputNoise(0.1, p=[1.0, 0.5])], population=Population(2, seed=3),
                         dataset="mnist-5k")

    x = images(5, size=16)
    a = make()
    a(x, labels(5))
    state = {k: v.clone() for k, v in a.state_dict().items()}
    assert {"randaugment.cpu.0", "geometric.gate@cpu.1", "cutout.gate@cpu.0", "noise.gate@cpu.1"} <= set(state)
    expect = a(x, labels(5))[0]
    b = make()
    b.load_state_dict(state)
    assert torch.equal(b(x, labels(5))[0], expect)
    c = make()
    c.load_state_dict({k: v for k, v in state.items() if "gate" not in k})  # gates from their seeds: differ
    assert not torch.equal(c(x, labels(5))[0], expect)


def test_a_policy_run_resumes_from_a_checkpoint(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 12, 12, generator=g), torch.randint(0, 10, (40,), generator=g)

    def trainer(steps: int) -> Trainer:
        model = Sequential([Flatten(), Linear(None, 10)])
        model.build((1, 12, 12), Population(2, seed=4))
        aug = Augmenter([RandAugment([2, 1], [6.0, 9.0]), Cutout(3, p=0.5)], population=model.population)
        return Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.1), steps=steps, batch_size=8,
                       seed=1, eval_train=False, augment=aug)

    ref = trainer(6)
    ref.fit((x, y))
    first = trainer(3)
    first.fit((x, y))
    save_checkpoint(tmp_path, first)
    second = trainer(6)
    load_checkpoint(tmp_path, second)
    second.fit((x, y))
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k


# ---- AutoAugment-style probabilities ---------------------------------------------------------------


def test_probabilities_apply_each_op_to_that_fraction_of_images() -> None:
    geo = Geometric(rotate=10.0, shift=2.0, rotate_p=[0.0, 0.3, 1.0], shift_p=1.0)
    aug = Augmenter([geo], population=Population(3, seed=1), dataset="mnist-5k")
    aug(images(400, size=8), labels(400))
    rotated = (geo.last_params["angle"] != 0).float().mean(1)
    assert float(rotated[0]) == 0.0 and 0.24 < float(rotated[1]) < 0.36 and float(rotated[2]) == 1.0
    assert bool((geo.last_params["shift_x"] != 0).all())
    cut = Cutout(6, p=[0.0, 0.5])
    x = images(300, size=12)
    xa, _ = Augmenter([cut], population=Population(2, seed=1))(x, labels(300))
    erased = (xa == 0).flatten(2).any(-1).float().mean(1)
    assert float(erased[0]) == 0.0 and 0.42 < float(erased[1]) < 0.58
    xa, _ = Augmenter([InputNoise(0.2, p=[0.0, 0.5])], population=Population(2, seed=1))(x, labels(300))
    assert torch.equal(xa[0], x[0])
    kept = (xa[1] == x[0]).flatten(1).all(1)  # an image without noise is exactly the original
    assert 0.42 < float(kept.float().mean()) < 0.58


def test_probability_one_draws_exactly_what_the_transform_drew_without_probabilities() -> None:
    x = images(6, size=16)
    plain = Augmenter([Geometric(rotate=10, shift=2, scale=0.1), Cutout(4), InputNoise(0.1)],
                      population=Population(2, seed=5))
    ones = Augmenter([Geometric(rotate=10, shift=2, scale=0.1, rotate_p=1.0, shift_p=1.0, scale_p=1.0),
                      Cutout(4, p=1.0), InputNoise(0.1, p=1.0)], population=Population(2, seed=5))
    assert torch.equal(plain(x, labels(6))[0], ones(x, labels(6))[0])
    assert not any("gate" in k for k in ones.state_dict())  # no gate drawn when every probability is 1
    # member 0 (p = 1) of a population with a member at p < 1 equals member 0 alone
    mixed = Augmenter([Geometric(rotate=10, rotate_p=[1.0, 0.2]), Cutout(4, p=[1.0, 0.5])],
                      population=Population(2, seed=5))
    alone = Augmenter([Geometric(rotate=10), Cutout(4)], population=Population(1, seed=5))
    for _ in range(2):
        assert torch.equal(mixed(x, labels(6))[0][0], alone(x, labels(6))[0][0])


# ---- config -------------------------------------------------------------------------------------


def test_config_keys() -> None:
    cfg = resolve_config({"augment": {"policy_ops": [0, 2], "policy_magnitude": [5.0, 9.0], "rotate": 10.0,
                                      "rotate_p": 0.5, "cutout": 6, "cutout_p": [0.2, 0.8]},
                          "population": {"size": 2}})
    a = cfg["augment"]
    assert a["policy_ops"] == [0, 2] and a["shift_p"] == 1.0 and a["noise_p"] == 1.0
    aug = from_config(a, Population(2), dataset="mnist-5k")
    assert [type(t).__name__ for t in aug.transforms] == ["RandAugment", "Geometric", "Cutout"]
    assert aug.transforms[1].rotate_p == 0.5 and aug.transforms[2].p == [0.2, 0.8]
    assert from_config(resolve_config({})["augment"], Population(1)) is None  # defaults: nothing on
    for key, value, text in [("policy_ops", 11, "augment.policy_ops must be <= 10, got 11"),
                             ("policy_magnitude", 12.0, "augment.policy_magnitude must be <= 10, got 12.0"),
                             ("rotate_p", 1.5, "augment.rotate_p must be <= 1, got 1.5"),
                             ("policy_ops", 1.5, "augment.policy_ops must be an integer, got 1.5")]:
        with pytest.raises(ConfigError, match=text):
            resolve_config({"augment": {key: value}})
