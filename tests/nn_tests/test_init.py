"""Initializers: their spread against the written-out formulas, fan rules, per-member
scale and seeds, and the error messages of the name/table resolver."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.errors import ConfigError
from trainlab.init import INITIALIZERS, HeNormal, LecunNormal, XavierUniform, fans, get_initializer
from trainlab.nn import Linear
from trainlab.population import Population

SHAPE = (784, 100)  # fan_in 784, fan_out 100
FI, FO = SHAPE
CONV = (64, 32, 5, 5)  # (out, in, kh, kw): fan_in 32*25 = 800, fan_out 64*25 = 1600

# spec -> (expected std as a function of (fan_in, fan_out), uniform bound or None)
FORMULAS = {
    "normal": (lambda fi, fo: 1.0, None),
    "uniform": (lambda fi, fo: 1.0 / math.sqrt(3.0), lambda fi, fo: 1.0),
    "xavier_normal": (lambda fi, fo: math.sqrt(2.0 / (fi + fo)), None),
    "xavier_uniform": (lambda fi, fo: math.sqrt(6.0 / (fi + fo)) / math.sqrt(3.0), lambda fi, fo: math.sqrt(6.0 / (fi + fo))),
    "he_normal": (lambda fi, fo: math.sqrt(2.0 / fi), None),
    "he_uniform": (lambda fi, fo: math.sqrt(6.0 / fi) / math.sqrt(3.0), lambda fi, fo: math.sqrt(6.0 / fi)),
    "lecun_normal": (lambda fi, fo: math.sqrt(1.0 / fi), None),
}


def draw(spec, shape, seed: int = 0) -> torch.Tensor:
    return get_initializer(spec).sample(shape, torch.Generator().manual_seed(seed))


def test_fan_rules() -> None:
    assert fans((784, 100)) == (784, 100)
    assert fans((16, 8, 3, 3)) == (8 * 9, 16 * 9)
    assert fans(CONV) == (800, 1600)
    assert fans((4, 2, 3)) == (6, 12)  # 1-D conv (out, in, k)
    with pytest.raises(ConfigError, match=r"need 2 or more dimensions"):
        fans((10,))


@pytest.mark.parametrize("name", list(FORMULAS))
@pytest.mark.parametrize("shape", [SHAPE, CONV], ids=["dense", "conv"])
def test_std_matches_formula(name: str, shape: tuple[int, ...]) -> None:
    std_formula, bound = FORMULAS[name]
    fi, fo = fans(shape)
    expected = std_formula(fi, fo)
    w = draw(name, shape)
    assert w.shape == shape and w.dtype == torch.float64
    assert get_initializer(name).stddev(shape) == pytest.approx(expected, rel=1e-12)
    assert abs(w.std().item() / expected - 1.0) < 0.03
    assert abs(w.mean().item()) < 0.03 * expected
    if bound is not None:
        a = bound(fi, fo)
        assert w.abs().max().item() <= a
        assert w.abs().max().item() > 0.99 * a  # the whole interval is used


def test_formulas_cover_every_random_initializer() -> None:
    assert set(INITIALIZERS) - set(FORMULAS) == {"zeros", "constant"}


def test_deterministic_initializers() -> None:
    assert torch.equal(draw("zeros", (3, 4)), torch.zeros(3, 4, dtype=torch.float64))
    assert torch.equal(draw({"name": "constant", "value": 0.5}, (3, 4)), torch.full((3, 4), 0.5, dtype=torch.float64))


def test_table_with_options() -> None:
    w = draw({"name": "normal", "std": 0.01}, SHAPE)
    assert abs(w.std().item() / 0.01 - 1.0) < 0.03
    w = draw({"name": "uniform", "a": 0.1}, SHAPE)
    assert w.abs().max().item() <= 0.1
    w = draw({"name": "xavier_uniform", "gain": 2.0}, SHAPE)
    assert abs(w.std().item() / (2.0 * math.sqrt(2.0 / (FI + FO))) - 1.0) < 0.03


def test_aliases_and_objects() -> None:
    assert isinstance(get_initializer("glorot_uniform"), XavierUniform)
    assert isinstance(get_initializer("Kaiming_Normal"), HeNormal)
    assert isinstance(get_initializer("lecun"), LecunNormal)
    obj = HeNormal()
    assert get_initializer(obj) is obj


def test_same_generator_state_same_draw() -> None:
    assert torch.equal(draw("he_normal", (5, 3), seed=4), draw("he_normal", (5, 3), seed=4))
    assert not torch.equal(draw("he_normal", (5, 3), seed=4), draw("he_normal", (5, 3), seed=5))


def _linear(P: int, *, dtype=torch.float64, **kw) -> Linear:
    pop = kw.pop("population", None) or Population(P, seed=kw.pop("seed", 0))
    layer = Linear(20, 30, **kw)
    layer.build((20,), pop, dtype=dtype)
    return layer


def test_init_scale_multiplies_each_member_exactly() -> None:
    scales = [1.0, 0.5, 3.0, 0.0]
    base = _linear(4, init="he_normal", seed=11)
    scaled = _linear(4, init="he_normal", seed=11, init_scale=scales)
    for i, s in enumerate(scales):
        assert torch.equal(scaled.weight.data[i], base.weight.data[i] * s)
    assert torch.equal(scaled.bias.data, torch.zeros(4, 1, 30, dtype=torch.float64))


def test_member_equals_single_model_with_its_seed() -> None:
    s = 123
    pop = _linear(4, init="xavier_normal", seed=s)
    for i in range(4):
        single = _linear(1, init="xavier_normal", population=Population(1, seeds=[s + i]))
        assert torch.equal(pop.weight.data[i], single.weight.data[0])
    assert not torch.equal(pop.weight.data[0], pop.weight.data[1])


def test_member_init_is_the_same_in_float32() -> None:
    w64 = _linear(2, init="he_uniform", seed=3).weight.data
    w32 = _linear(2, init="he_uniform", seed=3, dtype=torch.float32).weight.data
    assert torch.equal(w32, w64.to(torch.float32))


def test_unknown_name_lists_allowed_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_initializer("glorot_gaussian")
    msg = str(info.value)
    assert "unknown init 'glorot_gaussian'" in msg
    for name in INITIALIZERS:
        assert name in msg


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "normal", "mean": 1.0}, "unknown option 'mean' for init 'normal' (allowed: std)"),
        ({"name": "he_normal", "gain": 2.0}, "unknown option 'gain' for init 'he_normal' (it takes none)"),
        ({"name": "normal", "std": "big"}, "init option 'std' must be a finite number, got 'big'"),
        ({"name": "normal", "std": float("nan")}, "init option 'std' must be a finite number, got nan"),
        ({"std": 0.1}, "init table needs a 'name' string"),
        (3, "init must be a name or a table, got 3"),
    ],
)
def test_bad_specs(spec, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        get_initializer(spec)
    assert message in str(info.value)


def test_negative_init_scale_rejected() -> None:
    with pytest.raises(ConfigError, match="init_scale must be >= 0.0, got -1.0"):
        _linear(2, init_scale=[1.0, -1.0])
