"""freeze(..., frozen=False) restores exactly what freezing changed, nothing else (issue 18, defect 3)."""

from __future__ import annotations

from trainlab import nn
from trainlab.population import Population
from trainlab.transfer import freeze


def model() -> nn.Sequential:
    m = nn.Sequential([nn.Linear(4, 5), nn.BatchNorm(), nn.ReLU(), nn.Linear(5, 3)])
    m.build((4,), Population(2, seed=0))
    return m


def flags(m: nn.Sequential) -> dict:
    out = {n: (p.trainable, p.decay) for n, p in m.named_parameters().items()}
    out["bn.freeze_stats"] = m.layers[1].freeze_stats
    return out


def test_unfreeze_restores_the_users_settings() -> None:
    m = model()
    # the user's own choices before freezing: no decay on layer 0's weight, decay on its bias,
    # BN statistics frozen on purpose (e.g. fine-tuning with small batches)
    m.layers[0].weight.decay = False
    m.layers[0].bias.decay = True
    m.layers[1].freeze_stats = True
    before = flags(m)
    freeze(m, [0, 1])
    assert all(not p.trainable and not p.decay for i in (0, 1) for p in m.layers[i].parameters())
    assert m.layers[1].freeze_stats
    freeze(m, [0, 1], frozen=False)
    assert flags(m) == before


def test_freeze_twice_then_unfreeze_restores_the_first_record_and_leaves_other_layers_alone() -> None:
    m = model()
    m.layers[3].weight.decay = False  # not frozen, never touched
    before = flags(m)
    freeze(m, [0, 1])
    freeze(m, [0, 1])  # freezing again must not record the frozen state as "the user's"
    freeze(m, [0, 1], frozen=False)
    assert flags(m) == before


def test_unfreezing_a_layer_freeze_did_not_freeze_only_makes_it_trainable() -> None:
    m = model()
    m.layers[0].weight.trainable = False
    m.layers[0].weight.decay = False
    m.layers[1].freeze_stats = True
    freeze(m, [0, 1], frozen=False)
    assert m.layers[0].weight.trainable and not m.layers[0].weight.decay
    assert m.layers[1].freeze_stats
