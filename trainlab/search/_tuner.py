"""The worker loop: claim trials under the study lock, train them as populations, tell results.

How a study stays exact with any number of workers, interruptions and crashes:

* Each trial has a **slot** (0..N-1), handed out under the study lock. A study is
  done when N slots have a *result*: COMPLETE, PRUNED, or FAILED for a reason of
  its own (diverged, out of memory, invalid config, or accidents past
  ``max_retries``). Resuming never adds N more: it runs until N have results.
* A trial that fails by accident (its worker died, an error, an interruption) is
  FAILED with its reason and its slot is **retried** with the same parameters in
  a new trial (at most ``max_retries`` times; interruptions do not count).
* A worker that dies leaves RUNNING trials. Every claim first sweeps them: stale
  when their heartbeat is older than ``grace`` seconds, or at once when their worker
  ran on this machine and its process is gone.
* The claim (sweep, queue retries, hand out slots, ask and sample) runs under the
  study lock, so no two workers get the same slot and none is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
import contextlib
import json
import logging
from pathlib import Path
import threading
import time
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from trainlab.errors import ConfigError
from trainlab.search._jobs import Evaluator, TrialJob, TrialOutcome
from trainlab.search._report import build_result
from trainlab.search._results import Ledger, SlotStatus, StudySnapshot, TuneResult, best_trial
from trainlab.search._samplers import SlotSampler, derive_seed
from trainlab.search._space import Param
from trainlab.search._spec import SearchSpec
from trainlab.search._storage import StudyStorage, open_storage, record_storage, worker_identity
from trainlab.search._vocab import (ATTEMPT, BOXES, BUDGET, COUNTS, FINAL, IMPUTE, INTERRUPTED, QUEUED, REASON,
                                    RETRY, RETRY_OF, SEED, SLOT, SPEC, WORKER, Outcome, SlotState)

# Ledger, SlotStatus, TuneResult and the attribute keys live in _results and _vocab; they are named here too,
# where they were first (``from trainlab.search._tuner import REASON, SLOT`` keeps working).
__all__ = ["Tuner", "TuneResult", "Ledger", "SlotStatus", "StudySnapshot", "RETRY", "COUNTS", "ATTEMPT", "RETRY_OF",
           "REASON", "SPEC", "SLOT"]

log = logging.getLogger("trainlab.search")


class _ProgressBar(Protocol):
    """What the worker loop uses of a ``tqdm`` bar (tqdm ships no type information)."""

    n: int

    def set_postfix(self, *, refresh: bool = True, **values: Any) -> None: ...

    def refresh(self) -> None: ...

    def close(self) -> None: ...


class _Heartbeats:
    """Records heartbeats for the given trials every ``interval`` seconds while training runs."""

    def __init__(self, storage: StudyStorage, trial_ids: Sequence[int]) -> None:
        self.storage, self.ids = storage, list(trial_ids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainlab-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.storage.heartbeat):
            try:
                self.storage.beat(self.ids)
            except Exception as e:  # noqa: BLE001 - a missed beat must not kill training; the next one retries
                log.warning("heartbeat failed (%s); retrying in %s s", e, self.storage.heartbeat)

    def __enter__(self) -> _Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Ctrl-C / SIGTERM wait until the block ends: a claim (trials taken, attributed, sampled) or a tell
    is never cut in half, so an interrupted worker leaves no trial it took unaccounted for."""
    import signal

    from trainlab.search import _stop

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _stop.active():  # the first signal only sets the stop flag; checked when the block is done
        yield
        _stop.check()
        return
    got: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if got:
            raise KeyboardInterrupt


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    d = p.distribution()
    if isinstance(d, optuna.distributions.FloatDistribution):
        return trial.suggest_float(p.name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(p.name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(p.name, d.choices)
    raise TypeError(f"{p!r} is fixed, not sampled")  # only the space's sampled parameters come here


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            p = f"{path}.{k}" if path else str(k)
            if k not in new:
                out.append(f"{p} removed (was {json.dumps(old[k])})")
            elif k not in old:
                out.append(f"{p} added ({json.dumps(new[k])})")
            else:
                out += _diff(old[k], new[k], p)
        return out
    if old != new:
        return [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


class Tuner:
    """Run (or resume, or join) a study: ``Tuner(spec, evaluator=...).run()``.

    Parameters
    ----------
    spec:
        The :class:`~trainlab.search.SearchSpec` (space, strategy, budget, ...).
    evaluator:
        Runs a batch of :class:`TrialJob` and returns :class:`TrialOutcome` s; default: train
        ``base_config`` with each trial's values, trials grouped into populations.
    base_config:
        The unresolved trainlab config (without ``[search]``) for the default evaluator.
    storage, study:
        Optuna storage URL and study name (override the spec's). Default storage: a
        SQLite file ``study.db`` in ``out``, or in-process memory without ``out``.
    out:
        Directory for trials.csv, summary.json, best.toml and figures (None: none written).
    """

    def __init__(self, spec: SearchSpec, *, evaluator: Evaluator | None = None,
                 base_config: Mapping[str, Any] | None = None, storage: str | None = None,
                 study: str | None = None, out: str | Path | None = None, progress: bool = False,
                 device: str | None = None, tensorboard: str | Path | None = None) -> None:
        self.spec = spec
        #: ``tensorboard``: each finished trial of this worker becomes a TensorBoard run there
        self.tensorboard = None
        if tensorboard is not None:
            from trainlab.train import TrialTensorBoard

            self.tensorboard = TrialTensorBoard(tensorboard, metric=spec.metric)
        self.base_config = dict(base_config) if base_config is not None else None
        if evaluator is None:
            if base_config is None:
                raise ConfigError("Tuner needs an evaluator or a base_config to train")
            from trainlab.search._population import PopulationEvaluator

            evaluator = PopulationEvaluator(base_config, metric=spec.metric, objective=spec.objective,
                                            device=device)
        self.evaluator = evaluator
        self.out = Path(out) if out is not None else None
        if self.out is not None:  # never mix a study into a train run or someone's files (issue 17)
            from trainlab._rundir import check_study_dir

            check_study_dir(self.out)
        self.storage_url = storage or spec.storage or (None if self.out is not None else "memory")
        self.study_name = study or spec.study or "trainlab-study"
        self.progress = progress
        self.space = spec.effective_space()
        self.budget: int = spec.budget() if spec.trials is not None or spec.strategy.finite else -1
        self.timing: dict[str, float] = {"claim": 0.0, "evaluate": 0.0, "tell": 0.0, "wait": 0.0,
                                         "final": 0.0, "outputs": 0.0}
        self.ran = 0  # trials this worker ran to an outcome
        self._inflight: dict[int, optuna.Trial] = {}
        self._error_slots: set[int] = set()

    # ---- opening --------------------------------------------------------------------------------
    def _open(self, *, create: bool = True) -> None:
        self.store: StudyStorage = open_storage(
            self.storage_url, default=self.out / "study.db" if self.out is not None else None,
            heartbeat=self.spec.heartbeat, grace=self.spec.grace)
        if self.out is not None:  # a database server's study: say in --out where it lives (the lab finds it)
            record_storage(self.out, self.storage_url, self.study_name)
        pruner = self._pruner()
        with self.store.lock(self.study_name):
            st = self.store.storage
            existing: int | None
            try:
                existing = st.get_study_id_from_name(self.study_name)
            except KeyError:
                if not create:
                    raise ConfigError(f"no study '{self.study_name}' in {self.store.display}") from None
                existing = None
            created = existing is None
            if self.budget < 0:  # a report without --trials: the study's last budget
                if existing is None or BUDGET not in st.get_study_system_attrs(existing):
                    raise ConfigError("search.trials is missing (--trials N or trials = N in [search])")
                self.budget = int(st.get_study_system_attrs(existing)[BUDGET])
            fingerprint = self.spec.fingerprint(self.budget)
            if self.base_config is not None:
                from trainlab.search._spec import canonical_base

                fingerprint["base"] = canonical_base(self.base_config)
            if existing is None:
                study_id = st.create_new_study([optuna.study.StudyDirection.MAXIMIZE if self.spec.maximize
                                                else optuna.study.StudyDirection.MINIMIZE], self.study_name)
                st.set_study_system_attr(study_id, SPEC, fingerprint)
            else:
                study_id = existing
            self.study_id: int = study_id
            if create:
                st.set_study_system_attr(study_id, BUDGET, self.budget)
            attrs = st.get_study_system_attrs(study_id)
            if not created:
                if SPEC not in attrs:
                    raise ConfigError(f"study '{self.study_name}' in {self.store.display} was not created by "
                                      "trainlab tune; use another --study name")
                changes = _diff(attrs[SPEC], json.loads(json.dumps(fingerprint)))
                if changes:
                    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
                    raise ConfigError(f"study '{self.study_name}' in {self.store.display} was created with a "
                                      f"different setup, and resuming it would mix results: {shown}. Use the "
                                      "original settings, or a new --study name")
            boxes = {int(k[len(BOXES):]): v for k, v in attrs.items() if k.startswith(BOXES)}
            self.sampler: SlotSampler = self.spec.strategy.sampler(
                self.space, self.spec.seed, trials=self.budget, maximize=self.spec.maximize,
                on_box=self._record_box, known_boxes=boxes)
            self.study = optuna.load_study(study_name=self.study_name, storage=st, sampler=self.sampler,
                                           pruner=pruner)
            if self.spec.strategy.finite and not attrs.get(QUEUED):
                self._queue_points()

    def _pruner(self) -> optuna.pruners.BasePruner:
        return self.spec.pruning().optuna()  # the class search.pruner names (trainlab.search._pruners)

    def _record_box(self, r: int, box: dict[str, Any]) -> None:
        self.store.storage.set_study_system_attr(self.study_id, f"{BOXES}{r}", box)

    def _queue_points(self) -> None:
        points = self.spec.strategy.points(self.space) or []
        dists = self.space.distributions()
        for slot, point in enumerate(points):
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=dict(point), distributions={k: dists[k] for k in point},
                system_attrs={SLOT: slot, ATTEMPT: 0}))
        self.store.storage.set_study_system_attr(self.study_id, QUEUED, len(points))

    # ---- claiming ---------------------------------------------------------------------------------
    def _trials(self) -> list[FrozenTrial]:
        return self.store.storage.get_all_trials(self.study_id, deepcopy=False)

    def _fail(self, trial_id: int, reason: str, *, retry: bool, counts: bool = True, impute: bool = False,
              trial: optuna.Trial | None = None) -> bool:
        """Mark a RUNNING trial FAILED with its reason; False if it had finished meanwhile."""
        st = self.store.storage
        try:
            st.set_trial_user_attr(trial_id, REASON, reason)
            st.set_trial_system_attr(trial_id, RETRY, bool(retry))
            st.set_trial_system_attr(trial_id, COUNTS, bool(counts))
            if impute:
                st.set_trial_system_attr(trial_id, IMPUTE, True)
            if trial is not None:
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                st.set_trial_state_values(trial_id, TrialState.FAIL)
            return True
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            return False

    def _claim(self) -> tuple[list[TrialJob], Ledger]:
        st = self.store.storage
        trials = self._trials()
        stale = self.store.stale_trials(self.study_id, trials)
        for tid, why in stale.items():
            if self._fail(tid, why, retry=True):
                log.warning("trial %s: %s; it will be retried", st.get_trial(tid).number, why)
        if stale:
            trials = self._trials()
        ledger = Ledger(trials, self.spec.max_retries)
        if ledger.decided >= self.budget:
            return [], ledger
        for s in ledger.needs_retry():
            last = s.attempts[-1]
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.WAITING, params=dict(last.params), distributions=dict(last.distributions),
                system_attrs={SLOT: s.slot, ATTEMPT: len(s.attempts), RETRY_OF: last.number}))
        waiting = ledger.waiting + len(ledger.needs_retry())
        K = self.spec.population
        new_slots: list[int] = []
        slot = ledger.next_slot
        while waiting + len(new_slots) < K and slot < self.budget and not self.spec.strategy.finite \
                and self.spec.strategy.slot_open(slot, self.budget, ledger.is_decided):
            new_slots.append(slot)
            slot += 1
        for new in new_slots:
            self.study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={SLOT: new,
                                                                                                   ATTEMPT: 0}))
        jobs = []
        for _ in range(min(K, waiting + len(new_slots))):
            trial = self.study.ask()
            tid = trial._trial_id
            self._inflight[tid] = trial
            self.store.beat([tid])
            st.set_trial_system_attr(tid, WORKER, worker_identity())
            frozen = st.get_trial(tid)
            if SLOT not in frozen.system_attrs:  # queued by someone else (optuna's enqueue_trial)
                st.set_trial_system_attr(tid, SLOT, slot)
                slot += 1
                frozen = st.get_trial(tid)
            jobs.append(self._job(trial, frozen))
        return jobs, ledger

    def _job(self, trial: optuna.Trial, frozen: FrozenTrial) -> TrialJob:
        slot = int(frozen.system_attrs[SLOT])
        self.sampler.assign(trial._trial_id, slot)
        params = dict(frozen.params)  # a queued point or a retry carries its values already
        if not self.spec.strategy.finite:
            for p in self.space.sampled:
                if p.name not in params:
                    params[p.name] = _suggest(trial, p)
        seed = derive_seed(self.spec.seed, slot, "member")
        self.store.storage.set_trial_user_attr(trial._trial_id, SEED, seed)
        report = None
        if self.spec.pruning().prunes or self.spec.report:
            report = self._reporter(trial)
        return TrialJob(number=frozen.number, trial_id=trial._trial_id, slot=slot,
                        attempt=int(frozen.system_attrs.get(ATTEMPT, 0)), seed=seed, params=params,
                        values=self.space.decode(params), _report=report)

    def _reporter(self, trial: optuna.Trial) -> Callable[[int, float], bool]:
        prune = self.spec.pruning().prunes

        def report(step: int, value: float) -> bool:
            try:
                trial.report(float(value), int(step))
                return prune and trial.should_prune()
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                return False

        return report

    # ---- telling ----------------------------------------------------------------------------------
    def _tell(self, job: TrialJob, outcome: TrialOutcome) -> None:
        trial = self._inflight.get(job.trial_id)
        # the asked trial (always in flight here: only _tell and _abandon drop it), else its number
        told: optuna.Trial | int = trial if trial is not None else job.number
        st = self.store.storage
        try:
            for k, v in outcome.attrs.items():
                st.set_trial_user_attr(job.trial_id, k, v)
            if outcome.state == Outcome.COMPLETE:
                self.study.tell(told, outcome.value)
            elif outcome.state == Outcome.PRUNED:
                self.study.tell(told, state=TrialState.PRUNED)
            else:
                self._fail(job.trial_id, outcome.reason or "failed", retry=outcome.retry, counts=outcome.counts,
                           impute=outcome.impute, trial=trial)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as e:
            if "Cannot tell" not in str(e) and not isinstance(e, optuna.exceptions.UpdateFinishedTrialError):
                raise
            log.warning("trial %s was declared dead while it ran (no heartbeat for %s s?); its result is "
                        "dropped and its retry counts instead", job.number, self.spec.grace)
        finally:
            self._inflight.pop(job.trial_id, None)

    def _abandon(self, reason: str, *, counts: bool) -> None:
        """Fail every trial this worker holds (it is stopping): they will be retried."""
        for tid, trial in list(self._inflight.items()):
            with contextlib.suppress(Exception):
                self._fail(tid, reason, retry=True, counts=counts, trial=trial)
            self._inflight.pop(tid, None)

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> TuneResult:
        """Work on the study until it has ``trials`` results, then write the outputs."""
        t_start = self.t_start = time.perf_counter()
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from trainlab.search import _stop

        try:
            with _stop.graceful_stop():
                self._open()
                _stop.check()  # a signal while the study was opened or created stops here
                bar = self._bar()
                try:
                    self._loop(bar)
                except KeyboardInterrupt:
                    self._abandon(INTERRUPTED, counts=False)
                    raise
                except BaseException as e:
                    self._abandon(f"error: {type(e).__name__}: {e}", counts=True)
                    raise
                finally:
                    if bar is not None:
                        bar.close()
                return self._finish(time.perf_counter() - t_start)
        finally:
            optuna.logging.set_verbosity(verbosity)
            if hasattr(self, "store"):
                self.store.close()

    def _bar(self) -> _ProgressBar | None:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.budget, desc=f"study {self.study_name}", unit="trial", dynamic_ncols=True,
                    disable=None)

    def _update_bar(self, bar: _ProgressBar | None, ledger: Ledger) -> None:
        if bar is None:
            return
        bar.n = min(ledger.decided, self.budget)
        best = None
        for s in ledger.slots.values():
            t = s.result
            if t.state == TrialState.COMPLETE and t.value is not None:
                if best is None or (t.value > best if self.spec.maximize else t.value < best):
                    best = t.value
        bar.set_postfix(best=f"{best:.4f}" if best is not None else "-", running=ledger.count(SlotState.LIVE),
                        failed=ledger.count(SlotState.FAILED), refresh=False)
        bar.refresh()

    def _loop(self, bar: _ProgressBar | None) -> None:
        poll = min(2.0, max(0.2, self.spec.heartbeat / 2))
        from trainlab.search import _stop

        while True:
            _stop.check()
            t0 = time.perf_counter()
            with _deferred_interrupts(), self.store.lock(self.study_name):
                jobs, ledger = self._claim()
            self.timing["claim"] += time.perf_counter() - t0
            self._update_bar(bar, ledger)
            if ledger.decided >= self.budget and not jobs:
                return
            if not jobs:
                t0 = time.perf_counter()
                _stop.sleep(poll)  # the rest is running elsewhere, or a round is not finished yet
                self.timing["wait"] += time.perf_counter() - t0
                continue
            t0 = time.perf_counter()
            with _Heartbeats(self.store, [j.trial_id for j in jobs]):
                outcomes = self.evaluator(jobs)
            self.timing["evaluate"] += time.perf_counter() - t0
            if len(outcomes) != len(jobs):
                raise RuntimeError(f"the evaluator returned {len(outcomes)} outcomes for {len(jobs)} trials")
            t0 = time.perf_counter()
            with _deferred_interrupts():
                for job, outcome in zip(jobs, outcomes):
                    self._tell(job, outcome)
                    if self.tensorboard is not None:
                        self.tensorboard.trial(job.number, job.values, outcome.state, outcome.value, outcome.attrs)
            self.timing["tell"] += time.perf_counter() - t0
            self.ran += len(jobs)
            for job, o in zip(jobs, outcomes):
                if o.state == Outcome.FAILED and o.retry:
                    self._error_slots.add(job.slot)
                    last_error = o.reason
                else:
                    self._error_slots.clear()
            if len(self._error_slots) >= 3:  # a bug, not bad luck: stop rather than fail the whole budget
                raise RuntimeError(f"trials of {len(self._error_slots)} different slots in a row failed with an "
                                   f"error; stopping this worker (last: {last_error})")

    # ---- the end ----------------------------------------------------------------------------------
    def snapshot(self, *, seconds: float = 0.0, final: bool = False) -> StudySnapshot:
        """The study as it stands, as plain data (the report is a function of it: ``_report.build_result``).

        The trials and the study's attributes are read once. With ``final`` and the study finished, the
        best config's single test evaluation runs first unless the study holds it already (it is stored
        in the study: every worker and every later report shows the same numbers). Without, the snapshot
        carries the stored evaluation when it is of the current best trial.
        """
        trials = self._trials()
        spec = self.spec
        best = best_trial(trials, spec.maximize)
        finished = Ledger(trials, spec.max_retries).decided >= self.budget
        test = None
        if best is not None and finished and final:
            t0 = time.perf_counter()
            test = self._final_test(best)
            self.timing["final"] += time.perf_counter() - t0
        attrs = dict(self.store.storage.get_study_system_attrs(self.study_id))
        if best is not None and not (finished and final):
            rec = attrs.get(FINAL)
            test = rec if rec and rec.get("trial") == best.number else None
        ev = self.evaluator
        best_config = None
        if best is not None and self.out is not None and hasattr(ev, "config"):
            best_config = ev.config(self.space.decode(best.params), int(best.user_attrs[SEED])).to_dict()
        return StudySnapshot(
            study=self.study_name, storage=self.store.display, storage_kind=self.store.kind, spec=spec,
            space=self.space, budget=self.budget, trials=list(trials), attrs=attrs, test=test,
            best_config=best_config, out=self.out, timing=dict(self.timing),
            evaluator_timing=dict(getattr(ev, "timing", {})), ran=self.ran, seconds=seconds,
            t_start=getattr(self, "t_start", time.perf_counter()))

    def _final_test(self, best: FrozenTrial) -> dict[str, Any] | None:
        """The best config's single test evaluation: stored in the study, so every worker (and every later
        report) shows the same numbers and the test split is evaluated once per best config."""
        from trainlab.search import _stop

        ev = self.evaluator
        if not self.spec.final_test or not hasattr(ev, "final_test"):
            return None
        st, sid = self.store.storage, self.study_id
        rec = st.get_study_system_attrs(sid).get(FINAL)
        if rec and rec.get("trial") == best.number:
            return rec
        values = self.space.decode(best.params)
        seed = int(best.user_attrs.get(SEED, derive_seed(self.spec.seed, int(best.system_attrs[SLOT]), "member")))
        _stop.check()  # Ctrl-C during the outputs stops too (rerunning the command writes them)
        res = ev.final_test(values, seed, out=self.out / "best" if self.out is not None else None)
        res.update(trial=best.number, slot=int(best.system_attrs.get(SLOT, best.number)), search_value=best.value)
        with self.store.lock(self.study_name):
            rec = st.get_study_system_attrs(sid).get(FINAL)
            if rec and rec.get("trial") == best.number:
                return rec  # another worker finished first: its numbers stand
            st.set_study_system_attr(sid, FINAL, json.loads(json.dumps(res)))
        return res

    def _finish(self, seconds: float, *, final: bool = True) -> TuneResult:
        snap = self.snapshot(seconds=seconds, final=final)
        t0 = time.perf_counter()
        result = build_result(snap)
        self.timing["outputs"] += time.perf_counter() - t0
        return result

    def report(self) -> TuneResult:
        """Write the outputs of the study as it stands, without running trials (it may be running
        elsewhere); the test split is not touched unless the final evaluation already exists."""
        t0 = self.t_start = time.perf_counter()
        self._open(create=False)
        try:
            return self._finish(time.perf_counter() - t0, final=False)
        finally:
            self.store.close()
