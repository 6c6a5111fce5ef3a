"""Batch norm on small batches: the measured noise of batch statistics, and the pure judge."""

from __future__ import annotations

import math

import pytest
import torch

from trainlab.build import build_run
from trainlab.config import load_config
from trainlab.diagnose._bn_batch import BT, judge, measure

torch.set_num_threads(1)


def test_judge_on_plain_numbers():
    assert judge(None) == []
    assert judge({"batch_size": 100, "mean_noise": 0.08, "var_noise": 0.14}) == []
    f = judge({"batch_size": 4, "mean_noise": 0.40, "var_noise": 0.56},
              ablation={"as given": 0.76, "layer norm": 0.86, "no norm": math.nan, "batch 16": 0.918})
    assert [x.code for x in f] == ["bn_small_batch"]
    assert "batches of 4" in f[0].message and "0.40 standard deviations" in f[0].message
    assert "layer norm 0.860" in f[0].advice and "batch 16 0.918" in f[0].advice and "no norm " not in f[0].advice  # NaN left out
    assert f[0].fix["overrides"] == ['model.norm="layernorm"']
    # a large batch whose statistics are still noisy (correlated examples) is flagged by the measurement
    assert judge({"batch_size": 64, "mean_noise": BT.MEAN_NOISE * 1.5, "var_noise": 0.3})


@pytest.mark.parametrize("batch", [4, 100])
def test_measured_noise_follows_one_over_sqrt_batch(batch):
    run = build_run(load_config("examples/healthy.toml", ['model.norm="batchnorm"', f"train.batch_size={batch}",
                                                          "data.val=0", "data.test=0", "data.train=2000"]))
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    d = measure(run.model, run.splits.train.x, batch)
    assert d["expected_mean_noise"] == pytest.approx(math.sqrt(2 / math.pi / batch))
    assert d["mean_noise"] == pytest.approx(d["expected_mean_noise"], rel=0.25)
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())  # observes only
    assert bool(judge(d)) == (batch < BT.SMALL_BATCH)
    assert measure(build_run(load_config("examples/healthy.toml", ["data.val=0", "data.test=0", "data.train=200"])
                             ).model, run.splits.train.x[:200], 4) is None
