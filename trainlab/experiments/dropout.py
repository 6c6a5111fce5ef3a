"""Dropout: rate, activations, data-set size, the two scaling conventions, MC-dropout.

All nets are 784-128-128-10 ReLU (He init) with dropout after each hidden layer,
trained with momentum SGD (lr 0.02, 0.9), batch 100; ``p`` is the drop probability.

1. Rate sweep: one population, one member per rate, on a medium training set.
2. Activations: the first hidden layer of the trained ``p = 0.5`` member, with and
   without a dropout mask, in both conventions (classic: training output ``x * m``,
   test output scaled by ``1 - p``; inverted: training output ``x * m / (1 - p)``).
3. Data-set size: with and without dropout (at the sweep's best rate) x seeds, one
   population per size, the same number of steps at every size.
4. Inverted vs classic: the same net trained in each convention; each one's
   deterministic test-time output ("weight scaling") against the average of many
   stochastic passes.
5. MC-dropout (Gal & Ghahramani 2016): the mean of ``samples`` stochastic passes and
   its predictive entropy, on correct and wrong predictions.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab import nn
from trainlab.data import Splits
from trainlab.experiments._common import (activation_outputs, mlp, pool_train, present, splits, steps_to_reach,
                                          tolist)
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import Momentum
from trainlab.regularize import L2
from trainlab.train import History, Trainer

SETTINGS = {
    "smoke": dict(hidden=[32, 32], lr=0.02, momentum=0.9, batch_size=100, rates=[0.0, 0.5], sweep_train=300,
                  sweep_steps=30, sizes=[100, 300], size_seeds=1, size_steps=30, size_rate="best", test=200,
                  mc_samples=5, l2=[1e-3], slow_loss=1.0, big_hidden=[64] * 3, big_train=100, big_epochs=2,
                  big_batch=50),
    "quick": dict(hidden=[128, 128], lr=0.02, momentum=0.9, batch_size=100, rates=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7],
                  sweep_train=1000, sweep_steps=800, sizes=[100, 1000, 4000], size_seeds=2, size_steps=1000,
                  size_rate="best", test=1000, mc_samples=30, l2=[1e-4, 3e-4, 1e-3, 3e-3], slow_loss=0.05,
                  big_hidden=[2048] * 3, big_train=300, big_epochs=5, big_batch=50),
    # not a textbook experiment (Srivastava et al. 2014, fig. 9, used sizes 100 to 50,000 of MNIST); with full
    # MNIST the sizes reach 50,000
    "textbook": dict(hidden=[128, 128], lr=0.02, momentum=0.9, batch_size=100,
                     rates=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7], sweep_train=1000, sweep_steps=2000,
                     sizes=[100, 500, 1000, 5000, 10000, 50000], size_seeds=3, size_steps=3000, size_rate="best",
                     test=10000, mc_samples=50, l2=[1e-4, 3e-4, 1e-3, 3e-3], slow_loss=0.05,
                     big_hidden=[2048] * 3, big_train=5000, big_epochs=20, big_batch=100),
}


def _mc(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, samples: int) -> dict[str, np.ndarray]:
    """MC-dropout mean prediction vs the deterministic one, per member."""
    probs, unc = nn.mc_dropout_predict(model, x, samples=samples)
    with torch.no_grad():
        det = model.forward(x.unsqueeze(0), training=False).argmax(-1)
    mc = probs.argmax(-1)
    correct = mc == y.unsqueeze(0)
    ent = unc.entropy.double()
    ent_right = (ent * correct).sum(1) / correct.sum(1).clamp(min=1)
    ent_wrong = (ent * ~correct).sum(1) / (~correct).sum(1).clamp(min=1)
    return {"agreement": (mc == det).double().mean(1).numpy(), "mc_acc": correct.double().mean(1).numpy(),
            "det_acc": (det == y.unsqueeze(0)).double().mean(1).numpy(), "entropy_right": ent_right.numpy(),
            "entropy_wrong": ent_wrong.numpy(), "entropy": ent.numpy(), "correct": correct.numpy()}


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    loss = nn.SoftmaxCrossEntropy

    def train(model: nn.Sequential, data: Splits, steps: int) -> History:
        opt = Momentum(model.parameters(), lr=s["lr"], momentum=s["momentum"])
        return Trainer(model, loss(), opt, steps=steps, batch_size=min(s["batch_size"], len(data.train)),
                       seed=preset.seed, eval_every=10**9).fit(data.train, test=data.test)

    # ---- 1. rate sweep; in the same population, members without dropout but with weight decay (L2 of the
    # textbook's form 0.5 lambda sum W^2) at several strengths: dropout vs weight decay at their best settings
    data = splits(preset, train=s["sweep_train"], test=s["test"])
    rates, lams = s["rates"], s["l2"]
    sweep = mlp(len(rates) + len(lams), s["hidden"], dropout=rates + [0.0] * len(lams), seed=preset.seed)
    spe = -(-s["sweep_train"] // s["batch_size"])
    h = Trainer(sweep, loss(), Momentum(sweep.parameters(), lr=s["lr"], momentum=s["momentum"]),
                steps=s["sweep_steps"], batch_size=s["batch_size"], seed=preset.seed, eval_every=spe,
                regularizers=[L2([0.0] * len(rates) + lams, form="half")]).fit(data.train, test=data.test)
    all_test, all_train = np.array(h.final["test_acc"]), np.array(h.final["train_acc"])
    sweep_test, sweep_train = all_test[:len(rates)], all_train[:len(rates)]
    l2_test = all_test[len(rates):]
    best = int(np.argmax(sweep_test))
    best_l2 = int(np.argmax(l2_test))
    # dropout slows convergence: epochs until the training loss (measured without dropout) first reaches a level
    train_loss = np.nan_to_num(np.asarray(h["train_loss"], dtype=float), nan=np.inf)  # (evaluations, P)
    half = max(i for i, r in enumerate(rates) if r <= 0.5)
    ep_plain = steps_to_reach(train_loss[:, 0], s["slow_loss"])
    ep_drop = steps_to_reach(train_loss[:, half], s["slow_loss"])
    # a member that never gets there within the run counts the whole run (the ratio is then a lower bound)
    slow_ratio = min(ep_drop, len(train_loss)) / ep_plain if np.isfinite(ep_plain) else float("nan")
    sweep_checks = [  # each check is made once its measurement exists (a live lesson shows it then)
        # The course recommends 0.2-0.5; the sweep's best rate must be a moderate one
        # (0.1-0.5), and the highest rate must do worse than the best.
        Check("a moderate rate works best",
              "Dropout rates of about 0.2-0.5 work best: too low does not prevent overfitting, too high hinders "
              "learning.",
              rates[best], (0.1, 0.5), "between",
              f"Test accuracy by rate {rates}: {', '.join(f'{v:.3f}' for v in sweep_test)} ({s['sweep_train']} "
              f"training images); best at p = {rates[best]}; at p = {rates[-1]}: {sweep_test[-1]:.3f}."),
        # Srivastava et al. (2014, sec. 7.4): a dropout net takes 2-3 times longer to train. 1.5x the epochs to
        # the same training loss (measured without dropout, on the training images) is a clear slow-down.
        Check("dropout slows convergence",
              "Dropout makes training slower: the net needs more epochs to reach the same training loss.",
              slow_ratio, 1.5, ">=",
              f"Epochs until the training loss (evaluated without dropout) first reaches {s['slow_loss']}: without "
              f"dropout {ep_plain:.0f}, with p = {rates[half]} "
              + (f"{ep_drop:.0f}" if np.isfinite(ep_drop) else f"not within the {len(train_loss)} epochs of the run")
              + f" (ratio {slow_ratio:.2f}" + ("" if np.isfinite(ep_drop) else ", a lower bound")
              + f"; {s['sweep_train']} images, {s['sweep_steps']} steps)."),
        # Srivastava et al. (2014, table 9): on MNIST dropout beats L2 weight decay, each at its best setting.
        # "At least as good" = not more than half a point (5 of 1,000 test images) behind.
        Check("dropout vs weight decay at their best settings",
              "Compared at their best settings, dropout does at least as well as weight decay (Srivastava et al. "
              "2014, table 9).",
              sweep_test[best] - l2_test[best_l2], -0.005, ">=",
              f"Best test accuracy ({s['sweep_train']} images, same population, same seeds): dropout p = {rates[best]} "
              f"{sweep_test[best]:.3f}; weight decay lambda = {lams[best_l2]} (of {lams}) {l2_test[best_l2]:.3f}; "
              f"neither: {sweep_test[0]:.3f}. The best settings were picked on the test images themselves, for both."),
    ]

    # ---- 1b. the note's own net, 784-2048-2048-2048-10, with and without dropout (p = 0.5), small and short
    bdata = splits(preset, train=s["big_train"], test=s["test"])
    big = mlp(2, s["big_hidden"], dropout=[0.0, 0.5], seed=preset.seed)
    hb = Trainer(big, loss(), Momentum(big.parameters(), lr=s["lr"], momentum=s["momentum"]), epochs=s["big_epochs"],
                 batch_size=s["big_batch"], seed=preset.seed, eval_every=10**9).fit(bdata.train, test=bdata.test)
    big_tr, big_te = np.array(hb.final["train_acc"]), np.array(hb.final["test_acc"])
    note_net_checks = [
        # The note's figure (Srivastava et al. fig. 4): the 784-2048-2048-2048-10 net overfits without dropout. With
        # only a few hundred images and a few epochs (the quick preset keeps this 10-million-weight net cheap),
        # the claim is read as: dropout narrows its train/test gap by at least one point.
        Check("the note's 784-2048-2048-2048-10 net: dropout narrows the gap",
              "On the note's own net, 784-2048-2048-2048-10, dropout (p = 0.5) keeps the net from overfitting.",
              (big_tr[0] - big_te[0]) - (big_tr[1] - big_te[1]), 0.01, ">=",
              f"{s['big_train']} training images, {s['big_epochs']} epochs, batch {s['big_batch']} (cheap on purpose: "
              f"the net has ~10 million weights): without dropout train {big_tr[0]:.3f}, test {big_te[0]:.3f} (gap "
              f"{big_tr[0] - big_te[0]:.3f}); with p = 0.5 train {big_tr[1]:.3f}, test {big_te[1]:.3f} (gap "
              f"{big_tr[1] - big_te[1]:.3f})."),
    ]

    # ---- 2. activations of the first hidden layer, p = 0.5 (or the largest rate below it)
    j = max(i for i, r in enumerate(rates) if r <= 0.5)
    p = rates[j]
    h1 = activation_outputs(sweep, present(data.test, "test").x)[0][j]  # (N, units), after ReLU, before dropout
    g = torch.Generator().manual_seed(preset.seed)
    keep = (torch.rand(h1.shape, generator=g) >= p).to(h1.dtype)
    acts = {"without dropout": h1, "classic (training)": h1 * keep, "inverted (training)": h1 * keep / (1 - p)}
    act_mean = {k: float(v.mean()) for k, v in acts.items()}
    act_zero = {k: float((v == 0).double().mean()) for k, v in acts.items()}
    ratio_classic = act_mean["classic (training)"] / act_mean["without dropout"]
    activation_checks = [
        # Classic dropout zeroes a fraction p of the units and keeps the others as they
        # are, so the mean falls by the factor (1 - p); +-0.05 is the sampling noise of one
        # mask over 1,000 x 128 activations many times over.
        Check("dropout lowers the mean activation and makes it sparser",
              "During training, dropout switches units off: the mean activation falls and the distribution becomes "
              "sparser.",
              ratio_classic, (1 - p - 0.05, 1 - p + 0.05), "between",
              f"First hidden layer, p = {p}: mean activation {act_mean['without dropout']:.4f} without dropout, "
              f"{act_mean['classic (training)']:.4f} with a classic mask (ratio {ratio_classic:.3f}, expected "
              f"{1 - p:.2f}); share of exact zeros {act_zero['without dropout']:.1%} -> "
              f"{act_zero['classic (training)']:.1%}. Inverted dropout divides the kept units by 1 - p, so its mean "
              f"stays {act_mean['inverted (training)']:.4f}: the distribution is sparser but its mean is kept, by "
              f"design."),
    ]

    # ---- 3. data-set size, at the rate the sweep found best (or a fixed one)
    S = s["size_seeds"]
    rate = s["size_rate"]
    if rate == "best":  # the sweep's best rate; 0.5 (the classic default) if no dropout won
        rate = rates[best] if rates[best] > 0 else 0.5
    size_rows = []
    sizes = sorted({min(n, pool_train(preset, test=s["test"])) for n in s["sizes"]})
    for n in sizes:
        d = splits(preset, train=n, test=s["test"])
        m = mlp(2 * S, s["hidden"], dropout=[0.0, rate] * S, seed=preset.seed)
        hh = train(m, d, s["size_steps"])
        te = np.array(hh.final["test_acc"]).reshape(S, 2)
        tr = np.array(hh.final["train_acc"]).reshape(S, 2)
        size_rows.append({"size": n, "test_without": float(te[:, 0].mean()), "test_with": float(te[:, 1].mean()),
                          "train_without": float(tr[:, 0].mean()), "train_with": float(tr[:, 1].mean()),
                          "benefit": float((te[:, 1] - te[:, 0]).mean()),
                          "benefit_sd": float((te[:, 1] - te[:, 0]).std())})
        if n == sizes[min(2, len(sizes) - 1)]:
            inverted_model, inverted_data = m, d
    benefits = [r["benefit"] for r in size_rows]
    peak = max(benefits[1:-1]) if len(benefits) > 2 else max(benefits)
    size_text = "; ".join(f"{r['size']}: {r['test_without']:.3f} -> {r['test_with']:.3f} ({r['benefit'] * 100:+.1f})"
                          for r in size_rows)
    size_checks = [
        # Two seeds: the sd of the benefit is ~1 point. "Does not help" = no gain beyond
        # half a point; "helps" = at least one point; "matters less" = at least half a
        # point below the best gain.
        Check("very little data: dropout does not help",
              "With very little data dropout does not improve the test accuracy (it can even make it worse).",
              benefits[0], 0.005, "<=",
              f"Test accuracy without -> with dropout (p = {rate}) at {size_rows[0]['size']} training images: "
              f"{size_rows[0]['test_without']:.3f} -> {size_rows[0]['test_with']:.3f} "
              f"({benefits[0] * 100:+.1f} points, sd over {S} seeds {size_rows[0]['benefit_sd'] * 100:.1f})."
              + (f" The gain is within the seed-to-seed spread: at {size_rows[0]['size']} images dropout neither "
                 f"clearly helps nor clearly hurts here (Srivastava et al.'s much larger nets, at p = 0.5, were hurt)."
                 if benefits[0] > 0.005 and size_rows[0]["benefit_sd"] >= benefits[0] else "")),
        Check("medium data: dropout helps",
              "With a medium amount of data dropout improves the test accuracy.",
              peak, 0.01, ">=",
              f"Test accuracy without -> with dropout (p = {rate}), by training-set size: {size_text} (points)."),
        Check("plenty of data: dropout matters less",
              "With plenty of data dropout matters less, because overfitting is no longer the main problem.",
              peak - benefits[-1], 0.005, ">=",
              f"Gain at {size_rows[-1]['size']} images {benefits[-1] * 100:+.1f} points vs the best gain "
              f"{peak * 100:+.1f} at a smaller size."
              + (f" {size_rows[-1]['size']} images are not yet 'plenty' for this net: without dropout it still "
                 f"overfits (train {size_rows[-1]['train_without']:.3f}, test {size_rows[-1]['test_without']:.3f}: a "
                 f"gap of {(size_rows[-1]['train_without'] - size_rows[-1]['test_without']) * 100:.1f} points), so "
                 f"there is still overfitting for dropout to remove. Srivastava et al. saw the gain shrink only around "
                 f"50,000 images; the embedded pool has 5,000, and the textbook preset on full MNIST goes to 50,000."
                 if peak - benefits[-1] < 0.005 else "")),
    ]

    # ---- 4. inverted vs classic; 5. MC-dropout
    classic_model = mlp(2 * S, s["hidden"], dropout=[0.0, rate] * S, dropout_mode="classic", seed=preset.seed)
    train(classic_model, inverted_data, s["size_steps"])  # same members (and seeds) as the inverted population
    inverted_test = present(inverted_data.test, "test")
    xt, yt = inverted_test.x, inverted_test.y
    mc_inv = _mc(inverted_model, xt, yt, s["mc_samples"])
    mc_cls = _mc(classic_model, xt, yt, s["mc_samples"])
    with_drop = np.arange(2 * S) % 2 == 1  # the members trained with dropout
    agree_inv = float(mc_inv["agreement"][with_drop].mean())
    agree_cls = float(mc_cls["agreement"][with_drop].mean())
    acc_inv = float(mc_inv["det_acc"][with_drop].mean())
    acc_cls = float(mc_cls["det_acc"][with_drop].mean())
    ent_right = float(mc_inv["entropy_right"][with_drop].mean())
    ent_wrong = float(mc_inv["entropy_wrong"][with_drop].mean())

    numbers = {
        "rates": rates, "sweep_test_acc": tolist(sweep_test), "sweep_train_acc": tolist(sweep_train),
        "l2_lambdas": lams, "l2_test_acc": tolist(l2_test), "best_l2": lams[best_l2],
        "epochs_to_train_loss": {"level": s["slow_loss"], "without": ep_plain if np.isfinite(ep_plain) else None,
                                 f"p={rates[half]}": ep_drop if np.isfinite(ep_drop) else None},
        "note_net": {"hidden": s["big_hidden"], "train": s["big_train"], "epochs": s["big_epochs"],
                     "train_acc": tolist(big_tr), "test_acc": tolist(big_te), "members": ["p=0", "p=0.5"]},
        "best_rate": rates[best], "activation_rate": p, "activation_mean": tolist(act_mean),
        "activation_zero_fraction": tolist(act_zero), "size_rate": rate, "sizes": tolist(size_rows),
        "inverted_vs_classic": {"test_acc_inverted": acc_inv, "test_acc_classic": acc_cls,
                                "mc_agreement_inverted": agree_inv, "mc_agreement_classic": agree_cls},
        "mc_dropout": {"samples": s["mc_samples"], "mc_acc": float(mc_inv["mc_acc"][with_drop].mean()),
                       "deterministic_acc": acc_inv, "entropy_correct": ent_right, "entropy_wrong": ent_wrong},
    }
    mc_checks = [
        # Weight scaling replaces the average over masks by one pass with expected values;
        # for ReLU nets the two agree on nearly all images (Srivastava et al. 2014, sec. 7.5).
        Check("inverted and classic dropout: test-time scaling matches the average over masks",
              "Both conventions make the test-time output the expected training output (classic scales at test "
              "time by the keep probability, inverted scales during training), so the deterministic prediction "
              "agrees with averaging many dropped-out networks.",
              min(agree_inv, agree_cls), 0.95, ">=",
              f"Share of test images where the deterministic prediction equals the mean of {s['mc_samples']} "
              f"dropout passes: inverted {agree_inv:.3f}, classic {agree_cls:.3f}; test accuracy inverted "
              f"{acc_inv:.3f}, classic {acc_cls:.3f}."),
        # An uncertainty estimate is useful when it is higher on the mistakes; 1.5 x is a
        # clear separation (measured ~3x).
        Check("MC-dropout: more uncertainty on wrong predictions",
              "Averaging stochastic passes at test time (MC-dropout) gives an uncertainty estimate: it is higher "
              "where the net is wrong.",
              ent_wrong / max(ent_right, 1e-12), 1.5, ">=",
              f"Mean predictive entropy (nats) on correct test predictions {ent_right:.3f}, on wrong ones "
              f"{ent_wrong:.3f}; MC accuracy {numbers['mc_dropout']['mc_acc']:.3f} vs deterministic {acc_inv:.3f}."),
    ]
    # the report's order (by topic), not the order they were measured in
    checks = [sweep_checks[0], *activation_checks, *size_checks, *sweep_checks[1:], *note_net_checks, *mc_checks]
    return Result(name="dropout", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"rates": rates, "sweep_test": sweep_test, "sweep_train": sweep_train,
                          "acts": {k: v.reshape(-1).numpy() for k, v in acts.items()}, "p": p,
                          "sizes": size_rows, "mc": mc_inv, "with_drop": with_drop},
                  summary=f"best rate {rates[best]}; gain by size "
                          + ", ".join(f"{r['size']}: {r['benefit'] * 100:+.1f}" for r in size_rows)
                          + f" pts; MC entropy wrong/right x{ent_wrong / max(ent_right, 1e-12):.1f}")


def _train_sentence(A: dict) -> str:
    train = list(A["sweep_train"])
    moderate = [t for r, t in zip(A["rates"], train) if r <= 0.5]
    if min(moderate) >= 0.95:
        return f"The training accuracy stays at {min(moderate):.2f} or more up to p = 0.5: the net still fits its " \
               "training images."
    return f"The training accuracy goes from {train[0]:.2f} without dropout to {train[-1]:.2f} at p = " \
           f"{A['rates'][-1]}: dropout handicaps the net while it learns."


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    A = result.arrays
    fig1, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(A["rates"], A["sweep_train"], "o-", label="train")
    ax.plot(A["rates"], A["sweep_test"], "s--", label="test")
    ax.set_xlabel("dropout rate p (drop probability)")
    ax.set_ylabel("accuracy")
    ax.legend()
    fig1.tight_layout()

    fig2, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    acts = A["acts"]
    hi = float(np.quantile(acts["inverted (training)"][acts["inverted (training)"] > 0], 0.99))
    bins = np.linspace(0, hi, 40)
    for k, c in zip(acts, ("C0", "C1", "C2")):
        v = acts[k]
        a1.hist(v[v > 0], bins=bins, histtype="step", color=c, lw=1.5, label=f"{k}: {np.mean(v == 0):.0%} zeros")
    a1.set_xlabel("activation (positive values)")
    a1.set_ylabel("count")
    a1.legend(fontsize=7)
    means = [float(np.mean(acts[k])) for k in acts]
    a2.bar(range(3), means, color=["C0", "C1", "C2"])
    a2.set_xticks(range(3), ["without", "classic", "inverted"])
    a2.set_ylabel("mean activation")
    fig2.tight_layout()

    rows = A["sizes"]
    fig3, ax = plt.subplots(figsize=(6.5, 3.8))
    sizes = [r["size"] for r in rows]
    ax.semilogx(sizes, [r["test_without"] for r in rows], "o-", label="without dropout")
    ax.semilogx(sizes, [r["test_with"] for r in rows], "s--", label="with dropout")
    for r in rows:
        ax.annotate(f"{r['benefit'] * 100:+.1f}", (r["size"], r["test_with"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig3.tight_layout()

    mc = A["mc"]
    m = int(np.nonzero(A["with_drop"])[0][0])
    ent, correct = mc["entropy"][m], mc["correct"][m]
    fig4, ax = plt.subplots(figsize=(6.5, 3.6))
    bins = np.linspace(0, max(float(ent.max()), 1e-6), 30)
    ax.hist(ent[correct], bins=bins.tolist(), alpha=0.6, density=True, label="correct predictions")
    ax.hist(ent[~correct], bins=bins.tolist(), alpha=0.6, density=True, label="wrong predictions")
    ax.set_xlabel("predictive entropy of the MC-dropout average (nats)")
    ax.set_ylabel("density")
    ax.legend()
    fig4.tight_layout()
    n = result.numbers
    return [
        Figure(fig1, "dropout rate",
               f"Training and test accuracy of the same net trained with each dropout rate (one population, "
               f"{result.settings['sweep_train']} training images). " + _train_sentence(A) + " The test accuracy goes "
               f"from {A['sweep_test'][0]:.3f} without dropout to {max(A['sweep_test']):.3f} at p = {n['best_rate']} "
               f"and is {A['sweep_test'][-1]:.3f} at p = {A['rates'][-1]}: too little dropout leaves the overfitting, "
               "too much hampers learning."),
        Figure(fig2, "activations with and without dropout",
               f"Left: the first hidden layer's positive outputs on the test images, without dropout and with a "
               f"dropout mask (p = {A['p']}); the legend gives the share of outputs that are exactly 0. Right: the "
               "mean activation. Dropout makes the activations sparser. With the classic convention (the course's) "
               "the kept values are unchanged, so the mean drops by the factor 1 - p and must be scaled at test "
               "time; inverted dropout scales the kept values up by 1/(1 - p) during training, which keeps the mean "
               "and lets the test-time network run unchanged."),
        Figure(fig3, "dropout and the amount of data",
               f"Test accuracy without and with dropout (p = {n['size_rate']}, the best rate of the sweep) for growing "
               f"training sets, same number of steps each; numbers are the gain in points. The course's claim: with very little data dropout does not "
               f"help, with a medium amount it helps most, with plenty of data it matters less."),
        Figure(fig4, "MC-dropout uncertainty",
               f"Keeping dropout on at test time and averaging {n['mc_dropout']['samples']} passes gives both a "
               "prediction and a measure of how unsure it is (the entropy of the averaged probabilities). Wrong "
               "predictions (orange) have much higher entropy than correct ones: the net knows when it is guessing."),
    ]


EXPERIMENT = Experiment(
    name="dropout",
    title="Dropout",
    claim="Dropping units at random while training (rate ~0.2-0.5) regularizes: it lowers and sparsifies the "
          "activations during training, helps most with medium amounts of data, and the test-time scaling "
          "(classic or inverted) matches the average over dropped-out networks; kept on at test time it estimates "
          "uncertainty.",
    source="course notes 000 and 002 (dropout mechanics, rate 0.2-0.5, test-time scaling), 001 (dropout vs data-set "
           "size, after Srivastava et al. 2014), 004 (mean activation and activation distribution with dropout, "
           "training vs testing)",
    docs="dropout",
    run=run,
    plot=plot,
)
