"""A study as data: the ledger (what each slot's trials add up to), the snapshot the report is made of, and
the result a worker returns.

The tuner writes the study; this module only reads trials that are given to it. The report
(``_report``, ``_plots``) is a function of a :class:`StudySnapshot`: it never sees the tuner, its
storage or its evaluator, so the tuner -> report -> figures imports run one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from trainlab.search._vocab import COUNTS, RETRY, SLOT, SlotState

if TYPE_CHECKING:
    from trainlab.search._space import SearchSpace
    from trainlab.search._spec import SearchSpec

__all__ = ["SlotStatus", "Ledger", "best_trial", "value_of", "StudySnapshot", "TuneResult"]


# ---- the ledger: what each slot's trials add up to --------------------------------------------------
@dataclass
class SlotStatus:
    slot: int
    attempts: list[FrozenTrial]
    status: SlotState

    @property
    def decided(self) -> bool:
        return self.status.decided

    @property
    def result(self) -> FrozenTrial:
        """The trial that stands for this slot (the completed one, else the last)."""
        for t in self.attempts:
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                return t
        return self.attempts[-1]


class Ledger:
    """The study's trials grouped by slot, each slot's status, and the counts the loop needs."""

    def __init__(self, trials: Sequence[FrozenTrial], max_retries: int) -> None:
        by_slot: dict[int, list[FrozenTrial]] = {}
        self.foreign: list[FrozenTrial] = []
        for t in trials:
            if SLOT in t.system_attrs:
                by_slot.setdefault(int(t.system_attrs[SLOT]), []).append(t)
            else:
                self.foreign.append(t)
        self.slots: dict[int, SlotStatus] = {}
        for s, ts in sorted(by_slot.items()):
            ts.sort(key=lambda t: t.number)
            self.slots[s] = SlotStatus(s, ts, self._status(ts, max_retries))
        self.waiting = sum(1 for t in trials if t.state == TrialState.WAITING)

    @staticmethod
    def _status(ts: list[FrozenTrial], max_retries: int) -> SlotState:
        states = {t.state for t in ts}
        if TrialState.COMPLETE in states:
            return SlotState.COMPLETE
        if TrialState.PRUNED in states:
            return SlotState.PRUNED
        if TrialState.RUNNING in states or TrialState.WAITING in states:
            return SlotState.LIVE
        last = ts[-1]
        if not last.system_attrs.get(RETRY, True):
            return SlotState.FAILED
        counted = sum(1 for t in ts if t.state == TrialState.FAIL and t.system_attrs.get(RETRY, True)
                      and t.system_attrs.get(COUNTS, True))
        return SlotState.RETRY if counted <= max_retries else SlotState.FAILED

    def count(self, *statuses: SlotState | str) -> int:
        return sum(1 for s in self.slots.values() if s.status in statuses)

    @property
    def decided(self) -> int:
        return sum(1 for s in self.slots.values() if s.decided)

    def is_decided(self, slot: int) -> bool:
        return slot in self.slots and self.slots[slot].decided

    @property
    def next_slot(self) -> int:
        return max(self.slots) + 1 if self.slots else 0

    def needs_retry(self) -> list[SlotStatus]:
        return [s for s in self.slots.values() if s.status == SlotState.RETRY]


def value_of(trial: FrozenTrial) -> float:
    """The value of a trial known to have one (a COMPLETE trial, filtered on ``value is not None``)."""
    if trial.value is None:
        raise ValueError(f"trial {trial.number} ({trial.state.name}) has no value")
    return trial.value


def best_trial(trials: Sequence[FrozenTrial], maximize: bool) -> FrozenTrial | None:
    """The best COMPLETE trial (ties: the lowest slot)."""
    done = [(t.value, t) for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    return min(done, key=lambda vt: (-vt[0] if maximize else vt[0],
                                     int(vt[1].system_attrs.get(SLOT, vt[1].number))))[1]


# ---- the snapshot: what the report is made of --------------------------------------------------------
@dataclass(frozen=True)
class StudySnapshot:
    """A study as it stands, as plain data: :meth:`Tuner.snapshot <trainlab.search.Tuner.snapshot>` makes
    it, and the report (summary.json, trials.csv, best.toml, figures) is a function of it alone.

    ``trials`` and ``attrs`` (the study's system attributes) are read once; ``test`` is the best config's
    single test evaluation when the study holds one for the current best; ``best_config`` the resolved
    config of the best trial alone (what best.toml holds; None without an evaluator that makes configs);
    ``timing`` the worker's seconds per phase, ``evaluator_timing`` its evaluator's; ``seconds`` the
    worker's loop time and ``t_start`` its ``time.perf_counter()`` at the start (for the total).
    """

    study: str
    storage: str                   # the storage as shown (a URL without password, or a path)
    storage_kind: str              # memory | sqlite | postgresql | mysql | journal
    spec: "SearchSpec"
    space: "SearchSpace"
    budget: int
    trials: list[FrozenTrial]
    attrs: dict[str, Any]
    test: dict[str, Any] | None = None
    best_config: dict[str, Any] | None = None
    out: Path | None = None
    timing: dict[str, float] = field(default_factory=dict)
    evaluator_timing: dict[str, float] = field(default_factory=dict)
    ran: int = 0
    seconds: float = 0.0
    t_start: float = 0.0

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.trials, self.spec.max_retries)

    @cached_property
    def best(self) -> FrozenTrial | None:
        return best_trial(self.trials, self.spec.maximize)

    @property
    def finished(self) -> bool:
        return self.ledger.decided >= self.budget


# ---- results -------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """What a finished (or stopped) worker knows about its study.

    ``best`` is the best COMPLETE trial by the validation metric (``number``,
    ``slot``, ``value``, ``params``, ``values``, ``seed``, ``config`` for config
    studies); ``test`` the best config's single test-split evaluation (or None);
    ``summary`` what summary.json holds; ``trials`` one row per trial (trials.csv).
    """

    study: str
    storage: str
    finished: bool
    best: dict[str, Any] | None
    test: dict[str, Any] | None
    counts: dict[str, int]
    summary: dict[str, Any]
    trials: list[dict[str, Any]]
    out: Path | None = None
    files: dict[str, str] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """The top trials and the scatter, in Jupyter (:func:`trainlab.notebook.tune_result_html`)."""
        from trainlab.notebook import tune_result_html

        return tune_result_html(self)
