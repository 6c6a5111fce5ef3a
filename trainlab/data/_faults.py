"""Fault-planting data options (``data.label_noise``, ``data.leak``, ``data.imbalance``) and
one remedy (``data.rebalance``), applied to splits that are already loaded and preprocessed.

They exist so that the doctor (``trainlab doctor``) and its tests can be tried on data faults
a user meets in practice -- noisy labels, a training set that contains validation/test
images, a long-tailed class distribution -- on the embedded digits, which have none of
them. Every option is off by default; each draw is seeded by the config's ``seed`` (a
``torch.Generator``, never the global RNG), so the same config plants the same fault.

- ``label_noise = q``: a fraction ``q`` of the training labels (chosen at random) is
  replaced by a uniformly drawn *other* class (symmetric label noise, as in Zhang et al.
  2017, "Understanding deep learning requires rethinking generalization"). Validation
  and test labels stay clean.
- ``leak = f``: a fraction ``f`` of the validation images, and the same fraction of the
  test images, are copied (with their labels) into the training split, replacing as many
  training images, so its size is unchanged. The copies are exact duplicates.
- ``imbalance = r`` (>= 1): the training split keeps, of class ``k`` (``k = 0..C-1``), the
  fraction ``r ** (-k / (C - 1))`` of its images (at least one): class 0 keeps all, the last
  class ``1/r`` -- the exponential profile of long-tailed benchmarks (Cui et al. 2019,
  "Class-balanced loss based on effective number of samples"). Validation and test stay
  balanced, as the distribution the model will be used on.
- ``rebalance = true`` (a remedy, not a fault): every class of the training split is
  oversampled (drawn with replacement, seeded) up to the count of the largest class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from trainlab.data._splits import Arrays, Splits

__all__ = ["plant_faults", "FAULT_KEYS"]

#: the data keys handled here, with the value that means "off"
FAULT_KEYS: dict[str, Any] = {"label_noise": 0.0, "leak": 0.0, "imbalance": 1.0, "rebalance": False}


def _gen(seed: int, salt: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + salt) % (2**63))
    return g


def plant_faults(splits: Splits, data: Mapping[str, Any], *, seed: int = 0) -> Splits:
    """``splits`` with the configured faults planted (a new :class:`Splits`; the input is untouched).

    ``data`` is the config's ``[data]`` table; missing keys count as off. Order: imbalance,
    leak, label noise, rebalance (so leaked copies keep their true labels and
    oversampling copies the noisy ones, as it would on real data).
    """
    noise = float(data.get("label_noise", 0.0) or 0.0)
    leak = float(data.get("leak", 0.0) or 0.0)
    ratio = float(data.get("imbalance", 1.0) or 1.0)
    rebalance = bool(data.get("rebalance", False))
    if noise == 0.0 and leak == 0.0 and ratio == 1.0 and not rebalance:
        return splits
    x, y = splits.train.x, splits.train.y
    dev = y.device
    C = splits.num_classes
    if ratio > 1.0:
        g = _gen(seed, 1)
        keep = []
        for k in range(C):
            idx = torch.nonzero(y.cpu() == k).flatten()
            n = max(1, int(round(len(idx) * ratio ** (-k / max(C - 1, 1))))) if len(idx) else 0
            keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
        order = torch.sort(torch.cat(keep)).values.to(dev)
        x, y = x[order], y[order]
    if leak > 0.0:
        g = _gen(seed, 2)
        xs, ys = [], []
        for part in (splits.val, splits.test):
            if part is None or len(part) == 0:
                continue
            n = int(round(leak * len(part)))
            pick = torch.randperm(len(part), generator=g)[:n].to(dev)
            xs.append(part.x[pick])
            ys.append(part.y[pick])
        if xs:
            lx, ly = torch.cat(xs), torch.cat(ys)
            n = min(len(ly), len(y))
            slots = torch.randperm(len(y), generator=g)[:n].to(dev)
            x, y = x.clone(), y.clone()
            x[slots], y[slots] = lx[:n], ly[:n]
    if noise > 0.0:
        g = _gen(seed, 3)
        n = int(round(noise * len(y)))
        pick = torch.randperm(len(y), generator=g)[:n]
        shift = torch.randint(1, C, (n,), generator=g)  # a uniformly drawn *other* class
        y = y.clone()
        y[pick.to(dev)] = (y[pick.to(dev)] + shift.to(dev)) % C
    if rebalance:
        g = _gen(seed, 4)
        counts = torch.bincount(y.cpu(), minlength=C)
        top = int(counts.max())
        extra = []
        for k in range(C):
            idx = torch.nonzero(y.cpu() == k).flatten()
            if 0 < len(idx) < top:
                extra.append(idx[torch.randint(0, len(idx), (top - len(idx),), generator=g)])
        if extra:
            add = torch.cat(extra)
            order = torch.cat([torch.arange(len(y)), add])
            order = order[torch.randperm(len(order), generator=g)].to(dev)
            x, y = x[order], y[order]
    return replace(splits, train=Arrays(x, y))
