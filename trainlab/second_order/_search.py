"""Shared by BFGS and L-BFGS: run the batched strong-Wolfe search along ``d`` and
turn its outcomes into a :class:`Step`."""

from __future__ import annotations

import torch

from trainlab.second_order._base import LineSearchRecord, Step
from trainlab.second_order._line_search import wolfe_batch
from trainlab.second_order._objective import Objective


def search_step(objective: Objective, w: torch.Tensor, d: torch.Tensor, f: torch.Tensor, g: torch.Tensor,
                active: torch.Tensor, alpha1: torch.Tensor, *, c1: float, c2: float, max_evals: int,
                iteration: int) -> Step:
    members = active.nonzero().flatten().tolist()
    res = wolfe_batch(objective, w, d, f, g, members, alpha1, c1=c1, c2=c2, max_evals=max_evals)
    P = w.shape[0]
    ok = torch.zeros(P, dtype=torch.bool, device=w.device)
    nan = torch.zeros(P, dtype=torch.int64, device=w.device)
    failures, records = {}, []
    for i in members:
        out = res.outcomes[i]
        nan[i] = out.nan_evals
        records.append(LineSearchRecord(iteration, i, out.ok, out.alpha, float(f[i]), res.dphi0[i], out.phi,
                                        out.dphi, out.evals, out.nan_evals))
        if out.ok:
            ok[i] = True
        elif out.nan_evals:
            failures[i] = ("line_search_nan", f"line search produced NaN ({out.nan_evals} non-finite evaluations; "
                                              f"{out.message})")
        else:
            failures[i] = ("line_search_failed", f"line search found no strong-Wolfe step ({out.message})")
    return Step(res.w, res.f, res.g, ok, failures, nan, records)
