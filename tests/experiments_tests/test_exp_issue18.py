"""The pieces of issue 18's experiments that can be checked without training (fast).

The experiments themselves run in the smoke test (shape of the Result) and in the quick
preset (the verdicts, slow).
"""

from __future__ import annotations

import importlib.util
import math
import re

import pytest
import torch

from trainlab.experiments import REGISTRY
from trainlab.experiments.covariate_shift import SHIFTS, _per_image
from trainlab.experiments.relu import epochs_to
from trainlab.experiments.small_data import crossing

NEW = ["relu", "bn-effects", "regularizers", "width", "small-data", "covariate-shift"]


def test_crossing_finds_the_first_sign_change_or_none():
    assert crossing([20, 50, 200, 1000], [-0.1, -0.02, 0.03, 0.05]) == (50, 200)
    assert crossing([20, 50, 200], [0.1, 0.05, 0.2]) is None
    assert crossing([20, 50, 200], [-0.1, -0.05, -0.2]) is None
    assert crossing([20, 50], [-0.1, 0.0]) == (20, 50)  # a tie is a change of the leader


def test_epochs_to_is_one_based_and_inf_when_never_reached():
    assert epochs_to([0.5, 0.2, 0.01, 0.0], 0.02) == 3.0
    assert epochs_to([0.01], 0.02) == 1.0
    assert math.isinf(epochs_to([0.5, 0.4], 0.02))


def test_per_image_standardization_undoes_contrast_and_unclipped_brightness():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 784, generator=g) * 0.6
    assert torch.allclose(_per_image(SHIFTS["contrast x0.5"](x)), _per_image(x), atol=1e-5)
    # brightness +0.3 is clipped at 1; below 0.7 nothing is clipped, so the shift is exactly undone
    assert torch.allclose(_per_image(SHIFTS["brightness +0.3"](x)), _per_image(x), atol=1e-5)
    z = _per_image(x)
    assert torch.allclose(z.mean(1), torch.zeros(8), atol=1e-5)
    assert torch.allclose(z.std(1, correction=0), torch.ones(8), atol=1e-4)


def test_small_data_is_not_available_without_scikit_learn(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    ok, why = REGISTRY["small-data"].available()
    assert not ok and "scikit-learn" in why


@pytest.mark.parametrize("name", NEW)
def test_new_experiments_cite_their_note(name):
    exp = REGISTRY[name]
    assert re.search(r"course notes? 00[0-4]", exp.source)
    assert len(exp.claim) > 40
