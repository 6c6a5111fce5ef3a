"""The doctor's config surgery, as RunConfig does it: "regularization off" switches off penalties, dropout,
noise, early stopping and data augmentation, and says which keys were on; one member of a population and a
population of one member round-trip."""

from __future__ import annotations

from trainlab.config import SCHEMA, RunConfig


def test_without_regularization_turns_everything_off_and_lists_what_was_on():
    cfg = RunConfig.from_dict({
        "model": {"type": "mlp", "hidden": [20], "dropout": 0.3},
        "optim": {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4},
        "augment": {"shift": 2.0, "mixup": 0.2, "force": True},
        "early_stopping": {"enabled": True},
    })
    off, changed = cfg.without_regularization()
    assert set(changed) == {"model.dropout", "optim.weight_decay", "augment.shift", "augment.mixup",
                            "early_stopping.enabled"}
    for name, key in SCHEMA["augment"].items():
        assert off.to_dict()["augment"][name] == key.default
    assert off.model.dropout == 0.0 and off.optim.weight_decay == 0.0
    assert not off.early_stopping.enabled
    assert off.without_regularization()[1] == []
    assert cfg.model.dropout == 0.3  # the config itself is not edited


def test_single_member_and_population_config_round_trip():
    cfg = RunConfig.from_dict({"population": {"size": 3}, "optim": {"name": "sgd", "lr": [0.1, 0.2, 0.3]},
                               "model": {"type": "mlp", "hidden": [8]}})
    one = cfg.member(2)
    assert one.optim.lr == 0.3 and one.population.size == 1
    pop = one.as_population({"optim.lr": [1e-3, 1e-2, 1e-1, 1.0]})
    assert pop.population.size == 4 and list(pop.optim.lr) == [1e-3, 1e-2, 1e-1, 1.0]
    assert len(set(pop.seeds())) == 1
