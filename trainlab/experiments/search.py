"""Hyperparameter search: the textbook's random search, grid vs random, log-uniform draws, coarse-to-fine.

Everything runs through :mod:`trainlab.search` (Optuna, in-memory storage):

1. The textbook's random search (Saito 6.5, ``hyperparameter_optimization.py``): a
   784-100x6-10 ReLU net (He init), SGD, batch 100, on 500 training images, lr
   ``10^U(-6,-2)`` and weight decay ``10^U(-8,-4)`` (the textbook's L2), each trial scored
   on 500 held-out validation images; trials train as populations.
2. Grid vs random (Bergstra & Bengio 2012) on a function of two parameters where only
   one matters much: ``f(x, y) = exp(-(x - x0)^2 / (2 0.08^2)) + 0.1 exp(-(y - y0)^2 /
   (2 0.3^2))`` on the unit square, the peak ``(x0, y0)`` drawn anew for every repeat.
   A 3 x 3 grid (cell centres 1/6, 1/2, 5/6: the kindest grid) against 9 random points.
3. Uniform vs log-uniform draws of a learning rate in ``[1e-6, 1e-2]``: the share of
   draws in each decade.
4. Coarse-to-fine (``CoarseToFine``): rounds of random search on the set-up of 1, each
   round in a box around the best trials so far.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from trainlab.experiments._common import tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result

if TYPE_CHECKING:  # the search package (and optuna) is imported where a study runs
    from trainlab.search import TuneResult

LR = (1e-6, 1e-2)
WD = (1e-8, 1e-4)
GRID_VALUES = [1 / 6, 1 / 2, 5 / 6]
PEAK_WIDTH, MINOR_WIDTH, MINOR_HEIGHT = 0.08, 0.3, 0.1

SETTINGS = {
    "smoke": dict(train=100, val=100, hidden=[100] * 2, batch_size=50, trials=6, epochs=2, population=6,
                  synthetic_repeats=5, draws=200, c2f_rounds=2, c2f_trials=8, c2f_epochs=2, c2f_top_k=2),
    # fewer trials and epochs than the textbook's (about 40 s on one core); the same ranges and net
    "quick": dict(train=500, val=500, hidden=[100] * 6, batch_size=100, trials=50, epochs=30, population=25,
                  synthetic_repeats=200, draws=1000, c2f_rounds=3, c2f_trials=42, c2f_epochs=30, c2f_top_k=3),
    # hyperparameter_optimization.py: 500 training images, 6 x 100 ReLU, lr 10^U(-6,-2), weight decay
    # 10^U(-8,-4), 100 trials of 50 epochs (the textbook validates on 20% of its 500 images; here 500 more)
    "textbook": dict(train=500, val=500, hidden=[100] * 6, batch_size=100, trials=100, epochs=50, population=25,
                     synthetic_repeats=1000, draws=2000, c2f_rounds=3, c2f_trials=99, c2f_epochs=50, c2f_top_k=3),
}


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- 1 and 4: searches that train ------------------------------------------------------------


def _config(preset: Preset, s: dict, epochs: int, search: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"name": preset.data, "train": s["train"], "val": s["val"], "test": 1000}
    if preset.data_dir is not None:
        data["data_dir"] = preset.data_dir
    return {
        "seed": preset.seed,
        "data": data,
        "model": {"type": "mlp", "hidden": s["hidden"], "activation": "relu", "init": "he_normal"},
        "optim": {"name": "sgd"},
        "train": {"epochs": epochs, "batch_size": s["batch_size"]},
        "search": {"seed": preset.seed, "metric": "val_acc", "objective": "final", "final_test": False,
                   "space": {"optim.lr": {"type": "float", "low": LR[0], "high": LR[1], "log": True},
                             "optim.weight_decay": {"type": "float", "low": WD[0], "high": WD[1], "log": True}},
                   **search},
    }


def _rows(result: Any) -> list[dict[str, float]]:
    """``slot, lr, wd, value`` of each counted trial (value NaN for a failed one)."""
    out = []
    for t in result.trials:
        if t["counts"]:
            v = t["value"]
            out.append({"slot": t["slot"], "lr": t["optim.lr"], "wd": t["optim.weight_decay"],
                        "value": float(v) if v is not None else float("nan")})
    return sorted(out, key=lambda r: r["slot"])


def _decade_spread(values: np.ndarray, x: np.ndarray, low: float, high: float) -> tuple[float, list[float]]:
    """The range (max - min) of the mean value per decade of ``x`` in ``[low, high]``, and the means."""
    edges = np.arange(round(math.log10(low)), round(math.log10(high)) + 1)
    means = []
    for a, b in zip(edges[:-1], edges[1:]):
        m = (np.log10(x) >= a) & (np.log10(x) < b) & np.isfinite(values)
        means.append(float(values[m].mean()) if m.any() else float("nan"))
    finite = [v for v in means if math.isfinite(v)]
    return (max(finite) - min(finite) if len(finite) > 1 else float("nan")), means


def _random_search(preset: Preset, s: dict) -> dict[str, Any]:
    from trainlab.search import tune

    cfg = _config(preset, s, s["epochs"], {"strategy": "random", "trials": s["trials"],
                                           "population": s["population"]})
    rows = _rows(tune(cfg, study="textbook-random"))
    v = np.array([r["value"] for r in rows])
    lr = np.array([r["lr"] for r in rows])
    wd = np.array([r["wd"] for r in rows])
    lr_spread, lr_means = _decade_spread(v, lr, *LR)
    wd_spread, wd_means = _decade_spread(v, wd, *WD)
    order = np.argsort(-np.nan_to_num(v, nan=-1.0))
    top = order[:5]
    return {"rows": rows, "importance": _importance(rows, preset.seed), "best": rows[int(order[0])],
            "top5_min_lr": float(lr[top].min()), "top5_lr": lr[top].tolist(), "top5_wd": wd[top].tolist(), "median": float(np.nanmedian(v)),
            "lr_spread": lr_spread, "wd_spread": wd_spread, "lr_decade_means": lr_means,
            "wd_decade_means": wd_means, "failed": int(np.isnan(v).sum())}


def _importance(rows: list[dict[str, float]], seed: int) -> dict[str, float]:
    """fANOVA importance of lr and weight decay (Optuna's evaluator, 32 trees of depth 8, as ``trainlab tune``'s
    summary): the share of the variance of the validation accuracy each parameter explains on its own."""
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution

    dists: dict[str, BaseDistribution] = {"lr": FloatDistribution(*LR, log=True),
                                          "wd": FloatDistribution(*WD, log=True)}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    study.add_trials([optuna.trial.create_trial(params={"lr": r["lr"], "wd": r["wd"]}, distributions=dists,
                                                value=r["value"]) for r in rows if math.isfinite(r["value"])])
    ev = optuna.importance.FanovaImportanceEvaluator(n_trees=32, max_depth=8, seed=seed)
    imp = optuna.importance.get_param_importances(study, evaluator=ev, normalize=True)
    return {k: float(imp.get(k, 0.0)) for k in ("lr", "wd")}


def _coarse_to_fine(preset: Preset, s: dict) -> dict[str, Any]:
    from trainlab.search import tune

    rounds = s["c2f_rounds"]
    cfg = _config(preset, s, s["c2f_epochs"], {
        "strategy": "coarse-to-fine", "trials": s["c2f_trials"], "population": s["c2f_trials"] // rounds,
        "coarse_to_fine": {"rounds": rounds, "top_k": s["c2f_top_k"], "margin": 0.5}})
    res = tune(cfg, study="coarse-to-fine")
    rows = _rows(res)
    info = []
    for r in res.summary["rounds"]:
        lo, hi = r["slots"]
        vals = np.array([x["value"] for x in rows if lo <= x["slot"] <= hi])
        box = r["box"] or {"optim.lr": list(LR), "optim.weight_decay": list(WD)}
        info.append({"round": r["round"], "slots": [lo, hi], "box": {k: [float(a), float(b)] for k, (a, b) in
                                                                     box.items()},
                     "best": float(np.nanmax(vals)), "median": float(np.nanmedian(vals)),
                     "failed": int(np.isnan(vals).sum())})

    def log_area(box: dict[str, list[float]]) -> float:
        return math.log10(box["optim.lr"][1] / box["optim.lr"][0]) * \
            math.log10(box["optim.weight_decay"][1] / box["optim.weight_decay"][0])

    whole = log_area({"optim.lr": list(LR), "optim.weight_decay": list(WD)})
    nested = all(prev["box"][k][0] <= cur["box"][k][0] <= cur["box"][k][1] <= prev["box"][k][1]
                 for prev, cur in zip(info[:-1], info[1:]) for k in cur["box"])
    return {"rows": rows, "rounds": info, "nested": nested,
            "area_ratio": log_area(info[-1]["box"]) / whole,
            "area_ratios": [log_area(r["box"]) / whole for r in info]}


# ---- 2 and 3: the searches on known functions ------------------------------------------------


def _peak(repeat: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng([seed, repeat, 8])
    x0, y0 = rng.uniform(0.05, 0.95, 2)
    return float(x0), float(y0)


def _f(v: dict[str, float], x0: float, y0: float) -> float:
    return math.exp(-0.5 * ((v["x"] - x0) / PEAK_WIDTH) ** 2) + MINOR_HEIGHT * math.exp(
        -0.5 * ((v["y"] - y0) / MINOR_WIDTH) ** 2)


def _best_value(result: TuneResult) -> float:
    """The best value of a study of a synthetic objective (its trials all complete, so it has one)."""
    if result.best is None:
        raise RuntimeError(f"study {result.study!r} has no completed trial")
    return result.best["value"]


def _grid_vs_random(preset: Preset, s: dict) -> dict[str, Any]:
    from trainlab.search import FloatParam, FunctionEvaluator, Grid, Random, SearchSpace, SearchSpec, Tuner

    n = len(GRID_VALUES) ** 2
    free = SearchSpace([FloatParam("x", 0.0, 1.0), FloatParam("y", 0.0, 1.0)])
    grid = SearchSpace([FloatParam("x", 0.0, 1.0, values=GRID_VALUES), FloatParam("y", 0.0, 1.0,
                                                                                    values=GRID_VALUES)])
    best_r, best_g, example = [], [], None
    for rep in range(s["synthetic_repeats"]):
        x0, y0 = _peak(rep, preset.seed)

        def fn(v: Any, x0: float = x0, y0: float = y0) -> float:
            return _f(v, x0, y0)

        r = Tuner(SearchSpec(space=free, strategy=Random(), trials=n, population=n, seed=preset.seed * 100003 + rep),
                  evaluator=FunctionEvaluator(fn)).run()
        g = Tuner(SearchSpec(space=grid, strategy=Grid(), population=n, seed=preset.seed),
                  evaluator=FunctionEvaluator(fn)).run()
        best_r.append(_best_value(r))
        best_g.append(_best_value(g))
        if example is None:
            example = {"peak": [x0, y0], "random": [[t["x"], t["y"]] for t in r.trials],
                       "grid": [[t["x"], t["y"]] for t in g.trials]}
    br, bg = np.array(best_r), np.array(best_g)
    return {"trials": n, "repeats": s["synthetic_repeats"], "random_wins": float((br > bg).mean()),
            "mean_best_random": float(br.mean()), "mean_best_grid": float(bg.mean()),
            "best_random": br, "best_grid": bg, "example": example}


def _draws(preset: Preset, s: dict) -> dict[str, Any]:
    from trainlab.search import FloatParam, FunctionEvaluator, Random, SearchSpace, SearchSpec, Tuner

    out: dict[str, Any] = {}
    decades = np.arange(round(math.log10(LR[0])), round(math.log10(LR[1])) + 1)
    for name, log in (("uniform", False), ("log-uniform", True)):
        space = SearchSpace([FloatParam("lr", LR[0], LR[1], log=log)])
        res = Tuner(SearchSpec(space=space, strategy=Random(), trials=s["draws"], population=s["draws"],
                               seed=preset.seed), evaluator=FunctionEvaluator(lambda v: 0.0)).run()
        x = np.array([t["lr"] for t in res.trials])
        shares = [float(((x >= 10.0 ** a) & (x < 10.0 ** b)).mean()) for a, b in zip(decades[:-1], decades[1:])]
        out[name] = {"values": x, "shares": shares}
    out["decades"] = [f"1e{a}-1e{b}" for a, b in zip(decades[:-1], decades[1:])]
    return out


# ---- run ---------------------------------------------------------------------------------------


def run(preset: Preset) -> Result:
    _quiet()
    s = dict(preset.pick(SETTINGS))
    rs = _random_search(preset, s)
    best = rs["best"]
    fmt = ", ".join

    def means(ms: list[float]) -> str:
        return fmt(f"{m:.2f}" if math.isfinite(m) else "-" for m in ms)

    checks = [
        # fANOVA (the importance `trainlab tune` reports): the share of the variance of the validation
        # accuracy each parameter explains. The textbook-preset run in docs/search.md measured 0.999 for
        # lr; the quick preset 0.980-1.000 over seeds 0-2. 0.8 = "far more" with a wide margin.
        Check("the learning rate matters far more than weight decay",
              "In the textbook's random search the good trials are found by their learning rate; weight decay, "
              "in this range, hardly changes the result.",
              rs["importance"]["lr"], 0.8, ">=",
              f"fANOVA importance (share of the variance of the validation accuracy): learning rate "
              f"{rs['importance']['lr']:.3f}, weight decay {rs['importance']['wd']:.3f}. Mean validation accuracy per "
              f"decade of the learning rate ({fmt(f'1e{a}' for a in range(-6, -2))}): {means(rs['lr_decade_means'])}; "
              f"per decade of weight decay ({fmt(f'1e{a}' for a in range(-8, -4))}): {means(rs['wd_decade_means'])} "
              f"(these differ by chance: a decade of weight decay that happened to get more large learning rates "
              f"scores higher); {s['trials']} trials of {s['epochs']} epochs."),
        # The textbook's conclusion: good learning rates are 0.001-0.01; the five best trials
        # must all lie in that decade (quick, seeds 0-2: smallest of the five 0.0021-0.0054).
        Check("the best trials have learning rates between 0.001 and 0.01",
              "Random search narrows the range: the good learning rates lie within one decade, 0.001 to 0.01, "
              "and the next search can start there.",
              rs["top5_min_lr"], 1e-3, ">=",
              f"The 5 best trials' learning rates: {fmt(f'{v:.2g}' for v in rs['top5_lr'])} (weight decays "
              f"{fmt(f'{v:.2g}' for v in rs['top5_wd'])}); best validation accuracy {best['value']:.3f} at lr "
              f"{best['lr']:.2g}, weight decay {best['wd']:.2g}; the median trial reached {rs['median']:.3f}."),
    ]
    gr = _grid_vs_random(preset, s)
    checks += [
        # 9 random points against a 3 x 3 grid: random tries 9 values of the parameter that
        # matters, the grid 3. Over many random peak positions random wins ~64% of the time
        # (2,000 numpy repeats); 0.55 is ~3 standard errors below that at 200 repeats (quick,
        # seeds 0-2: 0.615-0.65).
        Check("random search beats grid search when one parameter matters more",
              "With the same number of trials, random search tries a new value of every parameter in every trial; "
              "a grid repeats the same few values. When one parameter matters much more than the other, random "
              "search finds better points.",
              gr["random_wins"], 0.55, ">=",
              f"Share of {gr['repeats']} random peak positions where the best of {gr['trials']} random points beats "
              f"the best of the 3 x 3 grid: {gr['random_wins']:.3f}; mean best value random "
              f"{gr['mean_best_random']:.3f}, grid {gr['mean_best_grid']:.3f} (the peak is 1 + at most 0.1). The "
              f"grid tries 3 values of x, random search {gr['trials']}."),
    ]
    dr = _draws(preset, s)
    shares_log, shares_uni = dr["log-uniform"]["shares"], dr["uniform"]["shares"]
    dev_log = max(abs(v - 1 / len(shares_log)) for v in shares_log)
    checks += [
        # Log-uniform: each of the 4 decades has probability 1/4; with 1,000 draws its share
        # has a standard error of 0.014, so +-0.05 is ~3.5 of them.
        Check("log-uniform draws cover every decade equally",
              "Drawing the exponent uniformly (10^U(-6,-2)) gives each decade of the learning rate the same "
              "number of trials.",
              dev_log, 0.05, "<=",
              f"Share of {s['draws']} log-uniform draws per decade ({fmt(dr['decades'])}): "
              f"{fmt(f'{v:.3f}' for v in shares_log)}; largest deviation from 0.25: {dev_log:.3f}."),
        # Uniform on [1e-6, 1e-2]: the top decade is (1e-2 - 1e-3) / (1e-2 - 1e-6) = 90% of the
        # interval; 0.85 leaves ~5 standard errors at 1,000 draws.
        Check("uniform draws put ~90% of the trials in the top decade",
              "Drawing the learning rate itself uniformly wastes the budget: nearly all trials land in the largest "
              "decade and the small values are never tried.",
              shares_uni[-1], 0.85, ">=",
              f"Share of {s['draws']} uniform draws per decade ({fmt(dr['decades'])}): "
              f"{fmt(f'{v:.3f}' for v in shares_uni)} (the top decade is 90% of the interval)."),
    ]
    cf = _coarse_to_fine(preset, s)
    first, last = cf["rounds"][0], cf["rounds"][-1]
    sd_val = math.sqrt(first["best"] * (1 - first["best"]) / s["val"])  # binomial sd of one validation accuracy
    medians = fmt(f"{r['median']:.3f}" for r in cf["rounds"])
    bests = fmt(f"{r['best']:.3f}" for r in cf["rounds"])
    checks += [
        # The last round's box must lie inside the earlier ones (by construction) and be
        # much smaller: at most a quarter of the starting log-area (measured ~0.03-0.1).
        Check("coarse-to-fine narrows the search box",
              "Coarse-to-fine search first samples the whole range, then a smaller box around the best trials, "
              "round after round.",
              cf["area_ratio"] if cf["nested"] else float("nan"), 0.25, "<=",
              f"Area of each round's box on the log scale, as a share of the whole space: "
              f"{fmt(f'{v:.3f}' for v in cf['area_ratios'])}; nested: {cf['nested']}; the last box: lr "
              f"{last['box']['optim.lr'][0]:.2g}-{last['box']['optim.lr'][1]:.2g}, weight decay "
              f"{last['box']['optim.weight_decay'][0]:.2g}-{last['box']['optim.weight_decay'][1]:.2g}."),
        # Median validation accuracy of a round's trials: most coarse draws are poor (lr too
        # small: chance, ~0.12), most fine ones good. Quick, seeds 0-2: +0.59, +0.48, +0.23 (seed 2's
        # data trains slowest: best 0.46); 0.15 keeps a margin below the slowest.
        Check("the fine rounds waste fewer trials",
              "Refining the box spends the later trials where the good values are, so the typical trial is much "
              "better than in the coarse round.",
              last["median"] - first["median"], 0.15, ">=",
              f"Median validation accuracy per round: {medians}; best per round: {bests} ({s['c2f_trials']} "
              f"trials in {s['c2f_rounds']} rounds, {s['c2f_epochs']} epochs each)."),
        # "At least as good" within the sampling error of one validation accuracy: sd =
        # sqrt(a (1 - a) / n) = 0.019 at a = 0.75 on 500 images; a smaller difference between two
        # trials is noise. Quick, seeds 0-2: -0.010, +0.122, +0.104.
        Check("the fine round's best is at least as good as the coarse round's",
              "Searching a smaller box around the best points finds points at least as good.",
              last["best"] - first["best"], -sd_val, ">=",
              f"Best validation accuracy in the first (coarse) round {first['best']:.3f}, in the last (fine) round "
              f"{last['best']:.3f}; the sampling error of one validation accuracy is {sd_val:.3f} ({s['val']} images), "
              f"so a smaller difference is noise. The median trial of the last round ({last['median']:.3f}) comes "
              f"close to the best of the first ({first['best']:.3f})."),
    ]
    numbers = {
        "random_search": {k: tolist(v) for k, v in rs.items() if k != "rows"},
        "grid_vs_random": {k: tolist(v) for k, v in gr.items() if k not in ("best_random", "best_grid", "example")},
        "draws": {"decades": dr["decades"], "uniform": tolist(shares_uni), "log_uniform": tolist(shares_log)},
        "coarse_to_fine": {"rounds": tolist(cf["rounds"]), "nested": cf["nested"],
                           "area_ratios": tolist(cf["area_ratios"])},
    }
    return Result(name="search", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"random": rs, "grid_vs_random": gr, "draws": dr, "c2f": cf},
                  summary=f"best val acc {best['value']:.3f} (lr {best['lr']:.2g}, wd {best['wd']:.2g}); random beats "
                          f"grid in {gr['random_wins']:.0%}; log-uniform decade shares "
                          f"{fmt(f'{v:.2f}' for v in shares_log)}; coarse-to-fine median "
                          f"{first['median']:.2f} -> {last['median']:.2f}")


# ---- figures -----------------------------------------------------------------------------------


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    A = result.arrays
    s = result.settings
    rs, gr, dr, cf = A["random"], A["grid_vs_random"], A["draws"], A["c2f"]

    # 1. the textbook's random search
    rows = rs["rows"]
    lr = np.array([r["lr"] for r in rows])
    wd = np.array([r["wd"] for r in rows])
    v = np.array([r["value"] for r in rows])
    fig1, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    sc = a1.scatter(lr, wd, c=v, cmap="viridis", vmin=0, vmax=1, s=22)
    b = rs["best"]
    a1.scatter([b["lr"]], [b["wd"]], marker="*", s=180, c="red")
    a1.set_title(f"best (star): {b['value']:.3f} at lr {b['lr']:.2g}, weight decay {b['wd']:.2g}", fontsize=9)
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("learning rate")
    a1.set_ylabel("weight decay")
    fig1.colorbar(sc, ax=a1, label="validation accuracy")
    a2.semilogx(lr, v, "o", ms=4)
    a2.set_xlabel("learning rate")
    a2.set_ylabel("validation accuracy")
    fig1.tight_layout()

    # 2. grid vs random
    ex = gr["example"]
    xs = np.linspace(0, 1, 200)
    X, Y = np.meshgrid(xs, xs)
    x0, y0 = ex["peak"]
    Z = np.exp(-0.5 * ((X - x0) / PEAK_WIDTH) ** 2) + MINOR_HEIGHT * np.exp(-0.5 * ((Y - y0) / MINOR_WIDTH) ** 2)
    fig2, axes = plt.subplots(2, 3, figsize=(11, 4.8), gridspec_kw={"height_ratios": [1, 3]})
    for col, (name, pts) in enumerate((("grid", ex["grid"]), ("random", ex["random"]))):
        top, ax = axes[0, col], axes[1, col]
        ax.contourf(X, Y, Z, levels=20, cmap="Greens")
        p = np.array(pts)
        ax.plot(p[:, 0], p[:, 1], "ko", ms=5)
        ax.set_xlabel("x (important)")
        ax.set_ylabel("y (unimportant)")
        top.plot(xs, np.exp(-0.5 * ((xs - x0) / PEAK_WIDTH) ** 2), "g-")
        top.plot(p[:, 0], np.exp(-0.5 * ((p[:, 0] - x0) / PEAK_WIDTH) ** 2), "ko", ms=4)
        top.set_title(f"{name}: {len(set(np.round(p[:, 0], 9)))} values of x tried", fontsize=9)
        top.set_xticks([])
        top.set_yticks([])
    axes[0, 2].axis("off")
    ax = axes[1, 2]
    ax.plot(gr["best_grid"], gr["best_random"], ".", ms=3, alpha=0.6)
    ax.plot([0, 1.1], [0, 1.1], "k--", lw=0.8)
    ax.set_xlabel("best of the grid")
    ax.set_ylabel("best of random search")
    ax.set_title(f"random better in {gr['random_wins']:.0%} of {gr['repeats']}", fontsize=9)
    fig2.tight_layout()

    # 3. uniform vs log-uniform
    fig3, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(math.log10(LR[0]), math.log10(LR[1]), 17)
    for name, c in (("uniform", "C1"), ("log-uniform", "C0")):
        ax.hist(np.log10(dr[name]["values"]), bins=bins.tolist(), histtype="step", lw=1.8, color=c,
                label=f"{name}: " + ", ".join(f"{v:.0%}" for v in dr[name]["shares"]))
    ax.set_xlabel("log10(learning rate)")
    ax.set_ylabel("draws")
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper left")
    fig3.tight_layout()

    # 4. coarse-to-fine
    fig4, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    crow = cf["rows"]
    for r in cf["rounds"]:
        lo, hi = r["slots"]
        pts = [x for x in crow if lo <= x["slot"] <= hi]
        c = f"C{r['round']}"
        a1.plot([x["lr"] for x in pts], [x["wd"] for x in pts], "o", ms=4, color=c, label=f"round {r['round'] + 1}")
        (l0, l1), (w0, w1) = r["box"]["optim.lr"], r["box"]["optim.weight_decay"]
        a1.plot([l0, l1, l1, l0, l0], [w0, w0, w1, w1, w0], "-", color=c, lw=1.2)
        a2.plot([x["slot"] for x in pts], [x["value"] for x in pts], "o", ms=4, color=c)
        a2.plot([lo, hi], [r["median"]] * 2, "-", color=c, lw=2)
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("learning rate")
    a1.set_ylabel("weight decay")
    a1.legend(fontsize=8, loc="lower left")
    a2.set_xlabel("trial")
    a2.set_ylabel("validation accuracy")
    fig4.tight_layout()
    n = result.numbers
    return [
        Figure(fig1, "the textbook's random search",
               f"{s['trials']} trials, each a 6-layer net trained {s['epochs']} epochs on {s['train']} images with a "
               "learning rate and a weight decay drawn log-uniformly (10^U(-6,-2) and 10^U(-8,-4)); colour: "
               f"accuracy on {s['val']} validation images. Left: the good trials form a band at the largest "
               "learning rates, whatever their weight decay. Right: accuracy against the learning rate alone "
               "already tells the story; too small a learning rate barely trains in this budget."),
        Figure(fig2, "grid vs random search",
               "A function of two parameters where only x matters much (green: higher is better). Left: a 3 x 3 "
               "grid tries only 3 values of x, and may miss the peak between them; middle: 9 random points try 9 "
               f"values of x. Right: the best value found by each, for {gr['repeats']} random positions of the "
               "peak: most points lie above the diagonal (random search better). In real problems a few "
               "hyperparameters matter much more than the others, which is why random search is preferred."),
        Figure(fig3, "uniform vs log-uniform draws",
               f"{s['draws']} draws of a learning rate between 1e-6 and 1e-2 (log count scale). Drawing the value "
               "uniformly puts about 90% of the trials between 0.001 and 0.01 and almost none below 1e-4; drawing "
               "the exponent uniformly (log-uniform) gives each decade a quarter of the trials. Learning rates "
               "and weight decays act by their order of magnitude, so search them on a log scale."),
        Figure(fig4, "coarse-to-fine search",
               f"{s['c2f_trials']} trials in {s['c2f_rounds']} rounds. Left: each round's trials and the box they "
               "were drawn from (round 1: the whole space; each later round: a box around the best trials so far, "
               "on the log scale). Right: validation accuracy by trial, with each round's median (line): "
               + ", ".join(f"{r['median']:.2f}" for r in n["coarse_to_fine"]["rounds"])
               + ". Searching coarse first and then fine spends the later trials where the good values are."),
    ]


EXPERIMENT = Experiment(
    name="search",
    title="Hyperparameter search",
    claim="Search hyperparameters at random rather than on a grid (when some matter more than others, random search "
          "tries more of their values), draw scale parameters such as the learning rate and weight decay "
          "log-uniformly (each decade equally often), and refine coarse-to-fine; the textbook's random search finds "
          "that the learning rate matters far more than weight decay, and that good rates lie between 0.001 and "
          "0.01.",
    source="course notes 002 (hyperparameter optimization: manual, grid, random, Bayesian; 'set a rough range, draw "
           "at random, evaluate') and 004 (grid vs random search, log-uniform vs uniform, coarse-to-fine); Saito ch. "
           "6.5, hyperparameter_optimization.py (500 images, 100 trials, lr 10^U(-6,-2), weight decay 10^U(-8,-4), "
           "50 epochs); Bergstra & Bengio 2012",
    docs="search",
    run=run,
    plot=plot,
)
