"""Trials as populations: K asked trials train together, one member each.

Trials are grouped by everything that is not a per-member value (widths,
optimizer, batch size, ...: the schema's ``per_member = False`` keys) and by
whether each per-member value is zero or absent (a zero dropout rate or noise
level removes a layer, and a layer present in a population would draw from the
member's random stream). Each group trains as one population whose per-member
keys are lists and whose ``population.seeds`` are the trials' own seeds (derived
from the study seed and the slot). So a trial's result does not depend on which
other trials share its population: it equals the trial trained alone.

Selection sees the validation split only: trials train on ``train`` and are
evaluated on ``val``; the test split is evaluated once, by :meth:`final_test`,
for the best configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import copy
import json
import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainlab.config import RunConfig, get_key, per_member_keys, set_key
from trainlab.errors import ConfigError
from trainlab.search._jobs import TrialJob, TrialOutcome
from trainlab.search._spec import apply_params
from trainlab.train import Callback, History, Trainer

__all__ = ["PopulationEvaluator", "group_key", "per_member_keys", "population_config", "trial_config"]

log = logging.getLogger("trainlab.search")
_OOM = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None),
                         MemoryError) if t is not None)
_CURVE_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")


def group_key(cfg: RunConfig) -> str:
    """Trials with equal keys can share a population (see the module docstring)."""
    c = cfg.to_dict()
    c.pop("population", None)
    for k in per_member_keys():
        v = get_key(c, k)
        set_key(c, k, "absent" if v is None else "zero" if v == 0 else "set")
    return json.dumps(c, sort_keys=True)


def trial_config(base_given: Mapping[str, Any], values: Mapping[str, Any], seed: int,
                 device: str | None = None) -> RunConfig:
    """The config of one trial trained alone (``population.size = 1`` with its own seed), from the
    search's base config as given (before validation) and the trial's parameter values."""
    given = apply_params(base_given, values)
    if device is not None:
        given["device"] = device
    given["population"] = {"size": 1, "seeds": [int(seed)]}
    return RunConfig.from_dict(given)


def population_config(cfgs: Sequence[RunConfig], seeds: Sequence[int]) -> RunConfig:
    """One config training the trials ``cfgs`` (of one :func:`group_key`) as members with their own
    ``seeds``: each per-member key that differs between them becomes a list (:meth:`RunConfig.stack`)."""
    return RunConfig.stack(cfgs, seeds)


class _Pruning(Callback):
    """Reports each member's metric after every evaluation; stops the members the pruner prunes."""

    def __init__(self, jobs: Sequence[TrialJob], metric: str) -> None:
        self.jobs, self.metric = list(jobs), metric
        self.pruned: set[int] = set()
        self.evaluations = 0

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.evaluations += 1
        values = record.get(self.metric)
        if values is None:
            return
        stop = torch.zeros(len(self.jobs), dtype=torch.bool)
        for m, job in enumerate(self.jobs):
            if m in self.pruned or m in trainer.history.diverged or values[m] is None:
                continue
            if math.isfinite(values[m]) and job.report(self.evaluations, values[m]):
                self.pruned.add(m)
                stop[m] = True
                trainer.history.stopped[m] = {"step": int(record["step"]), "epoch": record["epoch"],
                                              "reason": "pruned"}
        if bool(stop.any()):
            trainer.stop_members(stop.to(trainer.device))


def _clean(v: Any) -> float | None:
    return round(float(v), 6) if v is not None and math.isfinite(v) else None


class PopulationEvaluator:
    """Train a batch of trials of ``base_config`` as populations; see the module docstring.

    ``objective``: ``"final"`` scores a trial by ``metric`` after its last epoch (after
    early stopping restored its best weights, if enabled), the textbook's choice;
    ``"best"`` by its best evaluation.
    """

    def __init__(self, base_config: Mapping[str, Any], *, metric: str = "val_acc", objective: str = "final",
                 device: str | None = None) -> None:
        if not metric.startswith("val_"):
            raise ConfigError(f"search.metric must be a validation metric (val_acc or val_loss), got {metric!r}")
        self.base = copy.deepcopy(dict(base_config))
        self.metric, self.objective, self.device = metric, objective, device
        self.maximize = metric.endswith("acc")
        self.timing = {"build": 0.0, "fit": 0.0}
        self.populations = 0
        self._tag = f"{socket.gethostname()}:{os.getpid()}"

    # ---- one batch ------------------------------------------------------------------------------
    def __call__(self, jobs: Sequence[TrialJob]) -> list[TrialOutcome]:
        outcomes: list[TrialOutcome | None] = [None] * len(jobs)
        groups: dict[str, list[tuple[int, RunConfig]]] = {}
        for i, job in enumerate(jobs):
            try:
                cfg = trial_config(self.base, job.values, job.seed, self.device)
            except ConfigError as e:
                outcomes[i] = TrialOutcome.failed(f"invalid config: {str(e).removeprefix('config: ')}", impute=True)
                continue
            groups.setdefault(group_key(cfg), []).append((i, cfg))
        for members in groups.values():
            idx = [i for i, _ in members]
            for i, out in zip(idx, self._train([jobs[i] for i in idx], [c for _, c in members])):
                outcomes[i] = out
        return [o for o in outcomes if o is not None]

    def _train(self, jobs: Sequence[TrialJob], cfgs: Sequence[RunConfig]) -> list[TrialOutcome]:
        from trainlab.build import build_run
        from trainlab.search._stop import StopOnSignal

        self.populations += 1
        pop_id = f"{self._tag}:{self.populations}"
        try:
            cfg = population_config(cfgs, [j.seed for j in jobs])
            pruning = _Pruning(jobs, self.metric)
            t0 = time.perf_counter()
            run = build_run(cfg, callbacks=[pruning, StopOnSignal()])  # Ctrl-C: stop at a step boundary
            t1 = time.perf_counter()
            history = run.trainer.fit(run.splits.train, run.splits.val)  # no test split: selection is on val
            t2 = time.perf_counter()
        except _OOM:
            if len(jobs) > 1:  # try again in halves: the population may be what does not fit
                h = len(jobs) // 2
                log.warning("out of memory with a population of %d; trying %d and %d", len(jobs), h, len(jobs) - h)
                return self._train(jobs[:h], cfgs[:h]) + self._train(jobs[h:], cfgs[h:])
            return [TrialOutcome.failed("out of memory (alone, in a population of 1)", impute=True)]
        except ConfigError as e:
            return [TrialOutcome.failed(f"invalid config: {str(e).removeprefix('config: ')}", impute=True)
                    for _ in jobs]
        except Exception as e:  # noqa: BLE001 - a population's error fails its trials (retried), not the study
            log.exception("population %s failed", pop_id)
            return [TrialOutcome.failed(f"error: {type(e).__name__}: {e}", retry=True) for _ in jobs]
        self.timing["build"] += t1 - t0
        self.timing["fit"] += t2 - t1
        per_trial = (t2 - t1) / len(jobs)
        outcomes = []
        for m, job in enumerate(jobs):
            attrs: dict[str, Any] = {"population": pop_id, "population_size": len(jobs), "train_seconds": round(per_trial, 4),
                     "curves": self._curves(history, m)}
            if m in history.diverged:
                d = history.diverged[m]
                outcomes.append(TrialOutcome.failed(
                    f"diverged at epoch {d['epoch']:g} (step {d['step']}, loss {d['loss']})", impute=True, **attrs))
            elif m in pruning.pruned:
                outcomes.append(TrialOutcome.pruned(**attrs))
            else:
                value = self._score(history, m)
                if self.metric not in history.metrics:
                    outcomes.append(TrialOutcome.failed(
                        f"{self.metric} was not measured (the loss '{cfgs[m].loss.name}' has no accuracy); "
                        "use search.metric = 'val_loss'", **attrs))
                elif value is None:
                    outcomes.append(TrialOutcome.failed(f"{self.metric} is not finite", impute=True, **attrs))
                else:
                    outcomes.append(TrialOutcome.complete(value, **attrs))
        return outcomes

    def _score(self, history: History, m: int) -> float | None:
        if self.objective == "final":
            v = (history.final.get(self.metric) or [None] * (m + 1))[m]
        else:
            a = history[self.metric][:, m]
            a = a[np.isfinite(a)]
            v = (a.max() if self.maximize else a.min()) if a.size else None
        return float(v) if v is not None and math.isfinite(v) else None

    @staticmethod
    def _curves(history: History, m: int) -> dict[str, list[float | None]]:
        out: dict[str, list[float | None]] = {"epoch": [round(float(r["epoch"]), 6) for r in history.records]}
        for k in _CURVE_METRICS:
            if k in history.metrics:
                out[k] = [_clean(r[k][m]) if k in r else None for r in history.records]
        return out

    # ---- the best config, once ------------------------------------------------------------------
    def config(self, values: Mapping[str, Any], seed: int) -> RunConfig:
        """The resolved config of a trial alone: what best.toml holds."""
        return trial_config(self.base, values, seed, self.device)

    def final_test(self, values: Mapping[str, Any], seed: int, *, out: Path | None = None) -> dict[str, Any]:
        """Train the chosen config alone (the population invariant makes it the same model as in its
        trial) and evaluate the test split once. Saves the model into ``out`` when given."""
        from trainlab.build import build_run
        from trainlab.search._stop import StopOnSignal
        from trainlab.io import atomic_write_text, save_model

        cfg = self.config(values, seed)
        t0 = time.perf_counter()
        run = build_run(cfg, callbacks=[StopOnSignal()])
        history = run.trainer.fit(run.splits.train, run.splits.val)
        res: dict[str, Any] = {"val": {k.removeprefix("val_"): _clean(v[0]) for k, v in history.final.items()
                                       if k.startswith("val_")}}
        if run.splits.test is None:
            res["test"] = None
            res["note"] = "no test split (data.test = 0)"
        else:
            ev = run.trainer.evaluate(run.splits.test.x, run.splits.test.y)
            res["test"] = {k: _clean(float(v[0])) for k, v in ev.items()}
            res["test_examples"] = int(run.splits.test.x.shape[0])
        res["seconds"] = round(time.perf_counter() - t0, 3)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "config.toml", cfg.to_toml())
            save_model(out, run.model, preprocessor=run.splits.preprocessor, num_classes=run.splits.num_classes,
                       extra={"data": cfg.data.name, "seed": cfg.seed})
        return res
