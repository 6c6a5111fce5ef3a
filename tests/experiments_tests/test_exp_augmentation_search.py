"""The search experiment at the smoke preset: what it measures is well formed.

``test_exp_smoke.py`` runs every available experiment (these included) for the shape of
its Result and figures, and ``test_exp_quick.py`` (slow) measures every check at the
quick preset; here, the search experiment's own numbers are checked for consistency.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from trainlab.experiments import REGISTRY, Preset
from trainlab.experiments import search as search_exp


@pytest.fixture(scope="module")
def smoke():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exp = REGISTRY["search"]
        result = exp.run(Preset("smoke"))
        figures = exp.plot(result)
    finally:
        torch.set_num_threads(before)
    yield result, figures
    import matplotlib.pyplot as plt

    for f in figures:
        plt.close(f.figure)


def test_search_smoke_result_is_complete_and_json_safe(smoke):
    result, figures = smoke
    assert result.name == "search" and result.preset == "smoke" and 0 < result.seconds < 60
    names = [c.name for c in result.checks]
    assert len(names) == len(set(names)) == 8
    for c in result.checks:
        assert c.claim and len(c.explanation) > 40 and any(ch.isdigit() for ch in c.explanation)
    json.dumps({"settings": result.settings, "numbers": result.numbers}, allow_nan=True)
    assert [f.title for f in figures] == ["the textbook's random search", "grid vs random search",
                                          "uniform vs log-uniform draws", "coarse-to-fine search"]
    assert all(len(f.caption) > 150 for f in figures)


def test_random_search_trials_stay_in_the_textbook_ranges(smoke):
    result, _ = smoke
    rows = result.arrays["random"]["rows"]
    assert len(rows) == result.settings["trials"]
    assert sorted(r["slot"] for r in rows) == list(range(len(rows)))
    for r in rows:
        assert search_exp.LR[0] <= r["lr"] <= search_exp.LR[1]
        assert search_exp.WD[0] <= r["wd"] <= search_exp.WD[1]
        assert math.isnan(r["value"]) or 0.0 <= r["value"] <= 1.0
    imp = result.numbers["random_search"]["importance"]
    assert set(imp) == {"lr", "wd"} and abs(imp["lr"] + imp["wd"] - 1.0) < 1e-3


def test_grid_tries_three_values_of_x_and_random_search_nine(smoke):
    result, _ = smoke
    gr = result.arrays["grid_vs_random"]
    ex = gr["example"]
    assert len({round(x, 9) for x, _ in ex["grid"]}) == 3 and len(ex["grid"]) == 9
    assert len({round(x, 9) for x, _ in ex["random"]}) == 9
    assert sorted({round(x, 9) for x, _ in ex["grid"]}) == [round(v, 9) for v in search_exp.GRID_VALUES]
    assert len(gr["best_random"]) == len(gr["best_grid"]) == result.settings["synthetic_repeats"]
    # each best value is the function's value at a point: between 0 and the peak's 1 + 0.1
    assert all(0.0 <= v <= 1.1 + 1e-9 for v in [*gr["best_random"], *gr["best_grid"]])


def test_decade_shares_are_shares_of_all_draws(smoke):
    result, _ = smoke
    d = result.numbers["draws"]
    assert len(d["decades"]) == len(d["uniform"]) == len(d["log_uniform"]) == 4
    for key in ("uniform", "log_uniform"):
        assert abs(sum(d[key]) - 1.0) < 1e-3  # every draw lies in one of the 4 decades of [1e-6, 1e-2]
    values = result.arrays["draws"]["log-uniform"]["values"]
    assert len(values) == result.settings["draws"] and values.min() >= 1e-6 and values.max() <= 1e-2


def test_coarse_to_fine_boxes_are_nested_and_hold_their_trials(smoke):
    result, _ = smoke
    cf = result.arrays["c2f"]
    rounds = cf["rounds"]
    assert len(rounds) == result.settings["c2f_rounds"] and cf["nested"] is True
    assert rounds[0]["box"] == {"optim.lr": list(search_exp.LR), "optim.weight_decay": list(search_exp.WD)}
    for r in rounds:
        lo, hi = r["slots"]
        (l0, l1), (w0, w1) = r["box"]["optim.lr"], r["box"]["optim.weight_decay"]
        for t in cf["rows"]:
            if lo <= t["slot"] <= hi:
                assert l0 * (1 - 1e-9) <= t["lr"] <= l1 * (1 + 1e-9)
                assert w0 * (1 - 1e-9) <= t["wd"] <= w1 * (1 + 1e-9)
    ratios = cf["area_ratios"]
    assert ratios[0] == pytest.approx(1.0) and all(b <= a + 1e-12 for a, b in zip(ratios, ratios[1:]))


def test_search_results_follow_the_results_schema(tmp_path):
    from trainlab.report import reproduce, validate_results

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rep = reproduce(["search"], preset="smoke", out=tmp_path)
    finally:
        torch.set_num_threads(before)
    results = json.loads((tmp_path / "results.json").read_text())
    validate_results(results)
    (e,) = results["experiments"]
    assert e["name"] == "search" and e["status"] in ("held", "did not hold") and len(e["figures"]) == 4
    assert rep.html_path.exists()
