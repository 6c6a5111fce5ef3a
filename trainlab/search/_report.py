"""A study's outputs: trials.csv, summary.json, best.toml and figures, made from a :class:`StudySnapshot`.

The report is a function of the snapshot alone (``build_result(snapshot)``): it reads no storage and
runs no trial. The tuner takes the snapshot (and runs the best config's single test evaluation before
it, when the study is finished); this module and ``_plots`` import nothing of the tuner.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
import time
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from trainlab.search import _plots, _stop
from trainlab.search._results import StudySnapshot, TuneResult, best_trial, value_of
from trainlab.search._samplers import derive_seed
from trainlab.search._space import SearchSpace
from trainlab.search._strategies import CoarseToFine
from trainlab.search._vocab import ATTEMPT, BOXES, REASON, RETRY, RETRY_OF, SEED, SLOT, SlotState

__all__ = ["build_result", "summarize", "trial_rows", "best_trial", "param_importances", "write_csv"]

log = logging.getLogger("trainlab.search")


def _display(space: SearchSpace, name: str, value: Any) -> Any:
    if name in space:
        try:
            value = space[name].decode(value)
        except ValueError:
            pass
    return value


def trial_rows(trials: list[FrozenTrial], space: SearchSpace, standing: set[int]) -> list[dict[str, Any]]:
    """One row per trial; ``counts`` marks the trial that stands for its slot."""
    names = [p.name for p in space.sampled]
    for t in trials:
        names += [k for k in t.params if k not in names]
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        row: dict[str, Any] = {"number": t.number, "slot": t.system_attrs.get(SLOT), "attempt":
                               t.system_attrs.get(ATTEMPT), "state": t.state.name, "value": t.value}
        for n in names:
            v = _display(space, n, t.params[n]) if n in t.params else None
            row[n] = json.dumps(v) if isinstance(v, (list, dict)) else v
        row.update(seed=t.user_attrs.get(SEED), population=t.user_attrs.get("population"),
                   population_size=t.user_attrs.get("population_size"),
                   train_seconds=t.user_attrs.get("train_seconds"), fail_reason=t.user_attrs.get(REASON),
                   retry_of=t.system_attrs.get(RETRY_OF), counts=t.number in standing,
                   started=t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                   completed=t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
                   duration_s=round(t.duration.total_seconds(), 3) if t.duration else None)
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    from trainlab.io import atomic_write_text

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    atomic_write_text(path, buf.getvalue())


def param_importances(trials: list[FrozenTrial], *, maximize: bool, limit: int, seed: int) -> dict[str, Any] | None:
    """fANOVA importances (32 trees, depth 8) over at most ``limit`` completed trials (a seeded
    random subset beyond that), so the time stays bounded at any study size."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and t.params]
    if len(done) < 4:
        return None
    if len(done) > limit:
        rng = np.random.default_rng(derive_seed(seed, "importance"))
        done = [done[i] for i in sorted(rng.choice(len(done), size=limit, replace=False))]
    varying = [k for k in done[0].params if len({json.dumps(t.params.get(k)) for t in done}) > 1]
    if not varying:
        return None
    t0 = time.perf_counter()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="maximize" if maximize else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.value)
                      for t in done if set(varying) <= set(t.params)])
    try:
        if len(varying) == 1:
            imp = {varying[0]: 1.0}
        else:
            ev = optuna.importance.FanovaImportanceEvaluator(n_trees=32, max_depth=8, seed=0)
            imp = optuna.importance.get_param_importances(study, evaluator=ev, params=varying)
    except (RuntimeError, ValueError) as e:
        log.warning("parameter importance skipped: %s", e)
        return None
    return {"method": "fanova (32 trees, depth 8)", "trials": len(study.trials),
            "seconds": round(time.perf_counter() - t0, 3),
            "importance": {k: round(float(v), 4) for k, v in imp.items()}}


def summarize(snap: StudySnapshot) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """summary.json's content and trials.csv's rows, from the snapshot alone (no timing of the outputs yet)."""
    spec, space, trials, ledger, best = snap.spec, snap.space, snap.trials, snap.ledger, snap.best
    standing = {s.result.number for s in ledger.slots.values() if s.decided}
    rows = trial_rows(trials, space, standing)
    counts = {"budget": snap.budget, "with_result": ledger.decided, "complete": ledger.count(SlotState.COMPLETE),
              "pruned": ledger.count(SlotState.PRUNED), "failed": ledger.count(SlotState.FAILED),
              "running": ledger.count(SlotState.LIVE), "waiting_retry": ledger.count(SlotState.RETRY),
              "trial_records": len(trials), "retries": sum(1 for t in trials if RETRY_OF in t.system_attrs)}
    best_info = None
    if best is not None:
        best_info = {"number": best.number, "slot": best.system_attrs.get(SLOT), "value": best.value,
                     "params": space.decode(best.params), "seed": best.user_attrs.get(SEED)}
    top = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                 key=lambda t: -value_of(t) if spec.maximize else value_of(t))[:10]
    rounds = None
    if isinstance(spec.strategy, CoarseToFine):
        sizes = spec.strategy.round_sizes(snap.budget)
        rounds = []
        for r, n in enumerate(sizes):
            start = sum(sizes[:r])
            rounds.append({"round": r, "slots": [start, start + n - 1], "box": snap.attrs.get(f"{BOXES}{r}")})
    importance = None
    if snap.out is not None:  # bounded, but not free: only when the outputs are written
        importance = param_importances(trials, maximize=spec.maximize, limit=spec.importance_trials, seed=spec.seed)
    worker, ev_timing = snap.timing, snap.evaluator_timing
    fit = ev_timing.get("fit")
    machinery = worker.get("claim", 0.0) + worker.get("tell", 0.0)
    overhead = machinery + (worker.get("evaluate", 0.0) - fit if fit is not None else 0.0)
    timing = {"loop_s": round(snap.seconds, 3), "trials_run_here": snap.ran,
              **{f"{k}_s": round(v, 3) for k, v in worker.items() if k != "outputs"},
              **{f"{k}_s": round(v, 3) for k, v in ev_timing.items()}}
    if snap.ran:
        timing["search_overhead_per_trial_s"] = round(machinery / snap.ran, 4)
        if fit is not None:
            timing["overhead_per_trial_s"] = round(overhead / snap.ran, 4)
    summary: dict[str, Any] = {
        "study": snap.study, "storage": snap.storage, "finished": snap.finished,
        "strategy": spec.strategy.describe(snap.budget), "space": space.describe(), "metric": spec.metric,
        "direction": spec.direction, "objective": spec.objective, "pruner": spec.pruner, "seed": spec.seed,
        "population": spec.population, "trials": counts, "best": best_info,
        "test": snap.test, "selection": "validation split only; the test split is evaluated once, for the best config",
        "top": [{"number": t.number, "slot": t.system_attrs.get(SLOT), "value": t.value,
                 "params": space.decode(t.params)} for t in top],
        "failures": [{"number": t.number, "slot": t.system_attrs.get(SLOT), "reason": t.user_attrs.get(REASON),
                      "retried": t.system_attrs.get(RETRY, True)}
                     for t in trials if t.state == TrialState.FAIL][:100],
        "rounds": rounds, "importance": importance, "timing": timing,
    }
    if snap.storage_kind in ("sqlite", "postgresql", "mysql"):
        summary["dashboard"] = f"optuna-dashboard {snap.storage}"
    return summary, rows


def build_result(snap: StudySnapshot) -> TuneResult:
    """The study's :class:`TuneResult`; with ``snap.out``, its files too (trials.csv, best.toml, figures,
    and summary.json last)."""
    t_out = time.perf_counter()
    summary, rows = summarize(snap)
    files: dict[str, str] = {}
    if snap.out is not None:
        files = _write(snap, summary, rows)
    outputs = snap.timing.get("outputs", 0.0) + time.perf_counter() - t_out
    summary["timing"]["outputs_s"] = round(outputs, 3)
    summary["timing"]["total_s"] = round(time.perf_counter() - snap.t_start, 3)
    if snap.out is not None:
        from trainlab.io import atomic_write_text

        atomic_write_text(snap.out / "summary.json", json.dumps(_jsonable(summary), indent=1))
    return TuneResult(study=snap.study, storage=snap.storage, finished=snap.finished, best=summary["best"],
                      test=snap.test, counts=summary["trials"], summary=summary, trials=rows, out=snap.out,
                      files=files)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


def _write(snap: StudySnapshot, summary: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, str]:
    from trainlab.io import atomic_write_text

    out, best = snap.out, snap.best
    assert out is not None
    _stop.check()
    out.mkdir(parents=True, exist_ok=True)
    files = {"trials": str(out / "trials.csv"), "summary": str(out / "summary.json")}
    write_csv(rows, out / "trials.csv")
    if best is not None and snap.best_config is not None:
        from trainlab.config import dumps

        head = (f"# The best trial (#{best.number}) of study '{snap.study}': {snap.spec.metric} = "
                f"{best.value:.4f} (validation).\n# Train it again, alone, with the same seed: "
                f"trainlab train {out / 'best.toml'}\n")
        atomic_write_text(out / "best.toml", head + dumps(snap.best_config))
        files["best_config"] = str(out / "best.toml")
    _stop.check()
    files.update(_plots.draw_all(snap, summary, out))
    _stop.check()
    summary["files"] = {k: str(Path(v).relative_to(out)) if str(v).startswith(str(out)) else v
                        for k, v in files.items()}
    return files
