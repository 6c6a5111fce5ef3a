"""``Trainer(cuda_graphs=True)``: the static-buffer step (captured as CUDA graphs on a GPU).

On a CPU the same static-buffer step runs eagerly; it must train bit for bit as the normal step:
weights, optimizer state, BatchNorm statistics, history and divergence records -- with a diverging
member, a ragged last batch and a learning-rate change mid-way. The capture itself runs only where
a GPU is present (the last test)."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.optim import Adam, ClipGradients, Lookahead, Momentum
from trainlab.population import Population
from trainlab.regularize import L2
from trainlab.train import Callback, Trainer
from trainlab.train._graphs import GraphStep

N, D = 130, 20  # 130 = 2 full batches of 50 and one of 30


def _data(device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D, generator=g).to(device), torch.randint(0, 4, (N,), generator=g).to(device)


class _HalveLR(Callback):
    """A schedule: the optimizer's hyperparameters change between steps (graphs must follow)."""

    def on_step_end(self, trainer, loss):
        if trainer.step == 4:
            trainer.optimizer.set_hparam("lr", (trainer.optimizer.lr * 0.5).tolist())


def _train(cuda_graphs: bool, opt_cls, device: str = "cpu", **opt_kw) -> tuple[Trainer, dict]:
    model = nn.Sequential([nn.Linear(D, 16), nn.BatchNorm(), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                           nn.Linear(16, 4)])
    model.build((D,), Population(3, seed=2), device=device)
    opt = opt_cls(model.parameters(), **opt_kw)
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, epochs=3, batch_size=50, seed=1, cuda_graphs=cuda_graphs,
                 regularizers=[L2(1e-3)], callbacks=[_HalveLR()])
    x, y = _data(device)
    h = tr.fit((x, y), val=(x[:40], y[:40]))
    return tr, h.to_dict()


@pytest.mark.parametrize("opt_cls,kw", [(Momentum, {"lr": [0.05, 0.1, 1e4]}),  # member 2 diverges
                                        (Adam, {"lr": [1e-3, 3e-3, 1e-2]})])
def test_static_step_equals_the_normal_step_bit_for_bit(opt_cls, kw) -> None:
    a, ha = _train(False, opt_cls, **kw)
    b, hb = _train(True, opt_cls, **kw)
    assert isinstance(b._graph_step, GraphStep) and not b._graph_step.capture  # CPU: eager, no capture
    assert ha == hb
    for (k, v), (k2, v2) in zip(a.state_dict()[0].items(), b.state_dict()[0].items()):
        assert k == k2 and torch.equal(v, v2), k
    if opt_cls is Momentum:
        assert list(hb["diverged"]) and b.alive.tolist() == [True, True, False]


def test_uncapturable_steps_are_refused_in_one_line() -> None:
    model = nn.Sequential([nn.Linear(D, 8), nn.Dropout(0.5), nn.Linear(8, 4)])
    model.build((D,), Population(2))
    with pytest.raises(ConfigError, match=r"cuda_graphs: layers that draw random numbers .*Dropout"):
        Trainer(model, nn.SoftmaxCrossEntropy(), Momentum(model.parameters()), cuda_graphs=True)
    plain = nn.Sequential([nn.Linear(D, 4)])
    plain.build((D,), Population(2))
    with pytest.raises(ConfigError, match="cuda_graphs: augmentation"):
        Trainer(plain, nn.SoftmaxCrossEntropy(), Momentum(plain.parameters()), cuda_graphs=True,
                augment=lambda x, y, t: (x, y))
    with pytest.raises(ConfigError, match="cuda_graphs: Lookahead decides on the host"):
        Trainer(plain, nn.SoftmaxCrossEntropy(), Lookahead(Momentum(plain.parameters())), cuda_graphs=True)
    clipped = Momentum(plain.parameters())
    ClipGradients(norm=1.0).attach(clipped)
    with pytest.raises(ConfigError, match="cuda_graphs: gradient clipping counts its steps on the host"):
        Trainer(plain, nn.SoftmaxCrossEntropy(), clipped, cuda_graphs=True)
    tr = Trainer(plain, nn.SoftmaxCrossEntropy(), Momentum(plain.parameters()))
    with pytest.raises(ConfigError, match="capture needs a CUDA device"):
        GraphStep(tr, capture=True)


def test_graph_key_follows_what_changes_the_kernels() -> None:
    model = nn.Sequential([nn.Linear(D, 4)])
    model.build((D,), Population(2))
    opt = Momentum(model.parameters())
    step = GraphStep(Trainer(model, nn.SoftmaxCrossEntropy(), opt, cuda_graphs=False))
    x, y = _data()
    k0 = step._key(x[:50], y[:50])
    assert step._key(x[:30], y[:30]) != k0  # the ragged last batch has graphs of its own
    opt.set_hparam("lr", 0.5)
    k1 = step._key(x[:50], y[:50])
    opt.set_active(torch.tensor([True, False]))
    k2 = step._key(x[:50], y[:50])
    model.layers[0].weight.trainable = False
    k3 = step._key(x[:50], y[:50])
    assert len({k0, k1, k2, k3}) == 4


def test_warm_up_before_a_capture_leaves_every_tensor_as_it_was() -> None:
    # The capture's warm-up runs one whole step (forward, backward, update: weights, optimizer state,
    # BatchNorm running averages and step counts all move) and must undo it bit for bit.
    model = nn.Sequential([nn.Linear(D, 16), nn.BatchNorm(), nn.ReLU(), nn.Linear(16, 4)])
    model.build((D,), Population(2, seed=3))
    opt = Adam(model.parameters(), lr=[1e-2, 3e-2], weight_decay=1e-3)
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, batch_size=50, regularizers=[L2(1e-3)])
    step = GraphStep(tr)
    x, y = _data()
    step.step(x[:50], y[:50])  # optimizer state away from its zeros
    before = {k: v.clone() for k, v in {**model.state_dict(), **opt.state_dict()}.items()}
    s = step._buffers(x[50:100], y[50:100])
    step._load(s, x[50:100], y[50:100])
    step._warm_up(s)
    after = {**model.state_dict(), **opt.state_dict()}
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert s.loss is None
    # ... whereas the step itself changes them
    step.step(x[50:100], y[50:100])
    assert not torch.equal(before["0.weight"], model.state_dict()["0.weight"])


def test_config_key_reaches_the_trainer() -> None:
    from pathlib import Path

    from trainlab.build import build_run
    from trainlab.config import load_config

    example = Path(__file__).resolve().parents[2] / "examples" / "mlp.toml"
    small = ["data.train=200", "data.val=100", "data.test=100", "train.epochs=1"]
    assert build_run(load_config(example, small)).trainer._graph_step is None  # off by default
    run = build_run(load_config(example, small + ["train.cuda_graphs=true"]))
    assert isinstance(run.trainer._graph_step, GraphStep) and not run.trainer._graph_step.capture


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_captured_step_equals_the_eager_step_on_the_gpu() -> None:
    a, ha = _train(False, Momentum, device="cuda", lr=[0.05, 0.1, 1e4])
    b, hb = _train(True, Momentum, device="cuda", lr=[0.05, 0.1, 1e4])
    assert b._graph_step.capture and b._graph_step.captures >= 2
    assert list(ha["diverged"]) == list(hb["diverged"])
    for (k, v), (_, v2) in zip(a.state_dict()[0].items(), b.state_dict()[0].items()):
        if v.is_floating_point():
            torch.testing.assert_close(v, v2, rtol=1e-5, atol=1e-6, equal_nan=True, msg=k)


def test_a_schedule_changes_the_rates_a_captured_step_reads_in_place() -> None:
    # A schedule sets the rate between steps with assign_hparam, which does not ask for a new capture: so
    # every rate tensor the step reads -- the per-member rate and its multiples for lr_scale -- must keep
    # its address and take the new values (a new tensor would leave the graph reading the old rate).
    from trainlab.population import member_view

    model = nn.Sequential([nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 4)])
    model.build((D,), Population(2))
    model.layers[2].weight.lr_scale = 0.3
    opt = Momentum(model.parameters(), lr=[0.1, 0.2])
    step = GraphStep(Trainer(model, nn.SoftmaxCrossEntropy(), opt, batch_size=50))
    x, y = _data()
    step.step(x[:50], y[:50])
    key = step._key(x[:50], y[:50])
    plain, scaled = opt._lr_view(3, 1.0), opt._lr_view(3, 0.3)
    addresses = (plain.data_ptr(), scaled.data_ptr())
    opt.assign_hparam("lr", torch.tensor([0.05, 0.07]))
    assert step._key(x[:50], y[:50]) == key  # no new capture ...
    assert (opt._lr_view(3, 1.0).data_ptr(), opt._lr_view(3, 0.3).data_ptr()) == addresses  # ... same tensors
    assert torch.equal(opt._lr_view(3, 0.3), member_view(torch.tensor([0.05, 0.07]), 3) * 0.3)  # new values
    opt.set_hparam("lr", [0.01, 0.02])
    assert opt._lr_view(3, 0.3).data_ptr() == addresses[1]
    assert torch.equal(opt._lr_view(3, 0.3), member_view(torch.tensor([0.01, 0.02]), 3) * 0.3)
