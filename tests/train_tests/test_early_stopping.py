"""Early stopping: per-member stops, restore of the best weights whatever ended training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.train import EarlyStopping, Trainer


def net(P):
    m = nn.Sequential([nn.Linear(784, 64, init="he_normal"), nn.ReLU(), nn.Linear(64, 10, init="he_normal")])
    m.build((784,), Population(P, seed=0))
    return m


def test_each_member_stops_at_its_own_epoch_and_best_weights_come_back(small_splits):
    m = net(3)
    es = EarlyStopping("val_loss", patience=2)
    snapshots = {}

    class Snap(EarlyStopping):
        pass

    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=[0.5, 0.05, 0.005]), epochs=60, batch_size=50,
                 callbacks=[es])

    def remember(trainer, record):
        snapshots[record["step"]] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    tr.callbacks.append(type("R", (), {"on_train_begin": lambda s, t: None, "on_step_end": lambda s, t, l: None,
                                       "on_evaluate": lambda s, t, r: remember(t, r),
                                       "on_train_end": lambda s, t: None})())
    h = tr.fit(small_splits.train, val=small_splits.val)
    stops = {mm: d["epoch"] for mm, d in h.stopped.items()}
    # the fast learner overfits first; members stop at different epochs
    assert 0 in stops and len(set(stops.values())) == len(stops)
    val = h["val_loss"]
    for mm in range(3):
        best_i = int(np.nanargmin(val[:, mm] if mm not in h.stopped else
                                  np.where(h["step"] <= h.stopped[mm]["step"], val[:, mm], np.inf)))
        best_step = int(h["step"][best_i])
        for k, v in m.state_dict().items():  # restored weights are the ones of the best evaluation
            assert torch.equal(v[mm], snapshots[best_step][k][mm]), (mm, k)
        assert h.final["val_loss"][mm] == pytest.approx(val[best_i, mm], rel=1e-6)


def test_stopped_member_no_longer_updates(small_splits):
    m = net(2)
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=[0.5, 0.01]), epochs=40, batch_size=50,
                 callbacks=[EarlyStopping("val_loss", patience=1, restore_best=False)])
    frozen = {}

    class Watch:
        def on_train_begin(self, t): ...
        def on_evaluate(self, t, r): ...
        def on_train_end(self, t): ...
        def on_step_end(self, t, loss):
            if 0 in t.history.stopped and not frozen:
                frozen.update({k: v[0].clone() for k, v in t.model.state_dict().items()})

    tr.callbacks.append(Watch())
    h = tr.fit(small_splits.train, val=small_splits.val)
    assert 0 in h.stopped and frozen
    for k, v in m.state_dict().items():
        assert torch.equal(v[0], frozen[k])


def test_restore_when_epoch_limit_ends_training(small_splits):
    m = net(1)
    es = EarlyStopping("val_acc", patience=1000)
    h = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.3), epochs=8, batch_size=50,
                callbacks=[es]).fit(small_splits.train, val=small_splits.val)
    assert not h.stopped
    assert h.final["val_acc"][0] == pytest.approx(np.nanmax(h["val_acc"][:, 0]))
    assert es.mode == "max"


def test_bad_monitor_and_options(small_splits):
    with pytest.raises(ConfigError, match="patience must be an integer >= 0"):
        EarlyStopping(patience=-1)
    m = net(1)
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), epochs=1, batch_size=50,
                 callbacks=[EarlyStopping("val_loss")])
    with pytest.raises(ConfigError, match="early stopping monitors 'val_loss', which is not measured"):
        tr.fit(small_splits.train)
