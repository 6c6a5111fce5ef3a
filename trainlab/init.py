"""Weight initializers, with their fan rules written out.

For a weight of per-member shape ``(fan_in, fan_out)`` (a :class:`~trainlab.nn.Linear`
stores ``(in, out)``) or ``(out_channels, in_channels, kh, kw)`` (a convolution,
``fan_in = in_channels * kh * kw``, ``fan_out = out_channels * kh * kw``):

==================  ===========================================  ==========================
name                distribution                                 reference
==================  ===========================================  ==========================
``zeros``           0
``constant``        ``value``
``normal``          N(0, std^2)                                   (std default 1)
``uniform``         U(-a, a)                                      (a default 1)
``xavier_normal``   N(0, 2 / (fan_in + fan_out))                  Glorot & Bengio 2010
``xavier_uniform``  U(-a, a), a = sqrt(6 / (fan_in + fan_out))    Glorot & Bengio 2010
``he_normal``       N(0, 2 / fan_in)                              He et al. 2015
``he_uniform``      U(-a, a), a = sqrt(6 / fan_in)                He et al. 2015
``lecun_normal``    N(0, 1 / fan_in)                              LeCun et al. 1998
==================  ===========================================  ==========================

Conventions that differ between sources: the textbook (Saito, *Deep Learning from
Scratch*, ch. 6) calls ``std = 1/sqrt(n)`` with ``n`` the previous layer's width
"Xavier"; that is ``lecun_normal`` here. Glorot's own rule averages fan-in and
fan-out (``xavier_*``), as in PyTorch's ``xavier_*_`` and Keras' ``glorot_*``.
He init is ``std = sqrt(2/n)`` everywhere (PyTorch ``kaiming_normal_`` with
``mode="fan_in"``, ``nonlinearity="relu"``).

Every member draws its own weights from its own generator, then the draw is
multiplied by that member's ``init_scale`` -- so a population can compare, e.g.,
``normal`` with scales ``[1, 0.01]`` (std 1 vs std 0.01) in one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

import torch

from trainlab.errors import ConfigError

__all__ = [
    "Initializer",
    "Zeros",
    "Constant",
    "Normal",
    "Uniform",
    "XavierNormal",
    "XavierUniform",
    "HeNormal",
    "HeUniform",
    "LecunNormal",
    "INITIALIZERS",
    "get_initializer",
    "fans",
]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a per-member weight shape (Linear ``(in, out)``; conv ``(out, in, kh, kw)``)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) >= 3:
        receptive = math.prod(shape[2:])
        return shape[1] * receptive, shape[0] * receptive
    raise ConfigError(f"cannot compute fans of a weight with shape {shape}: need 2 or more dimensions")


class Initializer:
    """Draws one member's weight. ``sample`` returns a float64 CPU tensor."""

    name = ""

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def stddev(self, shape: tuple[int, ...]) -> float:
        """The standard deviation of the draw (before the member's scale)."""
        raise NotImplementedError


def _normal(shape: tuple[int, ...], std: float, g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64) * std


def _uniform(shape: tuple[int, ...], a: float, g: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2.0 - 1.0) * a


@dataclass(frozen=True)
class Zeros(Initializer):
    name = "zeros"

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float64)

    def stddev(self, shape: tuple[int, ...]) -> float:
        return 0.0


@dataclass(frozen=True)
class Constant(Initializer):
    value: float = 0.0
    name = "constant"

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return torch.full(shape, float(self.value), dtype=torch.float64)

    def stddev(self, shape: tuple[int, ...]) -> float:
        return 0.0


@dataclass(frozen=True)
class Normal(Initializer):
    std: float = 1.0
    name = "normal"

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _normal(shape, self.std, generator)

    def stddev(self, shape: tuple[int, ...]) -> float:
        return self.std


@dataclass(frozen=True)
class Uniform(Initializer):
    a: float = 1.0
    name = "uniform"

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _uniform(shape, self.a, generator)

    def stddev(self, shape: tuple[int, ...]) -> float:
        return self.a / math.sqrt(3.0)


@dataclass(frozen=True)
class XavierNormal(Initializer):
    gain: float = 1.0
    name = "xavier_normal"

    def stddev(self, shape: tuple[int, ...]) -> float:
        fi, fo = fans(shape)
        return self.gain * math.sqrt(2.0 / (fi + fo))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _normal(shape, self.stddev(shape), generator)


@dataclass(frozen=True)
class XavierUniform(Initializer):
    gain: float = 1.0
    name = "xavier_uniform"

    def stddev(self, shape: tuple[int, ...]) -> float:
        fi, fo = fans(shape)
        return self.gain * math.sqrt(2.0 / (fi + fo))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _uniform(shape, self.stddev(shape) * math.sqrt(3.0), generator)


@dataclass(frozen=True)
class HeNormal(Initializer):
    name = "he_normal"

    def stddev(self, shape: tuple[int, ...]) -> float:
        return math.sqrt(2.0 / fans(shape)[0])

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _normal(shape, self.stddev(shape), generator)


@dataclass(frozen=True)
class HeUniform(Initializer):
    name = "he_uniform"

    def stddev(self, shape: tuple[int, ...]) -> float:
        return math.sqrt(2.0 / fans(shape)[0])

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _uniform(shape, math.sqrt(6.0 / fans(shape)[0]), generator)


@dataclass(frozen=True)
class LecunNormal(Initializer):
    name = "lecun_normal"

    def stddev(self, shape: tuple[int, ...]) -> float:
        return math.sqrt(1.0 / fans(shape)[0])

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return _normal(shape, self.stddev(shape), generator)


INITIALIZERS: dict[str, type[Initializer]] = {
    cls.name: cls
    for cls in (Zeros, Constant, Normal, Uniform, XavierNormal, XavierUniform, HeNormal, HeUniform, LecunNormal)
}
_ALIASES = {"xavier": "xavier_normal", "glorot_normal": "xavier_normal", "glorot_uniform": "xavier_uniform",
            "he": "he_normal", "kaiming_normal": "he_normal", "kaiming_uniform": "he_uniform", "lecun": "lecun_normal"}
_OPTIONS = {"constant": {"value": "value"}, "normal": {"std": "std"}, "uniform": {"a": "a"},
            "xavier_normal": {"gain": "gain"}, "xavier_uniform": {"gain": "gain"}}


def get_initializer(spec: str | Initializer | Mapping[str, Any]) -> Initializer:
    """Resolve ``"he_normal"``, ``{"name": "normal", "std": 0.01}`` or an :class:`Initializer`."""
    if isinstance(spec, Initializer):
        return spec
    if isinstance(spec, str):
        name, opts = spec, {}
    elif isinstance(spec, Mapping):
        opts = dict(spec)
        name = opts.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"init table needs a 'name' string, got {spec!r}")
    else:
        raise ConfigError(f"init must be a name or a table, got {spec!r}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in INITIALIZERS:
        raise ConfigError(f"unknown init {name!r} (allowed: {', '.join(sorted(INITIALIZERS))})")
    allowed = _OPTIONS.get(key, {})
    kwargs = {}
    for k, v in opts.items():
        if k not in allowed:
            extra = f" (allowed: {', '.join(allowed)})" if allowed else " (it takes none)"
            raise ConfigError(f"unknown option {k!r} for init {key!r}{extra}")
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"init option {k!r} must be a finite number, got {v!r}")
        kwargs[allowed[k]] = float(v)
    return INITIALIZERS[key](**kwargs)
