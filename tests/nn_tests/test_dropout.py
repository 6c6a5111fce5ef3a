"""The dropout family: Dropout (inverted and classic), DropConnectLinear, MC dropout.

Gradient checks hold the random mask fixed (``fix_mask``) so the central differences
see one function. At P=3 the members' drop rates differ, so a backward or a mask
that mixes members up fails.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.gradcheck import check_layer
from trainlab.nn import Linear, Module, ReLU, Sequential, Tanh
from trainlab.nn._dropout import (
    DropConnectLinear,
    Dropout,
    mc_dropout,
    mc_dropout_predict,
    mc_dropout_samples,
)
from trainlab.population import Population
from trainlab.export import converter_for


def converter_for_layer(layer, member):
    return converter_for(layer)(layer, member)


DT = torch.float64
TOL = 1e-6
N = 4
RATES = [0.2, 0.5, 0.7]


def rates(P: int) -> float | list[float]:
    return RATES[0] if P == 1 else RATES[:P]


def built(layer: Module, in_shape: tuple[int, ...], P: int, *, seed: int = 0, seeds: list[int] | None = None) -> Module:
    layer.build(in_shape, Population(P, seed=seed, seeds=seeds), dtype=DT)
    return layer


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def away_from_zero(*shape: int, seed: int) -> torch.Tensor:
    """Entries with 0.5 <= |x| <= 2, so ratios y / x are well defined."""
    g = torch.Generator().manual_seed(seed)
    mag = 0.5 + 1.5 * torch.rand(shape, generator=g, dtype=DT)
    sign = torch.where(torch.rand(shape, generator=g, dtype=DT) < 0.5, -1.0, 1.0).to(DT)
    return mag * sign


def draw_and_fix(layer, x: torch.Tensor) -> torch.Tensor:
    """One training forward draws a mask; fix it for the numeric differences."""
    layer.forward(x, training=True)
    keep = layer.last_mask
    layer.fix_mask(keep)
    return keep


def randomize_biases(layer: Linear, seed: int) -> None:
    if layer.bias is not None:
        layer.bias.data.copy_(randn(*layer.bias.shape, seed=seed) * 0.3)


# ---- gradient checks -------------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dropout_backward_matches_central_differences(P: int, shared: bool, mode: str, training: bool) -> None:
    layer = built(Dropout(rates(P), mode=mode), (5,), P)
    x = randn(1 if shared else P, N, 5, seed=1)
    if training:
        keep = draw_and_fix(layer, x)
        assert keep.shape == (P, N, 5) and bool(keep.any()) and not bool(keep.all())
    result = check_layer(layer, x, training=training, seed=2)
    assert set(result.errors) == {"input"}
    assert result.max_error < TOL, f"P={P} shared={shared} {mode} training={training}: {result}"


def test_dropout_gradcheck_with_the_before_forward_hook() -> None:
    # Instead of fixing the mask, rewind the members' generators before every forward.
    pop = Population(3, seed=5)
    layer = Dropout(RATES)
    layer.build((6,), pop, dtype=DT)
    pop.generators("cpu")
    state = pop.get_state()
    result = check_layer(layer, randn(3, N, 6, seed=3), before_forward=lambda: pop.set_state(state))
    assert result.max_error < TOL, str(result)


@pytest.mark.parametrize("P", [1, 3])
@pytest.mark.parametrize("shared", [False, True], ids=["per_member_input", "shared_input"])
@pytest.mark.parametrize("bias", [True, False])
def test_dropconnect_backward_matches_central_differences(P: int, shared: bool, bias: bool) -> None:
    layer = built(DropConnectLinear(3, 4, p=rates(P), bias=bias, init_scale=[1.0, 0.5, 2.0][:P]), (3,), P)
    randomize_biases(layer, seed=4)
    x = randn(1 if shared else P, N, 3, seed=5)
    keep = draw_and_fix(layer, x)
    assert keep.shape == (P, 3, 4) and not bool(keep.all())
    result = check_layer(layer, x, seed=6)
    assert set(result.errors) == {"input", "weight", *(["bias"] if bias else [])}
    assert result.max_error < TOL, f"P={P} shared={shared} bias={bias}: {result}"
    assert check_layer(layer, x, training=False, seed=6).max_error < TOL


def test_dropconnect_matches_autograd_on_the_masked_weights() -> None:
    P = 3
    layer = built(DropConnectLinear(5, 3, p=RATES), (5,), P, seed=7)
    randomize_biases(layer, seed=8)
    x = randn(P, N, 5, seed=9)
    g = randn(P, N, 3, seed=10)
    y = layer.forward(x, training=True)
    keep = layer.last_mask.to(DT)
    dx = layer.backward(g)

    W = layer.weight.data.clone().requires_grad_()
    b = layer.bias.data.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    scale = 1.0 / (1.0 - torch.tensor(RATES, dtype=DT)).reshape(P, 1, 1)
    y_ref = torch.baddbmm(b, xr, W * keep * scale)
    (y_ref * g).sum().backward()
    for ours, ref in ((y, y_ref), (dx, xr.grad), (layer.weight.grad, W.grad), (layer.bias.grad, b.grad)):
        torch.testing.assert_close(ours, ref.detach(), atol=1e-12, rtol=1e-12)
    # dropped weights get no gradient
    assert bool((layer.weight.grad[~layer.last_mask] == 0).all())


def test_backward_never_mutates_g_and_respects_input_grad() -> None:
    layer = built(Dropout(0.5), (5,), 2)
    layer.input_grad = False
    layer.forward(randn(1, N, 5, seed=11), training=True)
    assert layer.backward(randn(2, N, 5, seed=12)) is None
    dc = built(DropConnectLinear(5, 2, p=0.3), (5,), 2)
    dc.input_grad = False
    dc.forward(randn(1, N, 5, seed=13), training=True)
    assert dc.backward(randn(2, N, 2, seed=14)) is None
    assert dc.weight.grad.abs().sum() > 0


# ---- statistics ------------------------------------------------------------------------


def test_inverted_training_mean_equals_the_input_and_matches_torch_dropout() -> None:
    P, T = 3, 200
    layer = built(Dropout([0.1, 0.5, 0.7]), (20,), P, seed=21)
    x = away_from_zero(1, 50, 20, seed=22)
    ratio = torch.stack([layer.forward(x, training=True) / x for _ in range(T)])  # (T, P, 50, 20)
    n = T * 50 * 20
    torch.manual_seed(23)
    for i, p in enumerate([0.1, 0.5, 0.7]):
        r = ratio[:, i]
        zeroed = (r == 0).double().mean().item()
        se_zero = math.sqrt(p * (1 - p) / n)
        assert abs(zeroed - p) < 3 * se_zero, (p, zeroed)
        # kept values are scaled by exactly 1 / (1 - p) ...
        torch.testing.assert_close(r[r != 0], torch.full_like(r[r != 0], 1.0 / (1.0 - p)), atol=0, rtol=1e-15)
        # ... so the mean over draws is the input: E[m / (1 - p)] = 1, Var = p / (1 - p)
        assert abs(r.mean().item() - 1.0) < 3 * math.sqrt(p / (1 - p) / n), (p, r.mean().item())

        # torch.nn.Dropout(p): same statistics, same scale
        ref = torch.nn.Dropout(p).train()(x.expand(T, 50, 20)) / x
        t_zeroed = (ref == 0).double().mean().item()
        assert abs(t_zeroed - p) < 3 * se_zero
        assert abs(zeroed - t_zeroed) < 3 * math.sqrt(2) * se_zero
        torch.testing.assert_close(ref[ref != 0].unique(), r[r != 0].unique(), atol=0, rtol=1e-15)
        assert abs(ref.mean().item() - 1.0) < 3 * math.sqrt(p / (1 - p) / n)


def test_p_one_half_scales_kept_units_by_exactly_two() -> None:
    layer = built(Dropout(0.5), (30,), 1)
    x = randn(1, 40, 30, seed=24)
    y = layer.forward(x, training=True)
    keep = layer.last_mask
    assert torch.equal(y[keep], 2.0 * x[keep])
    assert bool((y[~keep] == 0).all())


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_expected_training_activation_equals_eval_activation(mode: str) -> None:
    # E[classic train] = x (1 - p) = classic eval;  E[inverted train] = x = inverted eval.
    P, T = 3, 200
    layer = built(Dropout(RATES, mode=mode), (20,), P, seed=25)
    x = away_from_zero(1, 50, 20, seed=26)
    ratio = torch.stack([layer.forward(x, training=True) / x for _ in range(T)])
    ev = layer.forward(x, training=False) / x
    n = T * 50 * 20
    for i, p in enumerate(RATES):
        keep_prob = 1.0 - p
        expected = keep_prob if mode == "classic" else 1.0
        assert torch.allclose(ev[i] if ev.shape[0] == P else ev[0], torch.full_like(x[0], expected), rtol=1e-15)
        sd = math.sqrt(keep_prob * (1 - keep_prob)) * (1.0 if mode == "classic" else 1.0 / keep_prob)
        assert abs(ratio[:, i].mean().item() - expected) < 3 * sd / math.sqrt(n), (mode, p)


def test_classic_and_inverted_agree_exactly_in_expectation_on_a_small_net() -> None:
    """Enumerate every mask of a tiny net and sum with its probability: the exact expectation.

    Net: Linear(W) -> Tanh -> Dropout(p) -> Linear(V). The layer after the dropout is
    linear, so E over masks of the net's training output is the eval output, in each
    convention. The two conventions compute the same function (for every mask, and at
    eval) when the classic net's next-layer weights are V and the inverted net's are
    (1 - p) V -- the weights each convention's training arrives at.
    """
    P, n_ex, width = 3, 2, 3
    x = randn(1, n_ex, 4, seed=31)
    nets = {}
    for mode in ("inverted", "classic"):
        net = Sequential([Linear(4, width), Tanh(), Dropout(RATES, mode=mode), Linear(width, 2)])
        net.build((4,), Population(P, seed=30), dtype=DT)  # same seeds: same W and V
        randomize_biases(net.layers[3], seed=32)
        nets[mode] = net
    keep_prob = 1.0 - torch.tensor(RATES, dtype=DT)
    nets["inverted"].layers[3].weight.data.mul_(keep_prob.reshape(P, 1, 1))  # V_inv = (1 - p) V_classic

    expectation = {mode: torch.zeros(P, n_ex, 2, dtype=DT) for mode in nets}
    total_prob = torch.zeros(P, dtype=DT)
    for bits in itertools.product([0, 1], repeat=n_ex * width):
        pattern = torch.tensor(bits, dtype=torch.bool).reshape(1, n_ex, width).expand(P, n_ex, width)
        k = pattern.sum().item() // P
        prob = keep_prob ** k * (1 - keep_prob) ** (n_ex * width - k)  # per member
        total_prob += prob
        outs = {}
        for mode, net in nets.items():
            net.layers[2].fix_mask(pattern)
            outs[mode] = net.forward(x, training=True)
            expectation[mode] += prob.reshape(P, 1, 1) * outs[mode]
        torch.testing.assert_close(outs["classic"], outs["inverted"], atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(total_prob, torch.ones(P, dtype=DT))
    for mode, net in nets.items():
        net.layers[2].release_mask()
        torch.testing.assert_close(expectation[mode], net.forward(x, training=False), atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(nets["classic"].forward(x, training=False), nets["inverted"].forward(x, training=False),
                               atol=1e-13, rtol=1e-13)


def test_classic_is_keep_probability_times_inverted_for_the_same_mask() -> None:
    x = randn(1, N, 6, seed=33)
    inv = built(Dropout(RATES), (6,), 3)
    cla = built(Dropout(RATES, mode="classic"), (6,), 3)
    keep = draw_and_fix(inv, x)
    cla.fix_mask(keep)
    keep_prob = (1.0 - torch.tensor(RATES, dtype=DT)).reshape(3, 1, 1)
    torch.testing.assert_close(cla.forward(x, training=True), keep_prob * inv.forward(x, training=True),
                               atol=1e-15, rtol=1e-15)
    assert torch.equal(cla.forward(x, training=True)[keep], x.expand(3, N, 6)[keep])  # classic: kept units unscaled


def test_dropconnect_masked_weights_average_to_w_and_eval_is_plain_linear() -> None:
    P, T = 3, 250
    layer = built(DropConnectLinear(10, 8, p=RATES), (10,), P, seed=41)
    x = torch.eye(10, dtype=DT).unsqueeze(0)  # y = W~ (+ 0 bias): reads the masked weights
    W = layer.weight.data
    draws = torch.stack([layer.forward(x, training=True) for _ in range(T)])  # (T, P, 10, 8)
    for i, p in enumerate(RATES):
        zeroed = (draws[:, i] == 0).double().mean().item()
        assert abs(zeroed - p) < 3 * math.sqrt(p * (1 - p) / (T * 80))
        ratio = draws[:, i] / W[i]
        assert abs(ratio.mean().item() - 1.0) < 3 * math.sqrt(p / (1 - p) / (T * 80))
    # one mask per member per forward, shared by the whole mini-batch
    layer.forward(randn(1, 6, 10, seed=42), training=True)
    assert layer.last_mask.shape == (P, 10, 8)
    xin = randn(1, 6, 10, seed=43)
    ref = Linear(10, 8)
    ref.build((10,), Population(P, seed=41), dtype=DT)
    assert torch.equal(ref.weight.data, W)
    torch.testing.assert_close(layer.forward(xin, training=False), ref.forward(xin, training=False), atol=0, rtol=0)


# ---- per-layer rates ---------------------------------------------------------------------


def test_per_layer_rates_input_02_hidden_05() -> None:
    """The course's recipe: input dropout 0.2, hidden dropout 0.5 -- two Dropout layers."""
    P = 2
    model = Sequential([Dropout(0.2), Linear(100, 200), ReLU(), Dropout([0.5, 0.3]), Linear(200, 10)])
    model.build((100,), Population(P, seed=50), dtype=DT)
    x = away_from_zero(500, 100, seed=51)
    out = model.forward(x.unsqueeze(0), training=True)
    assert out.shape == (P, 500, 10)
    inp, hid = model.layers[0].last_mask, model.layers[3].last_mask
    assert inp.shape == (P, 500, 100) and hid.shape == (P, 500, 200)
    for member, (p_in, p_hid) in enumerate([(0.2, 0.5), (0.2, 0.3)]):
        n_in, n_hid = inp[member].numel(), hid[member].numel()
        assert abs((~inp[member]).double().mean().item() - p_in) < 3 * math.sqrt(p_in * (1 - p_in) / n_in)
        assert abs((~hid[member]).double().mean().item() - p_hid) < 3 * math.sqrt(p_hid * (1 - p_hid) / n_hid)
    # the two input masks differ between members (their own generators)
    assert not torch.equal(inp[0], inp[1])
    model.input_grad = False  # as the Trainer sets it: the data needs no gradient
    assert model.backward(torch.ones_like(out)) is None
    assert all(p.grad.abs().sum() > 0 for p in model.parameters())


# ---- population invariant ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_member_i_equals_member_i_alone(mode: str) -> None:
    seed, P = 60, 3
    big = built(Dropout(RATES, mode=mode), (7,), P, seed=seed)
    alone = [built(Dropout(RATES[i], mode=mode), (7,), 1, seeds=[seed + i]) for i in range(P)]
    for step in range(4):
        shared = step % 2 == 0
        x = randn(1 if shared else P, 5, 7, seed=61 + step)
        g = randn(P, 5, 7, seed=71 + step)
        training = step != 3
        y, dx = big.forward(x, training=training), big.backward(g)
        dx_alone = []
        for i, layer in enumerate(alone):
            xi = x if shared else x[i:i + 1]
            yi = layer.forward(xi, training=training)
            assert torch.equal(y[i:i + 1] if y.shape[0] == P else y, yi), (mode, step, i)
            if training:
                assert torch.equal(big.last_mask[i:i + 1], layer.last_mask)
            dx_alone.append(layer.backward(g[i:i + 1]))
        dx_ref = torch.cat(dx_alone)
        torch.testing.assert_close(dx, dx_ref.sum(0, keepdim=True) if shared else dx_ref, atol=1e-15, rtol=1e-15)


def test_dropconnect_member_i_equals_member_i_alone() -> None:
    seed, P = 80, 3
    big = built(DropConnectLinear(4, 3, p=RATES), (4,), P, seed=seed)
    alone = [built(DropConnectLinear(4, 3, p=RATES[i]), (4,), 1, seeds=[seed + i]) for i in range(P)]
    for step in range(3):
        x = randn(1, 5, 4, seed=81 + step)
        y = big.forward(x, training=True)
        big.backward(randn(P, 5, 3, seed=91 + step))
        for i, layer in enumerate(alone):
            assert torch.equal(layer.weight.data[0], big.weight.data[i])
            yi = layer.forward(x, training=True)
            layer.backward(randn(P, 5, 3, seed=91 + step)[i:i + 1])
            assert torch.equal(layer.last_mask[0], big.last_mask[i])
            torch.testing.assert_close(yi[0], y[i], atol=1e-14, rtol=1e-14)
            torch.testing.assert_close(layer.weight.grad[0], big.weight.grad[i], atol=1e-14, rtol=1e-14)


def test_fixing_a_mask_draws_nothing_and_release_resumes_the_stream() -> None:
    a, b = built(Dropout(0.5), (8,), 2, seed=3), built(Dropout(0.5), (8,), 2, seed=3)
    x = randn(1, N, 8, seed=4)
    a.fix_mask(torch.ones(2, N, 8))
    assert torch.equal(a.forward(x, training=True), 2.0 * x.expand(2, N, 8))
    a.release_mask()
    assert torch.equal(a.forward(x, training=True), b.forward(x, training=True))


# ---- errors and warnings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Dropout(1.0), "Dropout p is the drop probability and must satisfy 0 <= p < 1, got 1.0"),
        (lambda: Dropout(-0.1), "Dropout p is the drop probability and must satisfy 0 <= p < 1, got -0.1"),
        (lambda: Dropout([0.2, 1.5]),
         "Dropout p is the drop probability and must satisfy 0 <= p < 1, got 1.5 (member 1)"),
        (lambda: Dropout(float("nan")), "Dropout p must be finite, got nan"),
        (lambda: Dropout("0.5"), "Dropout p must be a number or a list of numbers (one per member), got '0.5'"),
        (lambda: Dropout(True), "Dropout p must be a number or a list of numbers (one per member), got True"),
        (lambda: Dropout([0.1, "x"]), "Dropout p must be a number or a list of numbers, got [0.1, 'x']"),
        (lambda: Dropout(0.5, mode="scaled"), "Dropout mode must be 'inverted' or 'classic', got 'scaled'"),
        (lambda: DropConnectLinear(3, 2, p=1.0),
         "DropConnectLinear p is the drop probability and must satisfy 0 <= p < 1, got 1.0"),
        (lambda: built(Dropout([0.1, 0.2]), (3,), 3),
         "Dropout p must be one number or a list of 3 numbers (one per member), got 2 values"),
    ],
)
def test_errors_state_the_rule_and_the_value(make, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert message in str(info.value)


def test_fixed_mask_errors() -> None:
    layer = built(Dropout(0.5), (3,), 2)
    with pytest.raises(ConfigError, match=r"keep-mask of 0/1 \(or booleans\)"):
        layer.fix_mask(torch.full((2, N, 3), 0.5))
    layer.fix_mask(torch.ones(1, N, 3))
    with pytest.raises(ConfigError, match=r"the fixed mask has shape \(1, 4, 3\), this forward needs \(2, 4, 3\)"):
        layer.forward(randn(1, N, 3, seed=1), training=True)


@pytest.mark.parametrize("make", [lambda: Dropout(0.8), lambda: Dropout([0.5, 0.9]),
                                  lambda: DropConnectLinear(3, 2, p=0.95)])
def test_high_p_warns_about_a_keep_probability_mix_up(make) -> None:
    with pytest.warns(UserWarning, match="may be a keep probability mix-up") as rec:
        make()
    text = str(rec[0].message)
    assert "p is the drop probability" in text and "If you meant to keep" in text
    assert rec[0].filename == __file__  # points at the user's line


def test_the_warning_suggests_the_complement() -> None:
    with pytest.warns(UserWarning, match=r"Dropout p=0\.8 drops 80% of the units.*use p=0\.2"):
        Dropout(0.8)


def test_ordinary_rates_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Dropout(0.5)
        Dropout([0.0, 0.2, 0.79])
        DropConnectLinear(3, 2, p=0.5)


def test_settings_are_stored_verbatim() -> None:
    assert Dropout([0.2, 0.5], mode="classic").settings() == {"p": [0.2, 0.5], "mode": "classic"}
    s = DropConnectLinear(None, 7, p=0.3).settings()
    assert s == {"in_features": None, "out_features": 7, "p": 0.3, "init": "xavier_uniform", "init_scale": 1.0,
                 "bias": True}


# ---- eval determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_eval_is_deterministic(mode: str) -> None:
    model = Sequential([Dropout(0.2, mode=mode), Linear(6, 8), ReLU(), Dropout(RATES, mode=mode),
                        DropConnectLinear(8, 3, p=0.4)])
    model.build((6,), Population(3, seed=1), dtype=DT)
    x = randn(1, 10, 6, seed=2)
    first = model.forward(x, training=False)
    model.forward(x, training=True)  # a training step in between changes nothing at eval
    second = model.forward(x, training=False)
    assert torch.equal(first, second)
    assert model.layers[0].last_mask is None and model.layers[3].last_mask is None


def test_inverted_eval_is_the_identity_and_classic_eval_scales_by_keep_probability() -> None:
    x = randn(1, N, 5, seed=3)
    inv = built(Dropout(RATES), (5,), 3)
    assert inv.forward(x, training=False) is x
    cla = built(Dropout(RATES, mode="classic"), (5,), 3)
    keep_prob = (1.0 - torch.tensor(RATES, dtype=DT)).reshape(3, 1, 1)
    torch.testing.assert_close(cla.forward(x, training=False), keep_prob * x, atol=0, rtol=0)


# ---- Monte-Carlo dropout --------------------------------------------------------------------


class RecordMode(Module):
    """Stands in for BatchNorm: an identity that records the ``training`` flag it gets."""

    def __init__(self) -> None:
        self._settings = {}
        self.seen: list[bool] = []

    def forward(self, x, *, training):
        self.seen.append(training)
        return x

    def backward(self, g):
        return g


class Boom(Module):
    def __init__(self) -> None:
        self._settings = {}

    def forward(self, x, *, training):
        raise RuntimeError("boom")


def mlp(p, *, P: int = 3, seed: int = 0, extra: list[Module] | None = None) -> Sequential:
    model = Sequential([Linear(6, 16), Tanh(), *(extra or []), Dropout(p), Linear(16, 4)])
    model.build((6,), Population(P, seed=seed), dtype=DT)
    for layer in model.layers:
        if isinstance(layer, Linear):
            randomize_biases(layer, seed=7)
    return model


def test_mc_with_p_zero_has_zero_uncertainty_and_equals_eval() -> None:
    model = mlp(0.0)
    x = randn(30, 6, seed=1)
    mean, unc = mc_dropout_predict(model, x, samples=8, batch_size=64)
    assert mean.shape == (3, 30, 4)
    assert torch.equal(mean, torch.softmax(model.forward(x.unsqueeze(0), training=False), dim=-1))
    assert torch.equal(unc.variance, torch.zeros(3, 30, dtype=DT))
    assert torch.equal(unc.mutual_information, torch.zeros(3, 30, dtype=DT))
    ent = torch.special.entr(mean).sum(-1)
    torch.testing.assert_close(unc.entropy, ent, atol=1e-15, rtol=1e-15)


def test_mc_mean_approaches_eval_output_for_a_linear_model() -> None:
    model = Sequential([Linear(6, 16), Dropout(RATES), Linear(16, 4)])
    model.build((6,), Population(3, seed=2), dtype=DT)
    x = randn(5, 6, seed=3)
    outs = mc_dropout_samples(model, x, samples=800)  # (T, P, N, C)
    assert outs.shape == (800, 3, 5, 4)
    ev = model.forward(x.unsqueeze(0), training=False)
    z = (outs.mean(0) - ev) / (outs.std(0) / math.sqrt(outs.shape[0]))
    assert z.abs().max().item() < 4.0
    err_few = (outs[:20].mean(0) - ev).abs().mean()
    err_many = (outs.mean(0) - ev).abs().mean()
    assert err_many < err_few / 3  # ~ 1 / sqrt(T): sqrt(40) = 6.3 times smaller on average


def test_mc_uncertainty_matches_its_definitions() -> None:
    model = mlp([0.3, 0.5, 0.1], seed=4)
    x = randn(40, 6, seed=5)
    T = 25
    # Generators are restored after each call, so both calls see the same masks.
    q = torch.softmax(mc_dropout_samples(model, x, samples=T, batch_size=16), dim=-1)
    mean, unc = mc_dropout_predict(model, x, samples=T, batch_size=16)
    torch.testing.assert_close(mean, q.mean(0), atol=1e-14, rtol=1e-12)
    win = mean.argmax(-1, keepdim=True)
    var = q.var(0, unbiased=False).gather(-1, win).squeeze(-1)
    torch.testing.assert_close(unc.variance, var, atol=1e-14, rtol=1e-10)
    ent = -(mean * mean.log()).sum(-1)
    torch.testing.assert_close(unc.entropy, ent, atol=1e-14, rtol=1e-12)
    mi = ent - (-(q * q.log()).sum(-1)).mean(0)
    torch.testing.assert_close(unc.mutual_information, mi, atol=1e-14, rtol=1e-10)
    assert bool((unc.variance > 0).all()) and bool((unc.mutual_information > 0).all())
    assert bool((unc.entropy <= math.log(4) + 1e-12).all()) and bool((unc.mutual_information <= unc.entropy).all())
    # a member with more dropout is, on average, less sure
    assert unc.variance[1].mean() > unc.variance[2].mean()


def test_mc_leaves_everything_else_in_eval_mode() -> None:
    rec = RecordMode()
    model = mlp(0.5, extra=[rec])
    mc_dropout_predict(model, randn(20, 6, seed=6), samples=5, batch_size=8)
    assert rec.seen == [False] * 15  # 3 batches x 5 passes, never training=True
    assert model.layers[3].mc is False


def test_mc_leaves_batchnorm_running_statistics_alone() -> None:
    norm = pytest.importorskip("trainlab.nn._norm", reason="BatchNorm not available yet")
    model = mlp(0.5, extra=[norm.BatchNorm()])
    x = randn(20, 6, seed=6)
    model.forward(x.unsqueeze(0), training=True)  # give the running statistics something to hold
    before = {k: v.clone() for k, v in model.buffers().items()}
    eval_out = model.forward(x.unsqueeze(0), training=False)
    mc_dropout_predict(model, x, samples=5)
    assert all(torch.equal(before[k], v) for k, v in model.buffers().items())
    assert torch.equal(model.forward(x.unsqueeze(0), training=False), eval_out)


def test_mc_sampling_uses_the_flag_not_the_training_argument() -> None:
    model = mlp(0.5)
    drop = model.layers[2]
    x = randn(1, 10, 6, seed=7)
    with mc_dropout(model) as switched:
        assert switched == [drop] and drop.mc is True
        a, b = model.forward(x, training=False), model.forward(x, training=False)
        assert not torch.equal(a, b) and drop.last_mask is not None
    assert drop.mc is False
    assert torch.equal(model.forward(x, training=False), model.forward(x, training=False))


def test_mc_restores_flags_on_exceptions() -> None:
    model = Sequential([Linear(6, 5), Dropout(0.5), Boom(), DropConnectLinear(5, 3, p=0.5)])
    model.build((6,), Population(2), dtype=DT)
    model.layers[3].mc = True  # a flag the user set stays set
    with pytest.raises(RuntimeError, match="boom"):
        mc_dropout_predict(model, randn(4, 6, seed=8), samples=3)
    assert model.layers[1].mc is False and model.layers[3].mc is True


def test_mc_does_not_disturb_training_and_repeats_its_draws() -> None:
    a, b = mlp(0.5, seed=9), mlp(0.5, seed=9)
    x = randn(12, 6, seed=10)
    first = mc_dropout_predict(a, x, samples=4)
    second = mc_dropout_predict(a, x, samples=4)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1].variance, second[1].variance)
    # the next training masks are the ones a model that never ran MC dropout draws
    assert torch.equal(a.forward(x.unsqueeze(0), training=True), b.forward(x.unsqueeze(0), training=True))


def test_mc_samples_dropconnect_too() -> None:
    model = Sequential([Linear(6, 8), ReLU(), DropConnectLinear(8, 4, p=0.5)])
    model.build((6,), Population(2, seed=11), dtype=DT)
    _, unc = mc_dropout_predict(model, randn(10, 6, seed=12), samples=10)
    assert bool((unc.variance > 0).any())


def test_mc_errors() -> None:
    plain = Sequential([Linear(6, 4)])
    plain.build((6,), Population(1), dtype=DT)
    with pytest.raises(ConfigError, match="MC dropout needs stochastic layers .* Sequential has none"):
        mc_dropout_predict(plain, randn(3, 6, seed=1))
    model = mlp(0.5)
    with pytest.raises(ConfigError, match="mc_dropout_predict samples must be an integer >= 1, got 0"):
        mc_dropout_predict(model, randn(3, 6, seed=1), samples=0)
    with pytest.raises(ConfigError, match=r"mc_dropout_predict x must be a tensor of shape \(N, ...\)"):
        mc_dropout_predict(model, torch.zeros(0, 6, dtype=DT))
    with pytest.raises(ConfigError, match="not built yet"):
        mc_dropout_predict(Sequential([Dropout(0.5)]), randn(3, 6, seed=1))


# ---- export converters ------------------------------------------------------------------------


def test_dropout_converters_match_the_eval_function() -> None:
    x = randn(1, N, 5, seed=1)
    for mode in ("inverted", "classic"):
        layer = built(Dropout(RATES, mode=mode), (5,), 3)
        ev = layer.forward(x, training=False)
        for member in range(3):
            mod = converter_for_layer(layer, member).eval()
            torch.testing.assert_close(mod(x[0]), ev[member if ev.shape[0] == 3 else 0], atol=0, rtol=1e-15)
    inv = converter_for_layer(built(Dropout(RATES), (5,), 3), 1)
    assert isinstance(inv, torch.nn.Dropout) and inv.p == 0.5
    # classic = torch dropout followed by (1 - p): kept units come out unscaled in training mode too
    y = converter_for_layer(built(Dropout(RATES, mode="classic"), (5,), 3), 2).train()(x[0])
    kept = y != 0
    torch.testing.assert_close(y[kept], x[0][kept], atol=0, rtol=1e-15)


def test_dropconnect_converter_is_the_mean_linear() -> None:
    layer = built(DropConnectLinear(5, 3, p=RATES), (5,), 3)
    randomize_biases(layer, seed=2)
    x = randn(1, N, 5, seed=3)
    ev = layer.forward(x, training=False)
    for member in range(3):
        mod = converter_for_layer(layer, member)
        assert isinstance(mod, torch.nn.Linear)
        torch.testing.assert_close(mod(x[0]), ev[member], atol=1e-14, rtol=1e-14)
