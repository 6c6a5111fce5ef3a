"""Schedules and clipping inside training: config, per-member invariant, recorded rates/norms, exact resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainlab import nn
from trainlab.build import build_run
from trainlab.checkpoint import load_checkpoint, save_checkpoint
from trainlab.config import load_config
from trainlab.errors import ConfigError
from trainlab.optim import SGD, ClipGradients, Momentum
from trainlab.train import Callback

REPO = Path(__file__).resolve().parents[2]


def cfg(*sets: str) -> dict:
    base = ["data.train=300", "data.val=100", "data.test=0", "train.epochs=4", "train.batch_size=50",
            "model.hidden=[16]", "dtype='float64'"]
    return load_config(REPO / "examples" / "mlp.toml", base + list(sets))


def test_default_config_attaches_nothing():
    run = build_run(cfg())
    assert run.optimizer.hooks == [] and run.optimizer.clip is None
    h = run.trainer.fit(run.splits.train, run.splits.val)
    assert "lr" not in h.metrics and "grad_norm" not in h.metrics


def test_per_member_kinds_from_config_equal_each_member_alone_and_record_the_rate():
    kinds = '["constant", "step", "cosine", "onecycle"]'
    sets = ["population.size=4", f"schedule.name={kinds}", "schedule.step_size=2", "schedule.gamma=0.5",
            "optim.lr=[0.05, 0.05, 0.1, 0.2]"]
    pop = build_run(cfg(*sets))
    hp = pop.trainer.fit(pop.splits.train, pop.splits.val)
    lr = hp["lr"]  # (evaluations, P): the rate of the last step before each evaluation (end of each epoch)
    assert lr.shape == (4, 4)
    torch.testing.assert_close(torch.tensor(lr[:, 0]), torch.full((4,), 0.05, dtype=torch.float64))
    torch.testing.assert_close(torch.tensor(lr[:, 1]), torch.tensor([0.05, 0.05, 0.025, 0.025], dtype=torch.float64))
    assert lr[-1, 2] < lr[0, 2] == 0.1  # cosine over 4 epochs: epoch 0 at the base, epoch 3 at 0.1 (1 + cos(3 pi / 4)) / 2
    assert abs(lr[-1, 2] - 0.1 * (1 + math.cos(3 * math.pi / 4)) / 2) < 1e-15
    assert lr[-1, 3] < 1e-4  # one-cycle ends near lr / (25 * 1e4)
    for i, name in enumerate(["constant", "step", "cosine", "onecycle"]):
        lr_i = [0.05, 0.05, 0.1, 0.2][i]
        alone = build_run(cfg(f"schedule.name='{name}'", "schedule.step_size=2", "schedule.gamma=0.5",
                              f"optim.lr={lr_i}", f"population.seeds=[{pop.config.seed + i}]"))
        ha = alone.trainer.fit(alone.splits.train, alone.splits.val)
        if name != "constant":  # a constant rate alone attaches no schedule (and records no lr)
            torch.testing.assert_close(torch.tensor(ha["lr"][:, 0]), torch.tensor(lr[:, i]), rtol=0, atol=0)
        for k, v in alone.model.state_dict().items():
            torch.testing.assert_close(v[0], pop.model.state_dict()[k][i], rtol=1e-12, atol=1e-12)


def test_warmup_and_plateau_from_config():
    run = build_run(cfg("schedule.name='plateau'", "schedule.patience=0", "schedule.monitor='train_loss'",
                        "schedule.threshold=0.5", "train.epochs=3"))
    h = run.trainer.fit(run.splits.train, run.splits.val)
    # threshold 0.5 (relative): no evaluation after the first improves by half, so each one reduces the rate
    # of the epochs after it (a record holds the rate its epoch trained with)
    torch.testing.assert_close(torch.tensor(h["lr"][:, 0]), torch.tensor([0.05, 0.05, 0.005], dtype=torch.float64))
    run = build_run(cfg("schedule.warmup=2", "schedule.warmup_start=0.5"))
    h = run.trainer.fit(run.splits.train, run.splits.val)
    torch.testing.assert_close(torch.tensor(h["lr"][:, 0]), torch.tensor([0.025, 0.0375, 0.05, 0.05],
                                                                          dtype=torch.float64))


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"schedule.name\[1\] must be one of 'constant'"):
        cfg("population.size=2", "schedule.name=['step', 'linear']")
    with pytest.raises(ConfigError, match="schedule.name lists 3 values but population.size is 2"):
        cfg("population.size=2", "schedule.name=['step', 'step', 'cosine']")
    with pytest.raises(ConfigError, match="optim.clip_norm must be > 0"):
        cfg("optim.clip_norm=0")
    with pytest.raises(ConfigError, match="cycle_momentum needs an optimizer with momentum"):
        build_run(cfg("schedule.name='onecycle'", "optim.name='sgd'", "schedule.cycle_momentum=true"))


class _InterruptAt(Callback):
    """Ask for a stop after step ``k`` and save a checkpoint when it happens (as ``trainlab train`` does)."""

    def __init__(self, k: int, directory: Path) -> None:
        self.k, self.directory = k, directory

    def on_step_end(self, trainer, loss):
        if trainer.step == self.k:
            trainer.interrupt_requested = True

    def on_interrupt(self, trainer):
        save_checkpoint(self.directory, trainer)


@pytest.mark.parametrize("sets", [
    ("schedule.name='onecycle'",),                                  # per step, rate and momentum
    ("population.size=2", "schedule.name=['cosine', 'plateau']",   # per epoch + plateau state
     "schedule.patience=0", "schedule.monitor='train_loss'", "schedule.threshold=0.3",
     "optim.clip_norm=[0.5, 1.0]", "optim.clip_value=0.05"),
])
def test_interrupt_and_resume_is_bit_identical(tmp_path, sets):
    c = cfg(*sets, "train.eval_every=4")
    ref = build_run(c)
    href = ref.trainer.fit(ref.splits.train, ref.splits.val)
    a = build_run(c, callbacks=[_InterruptAt(9, tmp_path)])  # mid-epoch (6 steps an epoch), between evaluations
    with pytest.raises(KeyboardInterrupt):
        a.trainer.fit(a.splits.train, a.splits.val)
    b = build_run(c, callbacks=[_InterruptAt(-1, tmp_path)])
    load_checkpoint(tmp_path, b.trainer)
    hb = b.trainer.fit(b.splits.train, b.splits.val)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert hb.to_dict()["records"] == href.to_dict()["records"]
    assert torch.equal(ref.optimizer.lr, b.optimizer.lr)


# ---- clipping --------------------------------------------------------------------------------------
def _grads(P: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(P, 5, 4), (P, 1, 4), (P, 3, 3, 2, 2)]
    return [torch.randn(s, generator=g, dtype=torch.float64) * 3 for s in shapes]


@pytest.mark.parametrize("norm,value", [([0.5, 100.0, 2.0], None), (None, [0.1, 1.0, 5.0]), ([1.0, 3.0, 0.2], 0.3)])
def test_clipping_per_member_equals_torch_on_each_member_alone(norm, value):
    gs = _grads(3)
    params = [nn.Parameter(torch.zeros_like(g)) for g in gs]
    for p, g in zip(params, gs):
        p.grad.copy_(g)
    opt = SGD(params, lr=0.1)
    ClipGradients(norm=norm, value=value).attach(opt)
    raw = opt.clip(params)
    for i in range(3):
        ref = [torch.nn.Parameter(torch.zeros_like(g[i])) for g in gs]
        for r, g in zip(ref, gs):
            r.grad = g[i].clone()
        total = torch.nn.utils.clip_grad_norm_(ref, norm[i]) if norm is not None else None
        if value is not None:
            torch.nn.utils.clip_grad_value_(ref, value if isinstance(value, float) else value[i])
        for r, p in zip(ref, params):
            torch.testing.assert_close(p.grad[i], r.grad, rtol=1e-14, atol=1e-15)
        if total is not None:
            torch.testing.assert_close(raw[i], total, rtol=1e-14, atol=0)
    if norm is not None:
        assert bool((raw > torch.tensor(norm, dtype=torch.float64)).any())  # some members were clipped


def test_clipped_training_matches_torch_sgd_momentum():
    torch.manual_seed(0)
    x, y = torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,))
    from trainlab.population import Population

    model = nn.Sequential([nn.Linear(None, 8), nn.Tanh(), nn.Linear(None, 3)])
    model.build((6,), Population(2, seed=0), dtype=torch.float64)
    opt = Momentum(model.parameters(), lr=0.5, momentum=0.9)
    ClipGradients(norm=[0.1, 1.0]).attach(opt)
    loss = nn.SoftmaxCrossEntropy()
    loss.build(2, dtype=torch.float64)
    refs = []
    for i in range(2):
        tm = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
        with torch.no_grad():
            tm[0].weight.copy_(model.layers[0].weight.data[i].T), tm[0].bias.copy_(model.layers[0].bias.data[i, 0])
            tm[2].weight.copy_(model.layers[2].weight.data[i].T), tm[2].bias.copy_(model.layers[2].bias.data[i, 0])
        refs.append((tm, torch.optim.SGD(tm.parameters(), lr=0.5, momentum=0.9)))
    for step in range(5):
        with torch.no_grad():
            out = model.forward(x.unsqueeze(0), training=True)
            loss.forward(out, y)
            model.backward(loss.backward())
            opt.step()
        for i, (tm, to) in enumerate(refs):
            to.zero_grad()
            torch.nn.functional.cross_entropy(tm(x), y).backward()
            torch.nn.utils.clip_grad_norm_(tm.parameters(), [0.1, 1.0][i])
            to.step()
    for i, (tm, _) in enumerate(refs):
        torch.testing.assert_close(model.layers[0].weight.data[i].T, tm[0].weight.detach(), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(model.layers[2].bias.data[i, 0], tm[2].bias.detach(), rtol=1e-10, atol=1e-12)


def test_grad_norm_recorded_from_config():
    run = build_run(cfg("population.size=2", "optim.clip_norm=[0.01, 1000.0]"))
    h = run.trainer.fit(run.splits.train, run.splits.val)
    gn, clipped = h["grad_norm"], h["clipped"]
    assert gn.shape == (4, 2) and (gn > 0).all() and (h["grad_norm_max"] >= gn).all()
    assert (clipped[:, 0] == 1.0).all()      # a norm of 0.01 clips every step
    assert (clipped[:, 1] == 0.0).all()      # 1000 never does
