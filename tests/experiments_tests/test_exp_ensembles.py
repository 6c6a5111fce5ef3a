"""The ensembles + transfer-learning experiment: a well-formed smoke result, and the quick preset's claims.

The smoke preset is far too small for the claims (its checks may fail); it checks the
shape of the Result, the figures and that results.json accepts it. The quick preset
(slow, ~40 s on one core) measures the claims of issue 10: the ensemble of 5 beats its
average member, and transfer beats training from scratch at 10 and 50 labels per class.
"""

from __future__ import annotations

import json
import math

import pytest

from trainlab.experiments import BUILTIN, REGISTRY, Preset
from trainlab.report import validate_results

CHECKS = ["an ensemble of {m} beats its average member", "an ensemble of {m} is better calibrated than its members",
          "diminishing returns: most of the gain of {M} members is reached with {m}"]


def test_registered_after_second_order():
    names = list(BUILTIN)
    assert names.index("ensembles") == names.index("second-order") + 1
    exp = REGISTRY["ensembles"]
    assert exp.docs == "ensembles" and "course note 004" in exp.source
    assert exp.available() == (True, "")


def test_smoke_result_is_well_formed_and_its_figures_have_captions():
    exp = REGISTRY["ensembles"]
    r = exp.run(Preset("smoke"))
    assert r.name == "ensembles" and r.preset == "smoke" and 0 < r.seconds < 30
    assert r.settings["preset"] == "smoke" and r.settings["data"] == "mnist-5k"
    s = r.settings
    M, m = s["ensemble"]["members"], s["ensemble"]["size"]
    names = [c.name for c in r.checks]
    transfer = ["transfer beats training from scratch at 10 labels per class"]
    assert names == [t.format(m=m, M=M) for t in CHECKS] + transfer
    for c in r.checks:
        assert c.claim and len(c.explanation) > 80 and isinstance(c.passed, bool)
        assert math.isfinite(c.measured)
    ens = r.numbers["ensemble"]
    assert ens["size"] == list(range(1, M + 1)) and len(ens["test_acc"]) == len(ens["ece"]) == M
    assert ens["test_acc"][0] == pytest.approx(sum(ens["member_test_acc"]) / M, abs=1e-5)  # size 1 = mean member
    tr = r.numbers["transfer"]
    assert set(tr["by_kind"]) == {"scratch", "plain", "augmented"}
    runs = s["transfer"]["draws"][0] * s["transfer"]["seeds"]
    for kind in tr["runs"]:
        assert len(tr["runs"][kind]["10"]) == runs
        assert all(0 <= a <= 1 for a in tr["runs"][kind]["10"])
    json.dumps({"settings": r.settings, "numbers": r.numbers}, allow_nan=False)
    figures = exp.plot(r)
    assert [f.title for f in figures] == ["ensemble size: accuracy and calibration",
                                          "transfer learning with few labels"]
    import matplotlib.pyplot as plt

    for f in figures:
        assert len(f.caption) > 200
        plt.close(f.figure)


def test_results_json_accepts_the_smoke_result(tmp_path):
    from trainlab.report import reproduce

    report = reproduce(["ensembles"], preset="smoke", out=tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    validate_results(data)
    (entry,) = data["experiments"]
    assert entry["name"] == "ensembles" and entry["status"] in ("held", "did not hold")
    assert len(entry["figures"]) == 2 and report.html_path.exists()


@pytest.mark.slow
def test_quick_preset_claims_hold():
    """Issue 10: measured on embedded MNIST, the ensemble of 5 beats its average member's test accuracy and
    transfer beats from-scratch at 10 and 50 labels per class (means over draws of the labels x seeds)."""
    r = REGISTRY["ensembles"].run(Preset("quick"))  # its time is measured by `reproduce --list`, not asserted here
    failed = [(c.name, c.measured, c.threshold_text(), c.explanation) for c in r.checks if not c.passed]
    assert not failed, failed
    assert [c.name for c in r.checks][-2:] == ["transfer beats training from scratch at 10 labels per class",
                                               "transfer beats training from scratch at 50 labels per class"]
    by = r.numbers["transfer"]["by_kind"]
    # the recipe's point: plain pretraining does not win at 10 labels, augmented pretraining does
    assert by["augmented"]["10"]["diff"] > by["plain"]["10"]["diff"]
