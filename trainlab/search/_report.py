"""A study's outputs: trials.csv, summary.json, best.toml, figures, and the single test evaluation."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from trainlab.search import _stop
from trainlab.search._samplers import SLOT, derive_seed
from trainlab.search._space import SearchSpace

if TYPE_CHECKING:
    from trainlab.search._tuner import Tuner, TuneResult

__all__ = ["build_result", "trial_rows", "best_trial", "param_importances", "write_csv"]

log = logging.getLogger("trainlab.search")


def _display(space: SearchSpace, name: str, value: Any) -> Any:
    if name in space:
        try:
            value = space[name].decode(value)
        except ValueError:
            pass
    return value


def best_trial(trials: list[FrozenTrial], maximize: bool) -> FrozenTrial | None:
    """The best COMPLETE trial (ties: the lowest slot)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not done:
        return None
    return min(done, key=lambda t: (-t.value if maximize else t.value, int(t.system_attrs.get(SLOT, t.number))))


def trial_rows(trials: list[FrozenTrial], space: SearchSpace, standing: set[int]) -> list[dict[str, Any]]:
    """One row per trial; ``counts`` marks the trial that stands for its slot."""
    from trainlab.search._tuner import ATTEMPT, REASON, RETRY_OF

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
        row.update(seed=t.user_attrs.get("seed"), population=t.user_attrs.get("population"),
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


def _final(tuner: "Tuner", best: FrozenTrial) -> dict[str, Any] | None:
    """The best config's single test evaluation: stored in the study, so every worker (and every later
    report) shows the same numbers and the test split is evaluated once per best config."""
    from trainlab.search._tuner import FINAL

    ev = tuner.evaluator
    if not tuner.spec.final_test or not hasattr(ev, "final_test"):
        return None
    st, sid = tuner.store.storage, tuner.study_id
    rec = st.get_study_system_attrs(sid).get(FINAL)
    if rec and rec.get("trial") == best.number:
        return rec
    values = tuner.space.decode(best.params)
    seed = int(best.user_attrs.get("seed", derive_seed(tuner.spec.seed, int(best.system_attrs[SLOT]), "member")))
    _stop.check()  # Ctrl-C during the outputs stops too (rerunning the command writes them)
    res = ev.final_test(values, seed, out=tuner.out / "best" if tuner.out is not None else None)
    res.update(trial=best.number, slot=int(best.system_attrs.get(SLOT, best.number)), search_value=best.value)
    with tuner.store.lock(tuner.study_name):
        rec = st.get_study_system_attrs(sid).get(FINAL)
        if rec and rec.get("trial") == best.number:
            return rec  # another worker finished first: its numbers stand
        st.set_study_system_attr(sid, FINAL, json.loads(json.dumps(res)))
    return res


def build_result(tuner: "Tuner", seconds: float, *, final: bool = True) -> "TuneResult":
    from trainlab.search._tuner import BOXES, FINAL, REASON, Ledger, TuneResult

    spec, space = tuner.spec, tuner.space
    trials = tuner._trials()
    ledger = Ledger(trials, spec.max_retries)
    finished = ledger.decided >= tuner.budget
    standing = {s.result.number for s in ledger.slots.values() if s.decided}
    best = best_trial(trials, spec.maximize)
    test = None
    if best is not None and finished and final:
        t0 = time.perf_counter()
        test = _final(tuner, best)
        tuner.timing["final"] += time.perf_counter() - t0
    elif best is not None:
        rec = tuner.store.storage.get_study_system_attrs(tuner.study_id).get(FINAL)
        test = rec if rec and rec.get("trial") == best.number else None
    t_out = time.perf_counter()
    rows = trial_rows(trials, space, standing)
    counts = {"budget": tuner.budget, "with_result": ledger.decided, "complete": ledger.count("complete"),
              "pruned": ledger.count("pruned"), "failed": ledger.count("failed"), "running": ledger.count("live"),
              "waiting_retry": ledger.count("retry"), "trial_records": len(trials),
              "retries": sum(1 for t in trials if "trainlab:retry_of" in t.system_attrs)}
    best_info = None
    if best is not None:
        best_info = {"number": best.number, "slot": best.system_attrs.get(SLOT), "value": best.value,
                     "params": space.decode(best.params), "seed": best.user_attrs.get("seed")}
    top = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                 key=lambda t: -t.value if spec.maximize else t.value)[:10]
    attrs = tuner.store.storage.get_study_system_attrs(tuner.study_id)
    rounds = None
    if spec.strategy.name == "coarse-to-fine":
        sizes = spec.strategy.round_sizes(tuner.budget)
        rounds = []
        for r, n in enumerate(sizes):
            start = sum(sizes[:r])
            rounds.append({"round": r, "slots": [start, start + n - 1], "box": attrs.get(f"{BOXES}{r}")})
    importance = None
    if tuner.out is not None:  # bounded, but not free: only when the outputs are written
        importance = param_importances(trials, maximize=spec.maximize, limit=spec.importance_trials, seed=spec.seed)
    ev_timing = getattr(tuner.evaluator, "timing", {})
    fit = ev_timing.get("fit")
    machinery = tuner.timing["claim"] + tuner.timing["tell"]
    overhead = machinery + (tuner.timing["evaluate"] - fit if fit is not None else 0.0)
    timing = {"loop_s": round(seconds, 3), "trials_run_here": tuner.ran,
              **{f"{k}_s": round(v, 3) for k, v in tuner.timing.items() if k != "outputs"},
              **{f"{k}_s": round(v, 3) for k, v in ev_timing.items()}}
    if tuner.ran:
        timing["search_overhead_per_trial_s"] = round(machinery / tuner.ran, 4)
        if fit is not None:
            timing["overhead_per_trial_s"] = round(overhead / tuner.ran, 4)
    summary: dict[str, Any] = {
        "study": tuner.study_name, "storage": tuner.store.display, "finished": finished,
        "strategy": spec.strategy.describe(tuner.budget), "space": space.describe(), "metric": spec.metric,
        "direction": spec.direction, "objective": spec.objective, "pruner": spec.pruner, "seed": spec.seed,
        "population": spec.population, "trials": counts, "best": best_info,
        "test": test, "selection": "validation split only; the test split is evaluated once, for the best config",
        "top": [{"number": t.number, "slot": t.system_attrs.get(SLOT), "value": t.value,
                 "params": space.decode(t.params)} for t in top],
        "failures": [{"number": t.number, "slot": t.system_attrs.get(SLOT), "reason": t.user_attrs.get(REASON),
                      "retried": t.system_attrs.get("trainlab:retry", True)}
                     for t in trials if t.state == TrialState.FAIL][:100],
        "rounds": rounds, "importance": importance, "timing": timing,
    }
    if tuner.store.kind in ("sqlite", "postgresql", "mysql"):
        summary["dashboard"] = f"optuna-dashboard {tuner.store.display}"
    files: dict[str, str] = {}
    if tuner.out is not None:
        files = _write(tuner, summary, rows, trials, best)
    tuner.timing["outputs"] += time.perf_counter() - t_out
    summary["timing"]["outputs_s"] = round(tuner.timing["outputs"], 3)
    summary["timing"]["total_s"] = round(time.perf_counter() - tuner.t_start, 3)
    if tuner.out is not None:
        from trainlab.io import atomic_write_text

        atomic_write_text(tuner.out / "summary.json", json.dumps(_jsonable(summary), indent=1))
    return TuneResult(study=tuner.study_name, storage=tuner.store.display, finished=finished, best=best_info,
                      test=test, counts=counts, summary=summary, trials=rows, out=tuner.out, files=files)


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


def _write(tuner: "Tuner", summary: dict[str, Any], rows: list[dict[str, Any]], trials: list[FrozenTrial],
           best: FrozenTrial | None) -> dict[str, str]:
    from trainlab.io import atomic_write_text
    from trainlab.search import _plots

    out = tuner.out
    _stop.check()
    out.mkdir(parents=True, exist_ok=True)
    files = {"trials": str(out / "trials.csv"), "summary": str(out / "summary.json")}
    write_csv(rows, out / "trials.csv")
    ev = tuner.evaluator
    if best is not None and hasattr(ev, "config"):
        from trainlab.config import dumps

        cfg = ev.config(tuner.space.decode(best.params), int(best.user_attrs["seed"]))
        head = (f"# The best trial (#{best.number}) of study '{tuner.study_name}': {tuner.spec.metric} = "
                f"{best.value:.4f} (validation).\n# Train it again, alone, with the same seed: "
                f"trainlab train {out / 'best.toml'}\n")
        atomic_write_text(out / "best.toml", head + dumps(cfg))
        files["best_config"] = str(out / "best.toml")
    _stop.check()
    files.update(_plots.draw_all(tuner, summary, trials, out))
    _stop.check()
    summary["files"] = {k: str(Path(v).relative_to(out)) if str(v).startswith(str(out)) else v
                        for k, v in files.items()}
    return files
