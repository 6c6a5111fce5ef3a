"""Lookahead (against its formula), SWA (against torch.optim.swa_utils), L-BFGS in the Trainer
(against trainlab.second_order's L-BFGS and torch.optim.LBFGS), and TOML = Python defaults."""

from __future__ import annotations

import pytest
import torch

from trainlab.build import build_callbacks, build_optimizer
from trainlab.config import OPTIMIZER_NAMES, load_config
from trainlab.errors import ConfigError
from trainlab.export import to_torch
from trainlab.nn import (BatchNorm, Dropout, Linear, MeanSquaredError, NoisyLinear, ReLU, Residual, Sequential,
                         SoftmaxCrossEntropy, Tanh)
from trainlab.optim import OPTIMIZERS, SGD, Adam, Lookahead, Momentum
from trainlab.second_order import CLOSURE_OPTIMIZERS, TrainerLBFGS as LBFGS
from trainlab.population import Population
from trainlab.regularize import L2
from trainlab.train import SWA, Callback, Trainer

DT = torch.float64


def make_net(P: int = 3, seed: int = 0, layers=None) -> Sequential:
    net = Sequential(layers or [Linear(4, 5), Tanh(), Linear(5, 3)])
    net.build((4,), Population(P, seed=seed), dtype=DT)
    return net


def grads(net: Sequential, steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=DT) for p in net.parameters()] for _ in range(steps)]


# ---- Lookahead ------------------------------------------------------------------------------


def test_lookahead_follows_the_papers_algorithm() -> None:
    # Zhang et al. 2019, Algorithm 1, with SGD inside, written out per member with plain tensors.
    P, k, steps = 3, 4, 11
    lrs, alphas = [0.1, 0.05, 0.2], [0.5, 0.8, 0.2]
    net = make_net(P)
    start = [p.data.clone() for p in net.parameters()]
    opt = Lookahead(SGD(net.parameters(), lr=lrs), k=k, alpha=alphas)
    seq = grads(net, steps)
    for step_grads in seq:
        for p, g in zip(net.parameters(), step_grads):
            p.grad.copy_(g)
        opt.step()
    for i in range(P):
        theta = [s[i].clone() for s in start]
        phi = [s[i].clone() for s in start]
        for t, step_grads in enumerate(seq, start=1):
            theta = [th - lrs[i] * g[i] for th, g in zip(theta, step_grads)]
            if t % k == 0:
                phi = [ph + alphas[i] * (th - ph) for ph, th in zip(phi, theta)]
                theta = [ph.clone() for ph in phi]
        for p, th, ph, slow in zip(net.parameters(), theta, phi, opt.slow):
            torch.testing.assert_close(p.data[i], th, atol=1e-14, rtol=0)
            torch.testing.assert_close(slow[i], ph, atol=1e-14, rtol=0)


def test_lookahead_counts_each_members_own_steps_and_round_trips() -> None:
    net = make_net(2)
    opt = Lookahead(Momentum(net.parameters(), lr=0.1), k=2, alpha=0.5)
    seq = grads(net, 8)

    def run(n, o, part):
        for step_grads in part:
            for p, g in zip(n.parameters(), step_grads):
                p.grad.copy_(g)
            o.step()

    run(net, opt, seq[:3])
    opt.set_active(torch.tensor([True, False]))
    frozen = [p.data[1].clone() for p in net.parameters()]
    run(net, opt, seq[3:4])
    assert opt.steps.tolist() == [4, 3]
    assert all(torch.equal(p.data[1], f) for p, f in zip(net.parameters(), frozen))
    saved_model = {k: v.clone() for k, v in net.state_dict().items()}
    saved_opt = {k: v.clone() for k, v in opt.state_dict().items()}
    run(net, opt, seq[4:])
    net2 = make_net(2, seed=9)
    opt2 = Lookahead(Momentum(net2.parameters(), lr=0.3), k=2, alpha=0.1)
    net2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    run(net2, opt2, seq[4:])
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a.data, b.data)
    opt2.set_hparam("lr", 0.01)  # reaches the inner optimizer (schedules)
    assert opt2.inner.lr.tolist() == [0.01, 0.01]


def test_lookahead_validation() -> None:
    net = make_net(1)
    with pytest.raises(ConfigError, match="Lookahead k must be an integer >= 1"):
        Lookahead(SGD(net.parameters()), k=0)
    with pytest.raises(ConfigError, match="Lookahead alpha"):
        Lookahead(SGD(net.parameters()), alpha=1.5)


# ---- SWA -------------------------------------------------------------------------------------


class _Snapshots(Callback):
    def __init__(self) -> None:
        self.seen: list[list[torch.Tensor]] = []

    def on_step_end(self, trainer, loss):
        if trainer.step % trainer.steps_per_epoch == 0:
            self.seen.append([p.data.clone() for p in trainer.model.parameters() if p.trainable])


def _data(n: int = 64, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=DT)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def test_swa_average_matches_torch_averaged_model_and_bn_is_recomputed() -> None:
    P, epochs, start = 2, 6, 2
    net = make_net(P, layers=[Linear(4, 8), BatchNorm(), ReLU(), Linear(8, 3)])
    x, y = _data()
    snaps = _Snapshots()
    swa = SWA(start_epoch=start)
    tr = Trainer(net, SoftmaxCrossEntropy(), Momentum(net.parameters(), lr=[0.1, 0.03]), epochs=epochs,
                 batch_size=16, callbacks=[snaps, swa], eval_train=False)
    tr.fit((x, y))
    assert swa.count.tolist() == [epochs - start + 1] * P  # epochs 2..6
    assert tr.history.info["swa"]["averaged"] == [5, 5]
    for i in range(P):
        # torch.optim.swa_utils.AveragedModel over the same epoch-end weights
        holder = torch.nn.ParameterList([torch.nn.Parameter(w[i].clone()) for w in snaps.seen[0]])
        avg = torch.optim.swa_utils.AveragedModel(holder)
        for weights in snaps.seen[start - 1:]:
            with torch.no_grad():
                for hp, w in zip(holder, weights):
                    hp.copy_(w[i])
            avg.update_parameters(holder)
        trainable = [p for p in net.parameters() if p.trainable]
        for p, ref in zip(trainable, avg.module):
            torch.testing.assert_close(p.data[i], ref.detach(), atol=1e-14, rtol=0)
        # BN statistics recomputed for the averaged weights, as torch.optim.swa_utils.update_bn does
        tmodel = to_torch(net, i)
        bn = tmodel[1]
        bn.reset_running_stats()
        loader = [(x[j:j + 16],) for j in range(0, 64, 16)]
        torch.optim.swa_utils.update_bn(loader, tmodel)
        torch.testing.assert_close(net.layers[1].running_mean[i].reshape(-1), bn.running_mean, atol=1e-12, rtol=0)
        torch.testing.assert_close(net.layers[1].running_var[i].reshape(-1), bn.running_var, atol=1e-12, rtol=0)


def test_swa_from_config_and_checkpoint_state() -> None:
    cfg = load_config(None, ["optim.swa_start=3", "optim.swa_every=2"])
    (swa,) = build_callbacks(cfg)
    assert isinstance(swa, SWA) and (swa.start_epoch, swa.every) == (3, 2)
    assert build_callbacks(load_config(None, [])) == []
    net = make_net(1)
    x, y = _data(32)
    tr = Trainer(net, SoftmaxCrossEntropy(), SGD(net.parameters(), lr=0.1), epochs=5, batch_size=8, callbacks=[swa],
                 eval_train=False)
    tr.fit((x, y))
    assert swa.count.tolist() == [2]  # epochs 3 and 5
    tensors, _ = swa.state_dict()
    again = SWA(3, every=2)
    again.load_state_dict({k: v.clone() for k, v in tensors.items()}, {})
    assert torch.equal(again.count, swa.count) and all(torch.equal(a, b) for a, b in zip(again.avg, swa.avg))


# ---- L-BFGS in the Trainer ----------------------------------------------------------------------


def _softmax_regression(P: int, seed: int = 0) -> Sequential:
    return make_net(P, seed=seed, layers=[Linear(4, 3, bias=False, init_scale=[1.0, 3.0, 0.3][:P])])


def test_trainer_lbfgs_equals_second_order_lbfgs_iteration_for_iteration() -> None:
    from trainlab.second_order import ModelObjective, minimize

    P, iters = 3, 12
    x, y = _data(48)
    a = make_net(P, seed=5)
    b = make_net(P, seed=5)
    res = minimize(ModelObjective(b, SoftmaxCrossEntropy(), x, y), "lbfgs", max_iter=iters, tol=0.0, history=5)
    assert all(s == "max_iter" for s in res.status)
    tr = Trainer(a, SoftmaxCrossEntropy(), LBFGS(a.parameters(), history=5), steps=iters, batch_size=48,
                 eval_train=False)
    tr.fit((x, y))
    # Same iterates; the full batch arrives shuffled in the Trainer, so sums run in another order:
    # rounding (1e-16) grows through 12 quasi-Newton iterations to ~1e-12 here; 1e-9 leaves room.
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.data, pb.data, atol=1e-9, rtol=0)
    assert tr.optimizer.steps.tolist() == [iters] * P


def test_trainer_lbfgs_reaches_torch_lbfgs_minimum() -> None:
    # Softmax regression without bias plus lam * ||W||^2: strictly convex, one minimizer. Both run
    # until |g|_inf <= 1e-10; strong convexity mu >= 2 lam = 0.02 bounds the distance to the
    # minimizer by |g|_2 / mu <= sqrt(12) * 1e-10 / 0.02 ~ 2e-8, so 1e-6 holds with room.
    lam, P = 0.01, 2
    x, y = _data(40)
    net = _softmax_regression(P)
    start = net.layers[0].weight.data.clone()
    opt = LBFGS(net.parameters(), history=10, tolerance_grad=1e-10)
    Trainer(net, SoftmaxCrossEntropy(), opt, steps=200, batch_size=40, eval_train=False,
            regularizers=[L2(lam)]).fit((x, y))
    assert opt.converged.all()
    for i in range(P):
        w = torch.nn.Parameter(start[i].T.contiguous())  # torch layout (out, in)
        ref = torch.optim.LBFGS([w], lr=1, max_iter=500, history_size=10, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-10, tolerance_change=0)

        def closure():
            ref.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w.T, y) + lam * (w * w).sum()
            loss.backward()
            return loss

        ref.step(closure)
        torch.testing.assert_close(net.layers[0].weight.data[i], w.detach().T, atol=1e-6, rtol=0)


def test_lbfgs_converged_members_stop_and_state_round_trips() -> None:
    x, y = _data(40)
    net = _softmax_regression(3)
    opt = LBFGS(net.parameters(), tolerance_grad=1e-6)
    loss = SoftmaxCrossEntropy()
    tr = Trainer(net, loss, opt, steps=6, batch_size=40, eval_train=False, regularizers=[L2(0.01)])
    tr.fit((x, y))
    saved = tr.state_dict()
    net2 = _softmax_regression(3, seed=7)
    opt2 = LBFGS(net2.parameters(), tolerance_grad=1e-6)
    tr2 = Trainer(net2, SoftmaxCrossEntropy(), opt2, steps=200, batch_size=40, eval_train=False,
                  regularizers=[L2(0.01)])
    tr2.load_state_dict(*saved)
    assert torch.equal(opt2.S, opt.S) and torch.equal(opt2.count, opt.count)
    tr.steps = 200
    tr.fit((x, y))
    tr2.fit((x, y))
    assert torch.equal(net.layers[0].weight.data, net2.layers[0].weight.data)  # resumed bit for bit
    assert opt.converged.all()
    before = net.layers[0].weight.data.clone()
    steps_before = opt.steps.clone()
    tr.steps = 210
    tr.fit((x, y))
    assert torch.equal(net.layers[0].weight.data, before)  # converged members do not move
    assert torch.equal(opt.steps, steps_before)


def test_lbfgs_refuses_random_layers_and_works_from_config() -> None:
    net = make_net(1, layers=[Linear(4, 5), Dropout(0.2), Linear(5, 3)])
    with pytest.raises(ConfigError, match="LBFGS needs a deterministic objective.*Dropout"):
        Trainer(net, SoftmaxCrossEntropy(), LBFGS(net.parameters()), steps=1)
    nested = make_net(1, layers=[Residual([Linear(4, 4), NoisyLinear(4, 4, std=0.1)]), Linear(4, 3)])
    with pytest.raises(ConfigError, match="LBFGS needs a deterministic objective.*NoisyLinear"):
        Trainer(nested, SoftmaxCrossEntropy(), LBFGS(nested.parameters()), steps=1)  # found inside a block too
    with pytest.raises(ConfigError, match="needs a closure"):
        LBFGS(make_net(1).parameters()).step()
    cfg = load_config(None, ["optim.name='lbfgs'", "optim.history=4", "optim.max_iter=3"])
    opt = build_optimizer(cfg["optim"], make_net(1).parameters())
    assert isinstance(opt, LBFGS) and (opt.history, opt.max_iter) == (4, 3) and opt.lr.tolist() == [1.0]
    with pytest.raises(ConfigError, match="optim.weight_decay is not used by 'lbfgs'; penalize the weights with "
                                          "regularize.l2 instead"):
        build_optimizer(load_config(None, ["optim.name='lbfgs'", "optim.weight_decay=0.1"])["optim"],
                        make_net(1).parameters())
    with pytest.raises(ConfigError, match="lookahead_k wraps a first-order optimizer, not 'lbfgs'"):
        build_optimizer(load_config(None, ["optim.name='lbfgs'", "optim.lookahead_k=5"])["optim"],
                        make_net(1).parameters())


def test_lookahead_from_config() -> None:
    cfg = load_config(None, ["optim.name='adam'", "optim.lookahead_k=6", "optim.lookahead_alpha=0.3"])
    opt = build_optimizer(cfg["optim"], make_net(1).parameters())
    assert isinstance(opt, Lookahead) and isinstance(opt.inner, Adam) and opt.k == 6
    assert opt.alpha.tolist() == [0.3] and opt.lr.tolist() == [1e-3]


# ---- the same name gives the same optimizer from TOML and from Python -------------------------------


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_toml_and_python_give_the_same_hyperparameters(name: str) -> None:
    cls = {**OPTIMIZERS, **CLOSURE_OPTIMIZERS}[name]
    from_toml = build_optimizer(load_config(None, [f"optim.name='{name}'"])["optim"], make_net(2).parameters())
    from_python = cls(make_net(2).parameters())
    assert type(from_toml) is cls
    assert from_toml.settings() == from_python.settings()
    assert from_toml.hparams.keys() == from_python.hparams.keys()
    for k, v in from_python.hparams.items():
        assert torch.equal(from_toml.hparams[k], v), (name, k)


def test_adamw_defaults_and_explicit_keys_still_win() -> None:
    cfg = load_config(None, ["optim.name='adamw'"])
    assert (cfg["optim"]["lr"], cfg["optim"]["weight_decay"]) == (1e-3, 0.01)
    assert load_config(None, [])["optim"]["lr"] == 0.01  # sgd's own default, as before
    cfg = load_config(None, ["optim.name='adam'", "optim.lr=0.01", "optim.weight_decay=0.0"])
    opt = build_optimizer(cfg["optim"], make_net(1).parameters())
    assert opt.lr.tolist() == [0.01] and opt.hparams["weight_decay"].tolist() == [0.0]


def test_new_optimizers_train_a_population_from_config() -> None:
    # Every new first-order rule lowers the loss of a small regression (a smoke test of the config path;
    # exactness is test_reference.py's).
    x, y = _data(32)
    t = torch.nn.functional.one_hot(y, 3).to(DT)
    for name in ("nadam", "radam", "adamax", "adadelta"):
        net = make_net(2)
        opt = build_optimizer(load_config(None, [f"optim.name='{name}'", "population.size=2"])["optim"],
                              net.parameters())
        h = Trainer(net, MeanSquaredError(), opt, epochs=15, batch_size=8).fit((x, t), (x, t))
        first, last = h.records[0]["train_loss"], h.records[-1]["train_loss"]
        assert all(b < a for a, b in zip(first, last)), name


# ---- resume and population invariants ---------------------------------------------------------------


def _bn_net(P: int, seed: int) -> Sequential:
    return make_net(P, seed=seed, layers=[Linear(4, 8), BatchNorm(), ReLU(), Linear(8, 3)])


class _Capture(Callback):
    """Takes the trainer's checkpoint state at one step, as run.py's checkpoint callback does mid-run."""

    def __init__(self, at: int) -> None:
        self.at, self.saved = at, None

    def on_step_end(self, trainer, loss):
        if trainer.step == self.at:
            t, m = trainer.state_dict()
            self.saved = ({k: v.clone() for k, v in t.items()}, m)


def test_trainer_with_lookahead_and_swa_resumes_bit_for_bit() -> None:
    x, y = _data(64)

    def trainer(net, extra=()):
        opt = Lookahead(Adam(net.parameters(), lr=[0.01, 0.003]), k=3, alpha=[0.5, 0.8])
        return Trainer(net, SoftmaxCrossEntropy(), opt, epochs=4, batch_size=16, callbacks=[SWA(1), *extra],
                       eval_train=False)

    whole = _bn_net(2, 0)
    capture = _Capture(at=9)  # mid-epoch 3: the slow weights, SWA's average and Adam's state all matter
    trainer(whole, [capture]).fit((x, y))
    resumed = _bn_net(2, 5)
    t2 = trainer(resumed, [_Capture(at=-1)])
    t2.load_state_dict(*capture.saved)
    t2.fit((x, y))
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert t2.callbacks[0].count.tolist() == [4, 4]


def test_lbfgs_member_of_a_population_equals_member_alone() -> None:
    x, y = _data(40)
    pop = make_net(3, seed=11)
    opt = LBFGS(pop.parameters(), lr=[1.0, 0.5, 0.8], history=4)
    Trainer(pop, SoftmaxCrossEntropy(), opt, steps=5, batch_size=40, eval_train=False).fit((x, y))
    for i in range(3):
        alone = Sequential([Linear(4, 5), Tanh(), Linear(5, 3)])
        alone.build((4,), Population(1, seeds=[pop.population.seeds[i]]), dtype=DT)
        o = LBFGS(alone.parameters(), lr=[1.0, 0.5, 0.8][i], history=4)
        Trainer(alone, SoftmaxCrossEntropy(), o, steps=5, batch_size=40, eval_train=False).fit((x, y))
        for a, b in zip(pop.parameters(), alone.parameters()):
            torch.testing.assert_close(a.data[i], b.data[0], atol=1e-12, rtol=0)


def test_centered_rmsprop_from_config_and_its_state_round_trips() -> None:
    cfg = load_config(None, ["optim.name='rmsprop'", "optim.centered=true"])
    net = make_net(2)
    opt = build_optimizer(cfg["optim"], net.parameters())
    assert opt.centered and set(opt.state[0]) == {"mean_sq", "grad_avg"}
    seq = grads(net, 6)
    for step_grads in seq[:3]:
        for p, g in zip(net.parameters(), step_grads):
            p.grad.copy_(g)
        opt.step()
    saved_model = {k: v.clone() for k, v in net.state_dict().items()}
    saved_opt = {k: v.clone() for k, v in opt.state_dict().items()}
    net2 = make_net(2, seed=4)
    opt2 = build_optimizer(cfg["optim"], net2.parameters())
    net2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    for n, o in ((net, opt), (net2, opt2)):
        for step_grads in seq[3:]:
            for p, g in zip(n.parameters(), step_grads):
                p.grad.copy_(g)
            o.step()
    assert all(torch.equal(a.data, b.data) for a, b in zip(net.parameters(), net2.parameters()))
    plain = build_optimizer(load_config(None, ["optim.name='rmsprop'"])["optim"], make_net(2).parameters())
    from trainlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="grad_avg"):
        plain.load_state_dict(saved_opt)


def test_lookahead_shares_what_rides_on_the_inner_optimizer() -> None:
    # Gradient clipping and schedule hooks attach to the optimizer the Trainer holds; with Lookahead
    # they must reach the inner optimizer, whose step does the work.
    inner = SGD(make_net(1).parameters(), lr=0.1)
    la = Lookahead(inner, k=2)
    marker = object()
    la.clip = marker
    assert inner.clip is marker and la.clip is marker
    la.hooks.append(marker)
    assert inner.hooks[-1] is marker and la.hooks is inner.hooks
