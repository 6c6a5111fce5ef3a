"""The Trainer's event hooks: a leaf of the train package (the sinks and callbacks import it, and
the Trainer calls it), so no sink needs to import the Trainer.

Each hook receives the running :class:`~trainlab.train.Trainer` as ``trainer`` (typed ``Any`` here
only because this module sits below the Trainer).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Callback"]


class Callback:
    """Hooks into :meth:`Trainer.fit`. Override any of them; all default to doing nothing."""

    def on_train_begin(self, trainer: Any) -> None: ...

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None: ...

    def on_evaluate(self, trainer: Any, record: dict[str, Any]) -> None: ...

    def on_train_end(self, trainer: Any) -> None: ...

    def on_interrupt(self, trainer: Any) -> None:
        """Training is being interrupted at a step boundary (Ctrl-C / SIGTERM)."""

    def on_diverged(self, trainer: Any, members: list[int]) -> None:
        """These members' losses just became NaN/inf; they are frozen (``trainer.history.diverged``)."""

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """``(tensors, json_state)`` to save in checkpoints; stateless callbacks return empty dicts."""
        return {}, {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...
