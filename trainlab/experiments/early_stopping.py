"""Early stopping: watch the validation loss, stop when it stops improving, restore the best weights.

The overfitting set-up (a 784-100x6-10 ReLU net, He init, batch 100, few training
images) with a validation split, and SGD lr 0.1 (at the textbook's 0.01 the
validation loss only turns up after ~120 epochs, and slowly). Two runs of the same ``seeds`` members:
one trains for the full length (the whole validation curve), the other with
``EarlyStopping(monitor="val_loss", patience=..., restore_best=True)``. Members are
independent, so each early-stopped member follows the full run's trajectory exactly
until it stops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainlab import nn
from trainlab.experiments._common import mlp, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.train import Callback, EarlyStopping, Trainer

# patience counts as Keras does since issue 18 (stop at the patience-th evaluation without
# improvement); these are the old 3 and 10 plus one, so the runs and verdicts are unchanged
SETTINGS = {
    "smoke": dict(train=300, val=200, test=200, hidden=[50] * 3, lr=0.05, batch_size=100, epochs=20, patience=4,
                  seeds=2),
    "quick": dict(train=300, val=500, test=1000, hidden=[100] * 6, lr=0.1, batch_size=100, epochs=150, patience=11,
                  seeds=3),
    # the textbook has no early-stopping script; its overfitting set-up (300 images, 784-100x6-10, batch 100,
    # 201 epochs) with SGD lr 0.1 instead of 0.01, so that the validation loss turns up well within the run
    "textbook": dict(train=300, val=1000, test=10000, hidden=[100] * 6, lr=0.1, batch_size=100, epochs=201,
                     patience=11, seeds=5),
}


def run(preset: Preset) -> Result:
    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], val=s["val"], test=s["test"])
    spe = -(-s["train"] // s["batch_size"])
    S = s["seeds"]

    def trainer(model: nn.Sequential, callbacks: Sequence[Callback] = ()) -> Trainer:
        return Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=s["lr"]), epochs=s["epochs"],
                       batch_size=s["batch_size"], seed=preset.seed, eval_every=spe, callbacks=list(callbacks))

    full_model = mlp(S, s["hidden"], activation="relu", init="he_normal", seed=preset.seed)
    full = trainer(full_model).fit(data.train, val=data.val, test=data.test)
    epochs = full["epoch"]
    val_loss = full["val_loss"]  # (evals, S)
    best_i = np.nanargmin(val_loss, axis=0)
    best_epoch = epochs[best_i]
    min_val = val_loss[best_i, np.arange(S)]
    rise = val_loss[-1] - min_val
    checks = [
        # Early stopping assumes the validation loss turns up once the net overfits; a rise
        # of 0.1 nats from the minimum (mean over seeds) is far above its epoch-to-epoch noise.
        Check("the validation loss rises once the net overfits",
              "After a while the validation loss stops falling and rises again while the training loss keeps "
              "falling: the net starts to overfit.",
              float(rise.mean()), 0.1, ">=",
              f"Validation loss at its minimum (epoch {', '.join(f'{e:.0f}' for e in best_epoch)}): "
              f"{', '.join(f'{v:.3f}' for v in min_val)}; after {s['epochs']} epochs: "
              f"{', '.join(f'{v:.3f}' for v in val_loss[-1])}."),
    ]

    es_model = mlp(S, s["hidden"], activation="relu", init="he_normal", seed=preset.seed)
    stopper = EarlyStopping("val_loss", patience=s["patience"], restore_best=True)
    es = trainer(es_model, [stopper]).fit(data.train, val=data.val, test=data.test)
    stop_epoch = np.array([es.stopped[m]["epoch"] if m in es.stopped else epochs[-1] for m in range(S)], dtype=float)
    es_best = np.array(es.info["early_stopping"]["best_epoch"])
    restored_val = np.array(es.final["val_loss"])
    restore_err = np.abs(restored_val - np.array(es.info["early_stopping"]["best"]))
    test_full, test_es = np.array(full.final["test_loss"]), np.array(es.final["test_loss"])
    acc_full, acc_es = np.array(full.final["test_acc"]), np.array(es.final["test_acc"])
    numbers = {"best_epoch": tolist(best_epoch), "stop_epoch": tolist(stop_epoch),
               "early_stopping_best_epoch": tolist(es_best), "min_val_loss": tolist(min_val),
               "final_val_loss_full_run": tolist(val_loss[-1]), "restored_val_loss": tolist(restored_val),
               "test_loss": {"full": tolist(test_full), "early_stopped": tolist(test_es)},
               "test_acc": {"full": tolist(acc_full), "early_stopped": tolist(acc_es)},
               "epochs_saved": tolist(s["epochs"] - stop_epoch)}
    checks += [
        # Restoring is exact: the restored weights are the ones evaluated at the best epoch.
        Check("early stopping restores the best weights",
              "With patience, training stops some epochs after the validation loss's minimum, and the weights of "
              "the best epoch are restored.",
              float(restore_err.max()), 1e-6, "<=",
              f"Stopped at epoch {', '.join(f'{e:.0f}' for e in stop_epoch)} of {s['epochs']} (patience "
              f"{s['patience']} epochs); best epoch {', '.join(f'{e:.0f}' for e in es_best)}; validation loss of the "
              f"restored weights vs the best one recorded: largest difference {restore_err.max():.1e}."),
        # The point of it all: the restored model does at least as well on unseen data as
        # the one trained to the end (test loss, mean over seeds).
        Check("the early-stopped model generalizes better",
              "The model kept by early stopping does better on new data than the one trained to the end, and "
              "training ends sooner.",
              float((test_full - test_es).mean()), 0.0, ">=",
              f"Test loss: trained to the end {test_full.mean():.3f}, early-stopped {test_es.mean():.3f}; test "
              f"accuracy {acc_full.mean():.3f} vs {acc_es.mean():.3f}; epochs saved "
              f"{(s['epochs'] - stop_epoch).mean():.0f} of {s['epochs']}."
              + (" Accuracy tells a slightly different story here: the net trained to the end classifies a few more "
                 "test images correctly, but it is overconfident on the ones it gets wrong, which the loss (what "
                 "early stopping monitored) punishes. Monitor val_acc to stop on accuracy instead."
                 if acc_full.mean() > acc_es.mean() else "")),
    ]
    return Result(name="early-stopping", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"epochs": epochs, "val_loss": val_loss, "train_loss": full["train_loss"],
                          "stop_epoch": stop_epoch, "best_epoch": es_best, "restored": restored_val},
                  summary=f"stopped at epoch {stop_epoch.mean():.0f}/{s['epochs']} (best {es_best.mean():.0f}); test "
                          f"loss {test_full.mean():.2f} -> {test_es.mean():.2f}")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    A = result.arrays
    fig, ax = plt.subplots(figsize=(7.5, 4))
    m = 0
    ax.plot(A["epochs"], A["train_loss"][:, m], color="C0", label="training loss")
    ax.plot(A["epochs"], A["val_loss"][:, m], color="C1", label="validation loss")
    ax.axvline(A["best_epoch"][m], color="C2", ls="--", label=f"best epoch ({A['best_epoch'][m]:.0f}): weights restored")
    ax.axvline(A["stop_epoch"][m], color="C3", ls=":", label=f"stopped (epoch {A['stop_epoch'][m]:.0f})")
    ax.plot([A["best_epoch"][m]], [A["restored"][m]], "o", color="C2")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_ylim(0, max(2.5, float(np.nanmax(A["val_loss"][:, m])) * 1.05))
    ax.legend(fontsize=8)
    fig.tight_layout()
    s = result.settings
    return [Figure(fig, "validation curve and the stopping point",
                   f"Training and validation loss of one net (the full run, {s['epochs']} epochs). The training loss "
                   "keeps falling; the validation loss reaches a minimum and then rises as the net starts to memorize "
                   f"its {s['train']} training images. Early stopping watches the validation loss, waits "
                   f"{s['patience']} epochs without improvement (the patience), stops (dotted line) and puts back the "
                   "weights of the best epoch (dashed line, dot).")]


EXPERIMENT = Experiment(
    name="early-stopping",
    title="Early stopping",
    claim="Stop training when the validation loss stops improving (after some patience) and keep the weights of the "
          "best epoch: it prevents overfitting and saves time.",
    source="course notes 001 (early stopping, decided on a validation set) and 003 (early stopping with patience)",
    docs="early_stopping",
    run=run,
    plot=plot,
)
