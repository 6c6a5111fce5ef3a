"""Batch normalization at inference: running averages, population statistics, batch statistics.

A BN net (784-100x5-10, ``Linear -> BatchNorm -> ReLU``, He init) trains on MNIST;
``seeds`` copies train as one population. Its test predictions are then made three
ways:

* running averages: the exponential moving averages kept during training
  (``momentum=0.1`` in PyTorch's convention = the textbook's 0.9);
* population statistics: Ioffe & Szegedy's Algorithm 2, ``E[x] = mean of the batch
  means`` and ``Var[x] = m/(m-1) x mean of the batch variances`` over one pass of the
  training set (:func:`trainlab.nn.compute_population_statistics`);
* batch statistics: normalizing each test batch by its own mean and variance (BN left
  in training mode), for several test batch sizes.
"""

from __future__ import annotations

import numpy as np
import torch

from trainlab import nn
from trainlab.experiments._common import mlp, present, splits, tolist
from trainlab.experiments._core import Check, Experiment, Figure, Preset, Result
from trainlab.optim import SGD
from trainlab.train import Trainer

SETTINGS = {
    "smoke": dict(train=500, test=200, hidden=[50] * 3, lr=0.1, epochs=2, batch_size=100, seeds=2,
                  test_batches=[2, 20, 200], stats_batch=100),
    "quick": dict(train=4000, test=1000, hidden=[100] * 5, lr=0.1, epochs=10, batch_size=100, seeds=3,
                  test_batches=[2, 4, 16, 64, 1000], stats_batch=100),
    "textbook": dict(train=None, test=10000, hidden=[100] * 5, lr=0.1, epochs=10, batch_size=100, seeds=3,
                     test_batches=[2, 4, 16, 64, 1000], stats_batch=100),
}


@torch.no_grad()
def _predict(model: nn.Sequential, x: torch.Tensor, *, batch: int, training: bool) -> torch.Tensor:
    """``(P, N)`` predicted classes, ``batch`` test examples at a time."""
    preds = []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        if training and xb.shape[0] < 2:  # batch statistics need 2 examples: fold a lone last one in
            xb = x[i - 1:i + 1]
            preds.append(model.forward(xb.unsqueeze(0), training=True).argmax(-1)[:, 1:])
            continue
        preds.append(model.forward(xb.unsqueeze(0), training=training).argmax(-1))
    return torch.cat(preds, dim=1)


def run(preset: Preset) -> Result:
    from trainlab.nn import batch_norm_layers, compute_population_statistics

    s = dict(preset.pick(SETTINGS))
    data = splits(preset, train=s["train"], test=s["test"])
    model = mlp(s["seeds"], s["hidden"], activation="relu", init="he_normal", batchnorm=True, seed=preset.seed)
    Trainer(model, nn.SoftmaxCrossEntropy(), SGD(model.parameters(), lr=s["lr"]), epochs=s["epochs"],
            batch_size=s["batch_size"], seed=preset.seed, eval_every=10**9, eval_train=False).fit(data.train)
    test = present(data.test, "test")
    x, y = test.x, test.y
    bns = batch_norm_layers(model)

    running = _predict(model, x, batch=1000, training=False)
    compute_population_statistics(model, data.train.x, batch_size=s["stats_batch"])
    for layer in bns:
        layer.inference = "population"
    population = _predict(model, x, batch=1000, training=False)
    for layer in bns:
        layer.inference = "running"
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    batch_preds = {}
    g = torch.Generator().manual_seed(preset.seed)
    perm = torch.randperm(x.shape[0], generator=g)  # mixed classes in every test batch
    inv = torch.argsort(perm)
    for b in s["test_batches"]:
        batch_preds[b] = _predict(model, x[perm], batch=b, training=True)[:, inv]
        model.load_state_dict(saved)  # training-mode passes moved the running averages: put them back

    def acc(p: torch.Tensor) -> np.ndarray:
        return (p == y.unsqueeze(0)).double().mean(dim=1).numpy()

    def agree(p: torch.Tensor) -> np.ndarray:
        return (p == population).double().mean(dim=1).numpy()

    accs = {"running averages": acc(running), "population statistics": acc(population)}
    agreement = {"running averages": agree(running)}
    for b, p in batch_preds.items():
        accs[f"batch statistics, batch {b}"] = acc(p)
        agreement[f"batch statistics, batch {b}"] = agree(p)
    mean_acc = {k: float(v.mean()) for k, v in accs.items()}
    mean_agree = {k: float(v.mean()) for k, v in agreement.items()}
    smallest = min(s["test_batches"])
    drop = mean_acc["population statistics"] - mean_acc[f"batch statistics, batch {smallest}"]
    agree_small = mean_agree[f"batch statistics, batch {smallest}"]
    numbers = {"test_acc": tolist(mean_acc), "agreement_with_population": tolist(mean_agree),
               "test_acc_per_seed": {k: tolist(v) for k, v in accs.items()}}
    ra = mean_agree["running averages"]
    checks = [
        # Both estimate the same E[x] and Var[x]; the moving average weighs the last
        # ~10 batches most, so borderline test images may flip either way. The
        # accuracies must agree within 1 point (10 of 1,000 test images).
        Check("running averages and population statistics give the same accuracy",
              "At inference BN uses fixed estimates of the mean and variance; the moving averages kept during "
              "training do as well as the population statistics of the textbook algorithm.",
              abs(mean_acc["running averages"] - mean_acc["population statistics"]), 0.01, "<=",
              f"Test accuracy {mean_acc['running averages']:.4f} (running) vs {mean_acc['population statistics']:.4f} "
              f"(population); the two give the same prediction on {ra:.1%} of the test images."),
        # With 2 examples per batch the "mean" and "variance" are those of 2 images, so
        # every prediction depends on its batch partner; a drop of 2 points is a clear loss.
        Check("batch statistics at test time hurt with small batches",
              "Normalizing test data with the statistics of its own (small) batch makes each prediction depend on "
              "the other images in the batch and loses accuracy: use the fixed statistics at inference.",
              drop, 0.02, ">=",
              f"Test accuracy with population statistics {mean_acc['population statistics']:.4f}; with each test "
              f"batch's own statistics: "
              + ", ".join(f"batch {b}: {mean_acc[f'batch statistics, batch {b}']:.4f}" for b in s["test_batches"])
              + f". Agreement with the population-statistics predictions at batch {smallest}: {agree_small:.3f}."),
    ]
    return Result(name="bn-inference", preset=preset.name, settings=s, numbers=numbers, checks=checks,
                  arrays={"acc": mean_acc, "agree": mean_agree, "batches": s["test_batches"]},
                  summary=f"running vs population agree {ra:.1%}; batch-{smallest} statistics lose "
                          f"{drop * 100:.1f} accuracy points")


def plot(result: Result) -> list[Figure]:
    import matplotlib.pyplot as plt

    acc, agree, batches = result.arrays["acc"], result.arrays["agree"], result.arrays["batches"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    xb = np.arange(len(batches))
    a1.plot(xb, [acc[f"batch statistics, batch {b}"] for b in batches], "o-", label="batch statistics")
    a1.axhline(acc["population statistics"], color="C2", ls="--", label="population statistics")
    a1.axhline(acc["running averages"], color="C1", ls=":", label="running averages")
    a1.set_xticks(xb, [str(b) for b in batches])
    a1.set_xlabel("test batch size (batch statistics)")
    a1.set_ylabel("test accuracy")
    a1.legend(fontsize=8)
    a2.plot(xb, [agree[f"batch statistics, batch {b}"] for b in batches], "o-", label="batch statistics")
    a2.axhline(agree["running averages"], color="C1", ls=":", label="running averages")
    a2.set_xticks(xb, [str(b) for b in batches])
    a2.set_xlabel("test batch size (batch statistics)")
    a2.set_ylabel("same prediction as population statistics")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return [Figure(fig, "three ways to normalize at test time",
                   "Left: test accuracy of the same trained BN net when each BN layer normalizes with the moving "
                   "averages kept during training (dotted), with population statistics computed over the training "
                   "set after training (dashed), or with the statistics of the test batch itself (dots, by batch "
                   "size). Right: how often each way gives the same answer as the population statistics. The two "
                   "fixed estimates agree almost everywhere; a test batch's own statistics are noisy when the batch "
                   "is small, and then an image's prediction depends on which other images share its batch.")]


EXPERIMENT = Experiment(
    name="bn-inference",
    title="Batch normalization at inference",
    claim="At inference BN must normalize with fixed statistics -- population estimates or the moving averages kept "
          "during training, which agree -- not with the statistics of the test batch.",
    source="course notes 002 (BN algorithm for inference: population estimates, moving averages) and 003 (BN at "
           "inference uses the learned statistics)",
    docs="normalization",
    run=run,
    plot=plot,
)
