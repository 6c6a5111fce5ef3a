"""The layer contract suite (trainlab.nn.testing) over every registered layer.

Every class in :data:`trainlab.nn.LAYERS` runs every check; a public layer class missing from
the registry fails; a toy layer with a wrong backward, registered in a test, makes the suite fail.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import trainlab.nn as tnn
from trainlab.gradcheck import GradientMismatch, assert_gradients
from trainlab.nn import LAYERS, Module, Tanh
from trainlab.nn import testing as contract
from trainlab.population import Population

CLASSES = list(contract.registered_classes())

#: public classes of trainlab.nn that are not layers a config names: the base class, the container,
#: and mixins that only share behaviour between layers
NOT_REGISTERED = {"Module", "Sequential", "DropoutFamily", "NoiseFamily"}


@pytest.mark.parametrize("check", list(contract.CHECKS))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_layer_contract(cls: type[Module], check: str) -> None:
    contract.CHECKS[check](contract.example_for(cls))


def test_every_public_layer_is_registered_with_an_example() -> None:
    public = {name: obj for name in tnn.__all__ if inspect.isclass(obj := getattr(tnn, name))
              and issubclass(obj, Module)}
    registered = set(LAYERS.values())
    missing = sorted(name for name, cls in public.items() if cls not in registered and name not in NOT_REGISTERED)
    assert not missing, f"public layers missing from trainlab.nn.LAYERS: {missing}"
    no_example = sorted(cls.__name__ for cls in registered if cls not in contract.EXAMPLES)
    assert not no_example, f"registered layers without a contract example: {no_example}"


class _WrongTanh(Tanh):
    """tanh with a backward that is off by a factor (error 0.5 relative)."""

    def backward(self, g: torch.Tensor) -> torch.Tensor:
        return super().backward(g) * 0.5


def test_a_wrong_backward_in_the_registry_fails_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(LAYERS, "wrong_tanh", _WrongTanh)
    monkeypatch.setitem(contract.EXAMPLES, _WrongTanh, contract.LayerExample(lambda pk: _WrongTanh(), (4,)))
    assert _WrongTanh in list(contract.registered_classes())
    with pytest.raises(GradientMismatch, match=r"_WrongTanh P=1 per-member input, eval: gradient of input has "
                                               r"relative error 0\.5"):
        contract.check_layer_contract(_WrongTanh)


def test_a_member_mixup_fails_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    class Reversed(Tanh):  # member i computes with member P-1-i's input
        def forward(self, x, *, training):
            return super().forward(x.flip(0), training=training)

        def backward(self, g):
            return super().backward(g).flip(0)

    monkeypatch.setitem(contract.EXAMPLES, Reversed, contract.LayerExample(lambda pk: Reversed(), (4,)))
    with pytest.raises(AssertionError, match="member 0 of a population differs from member 0 alone"):
        contract.check_member_independence(contract.example_for(Reversed))


def test_a_missing_example_is_named() -> None:
    class Unknown(Tanh):
        pass

    with pytest.raises(AssertionError, match="Unknown has no contract example"):
        contract.check_layer_contract(Unknown)


def test_assert_gradients_raises_with_the_worst_entry() -> None:
    layer = _WrongTanh()
    layer.build((3,), Population(2), dtype=torch.float64)
    x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(GradientMismatch, match=r"gradient of input has relative error 0\.5 > 1e-06; worst entry "
                                               r"input\[\d, \d, \d\]: backward gives"):
        assert_gradients(layer, x)
    good = Tanh()
    good.build((3,), Population(2), dtype=torch.float64)
    assert assert_gradients(good, x).max_error < 1e-8
