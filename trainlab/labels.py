"""Names and colours for population members, computed once from the resolved config.

A member is named by the settings in which the members differ, so a run with
``--set 'model.init_scale=[1, 0.1, 0.01]'`` shows ``init_scale=0.1`` where it used to
show ``member 1``; two differing keys give ``lr=0.01, dropout=0.5``. Where every
per-member setting is shared the members differ only by seed (``seed=3``); where even
the seeds are equal, only the index tells them apart (``member 2``). Every table,
legend, ``summary.json``, ``metrics.jsonl`` (``member_label``) and ensemble output uses
:func:`member_labels`, and every figure draws member ``i`` in ``member_colors(P)[i]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainlab.config import RunConfig

__all__ = ["member_labels", "member_colors", "format_value", "differing_keys"]


def format_value(v: Any) -> str:
    """Short, exact-enough text for a setting: ``0.1``, ``1e-05``, ``3``, ``True``, ``'x'``."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    if isinstance(v, str):
        return v
    return str(v)


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for p in dotted.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return None
        node = node[p]
    return node


def _member_value(v: Any, i: int) -> Any:
    return v[i] if isinstance(v, list) else v


def _as_mapping(cfg: RunConfig | Mapping[str, Any]) -> Mapping[str, Any]:
    from trainlab.config import RunConfig

    return cfg.to_dict() if isinstance(cfg, RunConfig) else cfg


def differing_keys(cfg: RunConfig | Mapping[str, Any]) -> list[str]:
    """Dotted paths of the per-member settings whose values are not all equal."""
    from trainlab.config import per_member_keys

    cfg = _as_mapping(cfg)
    size = int(cfg["population"]["size"])
    out = []
    for key in per_member_keys():
        v = _get(cfg, key)
        if isinstance(v, list) and len(v) == size and len({repr(x) for x in v}) > 1:
            out.append(key)
    return out


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """The last component of each key, or more of it where that would be ambiguous (``optim.lr``)."""
    names = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if sum(1 for o in keys if o == cand or o.endswith("." + cand)) == 1:
                names[k] = cand
                break
        else:
            names[k] = k
    return names


def member_labels(cfg: RunConfig | Mapping[str, Any]) -> list[str]:
    """One label per member of the resolved config ``cfg`` (see the module docstring)."""
    cfg = _as_mapping(cfg)
    size = int(cfg["population"]["size"])
    keys = differing_keys(cfg)
    if keys:
        short = _short_names(keys)
        return [", ".join(f"{short[k]}={format_value(_member_value(_get(cfg, k), i))}" for k in keys)
                for i in range(size)]
    seeds = cfg["population"].get("seeds")
    if seeds is None:
        seeds = [int(cfg["seed"]) + i for i in range(size)]
    if size > 1 and len(set(seeds)) == size:
        return [f"seed={s}" for s in seeds]
    if size == 1:
        return [f"seed={seeds[0]}"]
    return [f"member {i}" for i in range(size)]


def member_colors(size: int) -> list[tuple[float, float, float, float]]:
    """A fixed colour for each member of a population of ``size``: the same in every figure of a run.

    Up to 10 members: matplotlib's ``tab10`` (distinct hues); more: evenly spaced along
    ``viridis``, so neighbouring members (usually neighbouring settings) get neighbouring colours.
    """
    from matplotlib import colormaps

    if size <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(size)]
    cmap = colormaps["viridis"]
    return [cmap(i / (size - 1)) for i in range(size)]
