"""Converters between the three ways an L2 penalty's strength is written.

=========================  =====================  ===========================  ==========================
convention                 added to the loss      added to the gradient        in trainlab
=========================  =====================  ===========================  ==========================
the textbook, ``lam``      ``1/2 lam sum W^2``    ``lam W``                    ``L2(lam, form="half")``
torch ``weight_decay``     (none; a step rule)    ``weight_decay W``           ``optim.weight_decay``
Keras ``l2(lam)``          ``lam sum W^2``        ``2 lam W``                  ``L2(lam, form="full")``
=========================  =====================  ===========================  ==========================

So with plain SGD ``half_l2 = weight_decay = 2 keras_l2``. (With adaptive optimizers
coupled decay and a penalty still agree -- both go into the gradient -- while decoupled
decay, AdamW's, is another thing: see ``docs/regularization.md``.) Each function takes one
number or one per member and returns the same kind. ``tests/regularize_tests/
test_l2_conventions.py`` checks each by equal trajectories: trainlab's penalty, torch's
``SGD(weight_decay=)`` and the Keras loss written out in torch autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainlab.errors import ConfigError

__all__ = ["half_l2_to_weight_decay", "weight_decay_to_half_l2", "keras_l2_to_weight_decay",
           "weight_decay_to_keras_l2", "half_l2_to_keras_l2", "keras_l2_to_half_l2"]

Number = float | Sequence[float]


def _scale(value: Number, factor: float, what: str) -> Number:
    def one(v: object) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise ConfigError(f"{what} must be a number >= 0 or a list of them, got {value!r}")
        return float(v) * factor

    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [one(v) for v in value]
    return one(value)


def half_l2_to_weight_decay(lam: Number) -> Number:
    """The textbook's ``1/2 lam sum W^2`` -> torch ``weight_decay`` (the same number: gradient ``lam W``)."""
    return _scale(lam, 1.0, "half_l2 lambda")


def weight_decay_to_half_l2(weight_decay: Number) -> Number:
    """torch ``weight_decay`` -> the textbook's ``lam`` in ``1/2 lam sum W^2`` (the same number)."""
    return _scale(weight_decay, 1.0, "weight_decay")


def keras_l2_to_weight_decay(lam: Number) -> Number:
    """Keras ``l2(lam)`` (adds ``lam sum W^2``, gradient ``2 lam W``) -> torch ``weight_decay = 2 lam``."""
    return _scale(lam, 2.0, "keras l2 lambda")


def weight_decay_to_keras_l2(weight_decay: Number) -> Number:
    """torch ``weight_decay`` -> Keras ``l2(weight_decay / 2)``."""
    return _scale(weight_decay, 0.5, "weight_decay")


def half_l2_to_keras_l2(lam: Number) -> Number:
    """The textbook's ``1/2 lam sum W^2`` -> Keras ``l2(lam / 2)``."""
    return _scale(lam, 0.5, "half_l2 lambda")


def keras_l2_to_half_l2(lam: Number) -> Number:
    """Keras ``l2(lam)`` -> the textbook's ``1/2 (2 lam) sum W^2``."""
    return _scale(lam, 2.0, "keras l2 lambda")
