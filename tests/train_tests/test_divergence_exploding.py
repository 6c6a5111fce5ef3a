"""Issue 17, item 4: a finite but exploding loss is divergence (recorded per member with its step), and the
loss plot keeps the healthy members readable with the diverged ones marked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainlab.build import build_run
from trainlab.config import load_config
from trainlab.run import summarize

BASE = ["data.train=300", "data.val=100", "data.test=100", "train.epochs=4", "optim.name=\"adam\""]


def _fit(*sets: str):
    cfg = load_config("examples/mlp.toml", [*BASE, *sets])
    run = build_run(cfg)
    return run, run.trainer.fit(run.splits.train, run.splits.val)


@pytest.fixture(scope="module")
def exploded():
    # lr 1e6 with Adam: the loss stays finite (~1e20) at chance; before, "diverged -" and a squashed plot
    return _fit("population.size=2", "optim.lr=[0.003, 1e6]")


def test_an_exploding_finite_loss_is_diverged_at_the_step_it_first_exceeded(exploded):
    run, h = exploded
    assert 0 not in h.diverged and 1 in h.diverged
    d = h.diverged[1]
    assert np.isfinite(float(d["loss"])) and float(d["loss"]) > 1e6  # finite: the NaN rule never fired
    steps_per_epoch = h.info["steps_per_epoch"]
    assert d["step"] == steps_per_epoch and d["epoch"] == 1.0  # the first evaluation above the bound
    assert "exploding" in d["reason"] and "1000" in d["reason"]
    assert not bool(run.trainer.alive[1]) and bool(run.trainer.alive[0])  # frozen; the other goes on
    rows = summarize(h, seconds=0)["members"]
    assert rows[1]["diverged"]["step"] == d["step"] and rows[0]["diverged"] is None


def test_the_healthy_member_is_the_member_trained_alone(exploded):
    _, h = exploded
    _, alone = _fit("population.size=1", "optim.lr=0.003")
    np.testing.assert_array_equal(h["val_loss"][:, 0], alone["val_loss"][:, 0])


def test_a_member_that_only_spikes_once_is_not_diverged():
    run, _ = _fit("population.size=1", "optim.lr=0.003")
    t = run.trainer
    t._initial_loss.fill_(2.3)
    t._check_exploding(torch.tensor([1e9], dtype=torch.float64))  # one evaluation above: not yet
    assert not t.history.diverged
    t._check_exploding(torch.tensor([1.0], dtype=torch.float64))  # back down: the count restarts
    t._check_exploding(torch.tensor([1e9], dtype=torch.float64))
    assert not t.history.diverged
    t._check_exploding(torch.tensor([1e9], dtype=torch.float64))
    assert 0 in t.history.diverged


def test_the_rule_state_is_in_the_checkpoint(exploded):
    run, _ = exploded
    tensors, _ = run.trainer.state_dict()
    assert {"trainer.initial_loss", "trainer.above", "trainer.above_since"} <= set(tensors)
    assert torch.isfinite(tensors["trainer.initial_loss"]).all()


def test_the_loss_plot_keeps_healthy_members_readable_and_marks_the_diverged(exploded):
    import matplotlib.pyplot as plt

    _, h = exploded
    fig = h.plot()
    ax_l = fig.axes[0]
    lo, hi = ax_l.get_ylim()
    healthy = np.concatenate([h["train_loss"][:, 0], h["val_loss"][:, 0]])
    assert hi < 100 * healthy.max() and lo <= healthy.min()  # not squashed by the 1e20 member
    markers = [line for line in ax_l.get_lines() if line.get_marker() == "x"]
    assert len(markers) == 1 and markers[0].get_xdata()[0] == h.diverged[1]["epoch"]
    plt.close(fig)


def test_divergence_settings_are_validated():
    from trainlab.errors import ConfigError

    with pytest.raises(ConfigError, match="diverge_factor"):
        load_config("examples/mlp.toml", ["train.diverge_factor=0.5"])
