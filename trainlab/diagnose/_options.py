"""The doctor's budgets: how many images, steps, rates and epochs each step of the recipe spends."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DoctorOptions"]


@dataclass(frozen=True)
class DoctorOptions:
    """Budgets of the six steps (defaults: the full recipe; :meth:`quick`: a smaller one for tests).

    ``member``: which member of a population config is diagnosed. Step 1:
    ``init_examples`` images for the initial loss and probe. Step 2: ``sample``
    images, ``overfit_steps`` steps, success at ``overfit_target`` training accuracy,
    one member per rate ``config lr x overfit_factors``. Step 3: the log grid
    ``range_low .. range_high`` with ``range_per_decade`` rates per decade,
    ``range_steps`` iterations. Step 4: rates ``suggestion x coarse_factors`` x weight
    decays ``coarse_wds``, ``coarse_epochs``. Step 5: ``best lr x refine_factors`` x
    ``best wd x refine_wd_factors``, ``refine_epochs``. Step 6: ``curve_epochs``
    (default: the config's), a probe every ``probe_every`` steps on
    ``probe_examples`` images; ``pass_examples`` images for the end-of-run counts of
    dead and saturated units (steps 2 and 6). Step 0: ``noise_steps`` steps of the label-noise
    model. Step 3: the small weight decay ``range_weight_decay`` (note 004). Step 7:
    ``ablation_epochs`` per ablation member.
    """

    member: int = 0
    init_examples: int = 2000
    sample: int = 100
    overfit_steps: int = 300
    overfit_target: float = 0.99
    overfit_factors: tuple[float, ...] = (1.0, 0.01, 0.1, 10.0, 100.0, 1000.0, 10000.0)
    range_low: float = 1e-5
    range_high: float = 10.0
    range_per_decade: int = 4
    range_steps: int = 100
    coarse_factors: tuple[float, ...] = (1 / 30, 0.1, 1 / 3, 1.0)
    coarse_wds: tuple[float, ...] = (0.0, 1e-4, 1e-3)
    coarse_epochs: int = 2
    refine_factors: tuple[float, ...] = (0.5, 0.71, 1.0, 1.41, 2.0)
    refine_wd_factors: tuple[float, ...] = (1 / 3, 1.0, 3.0)
    refine_epochs: int = 6
    curve_epochs: int | None = None
    probe_every: int = 10
    probe_examples: int = 256
    pass_examples: int = 2000
    range_weight_decay: float = 1e-4
    ablation_epochs: int = 3
    noise_steps: int = 50

    @classmethod
    def quick(cls, **changes: Any) -> "DoctorOptions":
        """Small budgets (seconds per step on 2 cores): for tests and a first look."""
        base = cls(overfit_steps=150, overfit_factors=(1.0, 0.01, 0.1, 10.0, 100.0, 1000.0), range_per_decade=3,
                   coarse_factors=(0.1, 1 / 3, 1.0),
                   coarse_wds=(0.0, 1e-3), coarse_epochs=1, refine_factors=(0.5, 1.0, 2.0),
                   refine_wd_factors=(1.0,), refine_epochs=2, pass_examples=1000, ablation_epochs=2)
        return replace(base, **changes)
