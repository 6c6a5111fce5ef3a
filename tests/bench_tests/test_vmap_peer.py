"""The benchmarks' torch.func peer trains each model exactly as a plain PyTorch run does, so the
population claims are made against an honest ensemble (benchmarks/_harness.py: vmap_ensemble)."""

from __future__ import annotations

from pathlib import Path
import sys

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness  # noqa: E402


def small_net(device, seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).to(device).double()
    return net, torch.optim.SGD(net.parameters(), lr=0.1)


def test_vmap_ensemble_equals_sequential_sgd_runs():
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
            for _ in range(4)]
    params, step = _harness.vmap_ensemble(small_net, 3, torch.device("cpu"), lr=0.1)
    for xb, yb in data:
        step(xb, yb)
    for seed in range(3):
        net, opt = small_net(torch.device("cpu"), seed)
        for xb, yb in data:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
        for name, p in net.named_parameters():
            torch.testing.assert_close(params[name][seed], p.detach(), atol=1e-12, rtol=0)
