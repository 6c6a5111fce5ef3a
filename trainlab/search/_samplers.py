"""Optuna samplers keyed by *slot*, so a study's draws do not depend on who runs it.

Every trial owns a slot: its position in the study's budget (0, 1, ..., N-1), given
out under the study lock and kept by retries. A random draw for slot ``s`` comes from
a generator seeded by ``(seed, s, parameter name)``: the same study seed gives the
same points whether one worker or ten ran it, with any population size, with or
without interruptions. Model-based samplers (TPE, GP) start from such draws and are
rebuilt per slot from ``(seed, s)``, so one worker's study is reproducible too; with
several workers they see each other's trials at different moments (as in Optuna).

Diverged (NaN/inf) and out-of-memory trials are FAILED in the study, but a
model-based sampler would ignore FAILED trials and could keep proposing the same
failing point. :class:`ModelSampler` therefore shows them to its base sampler as
completed with the worst value seen so far.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
import copy
import hashlib
import math
from typing import Any, cast

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from trainlab.search._space import CategoricalParam, SearchSpace, _Numeric
from trainlab.search._vocab import IMPUTE, SLOT

__all__ = ["derive_seed", "SlotSampler", "SlotRandomSampler", "CoarseToFineSampler", "ModelSampler", "SLOT",
           "IMPUTE", "slot_of"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a study seed and labels (slot numbers, names), stable across runs and machines."""
    words: list[int] = []
    for p in parts:
        if isinstance(p, str):
            words += [1, int.from_bytes(hashlib.sha256(p.encode()).digest()[:8], "little")]
        else:
            p = int(p)
            if p < 0:
                raise ValueError(f"derive_seed needs non-negative integers, got {p}")
            words += [2, p]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)
    return int(state[0]) & (2**63 - 1)


def slot_of(trial: FrozenTrial) -> int:
    s = trial.system_attrs.get(SLOT)
    return int(s) if s is not None else int(trial.number)


def draw(dist: BaseDistribution, rng: np.random.Generator, box: tuple[float, float] | Sequence[Any] | None = None) -> Any:
    """One value of ``dist``; ``box`` narrows it: ``(low, high)`` in the distribution's own
    units for numbers, the allowed choices for a categorical."""
    if isinstance(dist, CategoricalDistribution):
        choices = list(dist.choices) if box is None else [c for c in dist.choices if c in list(box)]
        return choices[int(rng.integers(len(choices)))]
    if not isinstance(dist, (FloatDistribution, IntDistribution)):
        raise TypeError(f"unsupported distribution {dist!r}")
    low, high = (dist.low, dist.high) if box is None else box
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            k0 = math.ceil((low - dist.low) / dist.step - 1e-9)
            k1 = math.floor((high - dist.low) / dist.step + 1e-9)
            k = int(rng.integers(k0, k1 + 1))
            return float(min(dist.low + k * dist.step, dist.high))
        if dist.log:
            v = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            v = float(rng.uniform(low, high))
        return float(min(max(v, dist.low), dist.high))
    if isinstance(dist, IntDistribution):  # (always, past the check above)
        low, high = int(math.ceil(low - 1e-9)), int(math.floor(high + 1e-9))
        if dist.log:
            # as Optuna does: uniform in log over [low - 0.5, high + 0.5], then round
            v = int(round(math.exp(rng.uniform(math.log(max(low - 0.5, 0.5)), math.log(high + 0.5)))))
        else:
            k = int(rng.integers(0, (high - low) // dist.step + 1))
            v = low + k * dist.step
        v = min(max(v, low), high)
        # stay on the step grid of the distribution
        v = dist.low + round((v - dist.low) / dist.step) * dist.step
        return int(min(max(v, dist.low), dist.high))
    raise TypeError(f"unsupported distribution {dist!r}")


class SlotSampler(BaseSampler):
    """A sampler that knows the slot of each trial (assigned by the tuner before sampling)."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._slots: dict[int, int] = {}

    def assign(self, trial_id: int, slot: int) -> None:
        self._slots[trial_id] = int(slot)

    def slot(self, trial: FrozenTrial) -> int:
        return self._slots.get(trial._trial_id, slot_of(trial))

    def rng(self, trial: FrozenTrial, *labels: str | int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, self.slot(trial), *labels))

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
                        ) -> dict[str, Any]:
        return {}

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
                    ) -> None:
        self._slots.pop(trial._trial_id, None)


class SlotRandomSampler(SlotSampler):
    """Uniform / log-uniform draws, a pure function of ``(seed, slot, name)``."""

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return draw(param_distribution, self.rng(trial, param_name))


class CoarseToFineSampler(SlotSampler):
    """Rounds of random draws in a box that shrinks around the best trials.

    Round 0 draws from the whole space. Round ``r`` draws from a box around the
    ``top_k`` best completed trials of rounds ``< r``: for each number, the range of
    their values (on the log scale for ``log = true``), widened on each side by
    ``margin`` times that range (at least ``min_width`` of the previous box, so a
    lone best point still gets a box), then clipped to the previous box; for each
    categorical, the choices those trials used. Slots are split into rounds by
    ``round_sizes``; the tuner opens round ``r`` only when every trial of the earlier
    rounds has finished, so each box is a function of finished trials only.
    ``on_box(round, box)`` records each new box (the tuner stores it in the study).
    """

    def __init__(self, seed: int, space: SearchSpace, round_sizes: Sequence[int], *, top_k: int, margin: float,
                 min_width: float, maximize: bool,
                 on_box: Callable[[int, dict[str, Any]], None] | None = None,
                 known_boxes: Mapping[int, dict[str, Any]] | None = None) -> None:
        super().__init__(seed)
        self.space = space
        self.round_sizes = [int(n) for n in round_sizes]
        self.starts = [sum(self.round_sizes[:i]) for i in range(len(self.round_sizes))]
        self.top_k, self.margin, self.min_width, self.maximize = top_k, margin, min_width, maximize
        self.on_box = on_box
        self.boxes: dict[int, dict[str, Any]] = {int(k): v for k, v in (known_boxes or {}).items()}

    def round_of(self, slot: int) -> int:
        r = 0
        for i, start in enumerate(self.starts):
            if slot >= start:
                r = i
        return r

    def full_box(self) -> dict[str, Any]:
        box: dict[str, Any] = {}
        for p in self.space.sampled:
            if isinstance(p, _Numeric):
                box[p.name] = [p.low, p.high]
            elif isinstance(p, CategoricalParam):
                box[p.name] = list(p.encoded)
        return box

    def box(self, study: optuna.Study, r: int) -> dict[str, Any]:
        if r in self.boxes:
            return self.boxes[r]
        if r == 0:
            box = self.full_box()
        else:
            prev = self.box(study, r - 1)
            done = [(t.value, t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if slot_of(t) < self.starts[r] and t.value is not None]
            done.sort(key=lambda vt: (-vt[0] if self.maximize else vt[0], slot_of(vt[1])))
            best = [t for _, t in done[: self.top_k]]
            box = self.shrink(prev, [t.params for t in best]) if best else copy.deepcopy(prev)
        self.boxes[r] = box
        if self.on_box is not None:
            self.on_box(r, box)
        return box

    def shrink(self, prev: dict[str, Any], best: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The box around ``best`` (parameter dicts), inside ``prev``."""
        box: dict[str, Any] = {}
        for p in self.space.sampled:
            vals = [b[p.name] for b in best if p.name in b]
            if not vals:
                box[p.name] = copy.deepcopy(prev[p.name])
                continue
            if isinstance(p, _Numeric):
                plo, phi = (p.to_internal(x) for x in prev[p.name])
                u = [p.to_internal(v) for v in vals]
                lo, hi = min(u), max(u)
                pad = self.margin * max(hi - lo, self.min_width * (phi - plo))
                lo, hi = max(lo - pad, plo), min(hi + pad, phi)
                low, high = p.from_internal(lo), p.from_internal(hi)
                if p.kind == "int":
                    low, high = int(math.floor(low + 1e-9)), int(math.ceil(high - 1e-9))
                low, high = max(low, prev[p.name][0]), min(high, prev[p.name][1])
                box[p.name] = [low, high]
            else:
                box[p.name] = [c for c in prev[p.name] if c in vals]
        return box

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        box = self.box(study, self.round_of(self.slot(trial)))
        return draw(param_distribution, self.rng(trial, param_name), box.get(param_name))


class _ImputedStudy:
    """A read-only view of a study in which FAILED trials marked ``trainlab:impute`` look
    COMPLETE with the worst value seen (what the base sampler learns "this point is bad" from)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _transform(self, trials: list[FrozenTrial], states: Container[TrialState] | None, deepcopy: bool
                   ) -> list[FrozenTrial]:
        values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        maximize = self._study.direction == optuna.study.StudyDirection.MAXIMIZE
        worst = (min(values) if maximize else max(values)) if values else None
        out = []
        for t in trials:
            if t.state == TrialState.FAIL and t.system_attrs.get(IMPUTE) and worst is not None:
                t = copy.copy(t)
                t.state = TrialState.COMPLETE
                t.values = [worst]
            if states is None or t.state in states:
                out.append(copy.deepcopy(t) if deepcopy else t)
        return out

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        return self._transform(self._study._get_trials(deepcopy=False, states=None, use_cache=use_cache),
                               states, deepcopy)

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._transform(self._study.get_trials(deepcopy=False, states=None), states, deepcopy)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def _imputed(study: optuna.Study) -> optuna.Study:
    """``study`` as the base sampler should see it. The view is duck-typed (it forwards everything else to the
    study), hence the cast: what Optuna's samplers read of a Study is there."""
    return cast(optuna.Study, _ImputedStudy(study))


class ModelSampler(SlotSampler):
    """TPE or GP (Optuna's) after ``startup`` slot-seeded random trials.

    The base sampler is built afresh for each trial with seed ``(seed, slot)``, and
    sees diverged/out-of-memory trials as the worst completed ones (``_ImputedStudy``).
    A trial is a startup trial while fewer than ``startup`` trials have a result.
    """

    def __init__(self, seed: int, kind: str, *, startup: int) -> None:
        super().__init__(seed)
        if kind not in ("tpe", "gp"):
            raise ValueError(f"ModelSampler kind must be 'tpe' or 'gp', got {kind!r}")
        self.kind, self.startup = kind, int(startup)
        self._random = SlotRandomSampler(seed)
        self._random._slots = self._slots  # one slot table for both
        #: trial id -> its base sampler, or None while it is a startup (slot-random) trial
        self._per_trial: dict[int, BaseSampler | None] = {}

    def _make_base(self, seed: int) -> BaseSampler:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if self.kind == "tpe":
                return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                                  n_startup_trials=0)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=0, independent_sampler=self._random,
                                             warn_independent_sampling=False)

    def _base(self, study: optuna.Study, trial: FrozenTrial) -> BaseSampler | None:
        """The trial's base sampler, or None while it is a startup trial."""
        key = trial._trial_id
        if key not in self._per_trial:
            view = _ImputedStudy(study)
            n = len(view._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            if n < self.startup:
                self._per_trial[key] = None
            else:
                self._per_trial[key] = self._make_base(derive_seed(self.seed, self.slot(trial), self.kind) % 2**32)
        return self._per_trial[key]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        base = self._base(study, trial)
        if base is None:
            return {}
        return base.infer_relative_search_space(_imputed(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
                        ) -> dict[str, Any]:
        base = self._base(study, trial)
        if base is None or not search_space:
            return {}
        return base.sample_relative(_imputed(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        base = self._base(study, trial)
        if base is None:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        return base.sample_independent(_imputed(study), trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
                    ) -> None:
        base = self._per_trial.pop(trial._trial_id, None)
        if base is not None:
            base.after_trial(_imputed(study), trial, state, values)
        super().after_trial(study, trial, state, values)
