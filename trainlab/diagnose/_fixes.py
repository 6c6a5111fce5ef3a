"""The doctor's fixes: collected from its findings, ordered by measured gain, applied to a TOML file.

A fix is ``{"overrides": ["key=value", ...], "val_acc": ..., "baseline_val_acc": ...,
"measured_by": "ablation" | "refined grid" | None}`` on a finding. :func:`order_fixes` lists
them in the order to apply: first the fixes of findings that make the validation score itself
untrustworthy (a leak, non-finite inputs: no accuracy measured with them can be compared),
then by measured gain (val_acc - baseline_val_acc, largest first), then those never
measured. :func:`write_fixed` writes ``CONFIG.fixed.toml``: the config file as given with the
overrides set, each changed key carrying a comment with what was measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from pathlib import Path
from typing import Any

__all__ = ["order_fixes", "first_fix", "format_fixes", "write_fixed", "fixed_path", "INTEGRITY"]

#: finding codes whose fix comes first whatever was measured: the score itself is wrong
INTEGRITY = ("leakage", "nonfinite_inputs")


def _gain(fx: Mapping[str, Any]) -> float | None:
    v, b = fx.get("val_acc"), fx.get("baseline_val_acc")
    if v is None or b is None or not (math.isfinite(v) and math.isfinite(b)):
        return None
    return float(v) - float(b)


def order_fixes(found: Sequence[tuple[int, Any]]) -> list[dict[str, Any]]:
    """``[(step, finding), ...]`` -> the fixes, deduplicated by overrides, in the order to apply them."""
    best: dict[tuple[str, ...], dict[str, Any]] = {}
    for step, f in found:
        fx = getattr(f, "fix", None)
        if not fx or not fx.get("overrides"):
            continue
        item = {**fx, "code": f.code, "step": step, "severity": f.severity, "gain": _gain(fx),
                "integrity": f.code in INTEGRITY}
        key = tuple(fx["overrides"])
        old = best.get(key)
        if old is None or (item["integrity"] and not old["integrity"]) or (
                (item["gain"] if item["gain"] is not None else -math.inf) > (old["gain"] if old["gain"] is not None
                                                                             else -math.inf)):
            if old is not None and old["integrity"]:
                item["integrity"] = True
            best[key] = item
    return sorted(best.values(), key=lambda i: (not i["integrity"], i["gain"] is None,
                                                -(i["gain"] if i["gain"] is not None else 0.0)))


def first_fix(fixes: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The fix ``--apply`` writes: the first of a finding that warns or fails (a grid's best member on a
    healthy config is a tuning hint, listed but not applied)."""
    return next((f for f in fixes if f.get("severity") in ("warn", "fail")), None)


def format_fixes(fixes: Sequence[Mapping[str, Any]]) -> str:
    """The console block: one line per fix, in order."""
    if not fixes:
        return ""
    lines = ["fixes, in the order to apply them (measured gain in validation accuracy):"]
    for i, fx in enumerate(fixes, 1):
        g = fx.get("gain")
        what = (f"val acc {fx['baseline_val_acc']:.3f} -> {fx['val_acc']:.3f} ({g:+.3f}, {fx.get('measured_by')})"
                if g is not None else (f"val acc {fx['val_acc']:.3f} ({fx.get('measured_by')})"
                                       if fx.get("val_acc") is not None else "not measured"))
        tag = "; the score is untrustworthy until this is fixed" if fx.get("integrity") else ""
        lines.append(f"  {i}. {' '.join(fx['overrides'])}   [{fx['code']}, step {fx['step']}] {what}{tag}")
    lines.append("  apply the first: trainlab doctor CONFIG --apply (writes CONFIG.fixed.toml; --train trains it)")
    return "\n".join(lines)


def fixed_path(config: str | Path) -> Path:
    p = Path(config)
    return p.with_name(p.stem + ".fixed.toml")


def write_fixed(config: str | Path, fix: Mapping[str, Any], *, out: str | Path | None = None) -> Path:
    """Write the config file with ``fix``'s overrides set, one comment per change; returns the path.

    The file is written whole or not at all (temporary file + rename), and it must load as a
    valid config (checked before writing).
    """
    import tomli_w

    from trainlab.config import get_key, parse_override, read_toml, resolve_config, set_key
    from trainlab.io import atomic_write_text

    given = read_toml(config)
    before = resolve_config(given)
    changed: list[tuple[str, Any, Any]] = []
    for text in fix["overrides"]:
        parts, value = parse_override(text)
        key = ".".join(parts)
        set_key(given, key, value, where=f"fix {key}")
        changed.append((key, get_key(before, key), value))
    resolve_config(given)  # a fix that does not load is a bug: fail before writing
    text = tomli_w.dumps(given)
    g = fix.get("gain")
    how = (f"validation accuracy {fix['baseline_val_acc']:.3f} -> {fix['val_acc']:.3f} measured by the doctor's "
           f"{fix.get('measured_by')}" if g is not None else
           (f"validation accuracy {fix['val_acc']:.3f} measured by the doctor's {fix.get('measured_by')}"
            if fix.get("val_acc") is not None else "not measured"))
    comments = {k: f"  # doctor: was {json_like(old)} ({fix.get('code', 'fix')}; {how})" for k, old, _ in changed}
    lines, section = [], ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            section = s.strip("[]").strip()
        elif "=" in s and not s.startswith("#"):
            name = s.split("=", 1)[0].strip()
            full = f"{section}.{name}" if section else name
            if full in comments:
                line += comments.pop(full)
        lines.append(line)
    header = [f"# {Path(config).name} with the doctor's first fix applied ({', '.join(fix['overrides'])}).",
              f"# Written by `trainlab doctor {Path(config).name} --apply`; each changed key says what it was.", ""]
    path = Path(out) if out is not None else fixed_path(config)
    atomic_write_text(path, "\n".join(header + lines) + "\n")
    return path


def json_like(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return "unset" if v is None else repr(v)
