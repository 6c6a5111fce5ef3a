"""``transfer_weights(..., members=...)``: transferred and from-scratch members in one population."""

from __future__ import annotations

import pytest
import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.population import Population
from trainlab.transfer import transfer_weights


def mlp(P, seed=0, norm=False):
    layers: list[nn.Module] = [nn.Linear(None, 16, init="he_normal")]
    if norm:
        layers.append(nn.BatchNorm())
    layers += [nn.ReLU(), nn.Linear(None, 3, init="he_normal")]
    m = nn.Sequential(layers)
    m.build((8,), Population(P, seed=seed))
    return m


def test_members_maps_source_members_and_keeps_the_others():
    src = mlp(2, seed=1, norm=True)
    src.layers[1].running_mean.add_(torch.arange(2.0).reshape(2, *[1] * (src.layers[1].running_mean.ndim - 1)) + 1)
    dst = mlp(4, seed=50, norm=True)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    copied = transfer_weights(src, dst, members=[1, None, 0, None])
    assert copied == [0, 1, 2]  # every layer but the output layer (3)
    s, d = src.state_dict(), dst.state_dict()
    for k in ("0.weight", "0.bias", "1.gamma", "1.beta", "1.running_mean", "1.running_var"):
        assert torch.equal(d[k][0], s[k][1]), k
        assert torch.equal(d[k][2], s[k][0]), k
        assert torch.equal(d[k][1], before[k][1]) and torch.equal(d[k][3], before[k][3]), k
    assert torch.equal(d["3.weight"], before["3.weight"])  # the output layer is not transferred


def test_members_all_none_changes_nothing_and_default_is_unchanged():
    src, dst = mlp(1, seed=1), mlp(3, seed=9)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    transfer_weights(src, dst, members=[None, None, None])
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())
    transfer_weights(src, dst)  # a one-member source fills every member
    for i in range(3):
        assert torch.equal(dst.layers[0].weight.data[i], src.layers[0].weight.data[0])


def test_members_errors_name_the_rule_and_the_value():
    src, dst = mlp(2), mlp(3)
    with pytest.raises(ConfigError, match="the target has 3 members, got 2 entries"):
        transfer_weights(src, dst, members=[0, 1])
    with pytest.raises(ConfigError, match=r"source members 0\.\.1 or None, got \[2\]"):
        transfer_weights(src, dst, members=[0, 2, None])
