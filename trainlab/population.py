"""The population axis: the one module that knows the rules about ``P``.

Every activation has shape ``(P, N, ...)`` and every parameter ``(P, ...)``. ``P``
models ("members") share an architecture and differ only in values: weights, seeds
and per-member hyperparameters. A single model is ``P = 1`` -- the same code path.

Per-member hyperparameters are ``(P,)`` tensors; :func:`member_view` reshapes one so
it broadcasts against a ``(P, ...)`` tensor. Each member owns a random generator
seeded from its own seed, so member *i* of a population draws exactly the numbers
it would draw if trained alone with the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import torch

from trainlab.errors import ConfigError

__all__ = ["Population", "member_values", "member_view", "member_draw", "draw_from", "check_population"]


def member_values(
    value: float | Sequence[float] | torch.Tensor,
    size: int,
    *,
    name: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> torch.Tensor:
    """Turn a scalar or a per-member list into a ``(P,)`` tensor, validating its range.

    A scalar is shared by every member; a list/tensor must have exactly ``size``
    entries. Values must be finite and, when bounds are given, inside them.
    """
    if isinstance(value, torch.Tensor):
        t = value.detach().to(device=device, dtype=dtype).reshape(-1)
        if t.numel() == 1:
            t = t.expand(size).clone()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        t = torch.full((size,), float(value), dtype=dtype, device=device)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = list(value)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            raise ConfigError(f"{name} must be a number or a list of numbers, got {value!r}")
        t = torch.tensor([float(v) for v in items], dtype=dtype, device=device)
    else:
        raise ConfigError(f"{name} must be a number or a list of {size} numbers (one per member), got {value!r}")
    if t.numel() != size:
        raise ConfigError(
            f"{name} must be one number or a list of {size} numbers (one per member), got {t.numel()} values"
        )
    vals = t.detach().cpu().tolist()
    for v in vals:
        if not math.isfinite(v):
            raise ConfigError(f"{name} must be finite, got {v}")
        if low is not None and (v < low or (v == low and not low_inclusive)):
            op = ">=" if low_inclusive else ">"
            raise ConfigError(f"{name} must be {op} {low}, got {v}")
        if high is not None and (v > high or (v == high and not high_inclusive)):
            op = "<=" if high_inclusive else "<"
            raise ConfigError(f"{name} must be {op} {high}, got {v}")
    return t


def member_view(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a ``(P,)`` tensor to ``(P, 1, ..., 1)`` so it broadcasts over an ``ndim``-dim tensor."""
    return values.reshape((values.shape[0],) + (1,) * (ndim - 1))


def check_population(x: torch.Tensor, size: int, *, what: str = "input") -> None:
    """Raise a clear error unless ``x`` has a population axis of ``size`` (or 1: shared by all)."""
    if x.ndim < 2:
        raise ConfigError(f"{what} must have shape (P, N, ...), got {tuple(x.shape)}")
    if x.shape[0] not in (1, size):
        raise ConfigError(f"{what} has population axis {x.shape[0]}, expected {size} (or 1 for input shared by all members)")


def member_draw(population: "Population", shape: tuple[int, ...], *, kind: str, device: torch.device | str,
                dtype: torch.dtype) -> torch.Tensor:
    """A ``(P, *shape)`` tensor whose slice ``i`` is drawn from member ``i``'s generator.

    ``kind`` is ``"uniform"`` (U[0, 1)) or ``"normal"`` (N(0, 1)). One fill per member:
    the price of every member drawing from its own stream (the population invariant).
    """
    return draw_from(population.generators(device), shape, kind=kind, device=device, dtype=dtype)


def draw_from(generators: "list[torch.Generator]", shape: tuple[int, ...], *, kind: str,
              device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """``(len(generators), *shape)``: slice ``i`` filled from ``generators[i]`` (U[0, 1) or N(0, 1))."""
    out = torch.empty((len(generators), *shape), device=device, dtype=dtype)
    for i, g in enumerate(generators):
        if kind == "uniform":
            out[i].uniform_(generator=g)
        else:
            out[i].normal_(generator=g)
    return out


class Population:
    """``size`` members, each with its own seed and random generator.

    Parameters
    ----------
    size:
        Number of members ``P`` (>= 1).
    seeds:
        One integer seed per member. Default: ``seed + i`` for member ``i``; so member
        ``i`` of a population seeded ``s`` behaves like a single model seeded ``s + i``.
    """

    def __init__(self, size: int = 1, *, seed: int = 0, seeds: Sequence[int] | None = None) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"population size must be an integer >= 1, got {size!r}")
        if seeds is None:
            seeds = [int(seed) + i for i in range(size)]
        seeds = [int(s) for s in seeds]
        if len(seeds) != size:
            raise ConfigError(f"population.seeds must list {size} seeds (one per member), got {len(seeds)}")
        self.size = size
        self.seeds = seeds
        self._generators: dict[str, list[torch.Generator]] = {}

    def generators(self, device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One generator per member on ``device``, created (and seeded) once per device."""
        key = str(torch.device(device))
        if key not in self._generators:
            gens = []
            for s in self.seeds:
                g = torch.Generator(device=key)
                g.manual_seed(s)
                gens.append(g)
            self._generators[key] = gens
        return self._generators[key]

    def select(self, members: Sequence[int]) -> "Population":
        """A population made of the given members (their seeds), e.g. to train member i alone."""
        return Population(len(members), seeds=[self.seeds[i] for i in members])

    def get_state(self) -> dict[str, list[torch.Tensor]]:
        """Generator states as plain uint8 tensors (safe to store in safetensors)."""
        return {k: [g.get_state() for g in gens] for k, gens in self._generators.items()}

    def set_state(self, state: dict[str, list[torch.Tensor]]) -> None:
        for key, states in state.items():
            gens = self.generators(key)
            for g, s in zip(gens, states):
                g.set_state(s)

    def __repr__(self) -> str:
        return f"Population(size={self.size}, seeds={self.seeds})"
