"""The optimizer contract suite (trainlab.optim.testing) over every registered optimizer."""

from __future__ import annotations

import inspect

import pytest
import torch

import trainlab.optim as topt
from trainlab.optim import OPTIMIZERS, SGD, Momentum, Optimizer
from trainlab.optim import testing as contract

CLASSES = list(dict.fromkeys(OPTIMIZERS.values()))


@pytest.mark.parametrize("check", list(contract.CHECKS))
@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_optimizer_contract(cls: type[Optimizer], check: str) -> None:
    contract.CHECKS[check](cls, contract.example_for(cls))


#: public optimizers outside OPTIMIZERS, and why: L-BFGS steps with a closure (its line search evaluates
#: the objective; tests/optim_tests/test_wrappers.py pins it to torch.optim.LBFGS and second_order's
#: L-BFGS), Lookahead wraps another optimizer (pinned to the paper's Algorithm 1 there)
NOT_REGISTERED = {"LBFGS": "closure optimizer (CLOSURE_OPTIMIZERS)", "Lookahead": "wrapper"}


def test_every_public_optimizer_is_registered_with_an_example() -> None:
    public = {name: obj for name in topt.__all__ if inspect.isclass(obj := getattr(topt, name))
              and issubclass(obj, Optimizer) and obj is not Optimizer}
    missing = sorted(name for name, cls in public.items() if cls not in OPTIMIZERS.values()
                     and name not in NOT_REGISTERED)
    assert not missing, f"public optimizers missing from trainlab.optim.OPTIMIZERS: {missing}"
    no_example = sorted(cls.__name__ for cls in CLASSES if cls not in contract.EXAMPLES)
    assert not no_example, f"registered optimizers without a contract example: {no_example}"


class _HalfStepSGD(SGD):
    """SGD whose step is half what it claims (a wrong rule the suite must catch)."""

    def _update(self, w, g, state, lr):
        w.add_(-0.5 * lr * g)


class _MixedMembers(SGD):
    """SGD that uses member 0's learning rate for every member."""

    def _update(self, w, g, state, lr):
        w.sub_(lr[:1] * g)


class _ForgetsState(Momentum):
    def state_dict(self):
        return {k: (torch.zeros_like(v) if "." in k and not k.startswith("hparam") else v)
                for k, v in super().state_dict().items()}


def test_a_wrong_rule_in_the_registry_fails_the_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(OPTIMIZERS, "half_sgd", _HalfStepSGD)
    monkeypatch.setitem(contract.EXAMPLES, _HalfStepSGD, contract.EXAMPLES[SGD])
    with pytest.raises(AssertionError, match="_HalfStepSGD: member 0's 0.weight after 10 steps differs from SGD"):
        contract.check_optimizer_contract(_HalfStepSGD)


def test_a_member_mixup_fails_the_suite() -> None:
    with pytest.raises(AssertionError, match="member 1's 0.weight in a population differs from member 1 alone"):
        contract.check_member_independence(_MixedMembers, contract.EXAMPLES[SGD])


def test_a_lossy_state_dict_fails_the_suite() -> None:
    with pytest.raises(AssertionError, match="after a state_dict round trip at step 5 differs"):
        contract.check_state_roundtrip(_ForgetsState, contract.EXAMPLES[Momentum])
