"""What every augmentation transform shares: settings, per-member values, per-member random streams.

Every transform owns one random generator per member and per device, seeded from the
member's seed and the transform's name (not its position in a pipeline), so:

* member *i* of a population draws exactly what it would draw trained alone with
  the same seed (the population invariant), and
* switching one transform on or off never changes what another one draws.

Generator states are plain uint8 tensors (:meth:`Transform.state_dict`), saved in
checkpoints, so a resumed run continues with the very next draws.
"""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
from typing import Any, Protocol

import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.population import Population, draw_from, member_values

__all__ = ["Transform", "AugmentContext", "stream_seed", "sample_beta", "soft_targets"]


class AugmentContext(Protocol):
    """What a transform reads of the :class:`~trainlab.augment.Augmenter` that applies it."""

    #: classes of the targets (mixing makes probability vectors); None until the model is known
    num_classes: int | None


def stream_seed(member_seed: int, name: str) -> int:
    """A 63-bit seed for transform ``name`` of the member seeded ``member_seed`` (stable across runs)."""
    digest = hashlib.blake2b(f"trainlab.augment:{name}:{int(member_seed)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _size(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return max(value.numel(), 1)
    return len(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else 1


class Transform:
    """Base class: ``apply(x, targets, augmenter) -> (x', targets')`` on a training batch.

    ``x`` is ``(1, N, ...)`` (shared) or ``(P, N, ...)``; the output is ``(P, N, ...)``.
    ``targets`` are class indices ``(N,)`` or soft targets ``(P, N, C)``.
    """

    #: the stream name: the seed of each member's generator derives from it
    name = ""
    #: whether the transform needs image inputs ``(C, H, W)``
    needs_images = False

    _settings: dict[str, Any]

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self._settings.items()) + ")"

    # ---- set-up for a population ----------------------------------------------------------
    def setup(self, population: Population) -> None:
        """Bind to ``population``: per-member values and seeds (called by :class:`Augmenter`)."""
        self.population_size = population.size
        self._member_seeds = [int(s) for s in population.seeds]
        self._seeds = [stream_seed(s, self.name) for s in population.seeds]
        self._generators: dict[str, list[torch.Generator]] = {}
        self._values_cache: dict[tuple[str, str, torch.dtype], torch.Tensor] = {}
        self._setup_values(population.size)

    def _setup_values(self, P: int | None) -> None:
        """Validate the per-member settings into ``(P,)`` tables (``P=None``: as many as given)."""

    def _member_values(self, value: Any, P: int | None, name: str, **bounds: Any) -> torch.Tensor:
        if P is None:
            P = _size(value)
        if _size(value) not in (1, P):
            raise ConfigError(f"{type(self).__name__} {name} lists {_size(value)} values but the population has "
                              f"{P} members; give one number or exactly {P}")
        return member_values(value, P, name=f"{type(self).__name__} {name}", dtype=torch.float64, **bounds)

    def _values(self, key: str, table: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The ``(P,)`` table of a per-member setting on ``device``/``dtype`` (moved once)."""
        k = (key, str(device), dtype)
        v = self._values_cache.get(k)
        if v is None:
            v = self._values_cache[k] = table.to(device=device, dtype=dtype)
        return v

    # ---- random streams -------------------------------------------------------------------
    def generators(self, device: torch.device | str, stream: str = "") -> list[torch.Generator]:
        """One generator per member on ``device`` (created and seeded on first use).

        ``stream`` names an extra stream of the transform (e.g. ``"gate"``, the draws
        that decide whether an op applies), seeded from ``(member seed, name/stream)``,
        so its draws never shift the main stream's.
        """
        key = str(torch.device(device))
        if stream:
            key = f"{stream}@{key}"
        gens = self._generators.get(key)
        if gens is None:
            seeds = (self._seeds if not stream else
                     [stream_seed(s, f"{self.name}/{stream}") for s in self._member_seeds])
            gens = []
            for s in seeds:
                g = torch.Generator(device=key.rpartition("@")[2])
                g.manual_seed(s)
                gens.append(g)
            self._generators[key] = gens
        return gens

    def draw(self, shape: tuple[int, ...], *, device: torch.device, dtype: torch.dtype,
             kind: str = "uniform", stream: str = "") -> torch.Tensor:
        """``(P, *shape)``: slice ``i`` from member ``i``'s generator (U[0, 1) or N(0, 1))."""
        return draw_from(self.generators(device, stream), shape, kind=kind, device=device, dtype=dtype)

    def gates(self, tables: Sequence[torch.Tensor], n: int, device: torch.device) -> list[torch.Tensor | None]:
        """Per op, ``(P, n)`` booleans "apply to this example" with probabilities ``tables[k]`` ``(P,)``.

        Drawn from the ``"gate"`` stream, and only when some probability is below 1:
        a member whose probability is 1 applies the op whatever the draw, so whether
        its gate stream moved never changes its numbers (the population invariant
        holds), and configs without probabilities draw exactly what they drew before
        probabilities existed. ``None`` for an op applied to every example.
        """
        if all(bool((t >= 1.0).all()) for t in tables):
            return [None] * len(tables)
        u = self.draw((n, len(tables)), device=device, dtype=torch.float64, stream="gate")
        return [None if bool((t >= 1.0).all()) else u[..., k] < t.to(device).view(-1, 1)
                for k, t in enumerate(tables)]

    def permutations(self, n: int, device: torch.device) -> torch.Tensor:
        """``(P, n)``: a random permutation of the batch per member (the mixing partners)."""
        return torch.stack([torch.randperm(n, generator=g, device=device) for g in self.generators(device)])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{"<device>.<member>": uint8 generator state}`` for every device used so far (extra streams:
        ``"<stream>@<device>.<member>"``)."""
        return {f"{dev}.{i}": g.get_state() for dev, gens in self._generators.items() for i, g in enumerate(gens)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`; devices it does not list start again from the seeds."""
        self._generators = {}
        for key, value in state.items():
            dev, _, member = key.rpartition(".")
            if not member.isdigit() or int(member) >= len(self._seeds):
                raise CheckpointError(f"augmentation state {self.name}.{key} does not fit a population of "
                                      f"{len(self._seeds)} member(s)")
            stream, _, dev = dev.rpartition("@")
            self.generators(dev, stream)[int(member)].set_state(value.to("cpu", torch.uint8))

    # ---- the transform --------------------------------------------------------------------
    def apply(self, x: torch.Tensor, targets: torch.Tensor, augmenter: AugmentContext) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def soft_targets(targets: torch.Tensor, P: int, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Class indices ``(N,)``/``(P, N)`` or soft targets -> probability vectors ``(P, N, C)``."""
    if targets.is_floating_point():
        t = targets if targets.ndim == 3 else targets.unsqueeze(0)
        return t.to(dtype).expand(P, *t.shape[1:])
    t = targets if targets.ndim == 2 else targets.unsqueeze(0)
    if bool(((t < 0) | (t >= num_classes)).any()):
        raise ConfigError(f"labels must be class indices in [0, {num_classes}), got values from {int(t.min())} "
                          f"to {int(t.max())}")
    return torch.nn.functional.one_hot(t.long(), num_classes).to(dtype).expand(P, t.shape[1], num_classes)


# ---- Beta(alpha, alpha) from a given generator --------------------------------------------------

#: candidates per Gamma draw: Marsaglia-Tsang accepts each with probability > 0.95 (shape >= 1),
#: so all 16 are rejected with probability < 1e-20 (then the last candidate is used)
_CANDIDATES = 16


def _log_gamma_sample(a: torch.Tensor, z: torch.Tensor, u: torch.Tensor, boost: torch.Tensor) -> torch.Tensor:
    """``log G`` with ``G ~ Gamma(a, 1)``, from normals ``z``/uniforms ``u`` ``(..., K)`` and ``boost`` ``(...)``.

    Marsaglia & Tsang (2000) for shape ``a + 1 >= 1``, then ``G = G' * U^(1/a)`` (their
    boost for ``a < 1``, used for every ``a`` so the number of draws never depends on
    ``a``). In log space, so tiny alphas (``G`` below the float range) stay exact.
    """
    d = (a + 1.0 - 1.0 / 3.0).unsqueeze(-1)
    c = 1.0 / torch.sqrt(9.0 * d)
    v = (1.0 + c * z) ** 3
    ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
    last = torch.full(a.shape, z.shape[-1] - 1, dtype=torch.int64, device=a.device)
    k = torch.where(ok.any(dim=-1), ok.to(a.dtype).argmax(dim=-1), last)  # the first accepted candidate
    vk = v.clamp_min(1e-300).gather(-1, k.unsqueeze(-1)).squeeze(-1)
    return torch.log(d.squeeze(-1) * vk) + torch.log(boost) / a


def sample_beta(transform: Transform, alpha: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(P,)`` float64: ``lambda_p ~ Beta(alpha_p, alpha_p)`` from member ``p``'s stream; 1 where alpha is 0.

    ``Beta(a, a) = X / (X + Y)`` with ``X, Y ~ Gamma(a)``; every call takes the same
    number of draws, so the streams stay aligned whatever the values.
    """
    z = transform.draw((2, _CANDIDATES), device=device, dtype=torch.float64, kind="normal")
    u = 1.0 - transform.draw((2, _CANDIDATES + 1), device=device, dtype=torch.float64)  # (0, 1]
    a = alpha.to(device=device, dtype=torch.float64).clamp_min(1e-12).unsqueeze(-1).expand(-1, 2)
    log_g = _log_gamma_sample(a, z, u[..., :_CANDIDATES], u[..., _CANDIDATES])
    lam = torch.sigmoid(log_g[:, 0] - log_g[:, 1])
    return torch.where(alpha.to(device) > 0, lam, torch.ones_like(lam))
