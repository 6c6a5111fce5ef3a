"""The report on CIFAR-10 (``--data cifar10``): image experiments run on it, digit-only ones say why
not, and the report names the data set of each experiment. Data: a small CIFAR-format fixture."""

from __future__ import annotations

import json

import pytest

from trainlab.data.testing import write_cifar10
from trainlab.report import reproduce


@pytest.mark.slow
def test_reproduce_on_cifar10_fixture(tmp_path) -> None:
    data = write_cifar10(tmp_path / "cifar", train_per_batch=30, test=200, seed=0)
    out = tmp_path / "report"
    reproduce(["activations", "augmentation"], preset="smoke", data="cifar10", data_dir=str(data), out=out)
    results = json.loads((out / "results.json").read_text())
    assert results["data"] == "cifar10"
    by_name = {e["name"]: e for e in results["experiments"]}
    aug = by_name["augmentation"]
    assert aug["status"] in ("held", "did not hold"), aug["reason"]
    assert aug["settings"]["data"] == "cifar10"
    act = by_name["activations"]
    assert act["status"] == "not available"
    assert act["reason"] == ("its nets are built for 28x28 grayscale digits (784 inputs); cifar10 images are "
                             "(3, 32, 32)")
    html = (out / "report.html").read_text()
    assert "data: <b>cifar10</b>" in html
