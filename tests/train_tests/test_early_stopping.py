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
    es = EarlyStopping("val_loss", patience=3)  # 2 before the Keras count (issue 18): same run
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
                 callbacks=[EarlyStopping("val_loss", patience=2, restore_best=False)])  # was 1 (old count)
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


# ---- the patience count (Keras / Lightning) and min_delta: the rule on given sequences ---------------


class _FakeTrainer:
    """Just what ``EarlyStopping.on_evaluate`` reads: a population, running/alive masks, a history."""

    def __init__(self, P: int) -> None:
        self.size, self.device, self.steps_per_epoch = P, torch.device("cpu"), 1
        self.running = torch.ones(P, dtype=torch.bool)
        self.alive = torch.ones(P, dtype=torch.bool)
        self.history = type("H", (), {"stopped": {}})()

    def stop_members(self, members: torch.Tensor) -> None:
        self.running &= ~members


def _stop_index(values: list[list[float]], **kw) -> list[int | None]:
    """Feed per-member metric sequences to EarlyStopping; the 0-based evaluation at which each member stopped."""
    P = len(values[0])
    tr = _FakeTrainer(P)
    es = EarlyStopping("val_loss", restore_best=False, **kw)
    es.on_train_begin(tr)
    stopped: list[int | None] = [None] * P
    for i, row in enumerate(values):
        before = tr.running.clone()
        es.on_evaluate(tr, {"step": i + 1, "epoch": i + 1, "val_loss": row})
        for m in (before & ~tr.running).nonzero().flatten().tolist():
            stopped[m] = i
    return stopped


def _keras_stop_index(values: list[float], patience: int, min_delta: float = 0.0) -> int | None:
    """Keras 3's EarlyStopping.on_epoch_end for mode 'min', transcribed
    (keras/src/callbacks/early_stopping.py: wait += 1; improvement resets wait to 0 and
    returns; stop when wait >= patience and epoch > 0; improvement = current - min_delta' < best
    with min_delta' = -min_delta for 'min', i.e. current < best - min_delta)."""
    best, wait = float("inf"), 0
    for epoch, current in enumerate(values):
        wait += 1
        if current < best - min_delta:
            best, wait = current, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch
    return None


SEQUENCES = [
    [1.0, 0.9, 0.95, 0.96, 0.97, 0.98],       # the minimum at evaluation 1, then only worse
    [1.0, 0.9, 0.95, 0.85, 0.86, 0.87, 0.88],  # a late improvement resets the count
    [1.0, 0.99, 0.98, 0.97, 0.96, 0.95],      # always improving: never stops
    [1.0, 1.0, 1.0, 1.0],                     # equal is not an improvement
]


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
@pytest.mark.parametrize("seq", range(len(SEQUENCES)))
def test_patience_counts_as_keras(patience: int, seq: int) -> None:
    values = SEQUENCES[seq]
    got = _stop_index([[v] for v in values], patience=patience)[0]
    assert got == _keras_stop_index(values, patience)


def test_patience_two_stops_at_the_second_evaluation_without_improvement() -> None:
    # the example: best at evaluation 1; evaluations 2 and 3 do not improve -> stop at 3 (was 4)
    assert _stop_index([[1.0], [0.9], [0.95], [0.96], [0.97]], patience=2) == [3]


def test_min_delta_an_improvement_smaller_than_min_delta_does_not_count() -> None:
    # member 0 improves by 0.05 each time; member 1 by 0.2. With min_delta 0.1 only member 1's count resets.
    values = [[1.0, 1.0], [0.95, 0.8], [0.90, 0.6], [0.85, 0.4], [0.80, 0.2], [0.75, 0.0]]
    assert _stop_index(values, patience=2, min_delta=0.1) == [2, None]
    assert _stop_index(values, patience=2, min_delta=0.0) == [None, None]
    # the same against the transcribed Keras rule
    for m in range(2):
        col = [row[m] for row in values]
        assert _stop_index([[v] for v in col], patience=2, min_delta=0.1)[0] == _keras_stop_index(col, 2, 0.1)
    # min_delta in mode max: v > best + min_delta
    tr = _FakeTrainer(1)
    es = EarlyStopping("val_acc", patience=1, min_delta=0.01, restore_best=False)
    es.on_train_begin(tr)
    for i, v in enumerate([0.5, 0.505]):
        es.on_evaluate(tr, {"step": i + 1, "epoch": i + 1, "val_acc": [v]})
    assert not bool(tr.running[0]) and float(es.best[0]) == 0.5


def test_min_delta_exactly_equal_is_not_an_improvement() -> None:
    # v < best - min_delta is strict: 0.75 after 1.0 with min_delta 0.25 does not reset the count
    assert _stop_index([[1.0], [0.75]], patience=1, min_delta=0.25) == [1]
    assert _stop_index([[1.0], [0.74]], patience=1, min_delta=0.25) == [None]
