"""The course's BatchNorm claim, measured on real MNIST (slow).

The course notes (and Saito, *Deep Learning from Scratch*, ch. 6.3) say BatchNorm
makes learning faster and far less dependent on the weight initialization. The
textbook's experiment: a 784-100x5-10 ReLU net, 1,000 MNIST training images, SGD
lr 0.01, batch 100, 20 epochs (200 steps), weights drawn from N(0, s^2) for a range
of scales s, with and without BatchNorm (Linear -> BN -> ReLU). Here each variant is
ONE population of 8 members, s = 8 log-spaced values from 1 to 1e-3, trained in one run.

Measured (population seed 0, this code, CPU float32; steps to reach 60% training
accuracy, evaluated every 5 steps on all 1,000 images; "-" = not within 200 steps):

    scale       1.0    0.373  0.139  0.0518 0.0193 0.0072 0.0027 0.001
    no BN       - (a)  - (a)  75     -      -      -      -      -
    BN          -      -      90     50     40     50     55     60
    final training accuracy (step 200)
    no BN       0.100  0.100  0.805  0.143  0.147  0.100  0.100  0.100   mean 0.199
    BN          0.400  0.536  0.805  0.944  0.999  1.000  0.998  0.996   mean 0.835

    (a) diverged (loss NaN at steps 4 and 7; the Trainer froze them).

Population seeds 1 and 2 gave the same picture: without BN only s = 0.373 (90 steps)
and s = 0.139 (75) learn, next to He's sqrt(2/100) = 0.141; with BN every s <= 0.139
reaches 60%, in 40-110 steps. Two honest details the numbers show: where the plain
net does learn, BN is not faster (75 vs 90 steps at s = 0.139); and BN does NOT
rescue too-large scales (s = 1, 0.373): BN's output is invariant to the scale of the
weights before it, so their gradient shrinks like 1/|w| and the relative update like
lr/|w|^2 -- the large-init members learn slowly (a torch.nn.BatchNorm1d copy of
the s = 1 member trains to the same ~0.40). The claim "BN learns at far more scales
and, at most scales, reaches a given accuracy in fewer steps" holds.

Why 60%: the plain net at its best scale crosses 60% at step 75 but 80% only at step
195 of 200, so an 80% threshold would be decided by where the budget happens to end;
60% is reached well inside it by every configuration that learns at all, and no
configuration that fails to learn gets near it (best non-learner: 0.194).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlab.data import load_splits
from trainlab.nn import Linear, ReLU, Sequential, SoftmaxCrossEntropy
from trainlab.nn._norm import BatchNorm
from trainlab.optim import SGD
from trainlab.population import Population
from trainlab.train import Trainer

pytestmark = pytest.mark.slow

SCALES = np.logspace(0, -3, 8).tolist()
THRESHOLD = 0.6
EPOCHS = 20        # 1,000 images / batch 100 = 10 steps per epoch: 200 steps
EVAL_EVERY = 5     # steps between training-accuracy evaluations


def train_curve(splits, *, batchnorm: bool) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``(E,)`` and training accuracy ``(E, P)``, one population member per init scale."""
    layers = []
    for _ in range(5):
        layers.append(Linear(None, 100, init="normal", init_scale=SCALES))
        if batchnorm:
            layers.append(BatchNorm())
        layers.append(ReLU())
    layers.append(Linear(None, 10, init="normal", init_scale=SCALES))
    model = Sequential(layers)
    model.build(splits.input_shape, Population(len(SCALES), seed=0))
    trainer = Trainer(model, SoftmaxCrossEntropy(), SGD(model.parameters(), lr=0.01), epochs=EPOCHS,
                      batch_size=100, seed=0, eval_every=EVAL_EVERY, eval_train=True)
    history = trainer.fit(splits.train)
    return history["step"], history["train_acc"]


def steps_to(steps: np.ndarray, acc: np.ndarray, threshold: float) -> np.ndarray:
    """First evaluated step at which each member reaches ``threshold`` (inf: never)."""
    reached = acc >= threshold
    first = np.argmax(reached, axis=0)
    return np.where(reached.any(axis=0), steps[first], np.inf)


@pytest.fixture(scope="module")
def curves():
    threads = torch.get_num_threads()
    # The kernels here are tiny (100x100 matrices): one thread is fastest and does not
    # collapse when other processes share the cores.
    torch.set_num_threads(1)
    try:
        splits = load_splits("mnist-5k", train=1000, val=0, test=0, seed=0)
        return {"plain": train_curve(splits, batchnorm=False), "bn": train_curve(splits, batchnorm=True)}
    finally:
        torch.set_num_threads(threads)


def test_batchnorm_learns_at_far_more_init_scales(curves) -> None:
    bn = steps_to(*curves["bn"], THRESHOLD)
    plain = steps_to(*curves["plain"], THRESHOLD)
    # measured: BN reaches 60% at 6 of 8 scales (s <= 0.139), the plain net at 1 (s = 0.139)
    assert np.isfinite(bn).sum() >= 5, bn
    assert np.isfinite(plain).sum() <= 2, plain
    assert np.isfinite(bn).sum() - np.isfinite(plain).sum() >= 4
    # final training accuracy averaged over the scales: measured BN 0.835, plain 0.199
    final_bn, final_plain = curves["bn"][1][-1], curves["plain"][1][-1]
    assert final_bn.mean() > final_plain.mean() + 0.4, (final_bn, final_plain)


def test_batchnorm_reaches_the_accuracy_in_fewer_steps_at_most_scales(curves) -> None:
    bn = steps_to(*curves["bn"], THRESHOLD)
    plain = steps_to(*curves["plain"], THRESHOLD)
    # measured: BN first at 5 of 8 scales (s = 0.0518 ... 0.001: 50/40/50/55/60 steps vs never);
    # plain first at s = 0.139 (75 vs 90); neither at s = 1, 0.373.
    assert (bn < plain).sum() >= 5, (bn, plain)
    # BN needs few steps where it learns: measured median 52.5 over the 6 scales that reach 60%
    assert np.median(bn[np.isfinite(bn)]) <= 100, bn
