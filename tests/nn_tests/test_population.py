"""The population axis: per-member values, seeds and generators; Sequential's
build/state errors."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.nn import Linear, ReLU, Sequential, Tanh
from trainlab.population import Population, check_population, member_values, member_view

# ---- member_values -------------------------------------------------------------------


def test_scalar_is_shared_by_every_member() -> None:
    t = member_values(0.5, 4, name="lr", dtype=torch.float64)
    assert t.shape == (4,) and t.dtype == torch.float64
    assert t.tolist() == [0.5] * 4
    assert member_values(2, 3, name="k").tolist() == [2.0] * 3


def test_list_and_tensor_values() -> None:
    assert member_values([0.1, 0.2, 0.3], 3, name="lr", dtype=torch.float64).tolist() == [0.1, 0.2, 0.3]
    assert member_values(torch.tensor(0.25), 3, name="lr").tolist() == [0.25] * 3
    assert member_values(torch.tensor([1.0, 2.0]), 2, name="lr").tolist() == [1.0, 2.0]
    assert member_values((1, 2), 2, name="lr").tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ([0.1, 0.2], {}, "lr must be one number or a list of 3 numbers (one per member), got 2 values"),
        (torch.ones(4), {}, "lr must be one number or a list of 3 numbers (one per member), got 4 values"),
        (float("nan"), {}, "lr must be finite, got nan"),
        ([0.1, math.inf, 0.2], {}, "lr must be finite, got inf"),
        (0.0, {"low": 0.0, "low_inclusive": False}, "lr must be > 0.0, got 0.0"),
        (-1.0, {"low": 0.0}, "lr must be >= 0.0, got -1.0"),
        ([0.5, 1.0, 0.5], {"high": 1.0, "high_inclusive": False}, "lr must be < 1.0, got 1.0"),
        (2.0, {"high": 1.0}, "lr must be <= 1.0, got 2.0"),
        ([0.1, "x", 0.2], {}, "lr must be a number or a list of numbers, got [0.1, 'x', 0.2]"),
        ([True, 0.1, 0.2], {}, "lr must be a number or a list of numbers"),
        (True, {}, "lr must be a number or a list of 3 numbers (one per member), got True"),
        ("0.1", {}, "lr must be a number or a list of 3 numbers (one per member), got '0.1'"),
    ],
)
def test_member_values_errors(value, kwargs, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        member_values(value, 3, name="lr", **kwargs)
    assert message in str(info.value)


def test_bounds_inclusive_by_default() -> None:
    assert member_values([0.0, 1.0], 2, name="p", low=0.0, high=1.0).tolist() == [0.0, 1.0]


def test_member_view_and_check_population() -> None:
    v = torch.arange(3.0)
    assert member_view(v, 4).shape == (3, 1, 1, 1)
    check_population(torch.zeros(3, 2, 5), 3)
    check_population(torch.zeros(1, 2, 5), 3)  # shared by all members
    with pytest.raises(ConfigError, match=r"input has population axis 2, expected 3 \(or 1"):
        check_population(torch.zeros(2, 2, 5), 3)
    with pytest.raises(ConfigError, match=r"must have shape \(P, N, \.\.\.\), got \(5,\)"):
        check_population(torch.zeros(5), 3)


# ---- Population ----------------------------------------------------------------------


def test_seeds() -> None:
    assert Population(3, seed=10).seeds == [10, 11, 12]
    assert Population(2, seeds=[7, 3]).seeds == [7, 3]
    assert Population().size == 1 and Population().seeds == [0]
    with pytest.raises(ConfigError, match="population.seeds must list 3 seeds"):
        Population(3, seeds=[1, 2])
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ConfigError, match="population size must be an integer >= 1"):
            Population(bad)


def test_member_generator_equals_single_model_generator() -> None:
    pop = Population(4, seed=5)
    draws = [torch.rand(6, generator=g) for g in pop.generators()]
    for i in range(4):
        alone = Population(1, seeds=[5 + i]).generators()[0]
        assert torch.equal(draws[i], torch.rand(6, generator=alone))
    assert pop.generators() is pop.generators()  # created once, then continues its stream


def test_select() -> None:
    pop = Population(5, seed=100)
    sub = pop.select([4, 1])
    assert sub.size == 2 and sub.seeds == [104, 101]
    assert torch.equal(torch.rand(3, generator=sub.generators()[0]),
                       torch.rand(3, generator=Population(1, seeds=[104]).generators()[0]))


def test_generator_state_round_trip() -> None:
    pop = Population(3, seed=1)
    for g in pop.generators():
        torch.rand(5, generator=g)
    state = pop.get_state()
    assert set(state) == {"cpu"} and all(s.dtype == torch.uint8 for s in state["cpu"])
    expected = [torch.rand(4, generator=g) for g in pop.generators()]

    fresh = Population(3, seed=1)
    fresh.set_state(state)
    assert all(torch.equal(torch.rand(4, generator=g), e) for g, e in zip(fresh.generators(), expected))
    pop.set_state(state)  # rewinding the same population replays its stream
    assert all(torch.equal(torch.rand(4, generator=g), e) for g, e in zip(pop.generators(), expected))


# ---- Sequential ----------------------------------------------------------------------


def _model(widths: list[int], P: int = 2, seed: int = 0) -> Sequential:
    layers = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [Linear(a, b), ReLU()]
    layers.append(Linear(widths[-2], widths[-1]))
    m = Sequential(layers)
    m.build((widths[0],), Population(P, seed=seed), dtype=torch.float64)
    return m


def test_state_dict_round_trip() -> None:
    a, b = _model([4, 5, 3], seed=1), _model([4, 5, 3], seed=2)
    assert list(a.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    a.layers[0].weight.data.add_(1.0)  # copied, not aliased
    assert not torch.equal(a.layers[0].weight.data, b.layers[0].weight.data)


def test_load_state_dict_lists_every_mismatch() -> None:
    target = _model([4, 5, 3])
    state = dict(_model([4, 6, 3]).state_dict())
    del state["2.bias"]
    state["9.weight"] = torch.zeros(2, 1)
    with pytest.raises(CheckpointError) as info:
        target.load_state_dict(state, source="run.safetensors")
    msg = str(info.value)
    assert msg.startswith("run.safetensors does not fit this model")
    assert "missing 2.bias" in msg
    assert "unexpected 9.weight" in msg
    assert "0.weight: expected (2, 4, 5), got (2, 4, 6)" in msg
    assert "0.bias: expected (2, 1, 5), got (2, 1, 6)" in msg
    assert "2.weight: expected (2, 5, 3), got (2, 6, 3)" in msg


def test_load_state_dict_population_size_mismatch() -> None:
    with pytest.raises(CheckpointError, match=r"0.weight: expected \(3, 4, 2\), got \(2, 4, 2\)"):
        _model([4, 2], P=3).load_state_dict(_model([4, 2], P=2).state_dict())


def test_inconsistent_shapes_fail_at_build() -> None:
    m = Sequential([Linear(4, 5), Tanh(), Linear(6, 2)])
    with pytest.raises(ConfigError, match=r"Linear\(6, 2\) got inputs with 5 features"):
        m.build((4,), 2)
    with pytest.raises(ConfigError, match=r"Linear expects flat inputs .* got \(1, 28, 28\); add a Flatten"):
        Sequential([Linear(784, 10)]).build((1, 28, 28), 1)


def test_in_features_inferred() -> None:
    m = Sequential([Linear(None, 5), Linear(None, 2)])
    assert m.build((7,), 3) == (2,)
    assert m.layers[1].weight.shape == (3, 5, 2)
    assert m.size == 3 and m.num_parameters() == 7 * 5 + 5 + 5 * 2 + 2


def test_construction_errors() -> None:
    with pytest.raises(ConfigError, match="a model needs at least one layer, got an empty layer list"):
        Sequential([])
    with pytest.raises(ConfigError, match="layer 1 is not a trainlab layer"):
        Sequential([Linear(2, 2), torch.nn.ReLU()])
    with pytest.raises(ConfigError, match="Linear out_features must be an integer >= 1, got 0"):
        Linear(3, 0)
    with pytest.raises(ConfigError, match="the model is not built yet"):
        _ = Sequential([Linear(2, 2)]).size


def test_first_layer_input_grad_switch() -> None:
    m = _model([3, 4, 2])
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    m.forward(x, training=True)
    assert m.backward(torch.ones(2, 5, 2, dtype=torch.float64)).shape == (1, 5, 3)
    m.input_grad = False
    m.forward(x, training=True)
    assert m.backward(torch.ones(2, 5, 2, dtype=torch.float64)) is None
    assert [layer.input_grad for layer in m.layers] == [False, True, True]
