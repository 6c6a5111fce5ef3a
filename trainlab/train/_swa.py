"""Stochastic weight averaging (Izmailov et al., "Averaging Weights Leads to Wider Optima and
Better Generalization", UAI 2018), member by member."""

from __future__ import annotations

from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.train._callback import Callback
from trainlab.train._trainer import Trainer

__all__ = ["SWA"]


class SWA(Callback):
    """Average each member's weights over the ends of epochs, then train on with nothing else changed.

    At the end of every epoch ``e >= start_epoch`` with ``(e - start_epoch) % every == 0`` the
    running mean of each running member's trainable parameters is updated::

        w_swa <- w_swa + (w - w_swa) / (n + 1),   n <- n + 1

    (``torch.optim.swa_utils.AveragedModel``'s default average; the first snapshot is copied).
    When training ends, every member with ``n > 0`` gets its average as its weights and the
    BatchNorm running statistics are recomputed with one pass over the training data
    (:func:`trainlab.nn.recompute_running_statistics`, as ``torch.optim.swa_utils.update_bn``):
    the running averages collected along the trajectory do not belong to the averaged weights.
    A diverged or stopped member takes no further snapshots. The averages and counts are
    saved in checkpoints. The SWA learning-rate schedule of the paper (constant or cyclic) is a
    ``[schedule]`` matter; this callback only averages.
    """

    def __init__(self, start_epoch: int = 0, *, every: int = 1) -> None:
        for name, v, low in (("start_epoch", start_epoch, 0), ("every", every, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"SWA {name} must be an integer >= {low}, got {v!r}")
        self.start_epoch, self.every = start_epoch, every

    def on_train_begin(self, trainer: Trainer) -> None:
        if not hasattr(self, "avg"):
            self.params = [p for p in trainer.model.parameters() if p.trainable]
            self.avg = [torch.zeros_like(p.data) for p in self.params]
            self.count = torch.zeros(trainer.size, dtype=torch.int64, device=trainer.device)
        else:
            self.params = [p for p in trainer.model.parameters() if p.trainable]

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        spe = trainer.steps_per_epoch
        if trainer.step % spe:
            return
        epoch = trainer.step // spe
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.every:
            return
        self.update(trainer.alive & trainer.running)

    def update(self, members: torch.Tensor) -> None:
        """Add the current weights of ``members`` (a bool mask) to their averages."""
        members = members.to(self.count.device)
        for p, a in zip(self.params, self.avg):
            n = self.count.to(a.dtype)
            shape = (-1,) + (1,) * (a.ndim - 1)
            upd = a + (p.data - a) / (n + 1.0).reshape(shape)
            a.copy_(torch.where(members.reshape(shape), upd, a))
        self.count += members.to(self.count.dtype)

    def on_train_end(self, trainer: Trainer) -> None:
        done = self.count > 0
        if not bool(done.any()):
            return
        for p, a in zip(self.params, self.avg):
            p.data.copy_(torch.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), a, p.data))
        from trainlab.nn import batch_norm_layers, recompute_running_statistics

        if batch_norm_layers(trainer.model):
            recompute_running_statistics(trainer.model, trainer._train_x, batch_size=trainer.batch_size)
        trainer.history.info["swa"] = {"start_epoch": self.start_epoch, "every": self.every,
                                       "averaged": self.count.tolist()}

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if not hasattr(self, "avg"):
            return {}, {}
        t = {f"avg.{i}": a for i, a in enumerate(self.avg)}
        t["count"] = self.count
        return t, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if "count" not in tensors:
            return
        self.count = tensors["count"].clone()
        self.avg = [tensors[f"avg.{i}"].clone() for i in range(len(tensors) - 1)]
