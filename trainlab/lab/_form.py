"""The lab's form: fields from the run configuration's schema, validation with the CLI's messages,
and composing a comparison into one population.

Everything the page sends is text typed into a field; a value is read exactly as ``--set KEY=VALUE``
reads it (TOML, else a string: :func:`trainlab.config.parse_override`), and checked by the same
validation as ``trainlab train``, so a field shows the message the CLI would print.

The form's fields, types, ranges, defaults and help come from :meth:`RunConfig.json_schema`; a value is
checked alone by :meth:`RunConfig.validate_key` as it is typed, and the whole config by
:meth:`RunConfig.from_dict` when it is composed.

A *comparison* varies one or two per-member settings: the population has one member per
combination of their values, times ``seeds`` members per combination with seeds ``seed, seed+1,
...`` (the same seeds in every combination, so two combinations differ only by their setting).
Members are labelled by :func:`trainlab.labels.member_labels` (by their settings, not an index).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import itertools
import math
import os
import tomllib
from typing import Any

from trainlab.config import RunConfig, value_is_on
from trainlab.errors import ConfigError

__all__ = ["form_schema", "validate_field", "compose", "given_to_toml", "toml_to_fields", "estimate_memory",
           "member_cfg", "LabInputError", "SERVER_ONLY_KEYS"]

#: keys that name paths on the server's disk: set by the server (``--data-dir``/env), never by a page
SERVER_ONLY_KEYS = ("data.data_dir", "data.cache_dir")
#: most members one comparison may ask for (a population is refused above it, before the memory estimate)
MAX_MEMBERS = 4096
_MAX_TEXT = 10_000


class LabInputError(ConfigError):
    """A request's field or payload is wrong (HTTP 400 with this message)."""

    status = 400


def _leaves(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(dotted key, JSON schema of the key) for every key of the run configuration's JSON schema."""
    for name, spec in node.get("properties", {}).items():
        if spec.get("type") == "object" and "properties" in spec:
            yield from _leaves(spec, prefix + name + ".")
        else:
            yield prefix + name, spec


def _scalar(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The one-value arm of a key's schema (the first arm of ``anyOf``: then come the per-member list and null)."""
    return spec["anyOf"][0] if "anyOf" in spec else spec


def _bounds(arm: Mapping[str, Any]) -> dict[str, Any]:
    arm = arm.get("items", arm) if arm.get("type") == "array" else arm
    low = arm.get("minimum", arm.get("exclusiveMinimum"))
    high = arm.get("maximum", arm.get("exclusiveMaximum"))
    return {"low": low, "high": high, "low_inclusive": "exclusiveMinimum" not in arm,
            "high_inclusive": "exclusiveMaximum" not in arm, "choices": list(arm.get("enum", []))}


def form_schema() -> list[dict[str, Any]]:
    """Every config key as a form field, grouped by TOML table: key, kind, default, range, choices,
    whether it may differ per member, and its help text -- all from :meth:`RunConfig.json_schema`,
    the one place they are declared (a new key appears in the CLI, the docs and the lab at once)."""
    from trainlab.config import RunConfig, value_is_on

    tables: dict[str, list[dict[str, Any]]] = {}
    for key, spec in _leaves(RunConfig.json_schema()):
        if key in SERVER_ONLY_KEYS:
            continue
        table = key.split(".")[0] if "." in key else ""
        tables.setdefault(table, []).append({
            "key": key, "kind": spec.get("x-kind"), "default": spec.get("default"), **_bounds(_scalar(spec)),
            "per_member": bool(spec.get("x-per-member")),
            "optional": any(a.get("type") == "null" for a in spec.get("anyOf", [])),
            "doc": spec.get("description", "")})
    return [{"table": t, "fields": f} for t, f in tables.items()]


def _keys() -> dict[str, Any]:
    from trainlab.config import RunConfig, value_is_on

    return dict(_leaves(RunConfig.json_schema()))


def per_member_keys() -> list[str]:
    return [k for k, spec in _keys().items() if spec.get("x-per-member")]


def parse_value(key: str, text: Any) -> Any:
    """A field's text as ``--set key=text`` reads it; non-text JSON values are taken as they are."""
    from trainlab.config import parse_override

    if isinstance(text, str):
        if len(text) > _MAX_TEXT:
            raise LabInputError(f"{key}: value is {len(text)} characters long; at most {_MAX_TEXT} are allowed")
        return parse_override(f"{key}={text}")[1]
    if text is None or isinstance(text, (bool, int, float, list, dict)):
        return text
    raise LabInputError(f"{key}: expected text, got {type(text).__name__}")


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or len(key) > 200:
        raise LabInputError(f"a field name must be text like optim.lr, got {str(key)[:80]!r}")
    if key in SERVER_ONLY_KEYS:
        raise LabInputError(f"{key} names a folder on the server; it is set when the lab starts (--data-dir), "
                            "not from the page")
    if key not in _keys():
        close = [k for k in _keys() if k.endswith("." + key.split(".")[-1])][:5]
        raise LabInputError(f"config: unknown key {key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return key


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    from trainlab.config import set_key

    out: dict[str, Any] = {}
    for key, v in flat.items():
        set_key(out, key, v, where=key)
    return out


def _resolve(given: Mapping[str, Any]) -> RunConfig:
    from trainlab.config import RunConfig, value_is_on

    try:
        return RunConfig.from_dict(given)
    except ConfigError as e:
        raise LabInputError(str(e)) from None
    except (TypeError, ValueError, OverflowError) as e:  # a value resolve_config has no words for
        raise LabInputError(f"config: {e}") from None


def validate_field(key: Any, text: Any) -> str | None:
    """The CLI's message for one field's value (:meth:`RunConfig.validate_key`), or None if valid. The
    checks that involve other keys (a per-member list's length) run when the population is composed."""
    from trainlab.config import RunConfig, value_is_on

    try:
        key = _check_key(key)
        if isinstance(text, str) and not text.strip():
            return None  # empty: the default
        return RunConfig.validate_key(key, parse_value(key, text))
    except ConfigError as e:
        return str(e)


def _fields(fields: Any) -> dict[str, Any]:
    """``{"optim.lr": "0.1", ...}`` from a request -> ``{key: value}`` of the non-empty fields."""
    if fields is None:
        return {}
    if not isinstance(fields, Mapping):
        raise LabInputError(f"fields must be an object of key: value, got {type(fields).__name__}")
    if len(fields) > 1000:
        raise LabInputError(f"{len(fields)} fields sent; the schema has {len(_keys())}")
    out = {}
    for key, text in fields.items():
        key = _check_key(key)
        if isinstance(text, str) and not text.strip():
            continue
        out[key] = parse_value(key, text)
    return out


def _values(key: str, text: Any) -> list[Any]:
    """The values of a compared setting: ``"1, 0.1, 0.01"`` or ``"[1, 0.1]"`` or a JSON list."""
    if isinstance(text, str):
        t = text.strip()
        value = parse_value(key, t if t.startswith("[") else f"[{t}]")
    else:
        value = text
    if not isinstance(value, list) or not value:
        raise LabInputError(f"compare {key}: give the values to compare, e.g. 1, 0.1, 0.01; got {str(text)[:80]!r}")
    if len(value) > MAX_MEMBERS:
        raise LabInputError(f"compare {key}: {len(value)} values; at most {MAX_MEMBERS}")
    return value


def compose(fields: Any, compare: Any = None, seeds: Any = 1) -> tuple[dict[str, Any], RunConfig]:
    """``(given, cfg)``: the nested dict of the keys given (what TOML export writes) and the config.

    ``compare``: up to two ``{"key": per-member key, "values": "1, 0.1, 0.01"}``; the population is
    :meth:`RunConfig.as_population` of the form's config with one member per combination (the first key
    varies slowest), ``seeds`` members each with seeds ``seed, seed+1, ...`` (the same in every combination).
    """
    flat = _fields(fields)
    compare = compare or []
    if not isinstance(compare, list) or len(compare) > 2:
        raise LabInputError("compare: choose at most two settings to vary (a list of {key, values})")
    if isinstance(seeds, str) and seeds.strip().isdigit():
        seeds = int(seeds)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= MAX_MEMBERS:
        raise LabInputError(f"seeds per combination must be an integer from 1 to {MAX_MEMBERS}, got {seeds!r}")
    varied: list[tuple[str, list[Any]]] = []
    allowed = per_member_keys()
    for c in compare:
        if not isinstance(c, Mapping) or "key" not in c:
            raise LabInputError("compare: each entry is {key, values}")
        key = _check_key(c["key"])
        if key not in allowed:
            raise LabInputError(f"compare: {key} is the same for every member of a population (only values differ "
                                f"across members, never structure); settings that can vary: {', '.join(allowed)}")
        if key in flat:
            raise LabInputError(f"compare: {key} is also set in the form; leave the field empty to compare it")
        if any(key == k for k, _ in varied):
            raise LabInputError(f"compare: {key} is chosen twice")
        varied.append((key, _values(key, c.get("values"))))
    combos = list(itertools.product(*[v for _, v in varied])) if varied else [()]
    size = len(combos) * seeds
    if size > MAX_MEMBERS:
        raise LabInputError(f"population of {size} members ({len(combos)} combinations x {seeds} seeds) is too "
                            f"large; at most {MAX_MEMBERS}")
    if not varied and seeds == 1:
        given = _nest(flat)
        return given, _resolve(given)
    if "population.size" in flat or "population.seeds" in flat:
        raise LabInputError("population.size / population.seeds come from the comparison; leave those fields "
                            "empty (or compare nothing)")
    base = _resolve(_nest(flat))
    first = base.seeds()[0]
    values = {key: [combo[i] for combo in combos for _ in range(seeds)] for i, (key, _) in enumerate(varied)}
    member_seeds = [first + j for _ in combos for j in range(seeds)]
    try:
        cfg = base.as_population(values, size=size, seeds=member_seeds)
    except ConfigError as e:
        raise LabInputError(str(e)) from None
    given = _nest({**flat, **values, "population.size": size, "population.seeds": member_seeds})
    return given, cfg


def given_to_toml(given: Mapping[str, Any]) -> str:
    """TOML of the given keys (the defaults stay implicit), as ``trainlab train CONFIG`` reads it."""
    import tomli_w

    return tomli_w.dumps(dict(given))


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    keys = _keys()
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = prefix + str(k)
        if isinstance(v, Mapping) and key not in keys:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def toml_to_fields(text: Any) -> dict[str, str]:
    """An imported TOML config (validated like ``trainlab train``) as the form's field texts."""
    if not isinstance(text, str):
        raise LabInputError("toml: expected the text of a TOML file")
    if len(text) > 1_000_000:
        raise LabInputError(f"toml: {len(text)} characters; at most 1000000")
    try:
        given = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LabInputError(f"toml: not valid TOML ({e})") from None
    _resolve(given)
    out = {}
    for key, v in _flatten(given).items():
        _check_key(key)
        out[key] = toml_inline(v)
    return out


def toml_inline(v: Any) -> str:
    """A value as one line of TOML, as a field holds it (``[1, 0.1]``, ``"relu"``, ``{name = "he"}``)."""
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or math.isfinite(v) else ("nan" if v != v else
                                                                              ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_inline(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_inline(x)}" for k, x in v.items()) + "}"
    raise LabInputError(f"toml: cannot show a {type(v).__name__} in a field")


def member_cfg(cfg: RunConfig, member: int, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Member ``member`` alone (:meth:`RunConfig.member`), with ``overrides`` (dotted key -> value) set."""
    one = cfg.member(member)
    return one.replace(dict(overrides)) if overrides else one


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _mlp_counts(m: Any, n_in: int, num_classes: int) -> tuple[int, int]:
    """(parameters, activation values per example) of one member of an mlp, counted from its widths
    the way :func:`trainlab.build.build_model` lays it out (nothing is allocated: a 20000-wide layer is
    refused in microseconds, not after drawing its weights)."""
    k = m.maxout_pieces if m.activation == "maxout" else 1
    params, acts, n = 0, 0, n_in
    acts += n * (value_is_on(m.input_noise) + value_is_on(m.input_dropout))
    for w in m.hidden:
        params += n * w * k + w * k  # Linear
        acts += w * k
        if m.norm != "none":
            params += 2 * w * k  # gamma and beta
            acts += w * k
        if m.activation == "prelu":
            params += 1 if m.prelu_shared else w
        acts += w + (w if value_is_on(m.dropout) else 0)
        n = w
    params += n * num_classes + num_classes
    return params, acts + num_classes


def _built_counts(model_cfg: Any, in_shape: tuple[int, ...], num_classes: int) -> tuple[int, int]:
    """(parameters, activation values per example) of one member, from the model built for one member."""
    import torch

    from trainlab.build import build_model

    model = build_model(model_cfg, num_classes)
    model.build(in_shape, 1)
    acts = 0
    with torch.no_grad():
        x = torch.zeros((1, 2, *in_shape))
        for layer in model.layers:
            x = layer.forward(x, training=False)
            acts += int(x[0, 0].numel())
    return int(model.num_parameters()), acts


def estimate_memory(cfg: RunConfig) -> dict[str, Any]:
    """Bytes a population needs to train, estimated up front from one member's model.

    One member's parameters and activation values per example are counted (an mlp from its widths;
    other models built for one member, and a batch of two zero images passed through their top-level
    layers). Estimate = P x (parameters x 4 [weight, gradient, two optimizer states] + batch_size x
    activations x 3 [output, cached input, gradient]) x bytes per value + the training split (shared by
    all members). Refusing above half of the available memory leaves room for evaluation and the server.
    """
    from trainlab.data import get_dataset_info

    one = cfg.member(0)
    info = get_dataset_info(cfg.data.name)
    shape = tuple(info.image_shape)
    in_shape = (math.prod(shape),) if cfg.data.flatten else shape
    bpv = 8 if cfg.dtype == "float64" else 4
    if one.model.type == "mlp":
        params, acts = _mlp_counts(one.model, math.prod(in_shape), info.num_classes)
    else:
        params, acts = _built_counts(one.model, in_shape, info.num_classes)
    P = cfg.size
    # the training split: as given, else at most the data set's training part (5,000 / 60,000 / 50,000)
    n_train = int(cfg.data.train or {"mnist-5k": 5_000, "cifar10": 50_000}.get(info.name, 60_000))
    batch = int(cfg.train.batch_size)
    need = P * (params * 4 + min(batch, n_train) * acts * 3) * bpv + n_train * math.prod(shape) * bpv
    avail = _available_memory()
    return {"bytes": int(need), "available": int(avail), "members": P, "parameters_per_member": params,
            "activations_per_example": acts, "fits": need <= avail // 2}


def check_memory(cfg: RunConfig) -> dict[str, Any]:
    """:func:`estimate_memory`, refused with one line when the population does not fit."""
    est = estimate_memory(cfg)
    if not est["fits"]:
        raise LabInputError(
            f"population of {est['members']} members needs about {est['bytes'] / 2**30:.1f} GiB "
            f"({est['parameters_per_member']:,} parameters and {est['activations_per_example']:,} activations per "
            f"example per member), more than half of the {est['available'] / 2**30:.1f} GiB available here; "
            "use fewer members, a smaller model or a smaller batch")
    return est
