"""Config surgery for the doctor: one member, populations over a grid, regularization off."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import copy
from typing import Any

from trainlab.config import SCHEMA, Key, get_key, per_member_keys, resolve_config, set_key

__all__ = ["get_key", "set_key", "single_member", "population_config", "without_regularization", "derive",
           "REGULARIZATION_OFF"]


_PER_MEMBER = per_member_keys()

#: what "regularization off" sets (the recipe's steps 1 and 2): penalties, decay, dropout,
#: noise, label smoothing, max-norm and early stopping
REGULARIZATION_OFF: dict[str, Any] = {
    "optim.weight_decay": 0.0,
    "regularize.l1": 0.0,
    "regularize.l2": 0.0,
    "regularize.max_norm": None,
    "model.dropout": 0.0,
    "model.input_dropout": 0.0,
    "model.input_noise": 0.0,
    "loss.label_smoothing": 0.0,
    "early_stopping.enabled": False,
}


def single_member(cfg: Mapping[str, Any], member: int = 0) -> dict[str, Any]:
    """The config of one member of a population config: per-member lists -> that member's value, P = 1."""
    out = copy.deepcopy(dict(cfg))
    size = out["population"]["size"]
    if not 0 <= member < size:
        from trainlab.errors import ConfigError

        raise ConfigError(f"member must be in [0, {size}), got {member}")
    seeds = out["population"]["seeds"]
    for path in _PER_MEMBER:
        v = get_key(out, path)
        if isinstance(v, list):
            set_key(out, path, v[member])
    out["population"] = {"size": 1, "seeds": [seeds[member]] if seeds else [out["seed"] + member]}
    return resolve_config(out)


def population_config(cfg: Mapping[str, Any], size: int, values: Mapping[str, Sequence[Any]] | None = None, *,
                      same_seed: bool = True) -> dict[str, Any]:
    """``size`` members of a one-member ``cfg``, with per-member ``values`` (dotted key -> list).

    ``same_seed``: every member gets member 0's seed, so all start from the same
    weights and draw the same dropout masks -- only the listed values differ.
    """
    out = copy.deepcopy(dict(cfg))
    seed = (cfg["population"]["seeds"] or [cfg["seed"]])[0]
    out["population"] = {"size": size, "seeds": [seed] * size if same_seed else [seed + i for i in range(size)]}
    for path, vals in (values or {}).items():
        set_key(out, path, list(vals))
    return resolve_config(out)


def without_regularization(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``cfg`` with every regularizer off, data augmentation included; also the list of keys that were on."""
    out = copy.deepcopy(dict(cfg))
    changed = []
    for name, key in SCHEMA["augment"].items():  # every augmentation key back to its default (off)
        path = f"augment.{name}"
        if isinstance(key, Key) and get_key(out, path) != key.default:
            if name != "force":
                changed.append(path)
            set_key(out, path, key.default)
    for path, off in REGULARIZATION_OFF.items():
        v = get_key(out, path)
        on = (v is not None and v is not False and (any(x > 0 for x in v) if isinstance(v, list) else v > 0)
              if path != "early_stopping.enabled" else bool(v))
        if path == "regularize.max_norm":
            on = v is not None
        if on:
            changed.append(path)
        set_key(out, path, off)
    return resolve_config(out), changed


def derive(cfg: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A new config: ``cfg`` with the dotted keys of ``changes`` set (``cfg`` itself is left as it was)."""
    out = copy.deepcopy(dict(cfg))
    for path, value in changes.items():
        set_key(out, path, value)
    return out
