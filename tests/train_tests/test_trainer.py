"""Trainer: population invariant, determinism, divergence handling, history."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.optim import SGD, Adam, Momentum
from trainlab.population import Population
from trainlab.train import History, Trainer


def mlp(P_or_pop, init_scale=1.0, dtype=torch.float32, act=nn.ReLU):
    m = nn.Sequential([nn.Linear(784, 32, init="he_normal", init_scale=init_scale), act(),
                       nn.Linear(32, 32, init="he_normal", init_scale=init_scale), act(),
                       nn.Linear(32, 10, init="he_normal", init_scale=init_scale)])
    m.build((784,), P_or_pop, dtype=dtype)
    return m


def fit(model, opt_cls, lr, splits, *, dtype=torch.float32, steps=None, epochs=2, **opt_kw):
    opt = opt_cls(model.parameters(), lr=lr, **opt_kw)
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, epochs=epochs, steps=steps, batch_size=50, seed=3)
    x = splits.train.x.to(dtype)
    h = tr.fit((x, splits.train.y), val=(splits.val.x.to(dtype), splits.val.y))
    return h


@pytest.mark.parametrize("opt_cls", [SGD, Momentum, Adam])
def test_population_members_equal_members_trained_alone(small_splits, opt_cls):
    lrs = [0.003, 0.01, 0.03, 0.1] if opt_cls is not Adam else [1e-4, 3e-4, 1e-3, 3e-3]
    scales = [0.5, 1.0, 1.5, 0.25]
    pop = Population(4, seed=11)
    big = mlp(pop, init_scale=scales)
    hb = fit(big, opt_cls, lrs, small_splits)
    for i in range(4):
        alone = mlp(pop.select([i]), init_scale=scales[i])
        ha = fit(alone, opt_cls, lrs[i], small_splits)
        for k, t in big.state_dict().items():
            torch.testing.assert_close(t[i:i + 1], alone.state_dict()[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hb["val_loss"][:, i], ha["val_loss"][:, 0], rtol=1e-5)
        np.testing.assert_allclose(hb["val_acc"][:, i], ha["val_acc"][:, 0])


def test_population_invariant_float64_tight(small_splits):
    pop = Population(3, seed=5)
    big = mlp(pop, init_scale=[1.0, 0.3, 2.0], dtype=torch.float64)
    fit(big, SGD, [0.01, 0.05, 0.002], small_splits, dtype=torch.float64, steps=15)
    for i, (s, lr) in enumerate(zip([1.0, 0.3, 2.0], [0.01, 0.05, 0.002])):
        alone = mlp(pop.select([i]), init_scale=s, dtype=torch.float64)
        fit(alone, SGD, lr, small_splits, dtype=torch.float64, steps=15)
        for k, t in big.state_dict().items():
            torch.testing.assert_close(t[i:i + 1], alone.state_dict()[k], rtol=1e-12, atol=1e-12)


def test_same_seed_same_numbers_on_cpu(small_splits):
    h1 = fit(mlp(Population(2, seed=1)), Momentum, 0.05, small_splits)
    h2 = fit(mlp(Population(2, seed=1)), Momentum, 0.05, small_splits)
    assert h1.to_dict() == h2.to_dict()
    h3 = fit(mlp(Population(2, seed=2)), Momentum, 0.05, small_splits)
    assert h3.to_dict()["records"] != h1.to_dict()["records"]


def test_diverged_member_is_frozen_and_others_continue(small_splits):
    pop = Population(3, seed=0)
    model = mlp(pop)
    opt = SGD(model.parameters(), lr=[0.1, 1e6, 0.2])
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, epochs=5, batch_size=50, seed=0)
    h = tr.fit(small_splits.train, val=small_splits.val)
    assert list(h.diverged) == [1]
    d = h.diverged[1]
    assert d["step"] >= 1 and d["loss"] in ("nan", "inf")
    # healthy members learned
    assert (h.last("val_acc")[[0, 2]] > 0.6).all()
    # the healthy members equal their runs alone
    for i, lr in ((0, 0.1), (2, 0.2)):
        alone = mlp(pop.select([i]))
        fit_alone = Trainer(alone, nn.SoftmaxCrossEntropy(), SGD(alone.parameters(), lr=lr), epochs=5,
                            batch_size=50, seed=0)
        ha = fit_alone.fit(small_splits.train, val=small_splits.val)
        np.testing.assert_allclose(h["val_acc"][:, i], ha["val_acc"][:, 0])


def test_diverged_member_weights_do_not_change_after_divergence(small_splits):
    model = mlp(Population(2))
    opt = SGD(model.parameters(), lr=[0.01, 1e8])
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, steps=3, batch_size=50)
    tr.fit(small_splits.train)
    assert 1 in tr.history.diverged
    frozen = {k: v[1].clone() for k, v in model.state_dict().items()}
    tr.steps = 10
    tr.fit(small_splits.train)
    for k, v in model.state_dict().items():
        assert torch.equal(v[1], frozen[k]) or (torch.isnan(v[1]) == torch.isnan(frozen[k])).all()


def test_all_members_diverged_ends_training(small_splits):
    model = mlp(Population(2))
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=1e9), epochs=5, batch_size=50)
    h = tr.fit(small_splits.train)
    assert set(h.diverged) == {0, 1}
    assert tr.step < 5 * 6


def test_steps_and_eval_every(small_splits):
    model = mlp(Population(1))
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01), steps=25, eval_every=10,
                 batch_size=50)
    h = tr.fit(small_splits.train, val=small_splits.val)
    assert list(h["step"]) == [10, 20, 25]
    assert h["epoch"][0] == pytest.approx(10 / 6)
    assert "batch_loss" in h.metrics and "train_acc" in h.metrics and "val_loss" in h.metrics


def test_history_roundtrip_and_jsonl(tmp_path, small_splits):
    model = mlp(Population(2))
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=[0.01, 1e9]), epochs=2, batch_size=50)
    h = tr.fit(small_splits.train, val=small_splits.val)
    h.save(tmp_path / "h.json")
    h2 = History.load(tmp_path / "h.json")
    assert h2.diverged.keys() == h.diverged.keys()
    np.testing.assert_allclose(h2["val_acc"][:, 0], h["val_acc"][:, 0])
    lines = h.jsonl_lines()
    assert len(lines) == len(h.records) * 2
    import json

    rows = [json.loads(x) for x in lines]
    assert {r["member"] for r in rows} == {0, 1}
    assert all(r["diverged"] for r in rows if r["member"] == 1)
    fig = h.plot()
    assert len(fig.axes) == 2


def test_trainer_rejects_bad_arguments(small_splits):
    model = mlp(Population(1))
    opt = SGD(model.parameters(), lr=0.01)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1, got 0"):
        Trainer(model, nn.SoftmaxCrossEntropy(), opt, batch_size=0)
    tr = Trainer(model, nn.SoftmaxCrossEntropy(), opt, epochs=1)
    with pytest.raises(ConfigError, match="training data has 3 inputs but 2 targets"):
        tr.fit((torch.zeros(3, 784), torch.zeros(2, dtype=torch.long)))
    unbuilt = nn.Sequential([nn.Linear(784, 10)])
    with pytest.raises(ConfigError, match="not built"):
        Trainer(unbuilt, nn.SoftmaxCrossEntropy(), opt)


def test_example_mlp_reaches_90_percent_on_held_out_images():
    """Issue 2: a 784-100-100-10 MLP reaches >= 90% on held-out embedded MNIST within 20 epochs."""
    from trainlab.build import build_run
    from trainlab.config import load_config
    from pathlib import Path

    REPO = Path(__file__).resolve().parents[2]

    cfg = load_config(REPO / "examples" / "mlp.toml")
    run = build_run(cfg)
    h = run.trainer.fit(run.splits.train, run.splits.val, run.splits.test)
    assert len(h.records) <= 20
    # measured 0.939 test accuracy (seed 0); 0.90 is the bar
    assert h.last("test_acc")[0] >= 0.90
    assert math.isfinite(h.last("train_loss")[0])
