"""Ensembles and transfer learning: contracts, and the course's claims measured on embedded MNIST."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.data import load_splits
from trainlab.ensemble import ensemble_predict, expected_calibration_error, member_probabilities
from trainlab.errors import CheckpointError, ConfigError
from trainlab.optim import SGD, Momentum
from trainlab.population import Population
from trainlab.regularize import L2
from trainlab.train import Trainer
from trainlab.transfer import freeze, set_layer_lr, transfer_weights


def mlp(P, classes=10, seed=0, seeds=None, hidden=(100,), norm=False):
    layers: list[nn.Module] = []
    for h in hidden:
        layers.append(nn.Linear(None, h, init="he_normal"))
        if norm:
            layers.append(nn.BatchNorm())
        layers.append(nn.ReLU())
    layers.append(nn.Linear(None, classes, init="he_normal"))
    m = nn.Sequential(layers)
    m.build((784,), Population(P, seed=seed, seeds=seeds))
    return m


def test_ensemble_of_identical_members_equals_one_member():
    m = mlp(4, seeds=[7, 7, 7, 7])
    x = torch.rand(50, 784)
    one = member_probabilities(m, x, members=[0])[0]
    for method in ("mean", "vote"):
        e = ensemble_predict(m, x, method=method)
        torch.testing.assert_close(e.probs, one.double())
        assert torch.equal(e.labels, one.argmax(-1))
        assert float(e.disagreement.max()) == 0.0


def test_averaging_is_over_probabilities_not_logits():
    m = mlp(3, seed=1)
    x = torch.rand(20, 784)
    e = ensemble_predict(m, x)
    z = m.forward(x.unsqueeze(0), training=False).double()
    torch.testing.assert_close(e.probs, torch.softmax(z, -1).mean(0))
    assert not torch.allclose(e.probs, torch.softmax(z.mean(0), -1))


def test_vote_and_disagreement():
    m = mlp(5, seed=2)
    x = torch.rand(30, 784)
    e = ensemble_predict(m, x, method="vote")
    own = member_probabilities(m, x).argmax(-1)
    counts = torch.nn.functional.one_hot(own, 10).sum(0)
    assert torch.all(counts.gather(1, e.labels[:, None]).squeeze(1) == counts.max(1).values)
    torch.testing.assert_close(e.disagreement, (own != e.labels).double().mean(0))
    with pytest.raises(ConfigError, match="ensemble method must be 'mean'"):
        ensemble_predict(m, x, method="median")
    with pytest.raises(ConfigError, match=r"ensemble members \[9\] do not exist"):
        ensemble_predict(m, x, members=[0, 9])


def test_ece():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 0])
    # bin (0.867, 0.933]: conf .9, acc .5; bin (0.533, 0.6]: conf .6, acc 1.0
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_shape_mismatched_transfer_lists_every_mismatching_layer():
    src = mlp(1, hidden=(100, 50))
    dst = mlp(1, hidden=(100, 60))
    with pytest.raises(CheckpointError) as e:
        transfer_weights(src, dst, layers=[0, 2, 4])
    msg = str(e.value)
    assert "layer 2 Linear.weight: (100, 50) in the source, (100, 60) in the target" in msg
    assert "layer 4 Linear.weight: (50, 10) in the source, (60, 10) in the target" in msg
    assert "layer 0" not in msg
    other = nn.Sequential([nn.Linear(None, 100), nn.Tanh(), nn.Linear(None, 10)])
    other.build((784,), Population(1))
    with pytest.raises(CheckpointError, match="layer 1: ReLU in the source, Tanh in the target"):
        transfer_weights(mlp(1), other, layers=[1])


def test_frozen_layers_are_bitwise_unchanged_after_fine_tuning():
    data = load_splits("mnist-5k", train=200, val=0, test=0, seed=0)
    src = mlp(1, hidden=(64, 64), norm=True)
    dst = mlp(2, hidden=(64, 64), norm=True)
    copied = transfer_weights(src, dst)
    assert copied == [0, 1, 2, 3, 4, 5]  # all but the output layer
    freeze(dst, [0, 1])
    set_layer_lr(dst, {3: 0.1})
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    tr = Trainer(dst, nn.SoftmaxCrossEntropy(), Momentum(dst.parameters(), lr=0.1, weight_decay=0.01),
                 epochs=3, batch_size=50, regularizers=[L2(0.01)])
    tr.fit(data.train)
    after = dst.state_dict()
    for k in ("0.weight", "0.bias", "1.gamma", "1.beta", "1.running_mean", "1.running_var"):
        assert torch.equal(before[k], after[k]), k
    for k in ("3.weight", "6.weight"):
        assert not torch.equal(before[k], after[k]), k


@pytest.mark.slow
def test_ensemble_of_5_beats_its_average_member():
    data = load_splits("mnist-5k", train=1000, val=0, test=1000, seed=0)
    m = mlp(5, seed=0, hidden=(100, 100))
    Trainer(m, nn.SoftmaxCrossEntropy(), Momentum(m.parameters(), lr=0.02), epochs=10, batch_size=100,
            eval_every=10**6).fit(data.train)
    members = (member_probabilities(m, data.test.x).argmax(-1) == data.test.y).double().mean(1)
    ens = ensemble_predict(m, data.test.x).accuracy(data.test.y)
    # measured: members 0.877, 0.877, 0.877, 0.877, 0.886 (mean 0.879); ensemble 0.889.
    # (Other settings measured +0.003 .. +0.04: the gain shrinks as members converge to similar nets.)
    assert ens > float(members.mean()) + 0.003
    assert ens >= float(members.max())


def _digits(split, lo, hi):
    keep = (split.y >= lo) & (split.y < hi)
    return split.x[keep], split.y[keep] - lo


def _first_per_class(x, y, k):
    idx = torch.cat([torch.nonzero(y == c).flatten()[:k] for c in range(int(y.max()) + 1)])
    return x[idx], y[idx]


@pytest.mark.slow
def test_transfer_beats_training_from_scratch_with_50_labels_per_class():
    """Pretrain on digits 0-4 (plain images), fine-tune every layer on 5-9 with 50 labels per class,
    vs from scratch (3 members each, same seeds; 784-100-100-5 ReLU MLP, Momentum 0.02, 30 epochs).

    Measured: 0.891 vs 0.869. With plain pretraining the advantage needs a few dozen labels per
    class; at 10 it is lost (0.815 vs 0.835). The `ensembles` experiment (trainlab reproduce)
    pretrains on augmented 0-4 images, which makes transfer win at 10 labels too; its numbers
    are in docs/ensembles.md.
    """
    data = load_splits("mnist-5k", val=0, test=1000, seed=0)
    xs, ys = _digits(data.train, 0, 5)
    xt_all, yt_all = _digits(data.train, 5, 10)
    xtest, ytest = _digits(data.test, 5, 10)
    src = mlp(1, classes=5, hidden=(100, 100))
    Trainer(src, nn.SoftmaxCrossEntropy(), Momentum(src.parameters(), lr=0.05), epochs=15, batch_size=100,
            eval_every=10**6).fit((xs, ys))
    x, y = _first_per_class(xt_all, yt_all, 50)
    accs = {}
    for name in ("transfer", "scratch"):
        m = mlp(3, classes=5, hidden=(100, 100), seed=10)
        if name == "transfer":
            transfer_weights(src, m)
        Trainer(m, nn.SoftmaxCrossEntropy(), Momentum(m.parameters(), lr=0.02), epochs=30, batch_size=25,
                eval_every=10**6).fit((x, y))
        accs[name] = float((member_probabilities(m, xtest).argmax(-1) == ytest).double().mean())
    assert accs["transfer"] > accs["scratch"] + 0.01, accs  # measured 0.891 vs 0.869
