"""Every available experiment runs at the tiny ``smoke`` preset and returns a well-formed Result.

The smoke preset is for tests only: its sizes are far too small for the claims to
hold, so this checks the shape of what comes back (settings, numbers, checks,
figures), not the verdicts. The verdicts are measured by the quick preset
(``test_exp_quick.py``, slow).
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from trainlab.experiments import BUILTIN, REGISTRY, Check, Figure, Preset, Result
from trainlab.experiments._counts import QUICK_CHECKS

AVAILABLE = [n for n in REGISTRY if REGISTRY[n].available()[0]]
SMOKE_SECONDS = 60  # generous: each takes ~1-5 s on an idle core


@pytest.fixture(scope="module")
def smoke_results():
    return {}


@pytest.mark.parametrize("name", AVAILABLE)
def test_smoke_run_returns_a_valid_result(name, smoke_results):
    exp = REGISTRY[name]
    result = exp.run(Preset("smoke"))
    smoke_results[name] = result
    assert isinstance(result, Result)
    assert result.name == name and result.preset == "smoke"
    assert 0 < result.seconds < SMOKE_SECONDS
    assert result.settings["preset"] == "smoke" and result.settings["data"] == "mnist-5k"
    assert result.checks, "an experiment must measure at least one check"
    if name in BUILTIN:  # the docs' counts (tests/docs_tests/test_counts.py) come from QUICK_CHECKS
        assert len(result.checks) <= QUICK_CHECKS[name], \
            f"{name} returns {len(result.checks)} checks: update trainlab.experiments._counts.QUICK_CHECKS"
    for c in result.checks:
        assert isinstance(c, Check)
        assert c.name and c.claim and c.explanation
        assert isinstance(c.passed, bool)
        if not math.isfinite(c.measured):
            assert not c.passed
    assert result.summary
    # settings and numbers go to results.json as they are (after NaN/inf -> null)
    json.dumps({"settings": result.settings, "numbers": result.numbers}, default=lambda o: None)

    figures = exp.plot(result)
    assert figures
    import matplotlib.pyplot as plt

    for f in figures:
        assert isinstance(f, Figure)
        assert f.title and len(f.caption) > 80, "a caption explains the figure in words"
        w, h = f.figure.get_size_inches()
        assert 3 <= w <= 12 and 2 <= h <= 10
        plt.close(f.figure)


@pytest.mark.parametrize("name", ["activations", "zero-init"])
def test_smoke_runs_are_deterministic(name):
    a = REGISTRY[name].run("smoke")
    b = REGISTRY[name].run("smoke")
    assert [c.measured for c in a.checks] == [c.measured for c in b.checks]
    assert a.numbers == b.numbers


def test_activation_histogram_ranges_fit_the_activation():
    r = REGISTRY["activations"].run("smoke")
    assert all(rng == (0.0, 1.0) for rng in r.arrays["sigmoid"]["ranges"])
    assert all(rng == (-1.0, 1.0) for rng in r.arrays["tanh"]["ranges"])
    assert all(lo == 0.0 and hi > 0 for lo, hi in r.arrays["relu"]["ranges"])
    # 6 initial draws (4 normal scales, Xavier and He uniform) x 5 layers x 30 bins, for each activation
    assert r.arrays["relu"]["hist"].shape == (6, 5, 30)


def test_zero_init_measures_identical_units():
    r = REGISTRY["zero-init"].run("smoke")
    distinct = r.numbers["distinct_units"]
    assert distinct[0] == [1] * len(distinct[0])  # zeros: one distinct unit per layer
    assert distinct[1] == [1] * len(distinct[1])  # constant
    assert min(distinct[2]) > 1                    # random


def test_member_optimizers_update_each_member_like_its_own_optimizer():
    """The optimizer-per-member helper gives member i exactly the steps of optimizer i alone."""
    from trainlab import nn
    from trainlab.experiments._common import MemberOptimizers
    from trainlab.optim import SGD, Adam

    w = nn.Parameter(torch.tensor([[1.0, -2.0], [1.0, -2.0]], dtype=torch.float64))
    opt = MemberOptimizers([w], [lambda ps: SGD(ps, lr=0.1), lambda ps: Adam(ps, lr=0.1)])
    ref = [nn.Parameter(torch.tensor([[1.0, -2.0]], dtype=torch.float64)) for _ in range(2)]
    refs = [SGD([ref[0]], lr=0.1), Adam([ref[1]], lr=0.1)]
    for _ in range(5):
        w.grad.copy_(2 * w.data)
        opt.step()
        for p, o in zip(ref, refs):
            p.grad.copy_(2 * p.data)
            o.step()
    assert torch.equal(w.data[0:1], ref[0].data) and torch.equal(w.data[1:2], ref[1].data)
