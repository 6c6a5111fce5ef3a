"""Batch norm with batches too small for stable statistics (course note 003: BN computes the mean
and variance inside each mini-batch; Ioffe & Szegedy 2015; Wu & He 2018, "Group Normalization").

``measure(model, x, batch_size)`` observes (never changes) the untrained model: the inputs of its
first :class:`~trainlab.nn.BatchNorm` layer on batches of the config's size, and how far each
batch's mean and variance stray from the statistics over all ``x`` (mean absolute difference, in
standard deviations, averaged over units). ``judge(data)`` is a pure function of those numbers.
For ``B`` independent normal values the batch mean strays by ``sqrt(2 / (pi B))`` standard
deviations on average: B = 100 gives 0.08, B = 16 0.20, B = 4 0.40 (measured on the healthy MLP
with batch norm at B = 4: 0.40).
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

import torch

from trainlab.diagnose._severity import Severity
from trainlab.diagnose._findings import Finding

__all__ = ["BT", "measure", "judge"]


class BT:
    """Thresholds."""

    # Batch size below which BN's statistics are too noisy (config check): at B = 16 the batch
    # mean strays by 0.25 standard deviations each step; Wu & He (2018) measure BN's ImageNet
    # error rising steeply below 16 images per batch (and GroupNorm flat).
    SMALL_BATCH = 16
    # Measured stray of the batch mean, in standard deviations (the mean over units): 0.20 is
    # the value at B = 16 for independent values (correlated examples stray more).
    MEAN_NOISE = 0.2


@torch.no_grad()
def measure(model: Any, x: torch.Tensor, batch_size: int, *, batches: int = 20) -> dict[str, Any] | None:
    """The noise of the first BatchNorm layer's batch statistics (member 0); None without BN."""
    layers = list(model.layers)
    at = next((i for i, l in enumerate(layers) if type(l).__name__ == "BatchNorm"), None)
    if at is None:
        return None
    h = x.unsqueeze(0)
    for l in layers[:at]:
        h = l.forward(h, training=False)
    h = h[0].reshape(h.shape[1], -1).double()  # (N, units)
    mu, sd = h.mean(0), h.std(0, unbiased=False)
    use = sd > 1e-12
    B = max(1, min(int(batch_size), h.shape[0]))
    g = torch.Generator().manual_seed(0)
    means, vars_ = [], []
    for _ in range(batches):
        idx = torch.randperm(h.shape[0], generator=g)[:B].to(h.device)
        b = h[idx]
        means.append(((b.mean(0) - mu).abs() / sd.clamp_min(1e-12))[use].mean())
        vars_.append(((b.var(0, unbiased=False) - sd**2).abs() / (sd**2).clamp_min(1e-24))[use].mean())
    return {"batch_size": B, "layer": at, "mean_noise": float(torch.stack(means).mean()),
            "var_noise": float(torch.stack(vars_).mean()), "expected_mean_noise": math.sqrt(2 / math.pi / B)}


def judge(data: Mapping[str, Any] | None, *, ablation: Mapping[str, float | None] | None = None) -> list[Finding]:
    """A warning when BN's batches are too small (by the config or by the measured noise).

    ``ablation``: the validation accuracy the ablation measured with each alternative
    (``"layernorm"``, ``"none"``, ``"batch x4"``, ``"as given"``), quoted in the advice.
    """
    if not data:
        return []
    B, noise = data["batch_size"], data["mean_noise"]
    if B >= BT.SMALL_BATCH and noise <= BT.MEAN_NOISE:
        return []
    alt = ""
    if ablation:
        parts = [f"{k} {v:.3f}" for k, v in ablation.items() if v is not None and math.isfinite(v)]
        alt = " (validation accuracy measured by the ablation: " + ", ".join(parts) + ")" if parts else ""
    return [Finding("bn_small_batch", Severity.WARN,
                    f"batch norm on batches of {B}: each batch's mean strays by {noise:.2f} standard deviations and "
                    f"its variance by {data['var_noise']:.0%} from the statistics over the data (measured at the "
                    f"first BatchNorm's inputs), so the normalization is noisy and differs between training and "
                    "inference",
                    f"use layer norm (model.norm = \"layernorm\", no batch statistics), larger batches "
                    f"(train.batch_size >= {BT.SMALL_BATCH}), or no normalization{alt}",
                    {"batch_size": B, "mean_noise": noise, "var_noise": data["var_noise"]},
                    fix={"overrides": ['model.norm="layernorm"'], "val_acc": None, "baseline_val_acc": None,
                         "measured_by": None})]
