"""Experiments whose technique has not landed yet: listed in the report as not available.

Each answers ``available() -> (False, why)``. When the technique lands, its
experiment module replaces the entry in :data:`trainlab.experiments.BUILTIN`.
"""

from __future__ import annotations

import importlib.util

from trainlab.experiments._core import Experiment

__all__ = ["AUGMENTATION", "SEARCH"]


def _landed(*modules: str) -> str | None:
    for m in modules:
        try:
            if importlib.util.find_spec(m) is not None:
                return m
        except ModuleNotFoundError:
            continue
    return None


def _augmentation() -> tuple[bool, str]:
    found = _landed("trainlab.augment", "trainlab.data.augment", "trainlab.data._augment")
    if found:
        return False, f"{found} has landed, but its experiment has not been written yet"
    return False, ("data augmentation has not landed in trainlab yet (no trainlab.augment / trainlab.data.augment "
                   "module); its experiment will compare training with and without label-preserving transforms")


def _search() -> tuple[bool, str]:
    found = _landed("trainlab.search")
    if found:
        return False, f"{found} has landed, but its experiment has not been written yet"
    return False, ("hyperparameter search has not landed in trainlab yet (no trainlab.search module); its "
                   "experiment will rerun the textbook's random search (lr 10^U(-6,-2), weight decay 10^U(-8,-4))")


AUGMENTATION = Experiment(
    name="augmentation",
    title="Data augmentation",
    claim="Label-preserving transformations of the training images (small shifts, rotations; never a flip that "
          "turns a 6 into a 9) enlarge the data set and reduce overfitting.",
    source="course note 003 (data augmentation, noise robustness, mixup, cutout, cutmix)",
    docs="data",
    run=None,
    plot=None,
    available=_augmentation,
)

SEARCH = Experiment(
    name="search",
    title="Hyperparameter search",
    claim="Random search on a log scale finds good learning rates and weight decays faster than a grid; refine "
          "coarse-to-fine.",
    source="course notes 002 and 004 (grid vs random search, log-uniform sampling, coarse-to-fine); Saito ch. 6.5, "
           "hyperparameter_optimization.py (500 images, 100 trials, lr 10^U(-6,-2), weight decay 10^U(-8,-4), "
           "50 epochs)",
    docs="training",
    run=None,
    plot=None,
    available=_search,
)
