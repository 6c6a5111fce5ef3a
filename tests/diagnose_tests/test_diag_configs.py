"""The doctor's config surgery: "regularization off" switches off penalties, dropout, noise,
early stopping and data augmentation, and says which keys were on."""

from __future__ import annotations

from trainlab.config import SCHEMA, resolve_config
from trainlab.diagnose._configs import population_config, single_member, without_regularization


def test_without_regularization_turns_everything_off_and_lists_what_was_on():
    cfg = resolve_config({
        "model": {"type": "mlp", "hidden": [20], "dropout": 0.3},
        "optim": {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4},
        "augment": {"shift": 2.0, "mixup": 0.2, "force": True},
        "early_stopping": {"enabled": True},
    })
    off, changed = without_regularization(cfg)
    assert set(changed) == {"model.dropout", "optim.weight_decay", "augment.shift", "augment.mixup",
                            "early_stopping.enabled"}
    for name, key in SCHEMA["augment"].items():
        assert off["augment"][name] == key.default
    assert off["model"]["dropout"] == 0.0 and off["optim"]["weight_decay"] == 0.0
    assert not off["early_stopping"]["enabled"]
    assert without_regularization(off)[1] == []


def test_single_member_and_population_config_round_trip():
    cfg = resolve_config({"population": {"size": 3}, "optim": {"name": "sgd", "lr": [0.1, 0.2, 0.3]},
                          "model": {"type": "mlp", "hidden": [8]}})
    one = single_member(cfg, 2)
    assert one["optim"]["lr"] == 0.3 and one["population"]["size"] == 1
    pop = population_config(one, 4, {"optim.lr": [1e-3, 1e-2, 1e-1, 1.0]})
    assert pop["population"]["size"] == 4 and pop["optim"]["lr"] == [1e-3, 1e-2, 1e-1, 1.0]
    assert len(set(pop["population"]["seeds"])) == 1
