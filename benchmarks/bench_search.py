"""The textbook random search, trained as populations vs one trial at a time; and trainlab's overhead.

Runs the same study twice (same seed, so the same 100 trials and the same numbers): once with up to
``--population`` trials trained together as one population, once with one trial at a time. The two
are interleaved in chunks (resuming each study to 25, 50, ... trials) so that both see the same load
on a shared machine. Reports wall times, their ratio, the best validation accuracy (with the test
accuracy of the best config, evaluated once), the per-trial overhead of the search machinery, and the
time parameter importance takes at several study sizes. Writes the study's outputs (scatter etc.).

Usage: python benchmarks/bench_search.py [--config examples/search/textbook_random.toml]
           [--trials 100] [--population 25] [--chunk 25] [--out runs/bench-search] [--skip-sequential]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import platform
import time

import torch

from _harness import add_allocator_option, apply_allocator_option


def run_chunked(base, spec, *, storage, study, population, trials, chunk, log):
    from trainlab.search import Tuner

    spec.population, spec.final_test = population, False
    totals = {"loop_s": 0.0, "fit_s": 0.0, "build_s": 0.0, "claim_s": 0.0, "tell_s": 0.0, "trials": 0}
    results = None
    for n in range(chunk, trials + chunk, chunk):
        spec.trials = min(n, trials)
        t = Tuner(spec, base_config=base, storage=storage, study=study)
        t0 = time.perf_counter()
        results = t.run()
        wall = time.perf_counter() - t0
        tm = results.summary["timing"]
        totals["loop_s"] += tm["loop_s"]
        for k in ("fit_s", "build_s", "claim_s", "tell_s"):
            totals[k] += tm.get(k, 0.0)
        totals["trials"] += tm["trials_run_here"]
        log(f"  {study}: {spec.trials} trials, +{tm['trials_run_here']} in {wall:.1f} s "
            f"(fit {tm.get('fit_s', 0):.1f} s), best {results.best['value']:.3f}")
        yield totals, results
        if spec.trials >= trials:
            return


def importance_times(sizes=(100, 300, 1000)):
    import optuna

    from trainlab.search._report import param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = {}
    for n in sizes:
        st = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        st.optimize(lambda t: -(math.log10(t.suggest_float("lr", 1e-6, 1e-2, log=True)) + 3) ** 2
                    - t.suggest_float("wd", 1e-8, 1e-4, log=True) * 1e3, n_trials=n)
        t0 = time.perf_counter()
        imp = param_importances(st.trials, maximize=True, limit=300, seed=0)
        out[n] = round(time.perf_counter() - t0, 3)
        assert imp is not None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="examples/search/textbook_random.toml")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--population", type=int, default=25)
    p.add_argument("--chunk", type=int, default=25)
    p.add_argument("--out", default="runs/bench-search")
    p.add_argument("--skip-sequential", action="store_true")
    add_allocator_option(p)
    args = p.parse_args()
    allocator = apply_allocator_option(args)

    from trainlab.search import load_search

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out.resolve()}/bench.db"
    log = lambda s: print(s, flush=True)  # noqa: E731
    base, spec_pop = load_search(args.config)
    _, spec_seq = load_search(args.config)
    pop_gen = run_chunked(base, spec_pop, storage=storage, study="population", population=args.population,
                          trials=args.trials, chunk=args.chunk, log=log)
    seq_gen = None if args.skip_sequential else run_chunked(
        base, spec_seq, storage=storage, study="sequential", population=1, trials=args.trials, chunk=args.chunk,
        log=log)
    pop = seq = None
    for pop in pop_gen:
        if seq_gen is not None:
            seq = next(seq_gen)
    if seq_gen is not None:
        for seq in seq_gen:  # (if the chunks did not line up)
            pass
    log("writing the population study's outputs (scatter, curves, best config, the single test evaluation)")
    from trainlab.search import Tuner

    t = Tuner(spec_pop, base_config=base, storage=storage, study="population", out=out / "population")
    spec_pop.final_test = True
    final = t.run()  # nothing left to run: the final test evaluation and the outputs
    pt, pres = pop
    res = {
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), "torch": torch.__version__,
                    "allocator": allocator},
        "config": args.config, "trials": args.trials, "population": args.population,
        "population_run": {"wall_s": round(pt["loop_s"], 1), "fit_s": round(pt["fit_s"], 1),
                           "best_val_acc": pres.best["value"]},
        "best": final.best, "test": final.test,
        "overhead_per_trial_s": {
            "search_machinery": round((pt["claim_s"] + pt["tell_s"]) / pt["trials"], 4),
            "incl_data_and_model_build": round((pt["loop_s"] - pt["fit_s"]) / pt["trials"], 4)},
        "importance_seconds": importance_times(),
    }
    if seq is not None:
        st, sres = seq
        res["sequential_run"] = {"wall_s": round(st["loop_s"], 1), "fit_s": round(st["fit_s"], 1),
                                 "best_val_acc": sres.best["value"]}
        res["speedup"] = round(st["loop_s"] / pt["loop_s"], 2)
        res["overhead_per_trial_s"]["sequential_incl_build"] = round((st["loop_s"] - st["fit_s"]) / st["trials"], 4)
    print(json.dumps(res, indent=1))
    (out / "bench.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
