"""The results.json schema (a JSON Schema, draft 2020-12 subset) and a small validator.

The validator implements exactly the keywords the schema uses -- ``type`` (one name
or a list), ``enum``, ``const``, ``required``, ``properties``,
``additionalProperties`` (``false`` or a schema), ``items``, ``minItems``,
``maxItems``, ``minimum`` -- so results.json can be checked without a dependency;
any full JSON Schema validator (e.g. ``jsonschema``) accepts the same schema.
See ``docs/results-schema.md`` for the meaning of every field.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "RESULTS_SCHEMA", "validate_results", "schema_errors", "consistency_errors"]

SCHEMA_VERSION = 1

_NUMBER_OR_NULL = {"type": ["number", "null"]}

_CHECK = {
    "type": "object",
    "required": ["name", "claim", "op", "threshold", "measured", "passed", "explanation", "unit"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "claim": {"type": "string"},
        "op": {"enum": [">=", "<=", "between"]},
        "threshold": {"type": ["number", "array", "null"], "items": {"type": ["number", "null"]}, "minItems": 2,
                      "maxItems": 2},
        "measured": _NUMBER_OR_NULL,
        "passed": {"type": "boolean"},
        "explanation": {"type": "string"},
        "unit": {"type": "string"},
    },
}

_FIGURE = {
    "type": "object",
    "required": ["title", "caption"],
    "additionalProperties": False,
    "properties": {"title": {"type": "string"}, "caption": {"type": "string"}},
}

_EXPERIMENT = {
    "type": "object",
    "required": ["name", "title", "claim", "source", "docs", "status", "reason", "seconds", "summary", "settings",
                 "numbers", "checks", "figures", "notes"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "title": {"type": "string"},
        "claim": {"type": "string"},
        "source": {"type": "string"},
        "docs": {"type": "string"},
        "status": {"enum": ["held", "did not hold", "not available", "error"]},
        "reason": {"type": ["string", "null"]},
        "seconds": {"type": ["number", "null"], "minimum": 0},
        "summary": {"type": "string"},
        "settings": {"type": "object"},
        "numbers": {"type": "object"},
        "checks": {"type": "array", "items": _CHECK},
        "figures": {"type": "array", "items": _FIGURE},
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}

RESULTS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "trainlab reproduce results",
    "type": "object",
    "required": ["schema_version", "tool", "trainlab_version", "torch_version", "created", "preset", "data",
                 "data_note", "seed", "threads", "seconds", "complete", "summary", "experiments"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "tool": {"const": "trainlab reproduce"},
        "trainlab_version": {"type": "string"},
        "torch_version": {"type": "string"},
        "created": {"type": "string"},
        "preset": {"enum": ["smoke", "quick", "textbook"]},
        "data": {"type": "string"},
        "data_note": {"type": "string"},
        "seed": {"type": "integer"},
        "threads": {"type": "integer", "minimum": 1},
        "seconds": {"type": "number", "minimum": 0},
        "complete": {"type": "boolean"},
        "summary": {
            "type": "object",
            "required": ["experiments", "held", "did_not_hold", "not_available", "errors", "checks", "checks_passed"],
            "additionalProperties": False,
            "properties": {k: {"type": "integer", "minimum": 0} for k in
                           ("experiments", "held", "did_not_hold", "not_available", "errors", "checks",
                            "checks_passed")},
        },
        "experiments": {"type": "array", "items": _EXPERIMENT},
    },
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(value: Any, schema: dict[str, Any] = RESULTS_SCHEMA, path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``"<json path>: <problem>"`` lines (empty: valid)."""
    errors: list[str] = []
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']}, got {value!r}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            errors.append(f"{path}: must be of type {' or '.join(types)}, got {type(value).__name__}")
            return errors
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "minimum" in schema:
        if value < schema["minimum"]:
            errors.append(f"{path}: must be >= {schema['minimum']}, got {value}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required field {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, v in value.items():
            if key in props:
                errors.extend(schema_errors(v, props[key], f"{path}.{key}"))
            elif extra is False:
                errors.append(f"{path}: unexpected field {key!r}")
            elif isinstance(extra, dict):
                errors.extend(schema_errors(v, extra, f"{path}.{key}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: needs at least {schema['minItems']} items, got {len(value)}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: allows at most {schema['maxItems']} items, got {len(value)}")
        if "items" in schema:
            for i, v in enumerate(value):
                errors.extend(schema_errors(v, schema["items"], f"{path}[{i}]"))
    return errors


def _passes(check: dict[str, Any]) -> bool:
    m, thr, op = check["measured"], check["threshold"], check["op"]
    if m is None or thr is None:
        return False
    if op == ">=":
        return m >= thr
    if op == "<=":
        return m <= thr
    return thr[0] <= m <= thr[1]


def consistency_errors(results: dict[str, Any]) -> list[str]:
    """Rules JSON Schema cannot state: every ``passed`` follows from measured/op/threshold,
    an experiment's status from its checks, and the summary counts from the entries."""
    errors = []
    counts = {"held": 0, "did not hold": 0, "not available": 0, "error": 0}
    n_checks = n_passed = 0
    for i, e in enumerate(results.get("experiments", [])):
        where = f"$.experiments[{i}] ({e.get('name')})"
        counts[e["status"]] = counts.get(e["status"], 0) + 1
        for j, c in enumerate(e["checks"]):
            n_checks += 1
            n_passed += bool(c["passed"])
            if c["op"] == "between" and not isinstance(c["threshold"], list):
                errors.append(f"{where}.checks[{j}]: op 'between' needs a [low, high] threshold")
            elif c["op"] != "between" and isinstance(c["threshold"], list):
                errors.append(f"{where}.checks[{j}]: op {c['op']!r} needs a number as threshold")
            elif c["passed"] != _passes(c):
                errors.append(f"{where}.checks[{j}]: passed={c['passed']} does not follow from measured "
                              f"{c['measured']} {c['op']} {c['threshold']}")
        if e["status"] in ("held", "did not hold"):
            want = "held" if all(c["passed"] for c in e["checks"]) else "did not hold"
            if e["status"] != want:
                errors.append(f"{where}: status {e['status']!r} but its checks say {want!r}")
            if not e["checks"]:
                errors.append(f"{where}: an experiment that ran must have at least one check")
        elif not e["reason"]:
            errors.append(f"{where}: status {e['status']!r} needs a reason")
    s = results.get("summary", {})
    totals = {"experiments": len(results.get("experiments", [])), "held": counts["held"],
              "did_not_hold": counts["did not hold"], "not_available": counts["not available"],
              "errors": counts["error"], "checks": n_checks, "checks_passed": n_passed}
    for k, v in totals.items():
        if s.get(k) != v:
            errors.append(f"$.summary.{k}: {s.get(k)} but the entries give {v}")
    return errors


def validate_results(results: Any) -> None:
    """Raise ``ValueError`` listing every problem if ``results`` does not follow the schema
    (and the consistency rules of :func:`consistency_errors`)."""
    errors = schema_errors(results)
    if not errors:
        errors = consistency_errors(results)
    if errors:
        shown = "; ".join(errors[:10]) + (f"; ... ({len(errors) - 10} more)" if len(errors) > 10 else "")
        raise ValueError(f"results.json does not follow the schema: {shown}")
