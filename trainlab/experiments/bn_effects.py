"""What else the notes say batch normalization does: larger rates, a little regularization, its cost, gamma/beta.

Four measurements, each with and without BN (``Linear -> BatchNorm -> activation``):

1. Largest stable learning rate (notes 000, 001: "BN allows a larger learning rate"):
   784-100x5-10 ReLU (He), plain SGD, batch 100; a population over learning rates
   (a factor ~3 apart) per net. A rate is *stable* when the member did not diverge and
   reached training accuracy >= 0.5 (chance 0.1).
2. Regularization (notes 000, 001: "BN adds noise ... and reduces overfitting"): the
   overfitting experiment's set-up (300 images, 784-100x6-10 ReLU, He, SGD lr 0.01,
   batch 100), with and without BN, same seeds; the train/test gap.
3. Cost (note 001: "extra computation"): seconds per training step of the net of (1),
   the fastest of several repeats (the machine's load only adds time).
4. Why gamma and beta (note 002, "problems with whitening": a standardized input puts a
   sigmoid in its near-linear region and loses the nonlinearity; note 003: scale and
   shift let each layer undo it): a BN-sigmoid net (784-100x3-10, Xavier) with the
   affine parameters (``affine=True``) and without (``affine=False``). After training,
   on the test images: the share of the sigmoids' inputs with ``|x| < 1`` (where the
   sigmoid is within 8% of its tangent line) and the test accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import activation_outputs, mlp, present, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.nn import BatchNorm, batch_norm_layers, compute_population_statistics
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.train import Trainer

SETTINGS = {
    "smoke": dict(lr_train=300, lr_hidden=[32] * 3, lrs=[0.1, 1.0], lr_epochs=1, learned=0.5,
                  gap_train=300, gap_test=200, gap_hidden=[32] * 2, gap_epochs=3, gap_seeds=1, gap_lr=0.01,
                  time_steps=5, time_repeats=2,
                  gb_train=300, gb_hidden=[32] * 2, gb_lr=0.5, gb_epochs=2, gb_seeds=1, batch_size=100, test=200),
    "quick": dict(lr_train=1000, lr_hidden=[100] * 5, lrs=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0], lr_epochs=3, learned=0.5,
                  gap_train=300, gap_test=1000, gap_hidden=[100] * 6, gap_epochs=120, gap_seeds=2, gap_lr=0.01,
                  time_steps=20, time_repeats=3,
                  gb_train=2000, gb_hidden=[100] * 3, gb_lr=0.5, gb_epochs=10, gb_seeds=2, batch_size=100, test=1000),
    # not a textbook experiment (the overfitting part follows overfit_weight_decay.py's 201 epochs)
    "textbook": dict(lr_train=5000, lr_hidden=[100] * 5, lrs=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0], lr_epochs=3,
                     learned=0.5, gap_train=300, gap_test=10000, gap_hidden=[100] * 6, gap_epochs=201, gap_seeds=3,
                     gap_lr=0.01, time_steps=50, time_repeats=5, gb_train=10000, gb_hidden=[100] * 3, gb_lr=0.5,
                     gb_epochs=10, gb_seeds=3, batch_size=100, test=10000),
}


def _sigmoid_bn_net(P: int, hidden: list[int], *, affine: bool, seed: int) -> nn.Sequential:
    layers: list = []
    for width in hidden:
        layers += [nn.Linear(None, width, init="lecun_normal"), BatchNorm(affine=affine), nn.Sigmoid()]
    layers.append(nn.Linear(None, 10, init="lecun_normal"))
    model = nn.Sequential(layers)
    model.build((784,), Population(P, seed=seed))
    return model


def _step_clock() -> Callable[[], float]:
    """The clock a step is timed on: the thread's CPU time when torch computes on this one thread (what the
    report and the test suite use), which a busy machine does not inflate -- a preempted run's wall time made
    "with BN" 0.38x "without" in one loaded run; wall-clock time when torch runs several threads (their work
    is not on this thread's clock)."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def _step_seconds(models: dict[str, nn.Sequential], x: torch.Tensor, y: torch.Tensor, steps: int,
                  repeats: int) -> dict[str, float]:
    """Each model's fastest mean time of one SGD step (forward, backward, update) over ``repeats`` runs of
    ``steps`` steps, the models' runs interleaved (a slow moment of the machine hits them alike)."""
    clock = _step_clock()
    runs = {}
    for label, model in models.items():
        loss = nn.SoftmaxCrossEntropy()
        loss.build(model.size)
        runs[label] = (model, loss, SGD(model.parameters(), lr=0.01))
    best = dict.fromkeys(models, math.inf)
    with torch.no_grad():
        for _ in range(repeats):
            for label, (model, loss, opt) in runs.items():
                t0 = clock()
                for _ in range(steps):
                    out = model.forward(x.unsqueeze(0), training=True)
                    loss.forward(out, y)
                    model.backward(loss.backward())
                    opt.step()
                best[label] = min(best[label], (clock() - t0) / steps)
    return best


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    bs = s["batch_size"]

    # ---- 1. largest stable learning rate
    data = splits(preset, train=s["lr_train"], test=0)
    lrs = s["lrs"]
    stable: dict[str, list[bool]] = {}
    lr_acc: dict[str, list[float]] = {}
    for label, bn in (("without BN", False), ("with BN", True)):
        m = mlp(len(lrs), s["lr_hidden"], activation="relu", init="he_normal", batchnorm=bn, seed=preset.seed)
        h = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=lrs), epochs=s["lr_epochs"], batch_size=bs,
                    seed=preset.seed, eval_every=10**9).fit(data.train)
        acc = np.nan_to_num(np.array(h.final["train_acc"], dtype=float), nan=0.0)
        acc[list(h.diverged)] = 0.0
        lr_acc[label] = acc.tolist()
        stable[label] = [bool(a >= s["learned"]) for a in acc]
    largest = {k: max([lr for lr, ok in zip(lrs, v) if ok], default=0.0) for k, v in stable.items()}
    if largest["without BN"] > 0:
        lr_ratio = largest["with BN"] / largest["without BN"]
    else:  # the plain net learned at no rate: any rate that BN learns at is "larger"; none at all is no answer
        lr_ratio = math.inf if largest["with BN"] > 0 else math.nan
    lr_text = (f"Largest learning rate of {lrs} at which the net learned (training accuracy >= {s['learned']} after "
               f"{s['lr_epochs']} epochs on {s['lr_train']} images, no divergence): with BN {largest['with BN']}, "
               f"without {largest['without BN']}. Accuracy per rate: with BN "
               f"{', '.join(f'{a:.2f}' for a in lr_acc['with BN'])}; without "
               f"{', '.join(f'{a:.2f}' for a in lr_acc['without BN'])}.")
    checks = [
        # The grid steps by ~3x; "larger" must be at least one step (x3), not a tie.
        Check("BN allows a larger learning rate",
              "With batch normalization, training stays stable at much larger learning rates.",
              lr_ratio, 3.0, ">=", lr_text + f" Ratio {lr_ratio:.3g}."),
    ]

    # ---- 2. train/test gap on the overfitting set-up
    gdata = splits(preset, train=s["gap_train"], test=s["gap_test"])
    G = s["gap_seeds"]
    gap: dict[str, dict] = {}
    for label, bn in (("without BN", False), ("with BN", True)):
        m = mlp(G, s["gap_hidden"], activation="relu", init="he_normal", batchnorm=bn, seed=preset.seed)
        h = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=s["gap_lr"]), epochs=s["gap_epochs"],
                    batch_size=bs, seed=preset.seed, eval_every=10**9).fit(gdata.train, test=gdata.test)
        tr, te = np.array(h.final["train_acc"]), np.array(h.final["test_acc"])
        gap[label] = {"train_acc": float(tr.mean()), "test_acc": float(te.mean()), "gap": float((tr - te).mean()),
                      "gap_per_seed": (tr - te).tolist()}
        if bn:  # is the BN net's test accuracy a matter of stale running averages? Ioffe & Szegedy's population
            # statistics over the training set answer it (bn-inference's measurement)
            compute_population_statistics(m, gdata.train.x, batch_size=bs)
            for layer in batch_norm_layers(m):
                layer.inference = "population"
            with torch.no_grad():
                gtest = present(gdata.test, "test")
                pred = m.forward(gtest.x.unsqueeze(0), training=False).argmax(-1)
            gap[label]["test_acc_population_stats"] = float((pred == gtest.y.unsqueeze(0)).double().mean())
    gap_reduction = gap["without BN"]["gap"] - gap["with BN"]["gap"]
    checks += [
        # The per-seed sd of the gap on this set-up is ~0.01; "a little" regularization = at least one point.
        Check("BN narrows the train/test gap a little",
              "BN's batch statistics add noise during training, which regularizes a little: the train/test gap of a "
              "net that overfits is smaller with BN.",
              gap_reduction, 0.01, ">=",
              f"300-image set-up ({s['gap_epochs']} epochs, {G} seeds): without BN train "
              f"{gap['without BN']['train_acc']:.3f}, test {gap['without BN']['test_acc']:.3f} (gap "
              f"{gap['without BN']['gap']:.3f}); with BN train {gap['with BN']['train_acc']:.3f}, test "
              f"{gap['with BN']['test_acc']:.3f} (gap {gap['with BN']['gap']:.3f}; with population statistics "
              f"instead of "
              f"the running averages: test {gap['with BN']['test_acc_population_stats']:.3f})."
              + ("" if gap_reduction >= 0.01 else
                 " On 300 images the claim did not hold: the BN net memorized its training images as well and "
                 "generalized worse"
                 + (", and not because of its running averages (population statistics give the same test accuracy "
                    "within 3 points)" if abs(gap['with BN']['test_acc_population_stats'] - gap['with BN']['test_acc'])
                    <= 0.03 else
                    "; part of it is the running averages (population statistics change the test accuracy by "
                    f"{(gap['with BN']['test_acc_population_stats'] - gap['with BN']['test_acc']) * 100:+.1f} points)")
                 + ". A likely reason (not measured here): with three batches of 100 images per epoch, BN's batch "
                   "noise has little variety -- the same 300 images are normalized with each other again and "
                   "again -- while the BN net fits them faster.")),
    ]

    # ---- 3. time per step
    xb, yb = data.train.x[:bs], data.train.y[:bs]
    secs = _step_seconds({label: mlp(1, s["lr_hidden"], activation="relu", init="he_normal", batchnorm=bn,
                                     seed=preset.seed)
                          for label, bn in (("without BN", False), ("with BN", True))},
                         xb, yb, s["time_steps"], s["time_repeats"])
    time_ratio = secs["with BN"] / secs["without BN"]
    checks += [
        # BN adds a mean, a variance and an affine map per layer and per step, and as much again backward;
        # with 100-unit layers that is not negligible next to the matrix products. 10% more is a floor well
        # above timing noise of the fastest of several repeats.
        Check("BN costs time per step",
              "BN adds computation: a training step takes longer with BN than without.",
              time_ratio, 1.1, ">=",
              f"Fastest mean time of one SGD step (batch {bs}, {'-'.join(map(str, [784, *s['lr_hidden'], 10]))}) "
              f"over {s['time_repeats']} runs of {s['time_steps']} steps: with BN {secs['with BN'] * 1e3:.2f} ms, "
              f"without {secs['without BN'] * 1e3:.2f} ms (ratio {time_ratio:.2f}; the runs interleaved, timed on "
              + ("the thread's CPU clock)." if torch.get_num_threads() == 1 else
                 "the wall clock, which varies with the machine's load).")),
    ]

    # ---- 4. BN-sigmoid with and without gamma/beta
    bdata = splits(preset, train=s["gb_train"], test=s["test"])
    gb: dict[str, dict] = {}
    for label, affine in (("without gamma, beta", False), ("with gamma, beta", True)):
        m = _sigmoid_bn_net(s["gb_seeds"], s["gb_hidden"], affine=affine, seed=preset.seed)
        h = Trainer(m, nn.SoftmaxCrossEntropy(), SGD(m.parameters(), lr=s["gb_lr"]), epochs=s["gb_epochs"],
                    batch_size=bs, seed=preset.seed, eval_every=10**9).fit(bdata.train, test=bdata.test)
        pre = activation_outputs(m, present(bdata.test, "test").x, pre=True)  # inputs of the sigmoids, eval mode
        allpre = torch.cat([p.reshape(m.size, -1) for p in pre], dim=1).double()
        gb[label] = {"linear_share": float((allpre.abs() < 1).double().mean()),
                     "linear_share_per_layer": [float((p.abs() < 1).double().mean()) for p in pre],
                     "pre_std": float(allpre.std()), "test_acc": float(np.mean(h.final["test_acc"])),
                     "train_acc": float(np.mean(h.final["train_acc"])),
                     "hist": np.histogram(allpre.clamp(-6, 6).numpy().ravel(), bins=48, range=(-6, 6))[0]}
    no, yes = gb["without gamma, beta"], gb["with gamma, beta"]
    share_drop = no["linear_share"] - yes["linear_share"]
    acc_gain = yes["test_acc"] - no["test_acc"]
    checks += [
        # By construction a standardized pre-activation has ~68% of its mass in |x| < 1 (a standard normal);
        # "confined" vs "not" = gamma/beta move at least 5 points of it out.
        Check("without gamma and beta a BN-sigmoid net stays near-linear",
              "Standardizing a sigmoid's input to mean 0 and variance 1 keeps it in the sigmoid's near-linear "
              "region; BN's learned scale gamma and shift beta let the net leave it.",
              share_drop, 0.05, ">=",
              f"Share of the sigmoids' inputs with |x| < 1 on the test images after training "
              f"({s['gb_epochs']} epochs, {s['gb_train']} images, SGD lr {s['gb_lr']}): without gamma/beta "
              f"{no['linear_share']:.3f} (a standard normal: 0.683), with {yes['linear_share']:.3f}; std of the inputs "
              f"{no['pre_std']:.2f} vs {yes['pre_std']:.2f}. Test accuracy without {no['test_acc']:.3f}, with "
              f"{yes['test_acc']:.3f}."
              + ("" if share_drop >= 0.05 else
                 f" The first half holds by construction (without gamma and beta {no['linear_share']:.0%} of the "
                 f"inputs sit in |x| < 1); the second did not: in {s['gb_epochs']} epochs the learned gamma and "
                 f"beta moved only {share_drop * 100:.1f} points of the inputs out of the near-linear band, and the "
                 "accuracy is the same -- on these digits the net had little use for more curvature.")),
        # Reported with the check above; the accuracy is what the nonlinearity is for. Half a point of 1,000
        # test images is beyond the noise of a paired comparison on the same seeds.
        Check("with gamma and beta the BN-sigmoid net is more accurate",
              "Letting BN rescale and shift (gamma, beta) restores the sigmoid's nonlinearity, and with it accuracy.",
              acc_gain, 0.005, ">=",
              f"Test accuracy with gamma/beta {yes['test_acc']:.3f}, without {no['test_acc']:.3f} "
              f"({acc_gain * 100:+.1f} "
              f"points; train {yes['train_acc']:.3f} vs {no['train_acc']:.3f})."
              + ("" if acc_gain >= 0.005 else
                 f" It did not hold here: with gamma and beta the net stayed almost as near-linear (share "
                 f"{yes['linear_share']:.3f} vs {no['linear_share']:.3f} in |x| < 1) and was no more accurate: on "
                 "these digits, three sigmoid layers used mostly near their linear band fit as well in this budget.")),
    ]
    numbers = {"lrs": lrs, "train_acc_per_lr": tolist(lr_acc), "largest_stable_lr": largest, "lr_ratio": lr_ratio,
               "gap": tolist(gap), "gap_reduction": gap_reduction, "seconds_per_step": tolist(secs),
               "time_ratio": time_ratio,
               "gamma_beta": {k: {kk: tolist(vv) for kk, vv in v.items() if kk != "hist"} for k, v in gb.items()}}
    return Result(name="bn-effects", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"lrs": lrs, "lr_acc": lr_acc, "gb": gb},
                  summary=f"largest stable lr {largest['with BN']} with BN vs {largest['without BN']}; gap "
                          f"{gap['with BN']['gap']:.2f} vs {gap['without BN']['gap']:.2f}; step x{time_ratio:.2f}; "
                          f"|x|<1 share {no['linear_share']:.2f} without gamma/beta vs {yes['linear_share']:.2f}")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    A = result.arrays
    fig1, ax = plt.subplots(figsize=(6.5, 3.6))
    for label, style in (("with BN", "o-"), ("without BN", "s--")):
        ax.semilogx(A["lrs"], A["lr_acc"][label], style, label=label)
    ax.axhline(result.settings["learned"], color="gray", ls=":", lw=1)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training accuracy after training")
    ax.set_ylim(0, 1.02)
    ax.legend()
    fig1.tight_layout()

    fig2, ax = plt.subplots(figsize=(6.5, 3.6))
    edges = np.linspace(-6, 6, 49)
    for label, c in (("without gamma, beta", "C1"), ("with gamma, beta", "C0")):
        share = A["gb"][label]["linear_share"]
        ax.stairs(A["gb"][label]["hist"], edges, color=c, lw=1.5, label=f"{label}: {share:.0%} in |x| < 1")
    ax.axvspan(-1, 1, color="gray", alpha=0.15)
    ax.set_xlabel("input of the sigmoid (clipped to +-6)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig2.tight_layout()
    n = result.numbers
    return [
        Figure(fig1, "largest stable learning rate",
               f"Training accuracy after {result.settings['lr_epochs']} epochs at each learning rate, with and without "
               f"BN (a member that diverged counts as 0). The largest rate that still learns: with BN "
               f"{n['largest_stable_lr']['with BN']}, without {n['largest_stable_lr']['without BN']}."),
        Figure(fig2, "why BN has gamma and beta",
               "Distribution of the sigmoids' inputs in a BN-sigmoid net after training. Without gamma and beta every "
               "input is standardized, so most of it stays in the grey band where the sigmoid is almost a straight "
               "line; with them the net can widen or shift the inputs to use the sigmoid's curvature."),
    ]


EXPERIMENT = Experiment(
    name="bn-effects",
    title="Batch normalization: larger learning rates, a little regularization, its cost, gamma and beta",
    claim="BN allows larger learning rates, regularizes a little (smaller train/test gap), costs extra computation per "
          "step, and needs its learned scale and shift (gamma, beta) because standardized inputs keep a sigmoid in "
          "its near-linear region.",
    source="course notes 000 and 001 (BN: larger learning rates, regularization through noise, extra computation), "
           "002 (problems with whitening: a sigmoid loses its nonlinearity; gamma and beta), 003 (scale and shift)",
    docs="normalization",
    run=run,
    plot=plot,
)
