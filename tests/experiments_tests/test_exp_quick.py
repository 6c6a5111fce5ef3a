"""The README's main command: ``trainlab reproduce --preset quick`` on the embedded data, offline.

Runs every experiment at the quick preset once (a few minutes on 2 CPU cores), writes
the report into ``test-artifacts/reproduce-quick/`` (kept as a CI artifact), and checks
the issue's conditions: under 10 minutes (of CPU time: a busy machine stretches the wall time); results.json valid; every check passed or,
where a claim did not hold on this data, the report explains it with numbers; the
page renders in Chromium (when installed).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
import re

import pytest
import torch

from trainlab.experiments import BUILTIN, REGISTRY
from trainlab.experiments._counts import QUICK_CHECKS, total_checks
from trainlab.report import reproduce, validate_results

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "test-artifacts" / "reproduce-quick"
LIMIT_SECONDS = 600  # issue 18: the quick preset within 10 minutes on 2 CPU cores
#: CPU seconds the quick preset took in this process and its children (set by the fixture)
CPU_SECONDS: dict[str, float] = {}
#: (experiment, check) pairs that did not hold at the quick preset, seed 0, with the reason in the report
KNOWN_NOT_HOLDING = {
    ("batchnorm", "BN does not reduce internal covariate shift"),  # Santurkar et al.'s finding, reproduced
    ("dropout", "plenty of data: dropout matters less"),  # 4,000 images are not "plenty" for this net
    ("augmentation", "mixup or cutmix raises test accuracy"),  # an MLP on 500 digits in 100 epochs: no gain
    ("augmentation", "cutout raises test accuracy"),  # +0.9 points at seed 0, -1.3 / -0.4 at seeds 1 / 2
    # issue 18's claims of the notes, measured; each explained with its numbers in the report and the docs
    ("vanishing-gradient", "a too high learning rate kills as much as 40% of the ReLUs"),  # 35.3%, the note says 40
    ("relu", "ReLU trains faster than tanh (Krizhevsky et al.'s 6x)"),  # 1.4x on a 2-layer MLP (sigmoid: 3.1x)
    ("bn-effects", "BN narrows the train/test gap a little"),  # on 300 images the BN net generalizes worse
    ("bn-effects", "without gamma and beta a BN-sigmoid net stays near-linear"),  # gamma/beta move 4.97 points
    ("bn-effects", "with gamma and beta the BN-sigmoid net is more accurate"),  # -0.3 points
    ("width", "a first hidden layer wider than the input works better"),  # +0.2 points, within seed noise
    ("small-data", "with very little data a random forest beats the MLP"),  # MLP 0.513 vs forest 0.404 at 20
    ("small-data", "with more data the MLP overtakes the random forest"),  # 0.939 vs 0.943 at 4,000 (the pool's most)
}


def _cpu_seconds() -> float:
    import resource

    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


@pytest.fixture(scope="module")
def quick():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what `trainlab reproduce` uses by default
    start = _cpu_seconds()
    try:
        report = reproduce(preset="quick", out=OUT)
    finally:
        torch.set_num_threads(before)
    CPU_SECONDS["quick"] = _cpu_seconds() - start
    return report


def test_quick_preset_runs_every_available_experiment_in_time(quick):
    r = quick.results
    assert r["complete"] and r["summary"]["errors"] == 0, [e["reason"] for e in r["experiments"] if e["reason"]]
    # The limit is on the CPU time the run took, not its wall time: with one torch thread the two are equal on
    # a quiet machine (444 s wall, 2026-12-07), but a busy one (other jobs on both cores, load 5-7) stretched
    # the wall time to 1,586 s for the same work. A slower trainlab shows in both.
    assert CPU_SECONDS["quick"] < LIMIT_SECONDS, (f"quick preset took {CPU_SECONDS['quick']:.0f} CPU seconds "
                                                  f"({r['seconds']:.0f} s wall)")
    available = [n for n in REGISTRY if REGISTRY[n].available()[0]]
    ran = [e["name"] for e in r["experiments"] if e["status"] in ("held", "did not hold")]
    assert ran == available
    # the counts the docs state (tests/docs_tests/test_counts.py) are these runs' counts
    for e in r["experiments"]:
        if e["name"] in ran and e["name"] in BUILTIN:
            assert len(e["checks"]) == QUICK_CHECKS[e["name"]], (e["name"], len(e["checks"]))
    if ran == list(BUILTIN):
        assert r["summary"]["checks"] == total_checks()
    for e in r["experiments"]:
        if e["name"] in ran:
            assert e["seconds"] is not None and e["seconds"] > 0
    validate_results(json.loads((OUT / "results.json").read_text()))


def test_every_check_holds_or_is_explained_with_numbers(quick):
    for e in quick.results["experiments"]:
        for c in e["checks"]:
            if c["passed"]:
                continue
            # a claim that did not hold must say why, with the numbers
            numbers = re.findall(r"\d+\.\d+|\d+", c["explanation"])
            assert len(c["explanation"]) > 150 and len(numbers) >= 4, (e["name"], c["name"], c["explanation"])
    # The claims measured not to hold on this data at seed 0, each explained in the report and in
    # docs/experiments.md. Any other check that fails is a regression.
    failed = {(e["name"], c["name"]) for e in quick.results["experiments"] for c in e["checks"] if not c["passed"]}
    assert failed <= KNOWN_NOT_HOLDING, sorted(failed - KNOWN_NOT_HOLDING)


def test_quick_report_renders_in_chromium(quick):
    spec = importlib.util.spec_from_file_location("_exp_browser", Path(__file__).with_name("test_exp_browser.py"))
    browser = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(browser)
    browser.require_chromium()
    n_figures = sum(len(e["figures"]) for e in quick.results["experiments"])
    found = browser.inspect_report(quick.html_path, "report-quick")
    browser.assert_renders(found, figures=n_figures)
