"""What the tuner hands an evaluator (jobs) and what it gets back (outcomes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import math
from typing import Any, Protocol

from trainlab.search._vocab import Outcome

__all__ = ["TrialJob", "TrialOutcome", "Evaluator", "FunctionEvaluator"]


@dataclass
class TrialJob:
    """One trial to run.

    Attributes:
        number: the Optuna trial number.
        slot: the trial's place in the study's budget (0..N-1); kept by retries.
        attempt: 0 for the first run of this slot, 1 for its first retry, ...
        seed: the trial's own seed, derived from the study seed and the slot: its
            member seed, so it trains the same whichever population it joins.
        params: the sampled values as Optuna stores them.
        values: the config values (``{"optim.lr": 0.003, ...}``), fixed ones included.
    """

    number: int
    trial_id: int
    slot: int
    attempt: int
    seed: int
    params: dict[str, Any]
    values: dict[str, Any]
    _report: Callable[[int, float], bool] | None = field(default=None, repr=False)

    def report(self, step: int, value: float) -> bool:
        """Record the metric after evaluation ``step``; True means: prune this trial now."""
        if self._report is None:
            return False
        return self._report(step, value)


@dataclass
class TrialOutcome:
    """A trial's result: ``complete`` (with ``value``), ``pruned``, or ``failed`` (with ``reason``).

    ``retry``: the failure was an accident (an error, an interruption): the same point
    runs again, a bounded number of times. ``impute``: the point itself is bad
    (diverged, out of memory, an invalid config): model-based samplers see it as the
    worst result so far and move away. ``attrs`` are stored with the trial.
    """

    state: Outcome  # a StrEnum: ``outcome.state == "complete"`` holds as before
    value: float | None = None
    reason: str | None = None
    retry: bool = False
    impute: bool = False
    counts: bool = True
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = Outcome(self.state)  # "complete" given as a string is the same outcome; others raise

    @classmethod
    def complete(cls, value: float, **attrs: Any) -> "TrialOutcome":
        return cls(Outcome.COMPLETE, value=float(value), attrs=attrs)

    @classmethod
    def pruned(cls, **attrs: Any) -> "TrialOutcome":
        return cls(Outcome.PRUNED, attrs=attrs)

    @classmethod
    def failed(cls, reason: str, *, retry: bool = False, impute: bool = False, counts: bool = True,
               **attrs: Any) -> "TrialOutcome":
        return cls(Outcome.FAILED, reason=reason, retry=retry, impute=impute, counts=counts, attrs=attrs)


class Evaluator(Protocol):
    """Runs a batch of trials (a population's worth) and returns one outcome per job, in order."""

    def __call__(self, jobs: Sequence[TrialJob]) -> list[TrialOutcome]: ...


class FunctionEvaluator:
    """Trials of a plain function ``fn(values) -> float`` (synthetic objectives, quick studies).

    A non-finite result is a failed trial whose point is bad (``impute``); an exception
    is a failed trial that may be retried.
    """

    def __init__(self, fn: Callable[[Mapping[str, Any]], float]) -> None:
        self.fn = fn

    def __call__(self, jobs: Sequence[TrialJob]) -> list[TrialOutcome]:
        out = []
        for job in jobs:
            try:
                v = float(self.fn(dict(job.values)))
            except Exception as e:  # noqa: BLE001 - a trial's error is the trial's outcome
                out.append(TrialOutcome.failed(f"error: {type(e).__name__}: {e}", retry=True))
                continue
            if not math.isfinite(v):
                out.append(TrialOutcome.failed(f"objective returned {v}", impute=True))
            else:
                out.append(TrialOutcome.complete(v))
        return out
