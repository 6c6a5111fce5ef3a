"""The course's dead-ReLU example, measured: the dead share grows with the learning rate; Leaky ReLU removes it."""

from __future__ import annotations

from pathlib import Path
import sys

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from doctor_measure import dead_relu_vs_lr  # noqa: E402  (benchmarks/doctor_measure.py)

torch.set_num_threads(1)


@pytest.mark.slow
def test_dead_relus_grow_with_the_learning_rate_and_leaky_relu_removes_them():
    """784-100-100-100-10, one epoch of SGD on 4,000 embedded MNIST images, 3 seeds per rate.

    Measured (seed 0): ReLU dead 0.4%, 1.3%, 0.4%, 3.6%, 43% at lr 0.01, 0.1, 0.3, 0.5, 0.8 (the course:
    "up to 40%"); Leaky ReLU: no unit cut off from the gradient at any rate, although 16.5% of its units are
    negative on every image at lr 0.8.
    """
    r = dead_relu_vs_lr()
    relu, leaky = r["by"]["relu"], r["by"]["leaky_relu"]
    dead = relu["dead"]
    # grows with the rate: the two highest rates kill the most, the highest by far
    assert dead[-1] > dead[-2] > max(dead[:3])
    assert dead[-1] >= 0.2
    assert dead[-1] >= 10 * max(dead[0], 0.005)
    # the probe's "dead" is what a backward measures: those units' weights get exactly zero gradient
    for d, z in zip(dead, relu["zero_gradient"]):
        assert z >= d - 1e-9
    # Leaky ReLU: no dead unit, measured by the backward pass itself, at every rate
    assert leaky["dead"] == [0.0] * len(r["lrs"])
    assert leaky["zero_gradient"] == [0.0] * len(r["lrs"])
    # ... and fewer of its units are pushed below zero on every image than ReLUs die
    assert leaky["inactive"][-1] < dead[-1]


def test_dead_relu_count_on_a_small_run():
    """The same measurement, small (2 rates, 1 seed, 1,000 images): runs in the default suite."""
    r = dead_relu_vs_lr(lrs=(0.01, 0.8), seeds=1, train=1000)
    relu, leaky = r["by"]["relu"], r["by"]["leaky_relu"]
    assert relu["dead"][1] > relu["dead"][0]
    assert relu["zero_gradient"][1] >= relu["dead"][1] - 1e-9
    assert leaky["zero_gradient"] == [0.0, 0.0] or leaky["zero_gradient"][1] is None  # None: diverged
