"""Covariate shift between training and test: the test inputs' distribution moves, accuracy falls.

Course note 002 ("covariate shift"): when the input distribution at test time differs
from the one the model was trained on, its accuracy falls. Does input standardization
fitted on the training data (the usual preprocessing, note 002's "normalization")
undo such a shift?

A 784-100-100-10 ReLU net (He, SGD, batch 100) is trained three times, on the same
images and seeds, with different input preprocessing:

* *min-max*: pixels / 255 (in [0, 1]);
* *standardized (train statistics)*: per pixel ``(x - mean_train) / std_train``, fitted on
  the training split and applied unchanged to the test split -- what ``preprocess =
  "standardize"`` does;
* *per-image standardization*: each image minus its own mean, divided by its own std
  (statistics of the input itself, so they move with the shift).

The test images are shifted before preprocessing, in pixel units of [0, 1]:
*brightness* ``min(x + 0.3, 1)`` (a grey background) and *contrast* ``0.5 x`` (faint
strokes).
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab import nn
from trainlab.data import Arrays, make_preprocessor
from trainlab.experiments._common import mlp, present, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.train import Trainer

SHIFTS = {"none": lambda x: x, "brightness +0.3": lambda x: (x + 0.3).clamp(max=1.0),
          "contrast x0.5": lambda x: 0.5 * x}

SETTINGS = {
    "smoke": dict(train=300, test=200, hidden=[32], lr=0.1, batch_size=100, epochs=2, seeds=1),
    "quick": dict(train=4000, test=1000, hidden=[100, 100], lr=0.1, batch_size=100, epochs=5, seeds=2),
    "textbook": dict(train=None, test=10000, hidden=[100, 100], lr=0.1, batch_size=100, epochs=10, seeds=3),
}


def _per_image(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean(dim=1, keepdim=True)) / x.std(dim=1, keepdim=True, correction=0).clamp_min(1e-8)


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=s["test"])  # min-max: pixels / 255
    test = present(data.test, "test")
    xtr, ytr, xte, yte = data.train.x, data.train.y, test.x, test.y
    std = make_preprocessor("standardize").fit(xtr)
    prep = {"min-max": lambda x: x, "standardized (train statistics)": std.transform, "per-image standardization":
            _per_image}
    acc: dict[str, dict[str, float]] = {}
    for name, f in prep.items():
        model = mlp(s["seeds"], s["hidden"], activation="relu", init="he_normal", seed=preset.seed)
        train = Arrays(f(xtr), ytr)
        Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=s["lr"]), epochs=s["epochs"],
                batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9, eval_train=False).fit(train)
        acc[name] = {}
        with torch.no_grad():
            for shift, g in SHIFTS.items():
                pred = model.forward(f(g(xte)).unsqueeze(0), training=False).argmax(-1)
                acc[name][shift] = float((pred == yte.unsqueeze(0)).double().mean())
    shifted = [k for k in SHIFTS if k != "none"]
    mm, st, pi = acc["min-max"], acc["standardized (train statistics)"], acc["per-image standardization"]
    drop = {k: mm["none"] - mm[k] for k in shifted}
    drop_std = {k: st["none"] - st[k] for k in shifted}
    drop_pi = {k: pi["none"] - pi[k] for k in shifted}
    worst = max(shifted, key=lambda k: drop[k])
    mean_drop_std = float(np.mean([drop_std[k] for k in shifted]))
    mean_drop_mm = float(np.mean([drop[k] for k in shifted]))

    def row(a: dict) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in a.items())

    table = (f"Test accuracy ({s['seeds']} seeds) -- min-max: {row(mm)}; standardized with train statistics: "
             f"{row(st)}; per-image standardization: {row(pi)}.")
    checks = [
        # 5 points of 1,000 test images is far beyond seed noise (~0.5 point): a real drop.
        Check("a shifted test distribution lowers accuracy",
              "When the test inputs come from a different distribution than the training inputs (covariate shift), "
              "the trained model's accuracy falls.",
              drop[worst], 0.05, ">=",
              f"Accuracy drop of the min-max net under the worse shift ({worst}): {drop[worst] * 100:.1f} points. "
              + table),
        # The shift happens after the statistics were fitted, so subtracting the *training* mean and dividing by
        # the *training* std cannot remove it. "Does not recover" = the standardized net still loses at least
        # 5 points on average over the shifts (the same line as the check above).
        Check("standardization fitted on the training data does not undo the shift",
              "Input standardization uses the training set's statistics; applied to shifted test inputs it passes the "
              "shift on, so it does not recover the lost accuracy (statistics of the shifted inputs themselves do).",
              mean_drop_std, 0.05, ">=",
              f"Mean accuracy drop over the shifts of the net trained on standardized inputs: "
              f"{mean_drop_std * 100:.1f} points ({', '.join(f'{k}: {v * 100:.1f}' for k, v in drop_std.items())}), "
              f"against {mean_drop_mm * 100:.1f} for min-max inputs: fitted on the training data, standardization "
              f"does not recover the shift. Per-image standardization, whose statistics move with the shift, drops "
              f"{', '.join(f'{k}: {v * 100:.1f}' for k, v in drop_pi.items())} points. " + table),
    ]
    numbers = {"test_acc": tolist(acc), "drop_min_max": tolist(drop), "drop_standardized": tolist(drop_std),
               "drop_per_image": tolist(drop_pi)}
    return Result(name="covariate-shift", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"acc": acc, "x": xte[:4], "shifts": list(SHIFTS)},
                  summary=f"drop under {worst}: {drop[worst] * 100:.1f} pts; mean drop standardized (train statistics) "
                          f"{mean_drop_std * 100:.1f} pts, per-image standardization "
                          f"{max(drop_pi.values()) * 100:.1f} pts")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    acc, shifts = result.arrays["acc"], result.arrays["shifts"]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 2]})
    x0 = result.arrays["x"][0]
    a0.imshow(torch.cat([SHIFTS[k](x0).reshape(28, 28) for k in shifts], dim=1).numpy(), cmap="gray", vmin=0, vmax=1)
    a0.set_xticks([14 + 28 * i for i in range(len(shifts))], shifts, fontsize=7)
    a0.set_yticks([])
    names = list(acc)
    w = 0.8 / len(names)
    for i, n in enumerate(names):
        a1.bar(np.arange(len(shifts)) + (i - (len(names) - 1) / 2) * w, [acc[n][k] for k in shifts], w, label=n)
    a1.set_xticks(np.arange(len(shifts)), shifts)
    a1.set_ylabel("test accuracy")
    a1.set_ylim(0, 1.02)
    a1.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return [Figure(fig, "covariate shift at test time",
                   "Left: one test digit as trained on, with a brighter background, and with lower contrast. Right: "
                   "test accuracy of the same net trained on three preprocessings of the same images. Statistics "
                   "fitted on the training set (standardization) are fixed before the shift happens, so the shifted "
                   "inputs arrive shifted; statistics of each image itself move with the shift.")]


EXPERIMENT = Experiment(
    name="covariate-shift",
    title="Covariate shift between training and test",
    claim="When the test inputs' distribution differs from the training inputs' (covariate shift), accuracy falls; "
          "standardization fitted on the training data does not undo such a shift.",
    source="course note 002 (covariate shift: training and test distributions differ; normalization), note 003 "
           "(covariate shift)",
    docs="data",
    run=run,
    plot=plot,
)
