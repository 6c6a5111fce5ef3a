"""The multi-tensor fast paths (``_update_all`` with ``torch._foreach_*``) against the reference
``_update`` hook applied parameter by parameter: bit-identical trajectories, with per-member
hyperparameters, coupled and decoupled weight decay, per-parameter ``lr_scale`` and inactive members."""

from __future__ import annotations

import pytest
import torch

from trainlab.nn import Parameter
from trainlab.optim import SGD, Adam, AdamW, Momentum, Nesterov, Optimizer

P = 3
CASES = [
    (SGD, {"lr": [0.1, 0.05, 0.02], "weight_decay": [0.0, 1e-3, 1e-2]}),
    (SGD, {"lr": 0.1, "weight_decay": 1e-2, "decoupled": True}),
    (Momentum, {"lr": [0.1, 0.05, 0.02], "momentum": [0.0, 0.5, 0.9], "weight_decay": [0.0, 1e-3, 1e-2]}),
    (Nesterov, {"lr": 0.05, "momentum": [0.5, 0.9, 0.99]}),
    (Adam, {"lr": [1e-3, 1e-2, 3e-2], "beta1": [0.8, 0.9, 0.95], "beta2": [0.99, 0.999, 0.9], "weight_decay": 1e-3}),
    (AdamW, {"lr": [1e-3, 1e-2, 3e-2], "weight_decay": [0.0, 0.01, 0.1]}),
]


def _params(dtype: torch.dtype) -> list[Parameter]:
    g = torch.Generator().manual_seed(0)
    w1 = Parameter(torch.randn(P, 5, 4, generator=g, dtype=dtype))
    b1 = Parameter(torch.randn(P, 1, 4, generator=g, dtype=dtype), kind="bias", decay=False)
    w2 = Parameter(torch.randn(P, 4, 2, generator=g, dtype=dtype), lr_scale=0.3)
    frozen = Parameter(torch.randn(P, 1, 2, generator=g, dtype=dtype), trainable=False)
    return [w1, b1, w2, frozen]


def _run(cls: type, kw: dict, reference: bool, dtype: torch.dtype) -> list[torch.Tensor]:
    params = _params(dtype)
    opt = cls(params, **kw)
    if reference:  # the per-parameter hook, as every optimizer without a fast path runs it
        opt._update_all = lambda ws, gs, sts, lrs: Optimizer._update_all(opt, ws, gs, sts, lrs)  # type: ignore
    g = torch.Generator().manual_seed(1)
    for step in range(12):
        for p in params:
            p.grad.copy_(torch.randn(p.data.shape, generator=g, dtype=dtype))
        if step == 5:
            opt.set_active(torch.tensor([True, False, True]))
        if step == 9:
            opt.set_active(torch.ones(P, dtype=torch.bool))
        opt.step()
    return [p.data for p in params] + [v for st in opt.state for v in st.values()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cls,kw", CASES, ids=[f"{c.__name__}{i}" for i, (c, _) in enumerate(CASES)])
def test_fast_path_equals_reference_hook(cls: type, kw: dict, dtype: torch.dtype) -> None:
    fast, ref = _run(cls, kw, False, dtype), _run(cls, kw, True, dtype)
    for a, b in zip(fast, ref):
        assert torch.equal(a, b)
    assert not torch.equal(fast[0], _params(dtype)[0].data)  # it did move


def test_fast_paths_exist_where_claimed() -> None:
    for cls in (SGD, Momentum, Adam):
        assert cls._update_all is not Optimizer._update_all


def test_a_subclass_with_its_own_rule_is_not_taken_over_by_the_fast_path() -> None:
    class Halved(SGD):
        def _update(self, w, g, state, lr):
            w.add_(-0.5 * lr * g)

    p = Parameter(torch.ones(1, 2, 2, dtype=torch.float64))
    p.grad.fill_(1.0)
    Halved([p], lr=0.1).step()
    assert torch.allclose(p.data, torch.full_like(p.data, 0.95))
