"""Ensembles: members of a population (or snapshots of one run) predicting together.

Averaging is over **probabilities**, not logits: the ensemble's prediction is
``p(c | x) = mean_m softmax(z_m(x))_c``, the mixture of the members' predictive
distributions (Lakshminarayanan et al. 2017). Averaging logits instead would give the
softmax of a mean *score*, which is not a mixture and is over-confident where members
disagree. ``method="vote"`` takes the majority of the members' argmax labels (ties go
to the class with the larger mean probability).

Uncertainty signals per example: ``disagreement`` -- the fraction of members whose own
label differs from the ensemble's; ``entropy`` -- the entropy of the mean probabilities.
Calibration: :func:`expected_calibration_error` (15 equal-width confidence bins).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Sequential

__all__ = ["EnsemblePrediction", "member_probabilities", "ensemble_predict", "expected_calibration_error",
           "load_snapshots"]


@torch.no_grad()
def member_probabilities(model: Sequential, x: torch.Tensor, *, members: Sequence[int] | None = None,
                         batch_size: int = 1000) -> torch.Tensor:
    """Softmax outputs ``(M, N, C)`` of the chosen members (all by default), eval mode."""
    outs = []
    for i in range(0, x.shape[0], batch_size):
        z = model.forward(x[i:i + batch_size].unsqueeze(0).to(model.dtype), training=False)
        outs.append(torch.softmax(z, dim=-1))
    probs = torch.cat(outs, dim=1)
    if members is not None:
        bad = [m for m in members if not 0 <= m < probs.shape[0]]
        if bad:
            raise ConfigError(f"ensemble members {bad} do not exist; the model has members 0..{probs.shape[0] - 1}")
        probs = probs[list(members)]
    return probs


@dataclass
class EnsemblePrediction:
    """``probs (N, C)``, ``labels (N,)``, ``disagreement (N,)``, ``entropy (N,)``, ``member_probs (M, N, C)``."""

    probs: torch.Tensor
    labels: torch.Tensor
    disagreement: torch.Tensor
    entropy: torch.Tensor
    member_probs: torch.Tensor

    def accuracy(self, y: torch.Tensor) -> float:
        return float((self.labels == y.to(self.labels.device)).double().mean())


def ensemble_predict(sources: Sequential | Sequence[Sequential], x: torch.Tensor, *, method: str = "mean",
                     members: Sequence[int] | None = None, batch_size: int = 1000) -> EnsemblePrediction:
    """Combine the members of one model, or of several models (e.g. snapshots), into one prediction."""
    if method not in ("mean", "vote"):
        raise ConfigError(f"ensemble method must be 'mean' (average probabilities) or 'vote', got {method!r}")
    models = [sources] if isinstance(sources, Sequential) else list(sources)
    if not models:
        raise ConfigError("an ensemble needs at least one model")
    probs = torch.cat([member_probabilities(m, x, members=members if len(models) == 1 else None,
                                            batch_size=batch_size).to(torch.float64) for m in models])
    mean = probs.mean(dim=0)
    own = probs.argmax(dim=-1)  # (M, N)
    if method == "mean":
        labels = mean.argmax(dim=-1)
    else:
        C = probs.shape[-1]
        votes = torch.nn.functional.one_hot(own, C).sum(dim=0).double()  # (N, C)
        labels = (votes + 1e-6 * mean).argmax(dim=-1)  # ties: larger mean probability
    disagreement = (own != labels.unsqueeze(0)).double().mean(dim=0)
    entropy = -(mean * torch.log(mean.clamp_min(1e-300))).sum(dim=-1)
    return EnsemblePrediction(mean, labels, disagreement, entropy, probs)


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, *, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): ``sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|`` over equal-width bins
    of the top-class probability."""
    conf, pred = probs.max(dim=-1)
    correct = (pred == y.to(pred.device)).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=conf.dtype, device=conf.device)
    ece = 0.0
    n = conf.shape[0]
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = (conf > lo) & (conf <= hi)
        if inb.any():
            ece += float(inb.sum()) / n * abs(float(correct[inb].mean()) - float(conf[inb].double().mean()))
    return ece


def load_snapshots(run_dir: str | Path, *, device: str | torch.device = "cpu") -> list:
    """The models saved by a run's snapshots (``snapshots/*/model.json``), oldest first."""
    from trainlab.io import load_model

    d = Path(run_dir) / "snapshots"
    dirs = sorted(p for p in d.glob("*") if (p / "model.json").exists()) if d.is_dir() else []
    if not dirs:
        raise ConfigError(f"{d}: no snapshots (train with train.snapshot_every = K to save them)")
    return [load_model(p, device=device) for p in dirs]
