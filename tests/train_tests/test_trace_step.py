"""``Trainer(trace_step=True)``: the whole step recorded by ``torch.jit.trace`` and replayed (CPU).

A replay must train bit for bit as the normal step -- weights, optimizer state, BatchNorm statistics,
history, divergence records -- with a diverging member, a ragged last batch, a learning-rate change
mid-way (a new recording), BatchNorm (its backward through the scripted wrapper), convolution and
pooling, one member and several. Steps must really be replayed (not silently eager), and a recording
that does not match the eager step must be caught and given up."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.optim import SGD, Adam, Momentum
from trainlab.population import Population
from trainlab.regularize import L2
from trainlab.train import Callback, Trainer
from trainlab.train._graphs import GraphStep

N, D = 130, 20  # 130 = 2 full batches of 50 and one of 30


def _data(shape: tuple[int, ...] = (D,), n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 4, (n,), generator=g)


class _HalveLR(Callback):
    """A schedule: the optimizer's hyperparameters change between steps (a new recording must follow)."""

    def on_step_end(self, trainer, loss):
        if trainer.step == 4:
            trainer.optimizer.set_hparam("lr", (trainer.optimizer.lr * 0.5).tolist())


def _mlp() -> nn.Sequential:
    return nn.Sequential([nn.Linear(D, 16), nn.BatchNorm(), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 4)])


def _convnet() -> nn.Sequential:
    return nn.Sequential([nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 16),
                          nn.ReLU(), nn.Linear(16, 4)])


def _train(trace: bool, opt_cls, model=_mlp, shape=(D,), P=3, epochs=3, callbacks=(), dtype=torch.float32,
           **opt_kw) -> tuple[Trainer, dict]:
    m = model()
    m.build(shape, Population(P, seed=2), dtype=dtype)
    opt = opt_cls(m.parameters(), **opt_kw)
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), opt, epochs=epochs, batch_size=50, seed=1, trace_step=trace,
                 regularizers=[L2(1e-3)], callbacks=list(callbacks))
    x, y = _data(shape)
    x = x.to(dtype)
    h = tr.fit((x, y), val=(x[:40], y[:40]))
    return tr, h.to_dict()


def _assert_same(a: Trainer, ha: dict, b: Trainer, hb: dict) -> None:
    assert ha == hb
    (sa, ma), (sb, mb) = a.state_dict(), b.state_dict()
    assert ma == mb and list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("opt_cls,kw", [(Momentum, {"lr": [0.05, 0.1, 1e4]}),  # member 2 diverges
                                        (Adam, {"lr": [1e-3, 3e-3, 1e-2]}),
                                        (SGD, {"lr": [0.1, 0.2, 0.3], "weight_decay": 1e-3}),
                                        (SGD, {"lr": 0.1, "dtype": torch.float64})])
def test_traced_step_equals_the_normal_step_bit_for_bit(opt_cls, kw) -> None:
    a, ha = _train(False, opt_cls, epochs=6, callbacks=[_HalveLR()], **kw)
    b, hb = _train(True, opt_cls, epochs=6, callbacks=[_HalveLR()], **kw)
    g = b._graph_step
    assert isinstance(g, GraphStep) and g.trace and not g.capture
    assert b.trace_refused is None and g.refused is None
    # 18 steps: each key (two batch shapes, again after the rate change and after a divergence) runs one eager
    # step, then its recording, then the check; every other step is a replay
    assert g.replays >= 6 and g.captures >= 3
    _assert_same(a, ha, b, hb)
    if opt_cls is Momentum:
        assert list(hb["diverged"]) and b.alive.tolist() == [True, True, False]


@pytest.mark.parametrize("P", [1, 2])
def test_traced_convnet_equals_the_normal_step(P) -> None:
    a, ha = _train(False, Momentum, model=_convnet, shape=(1, 8, 8), P=P, epochs=4, lr=0.05)
    b, hb = _train(True, Momentum, model=_convnet, shape=(1, 8, 8), P=P, epochs=4, lr=0.05)
    assert b.trace_refused is None and b._graph_step.replays >= 4
    _assert_same(a, ha, b, hb)


def test_a_replay_diverging_runs_the_batch_again_eagerly() -> None:
    """The divergence happens on a replay (not on a recording or its check): the state is put back and the
    batch runs eagerly, freezing the member before its update."""
    def run(trace: bool) -> tuple[Trainer, list]:
        m = nn.Sequential([nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 4)])
        m.build((D,), Population(2, seed=0))
        tr = Trainer(m, nn.SoftmaxCrossEntropy(), Momentum(m.parameters(), lr=[0.01, 1000.0]), batch_size=50,
                     trace_step=trace)
        tr.steps_per_epoch = 1
        x, y = _data(n=50)
        losses = []
        with torch.no_grad():
            for _ in range(12):
                losses.append(tr.train_step(x, y))
        return tr, losses

    a, la = run(False)
    b, lb = run(True)
    assert a.alive.tolist() == [True, False] and b.alive.tolist() == [True, False]
    step = a.history.diverged[1]["step"]
    assert step > 3  # after the first eager step, the recording and its check: on a replay
    assert a.history.diverged == b.history.diverged
    for u, v in zip(la, lb):
        assert torch.equal(u.nan_to_num(), v.nan_to_num())
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k



def test_the_recording_holds_the_kernels_and_no_size_arithmetic() -> None:
    """While tracing, sizes are 0-dim tensors: a layer keeping ``x.shape[0] == 1 and P > 1`` kept a comparison
    kernel in every replay (and one more output of the recording). The MLP's recorded forward is its kernels."""
    m = nn.Sequential([nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)])
    m.build((D,), Population(3, seed=0))
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), batch_size=50, trace_step=True)
    tr.steps_per_epoch = 1
    x, y = _data(n=50)
    with torch.no_grad():
        for _ in range(4):
            tr.train_step(x, y)
    (s,) = tr._graph_step._static.values()
    assert s.traced is not None and s.verified
    fwd = [n.kind() for n in s.traced[0].graph.nodes()]
    assert not any(k in ("aten::gt", "aten::eq", "aten::ne", "aten::lt") for k in fwd), fwd
    kernels = sorted(k for k in fwd if k.startswith("aten::"))
    # (the two expands: the batch and its labels, shared by the 3 members)
    assert kernels == sorted(["aten::baddbmm"] * 3 + ["aten::relu_"] * 2 + ["aten::expand"] * 2
                             + ["aten::logsumexp", "aten::sub", "aten::view", "aten::gather", "aten::mean",
                                "aten::neg_"]), kernels
    # what the forward hands to the update: the loss and tensors, no 0-dim sizes or flags
    outs = list(s.traced[0].graph.outputs())[0].node().inputs()
    assert all(o.type().dim() != 0 for o in outs)


def test_sizes_are_constants_of_the_recording() -> None:
    """BatchNorm computes its channel layout's views from sizes: read, boxed into 0-dim tensors and unboxed
    again in every replay unless the recording folds them (its key fixes every shape); the layer's kept
    ``x.shape`` is not handed from the forward to the update. Still bit for bit the eager step."""
    a, ha = _train(False, SGD, epochs=4, lr=0.1)
    b, hb = _train(True, SGD, epochs=4, lr=0.1)
    assert b.trace_refused is None and b._graph_step.replays >= 2
    _assert_same(a, ha, b, hb)
    for s in b._graph_step._static.values():
        if s.traced is None:
            continue
        for fn in s.traced:
            kinds = {n.kind() for n in fn.graph.nodes()}
            assert not kinds & {"aten::size", "prim::NumToTensor", "aten::Int"}, kinds
            assert "aten::native_batch_norm" in kinds or "aten::bmm" in kinds

class _Counting(nn.Module):
    """Multiplies by a Python counter that grows every training step: a recording bakes the count in."""

    fresh_output = False

    def build(self, input_shape, population, **kw):
        self.count = 0
        return super().build(input_shape, population, **kw)

    def forward(self, x, *, training):
        if training:
            self.count += 1
        return x * (1.0 + 0.1 * self.count)

    def backward(self, g):
        return g * (1.0 + 0.1 * self.count)


def _fit_layers(trace: bool, layers: list, P: int, lr: float, epochs: int) -> tuple[Trainer, dict]:
    """Train ``Sequential(layers)`` with SGD on the test data, with or without ``trace_step``."""
    m = nn.Sequential(layers)
    m.build((D,), Population(P, seed=0))
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=lr), epochs=epochs, batch_size=50,
                 trace_step=trace)
    return tr, tr.fit(_data()).to_dict()


def test_a_recording_that_differs_from_the_eager_step_is_given_up() -> None:
    (a, ha), (b, hb) = (_fit_layers(trace, [nn.Linear(D, 8), _Counting(), nn.ReLU(), nn.Linear(8, 4)], 1, 0.1, 2)
                        for trace in (False, True))
    assert b.trace_refused is not None and "differs from the eager step" in b.trace_refused
    assert b._graph_step.replays == 0
    _assert_same(a, ha, b, hb)


class _Square(nn.Module):
    """A user's own layer (defined outside trainlab): keeps its input for the backward, as layers do."""

    fresh_output = False

    def forward(self, x, *, training):
        self._x = x
        return x * x

    def backward(self, g):
        return 2.0 * self._x * g


def test_a_users_own_layer_is_recorded_with_what_it_keeps() -> None:
    (a, ha), (b, hb) = (_fit_layers(trace, [nn.Linear(D, 8), _Square(), nn.Linear(8, 4)], 2, 0.05, 4)
                        for trace in (False, True))
    assert b.trace_refused is None and b._graph_step.replays >= 4
    _assert_same(a, ha, b, hb)


def test_a_failing_trace_falls_back_to_the_eager_step(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no tracer here")

    a, ha = _train(False, Momentum, lr=0.05)
    monkeypatch.setattr(torch.jit, "trace", broken)
    b, hb = _train(True, Momentum, lr=0.05)
    assert b.trace_refused == "torch.jit.trace failed: RuntimeError: no tracer here"
    _assert_same(a, ha, b, hb)


def test_an_observed_layer_gets_an_eager_step() -> None:
    """A wrapper over a layer's forward (as the probes' capture installs for its own pass) sees a real step."""
    m = _mlp()
    m.build((D,), Population(1, seed=0))
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), batch_size=50, trace_step=True)
    tr.steps_per_epoch = 1
    x, y = _data(n=50)
    seen = []
    with torch.no_grad():
        for _ in range(4):  # eager, recording, check, replay
            tr.train_step(x, y)
        assert tr._graph_step.replays == 1
        layer = m.layers[0]
        inner = layer.forward
        layer.forward = lambda x, *, training: seen.append(x) or inner(x, training=training)
        tr.train_step(x, y)
        del layer.forward
        tr.train_step(x, y)
    assert len(seen) == 1 and tr._graph_step.replays == 2


def test_refusals_are_one_line() -> None:
    m = nn.Sequential([nn.Linear(D, 8), nn.Dropout(0.5), nn.Linear(8, 4)])
    m.build((D,), Population(1, seed=0))
    with pytest.raises(ConfigError, match=r"^trace_step: layers that draw random numbers") as e:
        Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), trace_step=True)
    assert "\n" not in str(e.value)
    m = _mlp()
    m.build((D,), Population(1, seed=0))
    with pytest.raises(ConfigError, match="exclude each other"):
        Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), trace_step=True, cuda_graphs=True)


def test_config_key_reaches_the_trainer() -> None:
    """``train.trace_step=true`` in a config, and a run of examples/mlp.toml with it trains as without."""
    from pathlib import Path

    from trainlab.build import build_run
    from trainlab.config import load_config

    example = Path(__file__).resolve().parents[2] / "examples" / "mlp.toml"
    small = ["data.train=200", "data.val=100", "data.test=100", "train.epochs=2"]
    plain = build_run(load_config(example, small))
    traced = build_run(load_config(example, small + ["train.trace_step=true"]))
    g = traced.trainer._graph_step
    assert isinstance(g, GraphStep) and g.trace and not g.capture
    ha = plain.trainer.fit(plain.splits.train, plain.splits.val, plain.splits.test).to_dict()
    hb = traced.trainer.fit(traced.splits.train, traced.splits.val, traced.splits.test).to_dict()
    assert ha == hb and g.replays > 0
