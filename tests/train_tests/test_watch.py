"""trainlab.train.watch_training: every Trainer inside the block reports to the watcher, after its own
callbacks and sinks, and trains exactly as it would unwatched."""

from __future__ import annotations

import threading

import torch

from trainlab import nn
from trainlab.optim import Momentum
from trainlab.population import Population
from trainlab.train import Callback, Trainer, watch_training


class Log(Callback):
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def on_train_begin(self, trainer) -> None:
        self.events.append(("begin", trainer.step))

    def on_step_end(self, trainer, loss) -> None:
        self.events.append(("step", trainer.step))

    def on_evaluate(self, trainer, record) -> None:
        self.events.append(("evaluate", record["step"]))

    def on_train_end(self, trainer) -> None:
        self.events.append(("end", trainer.step))


def train(splits) -> tuple[list[torch.Tensor], list]:
    m = nn.Sequential([nn.Linear(784, 16, init="he_normal"), nn.ReLU(), nn.Linear(16, 10, init="he_normal")])
    m.build((784,), Population(2, seed=5))
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), Momentum(m.parameters(), lr=[0.05, 0.1]), epochs=2, batch_size=50,
                 seed=1)
    h = tr.fit((splits.train.x, splits.train.y), val=(splits.val.x, splits.val.y))
    return [p.data.clone() for p in m.parameters()], h.records


def test_a_watched_training_reports_every_step_and_trains_bit_for_bit_the_same(small_splits):
    plain_w, plain_h = train(small_splits)
    log = Log()
    with watch_training(log):
        watched_w, watched_h = train(small_splits)
    assert len(plain_w) == len(watched_w) == 4 and all(torch.equal(a, b) for a, b in zip(plain_w, watched_w))
    assert plain_h == watched_h
    steps = [s for k, s in log.events if k == "step"]
    assert log.events[0] == ("begin", 0) and log.events[-1][0] == "end"
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 12  # 300 examples / 50, two epochs
    assert [s for k, s in log.events if k == "evaluate"] == [6, 12]
    # after the block: nothing more is reported
    n = len(log.events)
    train(small_splits)
    assert len(log.events) == n


def test_watchers_are_local_to_their_thread(small_splits):
    log = Log()
    other: list = []

    def elsewhere() -> None:
        other.append(train(small_splits))

    with watch_training(log):
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join()
    assert other and log.events == []  # a thread started inside the block does not inherit the watcher
