"""Measurements behind the doctor's claims (functions that return data; ``python -m`` draws the figures).

* :func:`dead_relu_vs_lr` -- the course's dead-ReLU example (note 001): a 784-100-100-100-10
  net trained one epoch with SGD at rates 0.01 ... 0.8, ReLU vs Leaky ReLU, every
  (rate, seed) one member of a population; dead units counted by a :class:`Probe`-style
  pass over the whole training set, and units cut off from the gradient counted from a
  backward over it.
* :func:`probe_overhead` -- the cost of a :class:`Probe` sampling every k steps.
* :func:`range_vs_grid` -- the LR range test's suggestion against the best rate of a full
  grid trained for several epochs (one population each).

``python benchmarks/doctor_measure.py --figures docs/figures --json FILE --only dead,overhead,range,doctor``
runs them (and the doctor on the example configs, for the documentation's figures). The tests of
``tests/diagnose_tests`` import these functions (``test_diag_dead_relu.py``, ``test_diag_lr_range.py``).
It uses trainlab's public API only.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
import copy
import json
import math
from pathlib import Path
import time
from typing import Any

import numpy as np
import torch

from trainlab import nn
from trainlab.build import Run, build_run
from trainlab.config import RunConfig
from trainlab.data import load_splits
from trainlab.diagnose import DoctorOptions, Probe, doctor, log_grid, lr_range_test, probe_model
from trainlab.train import Callback

__all__ = ["dead_relu_vs_lr", "probe_overhead", "range_vs_grid", "doctor_figures", "COURSE_DEAD_RELU"]

_EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: the course example's net and training (note 001; the vanishing-gradient experiment's "quick" preset)
COURSE_DEAD_RELU: dict[str, Any] = {
    "seed": 0,
    "data": {"name": "mnist-5k", "train": 4000, "val": 0, "test": 1000},
    "model": {"hidden": [100, 100, 100], "activation": "relu", "init": "he_normal"},
    "optim": {"name": "sgd", "lr": 0.1},
    "train": {"epochs": 1, "batch_size": 100, "eval_train": False},
}


def _one(config: str | Path | RunConfig | Mapping[str, Any] | None) -> RunConfig:
    """Member 0 of a config given as a TOML path (default: examples/healthy.toml), a RunConfig or a dict."""
    if config is None:
        config = _EXAMPLES / "healthy.toml"
    if isinstance(config, (str, Path)):
        return RunConfig.load(config).member(0)
    return (config if isinstance(config, RunConfig) else RunConfig.from_dict(config)).member(0)


def _build(cfg: RunConfig, splits: Any, *, callbacks: Sequence[Callback] = (), epochs: int | None = None) -> Run:
    """The run of ``cfg`` (trained for ``epochs`` instead of its own length, when given) on data already loaded."""
    if epochs:
        cfg = cfg.replace({"train.epochs": epochs, "train.steps": None})
    return build_run(cfg, callbacks=list(callbacks), splits=splits)


def _load_splits(cfg: RunConfig) -> Any:
    d = cfg.data
    return load_splits(d.name, train=d.train, val=d.val, test=d.test, seed=cfg.seed, preprocess=d.preprocess,
                       flatten=d.flatten, data_dir=d.data_dir, cache_dir=d.cache_dir, download=d.download)


@torch.no_grad()
def _zero_gradient_units(run: Run, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """``(P,)``: share of hidden units whose incoming weights get exactly zero gradient over all of ``x``."""
    model, loss = run.model, run.loss
    linears = [l for l in model.layers if isinstance(l, nn.Linear)][:-1]
    acc = [torch.zeros_like(l.weight.data) for l in linears]
    for i in range(0, x.shape[0], batch):
        out = model.forward(x[i:i + batch].unsqueeze(0), training=True)
        loss.forward(out, y[i:i + batch])
        model.backward(loss.backward())
        for a, l in zip(acc, linears):
            a += l.weight.grad.abs()
    zero = torch.cat([(a.amax(dim=1) == 0) for a in acc], dim=1)  # (P, units): max over the inputs
    return zero.double().mean(dim=1)


def dead_relu_vs_lr(lrs: Sequence[float] = (0.01, 0.1, 0.3, 0.5, 0.8), *, seeds: int = 3, epochs: int = 1,
                    activations: Sequence[str] = ("relu", "leaky_relu"), train: int = 4000, seed: int = 0
                    ) -> dict[str, Any]:
    """Dead units after ``epochs`` of SGD at each rate, per activation (mean over the seeds that did not diverge).

    Per activation: ``dead`` (units that pass no gradient: a ReLU never active on any
    training image; Leaky ReLU units never qualify), ``inactive`` (units negative on
    every image, whatever their slope), ``zero_gradient`` (measured: units whose
    incoming weights got exactly zero gradient over a backward through the whole
    training set), ``val``/test accuracy, and the diverged members.
    """
    base = copy.deepcopy(COURSE_DEAD_RELU)
    base["seed"] = seed
    base["data"]["train"] = train
    base["train"]["epochs"] = epochs
    cfg0 = RunConfig.from_dict(base)
    splits = _load_splits(cfg0)
    x, y = splits.train.x, splits.train.y
    lrs = [float(v) for v in lrs]
    P = len(lrs) * seeds
    out: dict[str, Any] = {"lrs": lrs, "seeds": seeds, "epochs": epochs, "train": int(x.shape[0]), "by": {}}
    for act in activations:
        cfg = cfg0.replace({"model.activation": act}).as_population(
            {"optim.lr": lrs * seeds}, seeds=[cfg0.seed + i for i in range(P)])
        run = _build(cfg, splits)
        hist = run.trainer.fit(splits.train, test=splits.test)
        summ = probe_model(run.model, x, bins=0, gradients=False)["summary"]
        zero = _zero_gradient_units(run, x, y)
        alive = np.ones(P, dtype=bool)
        alive[list(hist.diverged)] = False

        def per_lr(values: Sequence[float | None]) -> list[float | None]:
            v = np.array([np.nan if a is None else a for a in values], dtype=float).reshape(seeds, len(lrs))
            ok = alive.reshape(seeds, len(lrs)) & np.isfinite(v)
            return [float(v[ok[:, j], j].mean()) if ok[:, j].any() else None for j in range(len(lrs))]

        test_acc = hist.final.get("test_acc", [None] * P)
        out["by"][act] = {"dead": per_lr(summ["dead"]), "inactive": per_lr(summ["inactive"]),
                          "zero_gradient": per_lr(zero.tolist()), "test_acc": per_lr(test_acc),
                          "diverged": {int(m): lrs[m % len(lrs)] for m in hist.diverged}}
    return out


def _timed_fit(cfg: RunConfig, splits: Any, probe: Probe | None) -> tuple[float, float]:
    run = _build(cfg, splits, callbacks=[probe] if probe is not None else [])
    t0 = time.perf_counter()
    run.trainer.fit(splits.train, splits.val)
    return time.perf_counter() - t0, (probe.seconds if probe is not None else 0.0)


def probe_overhead(config: str | Path | RunConfig | Mapping[str, Any] | None = None, *, everies: Sequence[int] = (1, 10, 50),
                   epochs: int = 3, repeats: int = 3, examples: int = 256) -> dict[str, Any]:
    """Training time with a :class:`Probe` sampling every k steps vs without, as % of the plain time.

    Two variants per k: the sampled steps only (``at_evaluate=False``: the light
    measurement) and as the doctor uses it (plus a full measurement -- histograms,
    pre-activations, unit spread -- at every evaluation, the start and the end). Each
    setting is timed ``repeats`` times, interleaved, and the fastest run counts (the
    least disturbed by other work on the machine).
    """
    cfg = _one(config).replace({"train.epochs": epochs})
    splits = _load_splits(cfg)
    settings: list[tuple[int, bool] | None] = [None] + [(k, ev) for k in everies for ev in (False, True)]
    times: dict[Any, list[float]] = {k: [] for k in settings}
    probe_s: dict[Any, list[float]] = {k: [] for k in settings}
    _timed_fit(cfg, splits, None)  # warm-up
    for _ in range(repeats):
        for k in settings:
            probe = Probe(every=k[0], at_evaluate=k[1], examples=examples) if k is not None else None
            t, p = _timed_fit(cfg, splits, probe)
            times[k].append(t)
            probe_s[k].append(p)
    plain = min(times[None])
    steps = math.ceil(splits.train.x.shape[0] / cfg.train.batch_size) * epochs
    rows = []
    for k, ev in settings[1:]:
        best = min(times[(k, ev)])
        rows.append({"every": k, "at_evaluate": ev, "seconds": best, "overhead_pct": 100.0 * (best - plain) / plain,
                     "probe_seconds": min(probe_s[(k, ev)]), "probe_pct": 100.0 * min(probe_s[(k, ev)]) / plain})
    # the cost of one measurement, in training steps
    x = splits.train.x[:examples]
    run = _build(cfg, splits)
    for light in (True, False):
        probe_model(run.model, x, light=light)
    per = {}
    for light in (True, False):
        t0 = time.perf_counter()
        for _ in range(20):
            probe_model(run.model, x, light=light)
        per["light_ms" if light else "full_ms"] = (time.perf_counter() - t0) / 20 * 1e3
    return {"plain_seconds": plain, "steps": steps, "step_ms": 1e3 * plain / steps, "epochs": epochs,
            "examples": examples, "threads": torch.get_num_threads(), "rows": rows, **per}


def range_vs_grid(config: str | Path | RunConfig | Mapping[str, Any] | None = None, *, low: float = 1e-4, high: float = 10.0,
                  per_decade: int = 4, steps: int = 100, epochs: int = 5) -> dict[str, Any]:
    """The range test's suggestion vs the best rate of a full grid (same rates, ``epochs`` epochs, one population)."""
    cfg = _one(config)
    splits = _load_splits(cfg)
    lrs = log_grid(low, high, per_decade)
    run = _build(cfg.as_population(size=len(lrs)), splits)
    res = lr_range_test(run.trainer, splits.train, lrs, steps=steps, seed=cfg.seed)
    grid_cfg = cfg.as_population({"optim.lr": lrs})
    grun = _build(grid_cfg, splits, epochs=epochs)
    hist = grun.trainer.fit(splits.train, splits.val)
    va = hist["val_acc"]
    best_acc = np.nanmax(np.where(np.isfinite(va), va, np.nan), axis=0)
    for m in hist.diverged:
        best_acc[m] = np.nan
    j = int(np.nanargmax(best_acc))
    best = lrs[j]
    return {"lrs": lrs, "suggestion": res.suggestion, "reason": res.reason, "status": res.status,
            "grid_best_lr": best, "grid_best_val_acc": float(best_acc[j]),
            "grid_val_acc": [None if not math.isfinite(v) else float(v) for v in best_acc],
            "ratio": (res.suggestion / best) if res.suggestion else None, "epochs": epochs,
            "optimizer": cfg.optim.name, "range_result": res}


def doctor_figures(out: str | Path, *, runs: str | Path | None = None) -> dict[str, Any]:
    """Run the doctor on the example configs and keep the figures ``docs/doctor.md`` shows (``doctor_*.png``).

    Returns each report's dict; with ``runs``, the full reports are written there too.
    """
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    picks = {  # config -> (steps, {figure key "step:name": file name})
        "healthy": ("1-6", {"5:grid": "doctor_grid.png"}),
        "faults/sigmoid_saturation": ("1", {"1:activations": "doctor_activations_saturated.png"}),
        "faults/vanishing_init": ("1", {"1:activations": "doctor_activations_vanishing.png"}),
        "faults/lr_too_low": ("2", {"2:loss": "doctor_overfit_lr_too_low.png"}),
        "faults/zero_init": ("2", {"2:loss": "doctor_overfit_zero_init.png"}),
        "faults/tiny_train": ("6", {"6:curves": "doctor_curves_tiny_train.png"}),
        "faults/dead_relu": ("6", {"6:probes": "doctor_probes_dead_relu.png"}),
    }
    reports = {}
    for name, (steps, figs) in picks.items():
        rep = doctor(_EXAMPLES / f"{name}.toml", steps=steps, options=DoctorOptions(),
                     out=(Path(runs) / name.replace("/", "-")) if runs else None)
        for key, fname in figs.items():
            number, fig_name = key.split(":")
            fig, _ = rep.step(int(number)).figures[fig_name]
            fig.savefig(out / fname, dpi=90)
        reports[name] = rep.to_dict()
        rep.close_figures()
        plt.close("all")
    return reports


def plot_dead_vs_lr(lrs: Sequence[float], series: Mapping[str, Sequence[float]], *, title: str = "") -> Any:
    """Dead-unit fraction vs learning rate, one line per activation."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, (label, ys) in enumerate(series.items()):
        ax.semilogx(lrs, [100 * v for v in ys], "o-", color=f"C{k}", label=label)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("% of hidden units")
    ax.legend(fontsize=8)
    ax.set_title(title or "dead units vs learning rate", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/doctor_measure.py", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--figures", default=None, help="write doctor_*.png figures into this folder")
    ap.add_argument("--json", default=None, help="write the numbers as JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="dead,overhead,range", help="comma list of: dead, overhead, range, doctor")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the overhead measurement")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    numbers: dict[str, Any] = {}
    if "dead" in only:
        d = dead_relu_vs_lr()
        numbers["dead_relu"] = d
        print("dead units vs lr:", json.dumps(d))
        if args.figures:
            series = {"ReLU: dead (no gradient)": d["by"]["relu"]["dead"],
                      "Leaky ReLU: dead (no gradient)": d["by"]["leaky_relu"]["dead"],
                      "Leaky ReLU: negative on every image": d["by"]["leaky_relu"]["inactive"]}
            fig = plot_dead_vs_lr(d["lrs"], {k: [v or 0.0 for v in s] for k, s in series.items()},
                                  title="dead units after 1 epoch of SGD (784-100-100-100-10, mean of 3 seeds)")
            fig.savefig(Path(args.figures) / "doctor_dead_relu.png", dpi=100)
    if "overhead" in only:
        o = probe_overhead(epochs=args.epochs)
        numbers["probe_overhead"] = o
        print("probe overhead:", json.dumps(o))
    if "range" in only:
        rows = []
        for opt in ("momentum", "sgd"):
            r = range_vs_grid(RunConfig.load(_EXAMPLES / "healthy.toml", [f'optim.name="{opt}"']))
            res = r.pop("range_result")
            rows.append(r)
            print(f"range vs grid ({opt}):", json.dumps({k: r[k] for k in ("suggestion", "grid_best_lr", "ratio",
                                                                          "grid_best_val_acc")}))
            if args.figures and opt == "momentum":
                res.plot().savefig(Path(args.figures) / "doctor_lr_range.png", dpi=100)
        numbers["range_vs_grid"] = rows
    if "doctor" in only and args.figures:
        reps = doctor_figures(args.figures)
        numbers["doctor"] = {k: {"verdict": v["verdict"], "codes": v["codes"]} for k, v in reps.items()}
        print("doctor:", json.dumps(numbers["doctor"]))
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
