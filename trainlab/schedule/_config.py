"""The ``[schedule]`` table -> a schedule attached to the optimizer (or nothing, for the constant default)."""

from __future__ import annotations

from collections.abc import Mapping
import inspect
from typing import Any

from trainlab.optim import Optimizer
from trainlab.schedule._schedules import SCHEDULES, PerMember, Schedule

__all__ = ["from_config", "SCHEDULE_KEYS"]

#: config keys that are not constructor arguments
_GENERAL = ("name", "interval")


def _interval(name: str, interval: str) -> str:
    """``"auto"``: per iteration for one-cycle (as PyTorch steps it), per epoch for the others."""
    if interval != "auto":
        return interval
    return "step" if name == "onecycle" else "epoch"


def _one(name: str, table: Mapping[str, Any], members: list[int], size: int) -> Schedule:
    cls = SCHEDULES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) | {"warmup", "warmup_start"}
    kwargs: dict[str, Any] = {"interval": _interval(name, table["interval"])}
    for k, v in table.items():
        if k in _GENERAL or k not in accepted or v is None:
            continue
        if isinstance(v, list) and len(v) == size and k != "milestones":
            v = [v[i] for i in members]  # this group's members' values
        kwargs[k] = v
    return cls(**kwargs)


def from_config(table: Mapping[str, Any], optimizer: Optimizer) -> Schedule | None:
    """Build and attach the schedule the resolved ``[schedule]`` table describes.

    ``name`` may be one kind for all members or one per member (members of the same kind share
    one schedule object over their sub-population). All-constant without warm-up returns
    ``None``: nothing is attached and training pays nothing per step.
    """
    size = optimizer.size
    names = table["name"] if isinstance(table["name"], list) else [table["name"]] * size
    warm = table["warmup"]
    if all(n == "constant" for n in names) and not (any(warm) if isinstance(warm, list) else warm):
        return None
    order: list[str] = []
    for n in names:
        if n not in order:
            order.append(n)
    groups = [(n, [i for i, m in enumerate(names) if m == n]) for n in order]
    if len(groups) == 1:
        sched = _one(groups[0][0], table, list(range(size)), size)
    else:
        sched = PerMember([(_one(n, table, idx, size), idx) for n, idx in groups])
    return sched.attach(optimizer)


SCHEDULE_KEYS = tuple(SCHEDULES)
