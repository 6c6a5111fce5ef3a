"""LayerProbe: values against a direct computation, no side effects (bitwise), JSON, nested layers, BN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.optim import SGD, Momentum
from trainlab.population import Population
from trainlab.train import LayerProbe, Trainer, probe_record
from trainlab.train._layer_stats import SIGMOID_EDGE, TANH_EDGE, histogram, named_modules


def data(n=120, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def np_hist(values: np.ndarray, edges: list[float]) -> list[int]:
    v = values[np.isfinite(values)]
    return np.histogram(np.clip(v, edges[0], edges[-1]), bins=np.asarray(edges))[0].tolist()


def test_values_equal_a_direct_computation():
    P = 2
    m = nn.Sequential([nn.Linear(None, 5, init_scale=[1.0, 4.0]), nn.Sigmoid(), nn.Linear(None, 7), nn.ReLU(),
                       nn.Linear(None, 4), nn.Tanh(), nn.Linear(None, 3)])
    m.build((6,), Population(P, seed=3))
    # make member 1's ReLU layer have dead units: a large negative bias on three of them
    m.layers[2].bias.data[1, :3] = -100.0
    x, y = data()
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=[0.1, 0.01]), steps=1, batch_size=40)
    tr.fit((x, y))  # one step: .grad holds that step's gradient
    probe = x[:50]
    rec = probe_record(m, probe, bins=7, gradients=True, training=True)
    by = {e["path"]: e for e in rec["layers"]}
    assert list(by) == [str(i) for i in range(7)]

    # the forward written out, member by member
    W = [m.layers[i].weight.data.double() for i in (0, 2, 4, 6)]
    b = [m.layers[i].bias.data.double() for i in (0, 2, 4, 6)]
    for k in range(P):
        h1 = torch.sigmoid(probe.double() @ W[0][k] + b[0][k])
        h2 = torch.relu(h1 @ W[1][k] + b[1][k])
        h3 = torch.tanh(h2 @ W[2][k] + b[2][k])
        for path, h in (("1", h1), ("3", h2), ("5", h3)):
            act = by[path]["act"]
            flat = h.numpy().ravel()
            assert act["mean"][k] == pytest.approx(flat.mean(), rel=1e-5, abs=1e-7)
            assert act["std"][k] == pytest.approx(flat.std(), rel=1e-4, abs=1e-7)
            assert len(act["edges"]) == 8
            assert act["hist"][k] == np_hist(flat.astype(np.float32), act["edges"])
            assert sum(act["hist"][k]) == flat.size
        sat1 = float(((h1 < SIGMOID_EDGE) | (h1 > 1 - SIGMOID_EDGE)).double().mean())
        assert by["1"]["act"]["saturated"][k] == pytest.approx(sat1)
        sat3 = float((h3.abs() > TANH_EDGE).double().mean())
        assert by["5"]["act"]["saturated"][k] == pytest.approx(sat3)
        dead = float((h2.amax(dim=0) <= 0).double().mean())
        assert by["3"]["act"]["dead"][k] == pytest.approx(dead)
        for path, w in zip(("0", "2", "4", "6"), W):
            we = by[path]["weight"]
            wf = w[k].numpy().ravel()
            assert we["norm"][k] == pytest.approx(np.linalg.norm(wf), rel=1e-6)
            assert we["mean"][k] == pytest.approx(wf.mean(), rel=1e-5, abs=1e-8)
            assert we["std"][k] == pytest.approx(wf.std(), rel=1e-5)
            assert we["hist"][k] == np_hist(wf.astype(np.float32), we["edges"])
            a = float(torch.stack([v.abs().max() for v in w]).max())
            assert we["edges"][0] == pytest.approx(-a) and we["edges"][-1] == pytest.approx(a)
            layer = m.layers[int(path)]
            gw = layer.weight.grad[k].double().norm().item()
            gb = layer.bias.grad[k].double().norm().item()
            assert by[path]["grad"]["params"]["weight"][k] == pytest.approx(gw, rel=1e-6)
            assert by[path]["grad"]["params"]["bias"][k] == pytest.approx(gb, rel=1e-6)
            assert by[path]["grad"]["norm"][k] == pytest.approx(math.hypot(gw, gb), rel=1e-6)
    assert by["3"]["act"]["dead"][1] >= 3 / 7  # the three units pushed to -100 are dead
    assert by["1"]["act"]["edges"][0] == 0.0 and by["1"]["act"]["edges"][-1] == 1.0  # fixed sigmoid range
    assert by["5"]["act"]["edges"][0] == -1.0 and by["5"]["act"]["edges"][-1] == 1.0


def test_gradients_are_the_last_steps_and_match_autograd():
    """The recorded gradient norms are those of the last training batch (checked against torch.autograd)."""
    m = nn.Sequential([nn.Linear(None, 5), nn.Tanh(), nn.Linear(None, 3)])
    m.build((6,), Population(1, seed=0), dtype=torch.float64)
    x, y = data(n=40)
    x = x.double()
    w0 = [p.data.clone() for p in m.parameters()]
    probe = LayerProbe(every=1, batch=10, keep=10)
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), steps=1, batch_size=40, callbacks=[probe])
    tr.fit((x, y))
    xs = x[tr._perm] if tr._perm is not None else x
    ws = [w.clone().requires_grad_(True) for w in w0]
    with torch.enable_grad():
        h = torch.tanh(xs @ ws[0][0] + ws[1][0])
        out = h @ ws[2][0] + ws[3][0]
        torch.nn.functional.cross_entropy(out, y[tr._perm] if tr._perm is not None else y).backward()
    rec = probe.records[-1]
    assert rec["step"] == 1
    g = {e["path"]: e["grad"] for e in rec["layers"] if "grad" in e}
    assert g["0"]["params"]["weight"][0] == pytest.approx(float(ws[0].grad.norm()), rel=1e-9)
    assert g["2"]["params"]["bias"][0] == pytest.approx(float(ws[3].grad.norm()), rel=1e-9)
    assert all(e.get("grad", None) is None for e in probe.records[0]["layers"])  # step 0: no step yet


def _bn_model(P=2):
    m = nn.Sequential([
        nn.Linear(None, 8), nn.BatchNorm(), nn.ReLU(), nn.Dropout([0.2, 0.5]),
        nn.Residual([nn.Linear(None, 8), nn.BatchNorm(momentum=[0.1, 0.3]), nn.Tanh(), nn.GaussianNoise(0.1)]),
        nn.LeakyReLU([0.0, 0.1]), nn.Linear(None, 3)])
    m.build((6,), Population(P, seed=7))
    return m


def _train(with_probe: bool, steps=7):
    m = _bn_model()
    x, y = data(n=130)
    cbs = [LayerProbe(every=1, batch=64, bins=9)] if with_probe else []
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), Momentum(m.parameters(), lr=[0.05, 0.2], momentum=0.9), steps=steps,
                 batch_size=32, seed=5, eval_every=3, callbacks=cbs)
    h = tr.fit((x, y), val=(x[:40], y[:40]))
    return m, h, cbs


def test_training_with_the_probe_is_bitwise_identical():
    m0, h0, _ = _train(False)
    m1, h1, cbs = _train(True)
    s0, s1 = m0.state_dict(), m1.state_dict()
    assert set(s0) == set(s1)
    for k in s0:  # weights, BN running statistics and counters
        assert torch.equal(s0[k], s1[k]), k
    assert h0.to_dict()["records"] == h1.to_dict()["records"]
    for dev, states in m0.population.get_state().items():  # the members' generators (dropout, noise)
        for a, b in zip(states, m1.population.get_state()[dev]):
            assert torch.equal(a, b)
    assert [r["step"] for r in cbs[0].records] == list(range(8))


def test_records_are_json_safe_even_for_a_diverged_member():
    m = _bn_model()
    x, _ = data(n=64)
    m.layers[0].weight.data[1, 0, 0] = float("nan")
    rec = probe_record(m, x, bins=5, gradients=True)
    text = json.dumps(rec, allow_nan=False)  # raises on NaN/inf
    back = json.loads(text)
    lin = back["layers"][0]
    assert lin["weight"]["norm"][1] is None and lin["weight"]["norm"][0] is not None
    relu = next(e for e in back["layers"] if e["type"] == "ReLU")
    assert relu["act"]["mean"][1] is None and relu["act"]["mean"][0] is not None
    assert sum(relu["act"]["hist"][0]) == 64 * 8


def test_nested_layers_are_found():
    m = _bn_model()
    names = named_modules(m)
    assert [mod for _, mod in names] == list(m.modules())[1:]  # Module.modules() order, every layer
    rec = probe_record(m, data(n=32)[0], bins=4, gradients=False)
    paths = [e["path"] for e in rec["layers"]]
    assert paths == ["0", "1", "2", "4.block.0", "4.block.1", "4.block.2", "5", "6"]
    types = {e["path"]: e["type"] for e in rec["layers"]}
    assert types["4.block.1"] == "BatchNorm" and "bn" in rec["layers"][4] and "act" in rec["layers"][5]
    leaky = rec["layers"][6]["act"]
    assert leaky["family"] == "leaky_relu" and "inactive" in leaky and leaky["dead"][1] == 0.0


@pytest.mark.parametrize("conv", [False, True])
def test_batch_norm_statistics(conv):
    P = 2
    if conv:
        m = nn.Sequential([nn.Conv2d(None, 4, 3, padding=1), nn.BatchNorm(), nn.ReLU(), nn.Flatten(),
                           nn.Linear(None, 3)])
        m.build((2, 5, 5), Population(P, seed=1))
        x = torch.randn(20, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    else:
        m = nn.Sequential([nn.Linear(None, 4), nn.BatchNorm(), nn.ReLU(), nn.Linear(None, 3)])
        m.build((6,), Population(P, seed=1))
        x = data(n=20)[0]
    bn = m.layers[1]
    bn.running_mean.copy_(torch.randn_like(bn.running_mean))
    bn.running_var.copy_(torch.rand_like(bn.running_var) + 0.5)
    before = {k: v.clone() for k, v in m.buffers().items()}
    rec = probe_record(m, x, bins=4, gradients=False)
    for k, v in m.buffers().items():  # running statistics and counters untouched
        assert torch.equal(v, before[k]), k
    e = rec["layers"][1]["bn"]
    z = m.layers[0].forward(x.unsqueeze(0), training=True).double()  # BN's input, (P, N, C[, H, W])
    for k in range(P):
        ref = torch.nn.BatchNorm2d(4) if conv else torch.nn.BatchNorm1d(4)
        ref = ref.double().train()
        zk = z[k]
        ref(zk)
        dims = (0, 2, 3) if conv else (0,)
        mean, var = zk.mean(dims), zk.var(dims, unbiased=False)
        # torch's running average after one batch from (0, 1) with momentum 0.1 gives back the batch stats
        assert torch.allclose((ref.running_mean - 0.0) / 0.1, mean)
        assert e["batch_mean"]["mean"][k] == pytest.approx(float(mean.mean()), rel=1e-6, abs=1e-9)
        assert e["batch_mean"]["spread"][k] == pytest.approx(float(mean.std(unbiased=False)), rel=1e-6)
        assert e["batch_var"]["mean"][k] == pytest.approx(float(var.mean()), rel=1e-6)
        assert e["batch_var"]["spread"][k] == pytest.approx(float(var.std(unbiased=False)), rel=1e-6)
        rm, rv = bn.running_mean[k].double(), bn.running_var[k].double()
        assert e["running_mean"]["mean"][k] == pytest.approx(float(rm.mean()), rel=1e-6)
        assert e["running_var"]["spread"][k] == pytest.approx(float(rv.std(unbiased=False)), rel=1e-6)


def test_record_header_labels_lr_and_schedule_of_records():
    m = nn.Sequential([nn.Linear(None, 4), nn.ReLU(), nn.Linear(None, 3)])
    m.build((6,), Population(3, seed=0))
    x, y = data(n=100)
    got = []
    probe = LayerProbe(every=4, batch=30, bins=6, sinks=[got.append], keep=2)
    tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=[0.1, 0.01, 0.001]), steps=10, batch_size=25,
                 callbacks=[probe], labels=["lr=0.1", "lr=0.01", "lr=0.001"])
    tr.fit((x, y))
    assert [(r["step"], r["at"]) for r in got] == [(0, "begin"), (4, "step"), (8, "step"), (10, "end")]
    assert len(probe.records) == 2 and probe.records[-1] is got[-1]
    r = got[1]
    assert r["labels"] == ["lr=0.1", "lr=0.01", "lr=0.001"]
    assert r["lr"] == pytest.approx([0.1, 0.01, 0.001])
    assert r["epoch"] == pytest.approx(1.0) and r["members"] == 3 and r["batch"] == 30 and r["alive"] == [True] * 3
    assert probe.seconds > 0


def test_histogram_rule():
    flat = torch.tensor([[0.0, 0.5, 1.0, 2.0, -3.0, float("nan")], [0.99, 0.25, 0.26, 0.74, 0.75, float("inf")]])
    h = histogram(flat, 0.0, 1.0, 4).tolist()
    assert h == [[2, 0, 1, 2], [0, 2, 1, 2]]  # outside: end bins; last bin closed; non-finite left out


@pytest.mark.parametrize("kw", [dict(every=0), dict(batch=0), dict(bins=0), dict(every=1.5), dict(keep=-1),
                                dict(sinks=[3])])
def test_bad_arguments(kw):
    with pytest.raises(ConfigError, match="LayerProbe"):
        LayerProbe(**kw)


def test_eval_mode_probe_no_dropout_and_population_bn_before_its_statistics():
    m = nn.Sequential([nn.Linear(None, 8), nn.BatchNorm(inference="population"), nn.ReLU(), nn.Dropout(0.5),
                       nn.Linear(None, 8), nn.ReLU(), nn.Linear(None, 3)])
    m.build((6,), Population(2, seed=4))
    x = data(n=50)[0]
    a = probe_record(m, x, bins=5, gradients=False, training=False)
    b = probe_record(m, x, bins=5, gradients=False, training=False)
    assert a == b  # eval mode: no dropout masks, deterministic
    t1 = probe_record(m, x, bins=5, gradients=False, training=True)
    t2 = probe_record(m, x, bins=5, gradients=False, training=True)
    assert t1 == t2  # training mode: the same masks each time (the generators are restored)
    after_dropout = [e for e in t1["layers"] if e["path"] == "5"][0]["act"]
    assert after_dropout != [e for e in a["layers"] if e["path"] == "5"][0]["act"]  # ... unlike eval mode's
    assert m.layers[1].inference == "population"


def test_conv_residual_network_bitwise_and_channels_as_units():
    def build():
        m = nn.Sequential([nn.Conv2d(None, 4, 3, padding=1), nn.BatchNorm(), nn.ReLU(),
                           nn.Residual([nn.Conv2d(None, 4, 3, padding=1), nn.BatchNorm(), nn.ReLU(),
                                        nn.SpatialDropout2d(0.3), nn.Conv2d(None, 4, 3, padding=1), nn.BatchNorm()]),
                           nn.ReLU(), nn.GlobalAvgPool2d(), nn.Linear(None, 3)])
        m.build((1, 6, 6), Population(2, seed=3))
        return m

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 1, 6, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    states = []
    for probe in (None, LayerProbe(every=1, batch=16, bins=6)):
        m = build()
        tr = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=0.1), steps=4, batch_size=10, seed=2,
                     sinks=[probe] if probe else [])
        tr.fit((x, y))
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    rec = probe.records[-1]
    paths = [e["path"] for e in rec["layers"]]
    assert "3.block.1" in paths and "3.block.5" in paths and "3.block.3" not in paths  # dropout has no entry
    relu = next(e for e in rec["layers"] if e["path"] == "3.block.2")["act"]
    # a unit is a channel: the dead fraction is a multiple of 1/4
    assert all(v is not None and abs(v * 4 - round(v * 4)) < 1e-12 for v in relu["dead"])
    assert sum(relu["hist"][0]) == 16 * 4 * 6 * 6
    bn = next(e for e in rec["layers"] if e["path"] == "3.block.1")["bn"]
    assert bn["batch_var"]["mean"][0] > 0 and json.dumps(rec, allow_nan=False)


def test_std_of_collapsed_activations_is_accurate_in_float32():
    """Sigmoid outputs at 0.5 +- 0.001 (tiny init): the std must not vanish in a cancellation."""
    from trainlab.train._probes import _moments

    g = torch.Generator().manual_seed(0)
    flat = (0.5 + 1e-3 * torch.randn(2, 100_000, generator=g, dtype=torch.float64)).float()
    mean, std, norm, bad = _moments(flat)
    ref = flat.double()
    assert torch.allclose(std, ref.std(1, unbiased=False), rtol=1e-4)
    assert torch.allclose(mean, ref.mean(1), rtol=1e-6)
    assert torch.allclose(norm, ref.norm(dim=1), rtol=1e-6)
    assert not bool(bad.any())
