"""Augmentation inside training: soft targets reach the loss, label smoothing happens once,
odd and tiny batches work, members stay independent, and a resumed run repeats the draws."""

from __future__ import annotations

import pytest
import torch

from trainlab.augment import Augmenter, CutMix, Cutout, Geometric, InputNoise, Mixup
from trainlab.checkpoint import load_checkpoint, save_checkpoint
from trainlab.data import load_splits
from trainlab.nn import Linear, ReLU, Sequential, SoftmaxCrossEntropy
from trainlab.nn._blocks import conv_block
from trainlab.nn._conv import Conv2d
from trainlab.nn._pool import Flatten, MaxPool2d
from trainlab.optim import Momentum
from trainlab.population import Population
from trainlab.train import Trainer

C = 10


@pytest.fixture(scope="module")
def data():
    s = load_splits("mnist-5k", train=60, val=0, test=40, flatten=False, seed=0)
    # 14x14 images keep the nets tiny
    def half(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 2)

    return (half(s.train.x), s.train.y), (half(s.test.x), s.test.y)


class RecordingLoss(SoftmaxCrossEntropy):
    """Cross-entropy that remembers the shape and dtype of every target it was given."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[tuple[tuple[int, ...], torch.dtype]] = []

    def forward(self, z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen.append((tuple(target.shape), target.dtype))
        return super().forward(z, target)


def convnet(P: int, seed: int, dtype=torch.float32, norm: str | None = "batchnorm") -> Sequential:
    m = Sequential([*conv_block(1, 4, 3, norm=norm, dropout=0.2, pool="max"), Conv2d(4, 6, 3), ReLU(), Flatten(),
                    Linear(None, C)])
    m.build((1, 14, 14), Population(P, seed=seed), dtype=dtype)
    return m


def pipeline(P: int) -> list:
    per = (lambda v: v[:P]) if P > 1 else (lambda v: v[0])
    return [Geometric(rotate=per([10.0, 5.0]), shift=2.0), CutMix(per([1.0, 0.5])), Mixup(0.3), Cutout(3),
            InputNoise(per([0.05, 0.1]))]


def trainer(P: int, seed: int, *, steps: int | None = None, epochs: int = 2, batch_size: int = 16,
            dtype=torch.float32, transforms=None, label_smoothing=0.0, norm: str | None = "batchnorm") -> Trainer:
    model = convnet(P, seed, dtype, norm)
    aug = Augmenter(transforms if transforms is not None else pipeline(P), population=model.population,
                    dataset="mnist-5k")
    return Trainer(model, RecordingLoss(label_smoothing=label_smoothing),
                   Momentum(model.parameters(), lr=0.05), epochs=epochs, steps=steps, batch_size=batch_size,
                   seed=3, eval_train=False, augment=aug)


def test_mixing_switches_the_loss_to_soft_targets_and_trains(data) -> None:
    train, test = data
    t = trainer(2, seed=0, epochs=3, batch_size=7)  # 60 = 8 batches of 7 + one of 4: odd sizes
    h = t.fit(train, test=test)
    train_targets = [shape for shape, dtype in t.loss.seen if dtype.is_floating_point]
    # every training batch was scored on soft targets (P, N, C), the odd last one too; evaluation on labels
    assert len(train_targets) == 27 and set(train_targets) == {(2, 7, C), (2, 4, C)}
    assert (40,) in [shape for shape, _ in t.loss.seen]
    assert h.info["steps_per_epoch"] == 9
    assert all(torch.isfinite(torch.tensor(r["batch_loss"])).all() for r in h.records)
    assert not h.diverged


def test_a_batch_of_one_trains(data) -> None:
    (x, y), _ = data
    t = trainer(1, seed=0, steps=3, batch_size=1, norm=None)  # (BatchNorm cannot train on one example)
    t.fit((x[:3], y[:3]))
    assert t.step == 3 and t.loss.seen[0] == ((1, 1, C), torch.float32)


def test_label_smoothing_is_applied_exactly_once_to_mixed_targets() -> None:
    P, N, eps = 2, 9, 0.1
    aug = Augmenter([Mixup([0.4, 1.0]), CutMix(1.0)], population=Population(P, seed=1), num_classes=C)
    x = torch.rand(1, N, 1, 8, 8)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(0))
    _, targets = aug(x, y)
    assert torch.allclose(targets.sum(-1), torch.ones(P, N))  # the augmenter does not smooth
    z = torch.randn(P, N, C, generator=torch.Generator().manual_seed(1))
    loss = SoftmaxCrossEntropy(label_smoothing=eps)
    loss.build(P)
    got = loss.forward(z, targets)
    logp = torch.log_softmax(z, dim=-1)
    once = -(((1 - eps) * targets + eps / C) * logp).sum(-1).mean(-1)
    torch.testing.assert_close(got, once)
    smoothed = (1 - eps) * targets + eps / C
    twice = -(((1 - eps) * smoothed + eps / C) * logp).sum(-1).mean(-1)
    assert not torch.allclose(got, twice)
    # and the same as torch's own label smoothing on the (mixed) probability targets
    ref = torch.stack([torch.nn.functional.cross_entropy(z[p], targets[p], label_smoothing=eps) for p in range(P)])
    torch.testing.assert_close(got, ref)
    # gradient: (softmax - smoothed targets) / N
    torch.testing.assert_close(loss.backward(), (torch.softmax(z, -1) - smoothed) / N)


def test_identity_mixing_equals_hard_labels_with_smoothing() -> None:
    """A batch of one (Mixup = identity) gives soft one-hot targets: the same loss as the hard label."""
    aug = Augmenter([Mixup(1.0)], population=Population(1), num_classes=C)
    y = torch.tensor([3])
    _, soft = aug(torch.rand(1, 1, 1, 4, 4), y)
    z = torch.randn(1, 1, C)
    loss = SoftmaxCrossEntropy(label_smoothing=0.2)
    loss.build(1)
    torch.testing.assert_close(loss.forward(z, soft), loss.forward(z, y))


def test_members_train_as_they_would_alone(data) -> None:
    train, _ = data
    train = (train[0].double(), train[1])
    pop = trainer(2, seed=5, steps=5, dtype=torch.float64)
    pop.fit(train)
    for i in range(2):
        one = trainer(1, seed=5 + i, steps=5, dtype=torch.float64,
                      transforms=[Geometric(rotate=[10.0, 5.0][i], shift=2.0), CutMix([1.0, 0.5][i]), Mixup(0.3),
                                  Cutout(3), InputNoise([0.05, 0.1][i])])
        one.fit(train)
        for name, p in one.model.named_parameters().items():
            torch.testing.assert_close(p.data[0], pop.model.named_parameters()[name].data[i], atol=1e-10, rtol=0)


def test_resume_repeats_the_augmentation_draws(tmp_path, data) -> None:
    train, _ = data
    ref = trainer(2, seed=1, steps=6)
    ref.fit(train)
    first = trainer(2, seed=1, steps=3)
    first.fit(train)
    save_checkpoint(tmp_path, first)
    second = trainer(2, seed=1, steps=6)
    load_checkpoint(tmp_path, second)
    second.fit(train)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, second.model.state_dict()[k]), k
    # without the augmenter's state the continuation would differ
    third = trainer(2, seed=1, steps=6)
    load_checkpoint(tmp_path, third)
    third.augment.load_state_dict({})
    third.fit(train)
    assert not torch.equal(third.model.state_dict()["0.weight"], ref.model.state_dict()["0.weight"])


def test_evaluation_never_sees_augmentation(data) -> None:
    train, test = data
    t = trainer(1, seed=0, steps=2)
    t.fit(train)
    calls = []
    t.augment = lambda x, y, tr: calls.append(1) or (x, y)
    t.evaluate(*test)
    assert calls == []


def test_convnet_with_shared_and_augmented_inputs_uses_the_measured_strategy(data) -> None:
    (x, y), _ = data
    model = Sequential([Conv2d(1, 4, 3), ReLU(), MaxPool2d(2), Flatten(), Linear(None, C)])
    model.build((1, 14, 14), Population(3))
    model.forward(x[:5].unsqueeze(0), training=True)
    assert model.layers[0].last_strategy == "loop"  # on CPU, a loop over members (docs/convolution.md)
    aug = Augmenter([Cutout(3)], population=model.population)
    xa, _ = aug(x[:5].unsqueeze(0), y[:5])
    assert model.forward(xa, training=True).shape == (3, 5, C)
