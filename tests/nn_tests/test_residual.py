"""Residual blocks and the small ResNet: float64 gradient checks, torch references, the population
invariant, export, save/load, config access, and every layer walker seeing nested layers."""

from __future__ import annotations

import pytest
import torch

from trainlab.nn.testing import assert_members_match_single_models

from trainlab.errors import ConfigError
from trainlab.export import TorchResidual, to_torch
from trainlab.gradcheck import check_layer
from trainlab.nn import (BatchNorm, Conv2d, Dropout, Linear, ReLU, Residual, Sequential, SoftmaxCrossEntropy,
                         Tanh, batch_norm_layers, mc_dropout, recompute_running_statistics, resnet)
from trainlab.population import Population

DT = torch.float64


@pytest.fixture(autouse=True)
def _single_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _conv_same() -> Residual:
    return Residual([Conv2d(None, 2, 3, padding=1, bias=False), BatchNorm(), ReLU(), Conv2d(None, 2, 3, padding=1)])


def _conv_down() -> Residual:  # stride 2 and more channels: the automatic 1x1 projection + BN
    return Residual([Conv2d(None, 3, 3, stride=2, padding=1, bias=False), BatchNorm(), ReLU(),
                     Conv2d(None, 3, 3, padding=1)])


def _preact() -> Residual:
    return Residual([BatchNorm(), ReLU(), Conv2d(None, 2, 3, padding=1, bias=False), BatchNorm(), Tanh(),
                     Conv2d(None, 2, 3, padding=1)])


def _dense_same() -> Residual:
    return Residual([Linear(None, 5), Tanh(), Linear(None, 5)])


def _dense_proj() -> Residual:
    return Residual([Linear(None, 7), Tanh(), Linear(None, 3)])


def _explicit() -> Residual:
    return Residual([Linear(None, 4), Tanh()], shortcut=[Linear(None, 4, bias=False)])


CASES = {
    "conv-identity": (_conv_same, (2, 4, 4)),
    "conv-projection": (_conv_down, (2, 4, 4)),
    "preact": (_preact, (2, 4, 4)),
    "dense-identity": (_dense_same, (5,)),
    "dense-projection": (_dense_proj, (5,)),
    "explicit-shortcut": (_explicit, (5,)),
}


@pytest.mark.parametrize(("P", "shared"), [(1, False), (3, False), (3, True)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_residual_gradcheck_float64(case: str, P: int, shared: bool) -> None:
    """P = 1, P = 3 with one input per member, and P = 3 with one input shared by all (summed gradient)."""
    make, shape = CASES[case]
    layer = make()
    layer.build(shape, Population(P, seed=1), dtype=DT)
    x = torch.randn(1 if shared else P, 3, *shape, generator=gen(2), dtype=DT)
    res = check_layer(layer, x, training=True)
    assert res.max_error < 1e-6, f"{case}: {res}"
    assert "input" in res.errors and len(res.errors) == 1 + len(layer.parameters())


def test_projection_is_picked_only_when_the_shape_changes() -> None:
    same, down = _conv_same(), _conv_down()
    same.build((2, 6, 6), Population(1))
    down.build((2, 6, 6), Population(1))
    assert same.shortcut is None
    kinds = [type(l) for l in down.shortcut.layers]
    assert kinds == [Conv2d, BatchNorm]
    conv = down.shortcut.layers[0]
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and conv.bias is None
    forced = Residual([Linear(None, 5)], shortcut="projection")
    forced.build((5,), Population(1))
    assert isinstance(forced.shortcut.layers[0], Linear)


@pytest.mark.parametrize("case", sorted(CASES))
def test_residual_matches_torch_autograd(case: str) -> None:
    """Forward, input gradient and every parameter gradient against autograd through the exported module."""
    make, shape = CASES[case]
    P = 2
    layer = make()
    layer.build(shape, Population(P, seed=3), dtype=DT)
    x = torch.randn(P, 5, *shape, generator=gen(4), dtype=DT)
    y = layer.forward(x, training=True)
    g = torch.randn(y.shape, generator=gen(5), dtype=DT)
    dx = layer.backward(g)
    for m in range(P):
        mod = _export_member(layer, m).train()
        xm = x[m].clone().requires_grad_(True)
        ym = mod(xm)
        torch.testing.assert_close(ym, y[m], atol=1e-10, rtol=0)
        ym.backward(g[m])
        torch.testing.assert_close(xm.grad, dx[m], atol=1e-10, rtol=0)
        theirs = dict(mod.named_parameters())
        for name, p in layer.named_parameters().items():
            t = theirs[_torch_name(name)].grad
            if _kind(layer, name) == "Linear":  # trainlab stores W (in, out) and b (1, out) per member
                t = t.T if name.endswith("weight") else t[None]
            torch.testing.assert_close(p.grad[m], t, atol=1e-10, rtol=0, msg=name)


def _torch_name(name: str) -> str:
    """trainlab's BN/LN gain and shift are ``gamma``/``beta``; torch calls them ``weight``/``bias``."""
    return name.replace(".gamma", ".weight").replace(".beta", ".bias")


def _kind(layer: Residual, name: str) -> str:
    branch, idx, _ = name.split(".")
    seq = layer.block if branch == "block" else layer.shortcut
    return type(seq.layers[int(idx)]).__name__


def _export_member(layer: Residual, m: int) -> torch.nn.Module:
    from trainlab.export import converter_for

    return converter_for(layer)(layer, m)


# ---- the population invariant ------------------------------------------------------------------


@pytest.mark.parametrize("preact", [False, True])
def test_member_i_of_a_resnet_population_equals_a_single_model(preact: bool) -> None:
    def net(P: int, seed: int) -> Sequential:
        m = Sequential(resnet(4, depth=8, width=2, preact=preact, dropout=0.2))
        m.build((3, 8, 8), Population(P, seed=seed), dtype=DT)
        return m

    assert_members_match_single_models(net, torch.rand(1, 6, 3, 8, 8, generator=gen(0), dtype=DT))


def test_resnet_structure_and_gradcheck() -> None:
    layers = resnet(10, depth=14, width=4)
    residuals = [l for l in layers if isinstance(l, Residual)]
    assert len(residuals) == 6  # n = 2 blocks in each of 3 stages
    model = Sequential(layers)
    assert model.build((3, 16, 16), Population(2)) == (10,)
    with_proj = [r for r in residuals if r.shortcut is not None]
    assert len(with_proj) == 2  # the first block of stages 2 and 3
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    assert len(convs) == 13 + 2 and all(c.bias is None for c in convs)  # 6n+1 3x3 convs, 2 projections
    # Post-activation order inside a block: Conv -> BN -> act -> Conv -> BN, the act after the sum.
    assert [type(l).__name__ for l in residuals[0].block.layers] == ["Conv2d", "BatchNorm", "ReLU", "Conv2d",
                                                                     "BatchNorm"]
    pre = resnet(10, depth=8, width=4, preact=True, dropout=0.1)
    r = [l for l in pre if isinstance(l, Residual)][0]
    assert [type(l).__name__ for l in r.block.layers] == ["BatchNorm", "ReLU", "Conv2d", "BatchNorm", "ReLU",
                                                          "SpatialDropout2d", "Conv2d"]


@pytest.mark.slow
@pytest.mark.parametrize("preact", [False, True])
def test_whole_resnet_gradcheck(preact: bool) -> None:
    """The whole net, P = 2 on a shared input (tanh: no ReLU kink for the differences to straddle)."""
    small = Sequential(resnet(3, depth=8, width=1, preact=preact, activation="tanh"))
    small.build((1, 4, 4), Population(2, seed=0), dtype=DT)
    res = check_layer(small, torch.randn(1, 3, 1, 4, 4, generator=gen(7), dtype=DT))
    assert res.max_error < 1e-6, str(res)


# ---- export, save / load ---------------------------------------------------------------------------


@pytest.mark.parametrize("preact", [False, True])
def test_resnet_exports_to_torch(preact: bool) -> None:
    model = Sequential(resnet(5, depth=8, width=3, preact=preact, dropout=0.1))
    model.build((3, 8, 8), Population(2, seed=0), dtype=DT)
    x = torch.rand(6, 3, 8, 8, generator=gen(0), dtype=DT)
    model.forward(x.unsqueeze(0), training=True)  # BN running statistics away from (0, 1)
    ours = model.forward(x.unsqueeze(0), training=False)
    for m in range(2):
        tm = to_torch(model, m)
        assert any(isinstance(sub, TorchResidual) for sub in tm)
        torch.testing.assert_close(tm(x), ours[m], atol=1e-10, rtol=0)
        # The torch parameters have trainlab's names (BN's gamma/beta are torch's weight/bias).
        assert set(dict(tm.named_parameters())) == {_torch_name(k) for k in model.named_parameters()}


def test_resnet_save_load_round_trip(tmp_path) -> None:
    from trainlab.io import load_model, save_model

    model = Sequential(resnet(4, depth=8, width=2))
    model.build((3, 8, 8), Population(2, seed=0))
    explicit = Sequential([Linear(None, 6), Residual([Linear(None, 6), Tanh()], shortcut=[Linear(None, 6)]),
                           Residual([Dropout(0.2), Linear(None, 3)], shortcut="projection"), Linear(None, 2)])
    explicit.build((4,), Population(1))
    x = torch.rand(5, 3, 8, 8)
    model.forward(x.unsqueeze(0), training=True)
    for name, m, xi in (("resnet", model, x), ("explicit", explicit, torch.rand(5, 4))):
        save_model(tmp_path / name, m, num_classes=4)
        loaded = load_model(tmp_path / name).model
        assert repr(loaded) == repr(m)
        torch.testing.assert_close(loaded.forward(xi.unsqueeze(0), training=False),
                                   m.forward(xi.unsqueeze(0), training=False), atol=0, rtol=0)


# ---- every walker sees nested layers -----------------------------------------------------------------


def _nested_bn_model(P: int = 2) -> Sequential:
    m = Sequential([Linear(None, 6), Residual([Linear(None, 6), BatchNorm(), ReLU(), Dropout(0.5)]),
                    Linear(None, 3)])
    m.build((4,), Population(P, seed=0))
    return m


def test_modules_walks_nested_layers_in_order() -> None:
    m = _nested_bn_model()
    names = [type(x).__name__ for x in m.modules()]
    assert names == ["Sequential", "Linear", "Residual", "Sequential", "Linear", "BatchNorm", "ReLU", "Dropout",
                     "Linear"]
    assert len(batch_norm_layers(m)) == 1


def test_bn_statistics_recomputed_inside_a_residual() -> None:
    m = _nested_bn_model()
    bn = batch_norm_layers(m)[0]
    before = bn.running_mean.clone()
    recompute_running_statistics(m, torch.rand(20, 4) * 5, batch_size=10)
    assert not torch.equal(bn.running_mean, before)


def test_mc_dropout_finds_dropout_inside_a_residual() -> None:
    m = _nested_bn_model()
    with mc_dropout(m) as layers:
        assert len(layers) == 1 and isinstance(layers[0], Dropout)
        x = torch.rand(1, 8, 4)
        a, b = m.forward(x, training=False), m.forward(x, training=False)
    assert not torch.equal(a, b)


def test_trainer_sees_nested_batchnorm() -> None:
    """A stopped member's nested BN statistics freeze, and a batch of one is dropped for nested BN."""
    from trainlab.optim import SGD
    from trainlab.train import Trainer

    m = _nested_bn_model(P=2)
    loss = SoftmaxCrossEntropy()
    loss.build(2)
    x, y = torch.rand(21, 4), torch.randint(0, 3, (21,), generator=gen(0))
    tr = Trainer(m, loss, SGD(m.parameters(), lr=0.1), epochs=1, batch_size=10, eval_train=False)
    tr.stop_members(torch.tensor([False, True]))
    bn = batch_norm_layers(m)[0]
    before = bn.running_mean.clone()
    tr.fit((x, y))
    assert tr.steps_per_epoch == 2  # 21 = 10 + 10 + 1: the batch of one is dropped
    assert torch.equal(bn.running_mean[1], before[1]) and not torch.equal(bn.running_mean[0], before[0])


def test_freeze_freezes_nested_batchnorm_statistics() -> None:
    from trainlab.transfer import freeze

    m = _nested_bn_model()
    freeze(m, [1])
    bn = batch_norm_layers(m)[0]
    assert bn.freeze_stats and not any(p.trainable for p in m.layers[1].parameters())
    before = bn.running_mean.clone()
    m.forward(torch.rand(1, 8, 4), training=True)
    assert torch.equal(bn.running_mean, before)


# ---- errors and config ------------------------------------------------------------------------------


@pytest.mark.parametrize("make,shape,text", [
    (lambda: Residual([Linear(None, 3)], shortcut="identity"), (5,),
     "Residual shortcut='identity' needs the block to keep the per-example shape, but it maps (5,) to (3,)"),
    (lambda: Residual([Linear(None, 3)], shortcut="skip"), (5,),
     "Residual shortcut must be one of auto, identity, projection or a list of layers, got 'skip'"),
    (lambda: Residual([]), (5,), "Residual block needs at least one layer, got an empty list"),
    (lambda: Residual([Linear(None, 3)], shortcut=[Linear(None, 4)]), (5,),
     "Residual: the shortcut gives per-example shape (4,) but the block gives (3,)"),
    (lambda: Residual([Conv2d(None, 2, 3)]), (2, 6, 6),
     "Residual: no 1x1 strided convolution maps (2, 6, 6) to the block's output (2, 4, 4)"),
    (lambda: resnet(10, depth=10), None, "resnet depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110), got 10"),
])
def test_residual_errors(make, shape, text) -> None:
    with pytest.raises(ConfigError) as e:
        layer = make()
        layer.build(shape, Population(1))
    assert text in str(e.value)


def test_resnet_from_config_trains() -> None:
    from trainlab.build import build_run
    from trainlab.config import load_config

    cfg = load_config(None, ["model.type='resnet'", "model.depth=8", "model.width=4", "model.preact=true",
                             "data.flatten=false", "data.train=100", "data.val=50", "data.test=50",
                             "train.epochs=1", "train.batch_size=25", "population.size=2", "optim.lr=0.05"])
    run = build_run(cfg)
    assert any(isinstance(l, Residual) for l in run.model.layers)
    h = run.trainer.fit(run.splits.train, run.splits.val)
    assert len(h.final["val_acc"]) == 2
    with pytest.raises(ConfigError, match=r"config: model.depth must be 6n \+ 2 \(8, 14, 20, 32, ...\), got 9"):
        load_config(None, ["model.type='resnet'", "model.depth=9"])


def test_residual_layer_tables_in_a_sequential_config() -> None:
    from trainlab.build import build_model

    from trainlab.config import load_config

    layers = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
              {"type": "residual", "block": [{"type": "conv_block", "out_channels": 4},
                                             {"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                              "padding": 1}]},
              {"type": "global_avgpool2d"}, {"type": "linear", "out": 10}]
    cfg = load_config(None, ["model.type='sequential'", "model.layers=[{type='linear', out=2}]"])
    cfg["model"]["layers"] = layers
    model = build_model(cfg["model"], 10)
    assert model.build((1, 8, 8), Population(1)) == (10,)
    assert [type(l).__name__ for l in model.layers[1].block.layers] == ["Conv2d", "BatchNorm", "ReLU", "Conv2d"]
    cfg["model"]["layers"][1]["block"][1]["kernal"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'model.layers\[1\].block\[1\].kernal' for a conv2d layer"):
        build_model(cfg["model"], 10)
    cfg["model"]["layers"][1]["block"] = "conv"
    with pytest.raises(ConfigError, match=r"model.layers\[1\].block must be a list of layer tables"):
        build_model(cfg["model"], 10)


def test_residual_as_first_layer_skips_its_input_gradient() -> None:
    m = Sequential([Residual([Linear(None, 4), Tanh(), Linear(None, 4)]), Linear(None, 2)])
    m.build((4,), Population(2, seed=0), dtype=DT)
    m.input_grad = False  # what the Trainer does for the first layer
    y = m.forward(torch.rand(1, 3, 4, dtype=DT), training=True)
    assert m.backward(torch.ones_like(y)) is None
    assert all(bool(p.grad.abs().sum() > 0) for p in m.layers[0].parameters())


def test_probe_switches_nested_population_batchnorm() -> None:
    """A probe before any population statistics exist reads the running averages, also inside a Residual."""
    from trainlab.diagnose import layer_table, probe_model

    m = Sequential([Linear(None, 6), Residual([Linear(None, 6), BatchNorm(inference="population"), ReLU()]),
                    Linear(None, 3)])
    m.build((4,), Population(2, seed=0))
    res = probe_model(m, torch.rand(16, 4), gradients=False)
    bn = batch_norm_layers(m)[0]
    assert bn.inference == "population"  # switched back afterwards
    assert layer_table(m)[1]["role"] == "other"  # the container's row is its output, not its first weight
    assert "1" in res["layers"]
