"""Early stopping, member by member."""

from __future__ import annotations

from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.train._trainer import Callback, Trainer

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Stop each member at its ``patience``-th evaluation in a row without improvement.

    The count is Keras' and Lightning's: with ``patience=2`` a member stops at the 2nd
    evaluation without improvement (``patience=0`` and ``1`` both stop at the first).
    (Before issue 18 trainlab stopped one evaluation later, at the ``patience + 1``-th;
    ``patience + 1`` now gives that old behaviour.) Improvement means ``value < best - min_delta`` (mode ``"min"``) or
    ``value > best + min_delta`` (mode ``"max"``); ``mode="auto"`` picks ``max`` for
    accuracies and ``min`` otherwise. In a population every member stops on its own:
    a stopped member is no longer updated (its optimizer state freezes too) while
    the others go on; ``history.stopped[m]`` records the step/epoch where it stopped
    and its best epoch. With ``restore_best=True`` (default) every member's weights
    and buffers (e.g. BatchNorm statistics) are set back to those of its best
    evaluation when training ends -- whatever ended it: patience, the epoch limit,
    or all members having stopped.
    """

    def __init__(self, monitor: str = "val_loss", *, mode: str = "auto", patience: int = 10,
                 min_delta: float = 0.0, restore_best: bool = True) -> None:
        if mode not in ("auto", "min", "max"):
            raise ConfigError(f"early stopping mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
            raise ConfigError(f"early stopping patience must be an integer >= 0, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ConfigError(f"early stopping min_delta must be a number >= 0, got {min_delta!r}")
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, patience, float(min_delta), restore_best
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode

    def on_train_begin(self, trainer: Trainer) -> None:
        P = trainer.size
        if not hasattr(self, "best"):
            self.best = torch.full((P,), float("inf") if self.mode == "min" else -float("inf"), dtype=torch.float64)
            self.best_step = torch.zeros(P, dtype=torch.int64)
            self.wait = torch.zeros(P, dtype=torch.int64)
            self.best_state = {k: v.clone() for k, v in trainer.model.state_dict().items()} if self.restore_best else None

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self.monitor not in record:
            raise ConfigError(f"early stopping monitors {self.monitor!r}, which is not measured "
                              f"(measured: {', '.join(k for k, v in record.items() if isinstance(v, list))})")
        value = torch.tensor(record[self.monitor], dtype=torch.float64).nan_to_num(
            nan=float("inf") if self.mode == "min" else -float("inf"))
        running = trainer.running.cpu() & trainer.alive.cpu()
        if self.mode == "min":
            improved = value < self.best - self.min_delta
        else:
            improved = value > self.best + self.min_delta
        improved &= running
        self.best = torch.where(improved, value, self.best)
        self.best_step = torch.where(improved, torch.tensor(record["step"]), self.best_step)
        self.wait = torch.where(improved, torch.zeros_like(self.wait), self.wait + running.long())
        if self.best_state is not None and bool(improved.any()):
            idx = improved.nonzero().flatten().to(trainer.device)
            for k, v in trainer.model.state_dict().items():
                self.best_state[k].index_copy_(0, idx, v.index_select(0, idx))
        # Keras: wait += 1 on no improvement; stop once wait >= patience (and wait >= 1:
        # an evaluation that improved never stops, whatever the patience)
        done = (self.wait >= max(self.patience, 1)) & running
        if bool(done.any()):
            spe = trainer.steps_per_epoch
            for m in done.nonzero().flatten().tolist():
                trainer.history.stopped[m] = {"step": int(record["step"]), "epoch": record["epoch"],
                                              "best_step": int(self.best_step[m]),
                                              "best_epoch": round(int(self.best_step[m]) / spe, 6),
                                              "best": float(self.best[m])}
            trainer.stop_members(done.to(trainer.device))

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if not hasattr(self, "best"):
            return {}, {}
        t = {"best": self.best, "best_step": self.best_step, "wait": self.wait}
        if self.best_state is not None:
            t.update({f"best_state.{k}": v for k, v in self.best_state.items()})
        return t, {"started": True}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if not meta.get("started"):
            return
        self.best = tensors["best"].clone()
        self.best_step = tensors["best_step"].clone()
        self.wait = tensors["wait"].clone()
        prefix = "best_state."
        self.best_state = ({k[len(prefix):]: v.clone() for k, v in tensors.items() if k.startswith(prefix)}
                           if self.restore_best else None)

    def on_train_end(self, trainer: Trainer) -> None:
        spe = trainer.steps_per_epoch
        trainer.history.info["early_stopping"] = {
            "monitor": self.monitor, "mode": self.mode, "patience": self.patience,
            "best_epoch": [round(int(s) / spe, 6) for s in self.best_step],
            "best": [float(b) for b in self.best], "restored": self.restore_best}
        if self.best_state is not None:
            trainer.model.load_state_dict(self.best_state, source="early-stopping best weights")
