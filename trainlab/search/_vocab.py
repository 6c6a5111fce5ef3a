"""The search's words: the states of a slot and of a trial's outcome, the keys trainlab stores in a study,
and the reasons a worker's sweep gives a dead trial.

A leaf: it imports nothing of trainlab (nor Optuna), so every module of the search (the tuner, the
ledger, the report, the figures, the storage) can share these names without importing each other.
The values are what the study database holds and what trials.csv / summary.json show; they are
part of the stored format and never change (a study written by an older trainlab resumes).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SlotState", "Outcome", "SLOT", "IMPUTE", "RETRY", "COUNTS", "ATTEMPT", "RETRY_OF", "REASON",
           "SEED", "SPEC", "BOXES", "FINAL", "QUEUED", "BUDGET", "HEARTBEAT", "WORKER", "PROCESS_GONE", "SILENT",
           "NEVER_BEAT", "INTERRUPTED", "STORAGE_RECORD"]

#: the file in a study's directory that names the database server holding its trials
#: (``trainlab.search._storage.record_storage``; the lab's viewer looks for it without importing Optuna)
STORAGE_RECORD = "storage.json"


class SlotState(StrEnum):
    """What a slot's trials add up to (:class:`~trainlab.search.Ledger`)."""

    LIVE = "live"          # a trial of the slot is running or waiting to run
    COMPLETE = "complete"  # a trial of the slot completed: its value stands for the slot
    PRUNED = "pruned"      # a trial of the slot was pruned
    FAILED = "failed"      # failed for a reason of its own, or by accident more than max_retries times
    RETRY = "retry"        # failed by accident; the slot runs again with the same point

    @property
    def decided(self) -> bool:
        """The slot has its result (it counts toward the study's budget)."""
        return self in _DECIDED


_DECIDED = frozenset({SlotState.COMPLETE, SlotState.PRUNED, SlotState.FAILED})


class Outcome(StrEnum):
    """How one trial ended, as its evaluator reports it (:class:`~trainlab.search.TrialOutcome`)."""

    COMPLETE = "complete"  # with a value
    PRUNED = "pruned"      # stopped early by the pruner
    FAILED = "failed"      # with a reason


# ---- keys stored in the study -------------------------------------------------------------------------
# trial system attributes
SLOT = "trainlab:slot"          # the trial's slot: its place in the study (a retry keeps it)
IMPUTE = "trainlab:impute"      # on a FAILED trial: its point is bad; model samplers see the worst value
RETRY = "trainlab:retry"        # on a FAILED trial: an accident; its slot may run again
COUNTS = "trainlab:counts"      # ... and it counts toward max_retries (interruptions do not)
ATTEMPT = "trainlab:attempt"    # 0 for a slot's first trial, k for its k-th retry
RETRY_OF = "trainlab:retry_of"  # the number of the failed trial a retry repeats
HEARTBEAT = "trainlab:heartbeat"  # the time of a running trial's last heartbeat
WORKER = "trainlab:worker"      # who runs the trial (host, pid), to see a dead worker on this machine
# trial user attributes (shown by optuna-dashboard)
REASON = "fail_reason"          # why a trial failed
SEED = "seed"                   # the member seed the trial trained with
# study system attributes
SPEC = "trainlab:spec"          # what must not change on resume
BOXES = "trainlab:box:"         # coarse-to-fine boxes per round (the round number follows)
FINAL = "trainlab:final"        # the best config's single test evaluation
QUEUED = "trainlab:queued"      # the points of a finite strategy are queued
BUDGET = "trainlab:budget"      # the latest number of trials asked for

# ---- fail reasons --------------------------------------------------------------------------------------
# why the sweep declares a RUNNING trial dead (its fail_reason), most specific first
PROCESS_GONE = "worker died (process {pid} on {host} is gone)"
SILENT = "worker died (no heartbeat for more than {grace} s)"
NEVER_BEAT = "worker died before its first heartbeat"
#: the reason of the trials a worker held when Ctrl-C or SIGTERM stopped it (they are retried, uncounted)
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"
