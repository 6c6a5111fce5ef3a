"""Probes: exact statistics on hand-built layers, per member, every layer type, no effect on training, overhead."""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest
import torch

from trainlab import nn
from trainlab.build import build_run
from trainlab.config import RunConfig
from trainlab.diagnose import Probe, probe_model
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.train import Trainer

torch.set_num_threads(1)


def _model(layers, in_shape=(4,), P=1, seed=0):
    m = nn.Sequential(layers)
    m.build(in_shape, Population(P, seed=seed))
    return m


def _set_linear(layer: nn.Linear, w: torch.Tensor, b: torch.Tensor) -> None:
    layer.weight.data.copy_(w.expand_as(layer.weight.data))
    layer.bias.data.copy_(b.reshape(1, 1, -1).expand_as(layer.bias.data))


def test_dead_and_saturated_fractions_are_exact():
    # Unit j of each layer has zero weights and bias b_j: its output is act(b_j) on every example.
    x = torch.randn(50, 4)
    b = torch.tensor([10.0, -10.0, 0.0, 3.0])
    lin1, lin2, lin3 = nn.Linear(None, 4), nn.Linear(None, 4), nn.Linear(None, 4)
    model = _model([lin1, nn.ReLU(), lin2, nn.Sigmoid(), lin3, nn.Tanh()])
    for lin in (lin1, lin2, lin3):
        _set_linear(lin, torch.zeros(4, 4), b)
    rec = probe_model(model, x, bins=10, gradients=False)
    relu, sig, tanh = rec["layers"]["1"]["act"], rec["layers"]["3"]["act"], rec["layers"]["5"]["act"]
    assert relu["dead"] == [pytest.approx(0.5)]  # b = -10 and b = 0: never > 0
    assert relu["inactive"] == relu["dead"]
    # sigmoid(+-10) are saturated (slope < 5% of 1/4); sigmoid(0) = 0.5 and sigmoid(3) = 0.953 are not
    assert sig["saturated"] == [pytest.approx(0.5)]
    # sigmoid(b) feeds the tanh layer through zero weights: tanh(b) again; tanh(3) = 0.995 > 0.9747 is saturated too
    assert tanh["saturated"] == [pytest.approx(0.75)]
    assert "dead" not in sig and "saturated" not in relu


def test_tanh_saturation_threshold():
    x = torch.randn(10, 4)
    lin = nn.Linear(None, 4)
    model = _model([lin, nn.Tanh()])
    _set_linear(lin, torch.zeros(4, 4), torch.tensor([10.0, -10.0, 0.0, 1.0]))
    act = probe_model(model, x, gradients=False)["layers"]["1"]["act"]
    assert act["saturated"] == [pytest.approx(0.5)]  # |tanh(1)| = 0.76 is not saturated
    assert act["range"] == [-1.0, 1.0]
    counts = np.array(act["hist"][0])
    assert counts.sum() == 10 * 4


def test_leaky_relu_units_are_never_dead_unless_slope_is_zero():
    x = torch.randn(30, 4)
    lin = nn.Linear(None, 4)
    model = _model([lin, nn.LeakyReLU([0.0, 0.01])], P=2)
    _set_linear(lin, torch.zeros(4, 4), torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    act = probe_model(model, x, gradients=False)["layers"]["1"]["act"]
    assert act["inactive"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert act["dead"] == [pytest.approx(0.5), 0.0]  # member 0 has slope 0: a ReLU


def test_unit_spread_detects_symmetry_and_gradients_match():
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    lin1 = nn.Linear(None, 5, init="zeros")
    model = _model([lin1, nn.Sigmoid(), nn.Linear(None, 3, init="zeros")], P=2)
    loss = nn.SoftmaxCrossEntropy()
    loss.build(2)
    with torch.no_grad():
        out = model.forward(x.unsqueeze(0), training=True)
        loss.forward(out, y)
        model.backward(loss.backward())
    rec = probe_model(model, x, gradients=True)
    assert rec["layers"]["0"]["weight"]["unit_spread"] == [0.0, 0.0]
    assert rec["summary"]["min_unit_spread"] == [0.0, 0.0]
    g = model.layers[2].weight.grad
    for m in range(2):
        assert rec["layers"]["2"]["grad"]["norm"][m] == pytest.approx(float(g[m].norm()), rel=1e-5)
    # a random init breaks the symmetry
    model2 = _model([nn.Linear(None, 5, init="he_normal"), nn.ReLU(), nn.Linear(None, 3)])
    assert probe_model(model2, x, gradients=False)["summary"]["min_unit_spread"][0] > 0.3


def test_update_ratio_of_plain_sgd_is_lr_times_grad_over_weight():
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    model = _model([nn.Linear(None, 6, init="he_normal"), nn.ReLU(), nn.Linear(None, 3)], P=2)
    opt = SGD(model.parameters(), lr=[0.1, 0.01])
    grads, befores = [], []

    class Spy(Probe):
        def on_step_end(self, trainer, loss):
            if self._sampled(trainer.step):
                grads.append(model.layers[0].weight.grad.clone())
                befores.append(self._before[0].clone())
            super().on_step_end(trainer, loss)

    probe = Spy(x, every=2, at_evaluate=False)
    Trainer(model, nn.SoftmaxCrossEntropy(), opt, steps=4, batch_size=20, eval_train=False, callbacks=[probe]
            ).fit((x, y))
    recs = [r for r in probe.records if r["at"] == "step"]
    assert [r["step"] for r in recs] == [2, 4]
    for r, g, w0 in zip(recs, grads, befores):
        for m, lr in enumerate((0.1, 0.01)):
            want = lr * float(g[m].norm()) / float(w0[m].norm())
            assert r["layers"]["0"]["update_ratio"][m] == pytest.approx(want, rel=1e-4)


def test_population_members_are_probed_independently():
    """Member i of a population gets the probe numbers it gets when trained alone with the same seed."""
    cfg = RunConfig.load(None, ["data.train=300", "data.val=100", "data.test=100", "train.epochs=2",
                                           "model.hidden=[20, 20]", "model.activation=\"tanh\""]).member(0)
    pop = cfg.as_population({"optim.lr": [0.01, 0.1, 0.5]}, seeds=[0, 1, 2])
    run = build_run(pop)
    probe = Probe(every=5)
    run.trainer.callbacks.append(probe)
    run.trainer.fit(run.splits.train, run.splits.val)
    for m, (seed, lr) in enumerate(zip([0, 1, 2], [0.01, 0.1, 0.5])):
        one = cfg.replace({"optim.lr": lr, "population.seeds": [seed]})
        r1 = build_run(one)
        p1 = Probe(every=5)
        r1.trainer.callbacks.append(p1)
        r1.trainer.fit(r1.splits.train, r1.splits.val)
        a, b = probe.records[-1]["layers"]["1"]["act"], p1.records[-1]["layers"]["1"]["act"]
        assert a["std"][m] == pytest.approx(b["std"][0], rel=1e-4)
        assert a["saturated"][m] == pytest.approx(b["saturated"][0], abs=2e-3)


def _twin_runs(cfg):
    return build_run(cfg), build_run(cfg)


@pytest.mark.parametrize("extra", [
    ["model.norm=\"batchnorm\"", "model.dropout=0.3", "model.input_noise=0.1"],
    ["model.norm=\"batchnorm\"", "model.bn_inference=\"population\"", "model.input_dropout=0.2"],
])
def test_probing_every_step_leaves_training_bit_for_bit_unchanged(extra):
    cfg = RunConfig.load(None, ["data.train=300", "data.val=100", "data.test=100", "train.epochs=2",
                                           "train.batch_size=50", "model.hidden=[30, 30]", *extra]).member(0)
    a, b = _twin_runs(cfg)
    probe = Probe(every=1, histograms="always")
    b.trainer.callbacks.append(probe)
    ha = a.trainer.fit(a.splits.train, a.splits.val)
    hb = b.trainer.fit(b.splits.train, b.splits.val)
    sa, sb = a.trainer.state_dict()[0], b.trainer.state_dict()[0]
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k  # weights, BN statistics, optimizer state, every RNG
    assert ha["val_loss"].tolist() == hb["val_loss"].tolist()
    assert len(probe.records) == 1 + a.trainer.step + 0  # begin + every step (evaluations share their step)


def test_every_layer_type_including_conv():
    pytest.importorskip("trainlab.nn._conv")
    from trainlab.nn._conv import Conv2d, SpatialDropout2d
    from trainlab.nn._pool import Flatten, MaxPool2d

    torch.manual_seed(0)
    x = torch.rand(40, 1, 8, 8)
    y = torch.randint(0, 3, (40,))
    layers = [nn.GaussianNoise(0.05), Conv2d(None, 4, 3, padding=1, init="he_normal"), nn.BatchNorm(), nn.ReLU(),
              SpatialDropout2d(0.2), MaxPool2d(2), nn.GroupNorm(2), nn.ELU(), Flatten(),
              nn.Dropout(0.2), nn.Linear(None, 12, init="he_normal"), nn.LayerNorm(), nn.LeakyReLU(0.1),
              nn.DropConnectLinear(None, 10, p=0.2), nn.Tanh(), nn.NoisyLinear(None, 8, std=0.01), nn.GELU(),
              nn.Linear(None, 8), nn.Sigmoid(), nn.Linear(None, 8), nn.Softplus(), nn.Linear(None, 3)]

    def make():
        m = nn.Sequential(copy.deepcopy(layers))
        m.build((1, 8, 8), Population(2, seed=3))
        return m

    ref, probed = make(), make()
    probe = Probe(x[:16], every=1, histograms="always")
    for model, cbs in ((ref, []), (probed, [probe])):
        Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.05), steps=6, batch_size=10,
                eval_train=True, callbacks=cbs).fit((x, y))
    for k, v in ref.state_dict().items():
        assert torch.equal(v, probed.state_dict()[k]), k
    last = probe.records[-1]
    table = probe.data["layers"]
    for row in table:
        entry = last["layers"].get(str(row["index"]), {})
        if row["role"] in ("activation", "weight", "norm"):
            assert "act" in entry, row["name"]
            assert len(entry["act"]["mean"]) == 2 and len(entry["act"]["hist"]) == 2
        if row["role"] == "weight":
            assert len(entry["grad"]["norm"]) == 2 and "update_ratio" in entry
    conv_relu = last["layers"]["3"]["act"]
    assert 0.0 <= conv_relu["dead"][0] <= 1.0  # per channel over examples and positions
    assert last["layers"]["1"]["weight"]["unit_spread"][0] > 0  # conv filters differ


def test_results_live_in_history_and_metrics(tmp_path):
    cfg = RunConfig.load(None, ["data.train=200", "data.val=100", "data.test=100", "train.epochs=2",
                                           "model.hidden=[16]"]).member(0)
    run = build_run(cfg)
    probe = Probe(every=2)
    run.trainer.callbacks.append(probe)
    hist = run.trainer.fit(run.splits.train, run.splits.val)
    assert hist.info["probes"] is probe.data
    for rec in hist.records:
        assert len(rec["probe_dead"]) == 1 and rec["probe_grad_ratio"][0] > 0
    hist.save(tmp_path / "history.json")
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["info"]["probes"]["records"][-1]["step"] == run.trainer.step
    lines = [json.loads(l) for l in hist.jsonl_lines()]
    assert "probe_dead" in lines[0]
    steps, vals = probe.series("dead")
    assert steps[0] == 0 and len(vals) == len(steps)
    from trainlab.diagnose._plots import plot_activation_grid, plot_probe_series

    fig = plot_activation_grid(probe.data)
    assert len(fig.axes) >= 3
    plot_probe_series(probe.data)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_resumed_training_keeps_appending_probe_records():
    cfg = RunConfig.load(None, ["data.train=200", "data.val=100", "data.test=100", "train.epochs=4",
                                           "model.hidden=[16]"]).member(0)
    full = build_run(cfg)
    fp = Probe(every=3)
    full.trainer.callbacks.append(fp)
    full.trainer.fit(full.splits.train, full.splits.val)

    half = build_run(cfg)
    hp = Probe(every=3)
    half.trainer.callbacks.append(hp)
    half.trainer.steps = 4
    half.trainer.fit(half.splits.train, half.splits.val)
    tensors, meta = half.trainer.state_dict()
    meta = json.loads(json.dumps(meta))
    resumed = build_run(cfg)
    rp = Probe(every=3)
    resumed.trainer.callbacks.append(rp)
    resumed.trainer.load_state_dict(tensors, meta)
    resumed.trainer.fit(resumed.splits.train, resumed.splits.val)
    assert [r["step"] for r in rp.records] == [r["step"] for r in fp.records]
    assert rp.records[-1]["summary"]["dead"] == fp.records[-1]["summary"]["dead"]


def test_a_diverged_member_reads_as_none_and_the_others_go_on():
    cfg = RunConfig.load(None, ["data.train=200", "data.val=100", "data.test=100", "train.epochs=2",
                                           "model.hidden=[16]", "model.activation=\"identity\"", "loss.name=\"mse\""]).member(0)
    # squared error at the second rate overflows to inf within a few steps
    cfg = cfg.as_population({"optim.lr": [0.01, 1e3]}, seeds=[0, 0])
    run = build_run(cfg)
    probe = Probe(every=1, histograms="always")
    run.trainer.callbacks.append(probe)
    hist = run.trainer.fit(run.splits.train, run.splits.val)
    assert 1 in hist.diverged and 0 not in hist.diverged
    assert len(probe.records) == 1 + run.trainer.step  # the frozen member is probed on, with the others
    json.dumps(probe.data, allow_nan=False)  # NaN/inf never reach the stored records
    # NaN weights (a member that overflowed): that member's numbers are None, the other's intact
    model = run.model
    model.layers[0].weight.data[1, 0, 0] = float("nan")
    rec = probe_model(model, run.splits.train.x[:50])
    first = rec["layers"]["0"]
    assert first["act"]["std"][0] is not None and first["act"]["std"][1] is None
    assert first["weight"]["norm"][0] is not None and first["weight"]["norm"][1] is None
    assert sum(first["act"]["hist"][0]) == 50 * 16
    json.dumps(rec, allow_nan=False)


def test_probe_arguments_are_checked():
    from trainlab.errors import ConfigError

    with pytest.raises(ConfigError, match="Probe every must be an integer >= 1 or None, got 0"):
        Probe(every=0)
    with pytest.raises(ConfigError, match="Probe histograms must be 'evaluate', 'always' or 'never'"):
        Probe(histograms="sometimes")


def test_a_sampled_step_costs_little():
    """A light probe measurement (256 images) costs about one or two training steps (measured 1.5 x)."""
    cfg = RunConfig.load("examples/healthy.toml").member(0)
    run = build_run(cfg)
    x, y = run.splits.train.x, run.splits.train.y
    tr = run.trainer
    tr.steps_per_epoch = 35
    for _ in range(3):
        tr.train_step(x[:100], y[:100])
        probe_model(run.model, x[:256], light=True)

    def best(f, n=15):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    step = best(lambda: tr.train_step(x[:100], y[:100]))
    light = best(lambda: probe_model(run.model, x[:256], light=True))
    assert light < 5 * step, (light, step)
