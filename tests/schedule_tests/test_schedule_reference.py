"""Every schedule, step for step, against torch.optim.lr_scheduler (float64, per member)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as tls

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.optim import SGD, Adam, Momentum
from trainlab.schedule import (
    Constant,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    MultiStepLR,
    OneCycleLR,
    PerMember,
    ReduceLROnPlateau,
    StepLR,
)

LRS = [0.1, 0.05, 0.3]
T = 40


def _opt(cls=SGD, lrs=LRS, **kw):
    w = nn.Parameter(torch.zeros(len(lrs), 2, dtype=torch.float64))
    return cls([w], lr=list(lrs), **kw)


def _torch_curve(lr: float, make, steps: int = T, *, momentum: float | None = None, adam: bool = False):
    """torch's rate (and momentum) before each of ``steps`` optimizer steps."""
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    if adam:
        opt = torch.optim.Adam([p], lr=lr)
    else:
        opt = torch.optim.SGD([p], lr=lr, momentum=momentum or 0.0)
    sched = make(opt)
    lrs, moms = [], []
    for _ in range(steps):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        moms.append(g["betas"][0] if adam else g["momentum"])
        p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    return torch.tensor(lrs, dtype=torch.float64), torch.tensor(moms, dtype=torch.float64)


def _check(ours: torch.Tensor, makers, steps: int = T, **kw):
    for i, make in enumerate(makers):
        ref, _ = _torch_curve(LRS[i], make, steps, **kw)
        torch.testing.assert_close(ours[:, i], ref, rtol=1e-12, atol=1e-15)


def test_step_per_member():
    s = StepLR(step_size=[3, 5, 7], gamma=[0.5, 0.1, 0.9], interval="step").attach(_opt())
    _check(s.lr_curve(T), [lambda o, a=a, b=b: tls.StepLR(o, a, b) for a, b in ((3, 0.5), (5, 0.1), (7, 0.9))])


def test_multistep_shared_and_per_member():
    s = MultiStepLR([4, 9, 9, 20], gamma=0.5, interval="step").attach(_opt())
    _check(s.lr_curve(T), [lambda o: tls.MultiStepLR(o, [4, 9, 9, 20], 0.5)] * 3)
    ms = [[2], [5, 10], []]
    s = MultiStepLR(ms, gamma=[0.1, 0.3, 0.5], interval="step").attach(_opt())
    _check(s.lr_curve(T), [lambda o, m=m, g=g: tls.MultiStepLR(o, m, g) for m, g in zip(ms, (0.1, 0.3, 0.5))])


def test_exponential():
    s = ExponentialLR(gamma=[0.9, 0.95, 0.99], interval="step").attach(_opt())
    _check(s.lr_curve(T), [lambda o, g=g: tls.ExponentialLR(o, g) for g in (0.9, 0.95, 0.99)])


def test_cosine_default_t_max_is_the_run_and_per_member_eta_min():
    s = CosineAnnealingLR(eta_min=[0.0, 0.001, 0.01], interval="step").attach(_opt())
    ours = s.lr_curve(T)
    _check(ours, [lambda o, e=e: tls.CosineAnnealingLR(o, T_max=T, eta_min=e) for e in (0.0, 0.001, 0.01)])
    s = CosineAnnealingLR(t_max=[10, 15, 30], interval="step").attach(_opt())
    _check(s.lr_curve(25), [lambda o, t=t: tls.CosineAnnealingLR(o, T_max=t) for t in (10, 15, 30)], steps=25)


def test_cosine_warm_restarts():
    s = CosineAnnealingWarmRestarts(t_0=[3, 5, 4], t_mult=[1, 2, 3], eta_min=[0.0, 0.01, 0.0],
                                    interval="step").attach(_opt())
    _check(s.lr_curve(60), [lambda o, a=a, b=b, e=e: tls.CosineAnnealingWarmRestarts(o, a, b, e)
                            for a, b, e in ((3, 1, 0.0), (5, 2, 0.01), (4, 3, 0.0))], steps=60)


@pytest.mark.parametrize("three_phase,anneal", [(False, "cos"), (True, "cos"), (False, "linear")])
def test_onecycle_rate_and_momentum(three_phase, anneal):
    s = OneCycleLR(pct_start=[0.3, 0.25, 0.4], div_factor=[25, 10, 5], final_div_factor=[1e4, 100, 1e3],
                   base_momentum=[0.85, 0.8, 0.9], max_momentum=[0.95, 0.9, 0.99], three_phase=three_phase,
                   anneal=anneal).attach(_opt(Momentum, momentum=0.9))
    s.begin(T, 1)
    lrs = torch.stack([s.rates(t)[0] for t in range(T)])
    moms = torch.stack([s.rates(t)[1] for t in range(T)])
    for i, (p, d, f, bm, mm) in enumerate(((0.3, 25, 1e4, 0.85, 0.95), (0.25, 10, 100, 0.8, 0.9),
                                            (0.4, 5, 1e3, 0.9, 0.99))):
        ref_lr, ref_m = _torch_curve(LRS[i], lambda o: tls.OneCycleLR(
            o, max_lr=LRS[i], total_steps=T, pct_start=p, div_factor=d, final_div_factor=f, base_momentum=bm,
            max_momentum=mm, three_phase=three_phase, anneal_strategy=anneal), momentum=0.9)
        torch.testing.assert_close(lrs[:, i], ref_lr, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(moms[:, i], ref_m, rtol=1e-12, atol=1e-15)


def test_onecycle_cycles_adams_beta1_and_refuses_plain_sgd_when_asked():
    s = OneCycleLR().attach(_opt(Adam, lrs=[1e-3]))
    s.begin(T, 1)
    ref_lr, ref_b1 = _torch_curve(1e-3, lambda o: tls.OneCycleLR(o, max_lr=1e-3, total_steps=T), adam=True)
    torch.testing.assert_close(torch.stack([s.rates(t)[0] for t in range(T)])[:, 0], ref_lr, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.stack([s.rates(t)[1] for t in range(T)])[:, 0], ref_b1, rtol=1e-12, atol=0)
    assert OneCycleLR().attach(_opt()).cycles_momentum() is False  # auto: plain SGD has no momentum
    with pytest.raises(ConfigError, match="cycle_momentum needs an optimizer with momentum"):
        OneCycleLR(cycle_momentum=True).attach(_opt())


@pytest.mark.parametrize("main", ["step", "cosine", "exponential"])
def test_linear_warmup_then_schedule_equals_sequential_lr(main):
    W = [3, 5, 1]
    starts = [1 / 3, 0.1, 0.5]
    ours_cls = {"step": lambda: StepLR(4, 0.5, interval="step", warmup=W, warmup_start=starts),
                "cosine": lambda: CosineAnnealingLR(t_max=20, interval="step", warmup=W, warmup_start=starts),
                "exponential": lambda: ExponentialLR(0.9, interval="step", warmup=W, warmup_start=starts)}[main]
    torch_main = {"step": lambda o: tls.StepLR(o, 4, 0.5), "cosine": lambda o: tls.CosineAnnealingLR(o, 20),
                  "exponential": lambda o: tls.ExponentialLR(o, 0.9)}[main]
    s = ours_cls().attach(_opt())
    ours = s.lr_curve(30)
    for i in range(3):
        ref, _ = _torch_curve(LRS[i], lambda o, i=i: tls.SequentialLR(
            o, [tls.LinearLR(o, start_factor=starts[i], end_factor=1.0, total_iters=W[i]), torch_main(o)],
            milestones=[W[i]]), 30)
        torch.testing.assert_close(ours[:, i], ref, rtol=1e-12, atol=1e-15)


def test_plateau_per_member_against_torch():
    # three members see three different metric streams; each must reduce like torch's own
    rng = torch.Generator().manual_seed(0)
    streams = [
        [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7],
        (1 + 0.1 * torch.rand(18, generator=rng, dtype=torch.float64)).tolist(),
        [0.5 + 0.01 * min(k, 7) for k in range(18)],
    ]
    configs = [dict(mode="min", factor=0.5, patience=2, threshold=1e-4, threshold_mode="rel", cooldown=0, min_lr=0.0),
               dict(mode="min", factor=0.1, patience=1, threshold=0.01, threshold_mode="abs", cooldown=2,
                    min_lr=1e-3),
               dict(mode="max", factor=0.3, patience=3, threshold=1e-4, threshold_mode="rel", cooldown=1,
                    min_lr=0.0)]
    # one ReduceLROnPlateau per member (modes differ), as a PerMember population
    ours = PerMember.of([ReduceLROnPlateau(monitor="m", **c) for c in configs]).attach(_opt())
    ours.begin(100, 1)
    got = []
    for k in range(18):
        ours._observe({"m": [s[k] for s in streams]})
        got.append(ours.rates(k)[0])
    got = torch.stack(got)
    for i, c in enumerate(configs):
        p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        o = torch.optim.SGD([p], lr=LRS[i])
        ts = tls.ReduceLROnPlateau(o, **c)
        ref = []
        for k in range(18):
            ts.step(streams[i][k])
            ref.append(o.param_groups[0]["lr"])
        torch.testing.assert_close(got[:, i], torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=0)
    assert (got[-1] < torch.tensor(LRS, dtype=torch.float64)).all()  # each of the three did reduce


def test_per_member_kinds_equal_each_kind_alone():
    kinds = [Constant(), StepLR(5, 0.5), CosineAnnealingLR(), OneCycleLR(interval="epoch")]
    lrs = [0.1, 0.1, 0.2, 0.4]
    mixed = PerMember.of(kinds).attach(_opt(lrs=lrs)).lr_curve(40, 4)
    for i, k in enumerate((Constant(), StepLR(5, 0.5), CosineAnnealingLR(), OneCycleLR(interval="epoch"))):
        alone = k.attach(_opt(lrs=[lrs[i]])).lr_curve(40, 4)
        assert torch.equal(mixed[:, i], alone[:, 0])
    assert torch.equal(mixed[:, 0], torch.full((40,), 0.1, dtype=torch.float64))


def test_epoch_interval_changes_only_at_epoch_boundaries():
    s = StepLR(2, 0.1).attach(_opt(lrs=[1.0]))
    c = s.lr_curve(60, 10)[:, 0]  # 6 epochs of 10 steps
    expect = torch.tensor([1.0] * 20 + [0.1] * 20 + [0.01] * 20, dtype=torch.float64)
    torch.testing.assert_close(c, expect, rtol=1e-15, atol=0)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="StepLR step_size must be >= 1"):
        StepLR(step_size=0).attach(_opt())
    with pytest.raises(ConfigError, match="whole numbers"):
        StepLR(step_size=2.5).attach(_opt())
    with pytest.raises(ConfigError, match="interval must be 'epoch' or 'step'"):
        StepLR(interval="batch")
    with pytest.raises(ConfigError, match="one per member"):
        ExponentialLR(gamma=[0.9, 0.8]).attach(_opt())
    with pytest.raises(ConfigError, match="cover members 0..2"):
        PerMember([(Constant(), [0, 1])]).attach(_opt())
    with pytest.raises(ConfigError, match="does not record"):
        ReduceLROnPlateau().attach(_opt())._observe({"train_loss": [1.0, 1.0, 1.0]})
    assert math.isclose(float(Constant(warmup=2).attach(_opt()).lr_curve(3)[0, 0]), 0.1 / 3)
