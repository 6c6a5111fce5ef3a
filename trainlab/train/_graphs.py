"""The training step on static buffers, captured as CUDA graphs on a GPU (``Trainer(cuda_graphs=True)``).

trainlab's step is explicit math with static shapes: for a given batch shape, every kernel, every
tensor size and every Python branch is the same from one step to the next. On a GPU that makes the
whole population step capturable (``torch.cuda.CUDAGraph``): recorded once, it is then replayed
with one launch instead of hundreds of small ones. The step is split into two graphs:

1. **forward**: model forward, loss (plus penalties) into a static loss buffer;
2. **update**: backward, regularizer gradients, the optimizer step.

Between the two the host reads the loss (one synchronization, as the eager step does) and checks
for diverged members exactly as :meth:`Trainer.train_step`: a member whose loss is not finite is
frozen *before* the update. Freezing a member changes the optimizer's Python branches (its inactive
list), so the graphs of that batch shape are recaptured and the forward graph is replayed again
(the model is deterministic, see below, so it gives the same loss).

Static buffers: the batch is copied into one input and one target buffer per batch shape (the last
batch of an epoch may have its own shape and graphs). The data should already be on the device
(``Trainer.fit`` slices device tensors); a CPU batch is copied through pinned memory.

Capture needs a warm-up (lazy cuBLAS/workspace allocations must not happen under capture): one
step is run eagerly on a side stream, with every model and optimizer tensor saved before and
restored after, so the warm-up changes nothing.

Graphs are keyed by the batch shape, the optimizer's :attr:`~trainlab.optim.Optimizer.version`
(bumped by ``set_active``, ``set_hparam``, ``load_state_dict``) and the parameters' ``trainable``
flags; anything else that changes which kernels a step runs must go through those. A schedule's
``assign_hparam`` writes the new rates into the tensors the graphs read, in place, and needs no
new capture.

Refused (one line, ``ConfigError``): layers that draw random numbers in training (dropout, noise,
DropConnect: trainlab draws from one generator per member, and each would have to be registered
with the graph -- ``CUDAGraph.register_generator_state`` -- and checked member by member, which is
not done), augmentation (random, and may change shapes), closure optimizers (L-BFGS's line
search branches on loss values), Lookahead (it reads on the host, every step, which members
synchronize) and gradient clipping (its step count for the ``grad_norm`` records is a Python
number, which a replay would not advance). The CPU form refuses the same, so that its tests
test what a GPU would run.

On a CPU there is nothing to capture: the same static-buffer step runs eagerly, and gives
bit-identical results to the normal step (``tests/train_tests/test_cuda_graphs.py``), which is
how the step's logic is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from trainlab.errors import ConfigError

#: the Trainer (not imported: it imports this module)
Trainer = Any

__all__ = ["GraphStep", "check_capturable"]


def check_capturable(trainer: Trainer) -> None:
    """Raise ``ConfigError`` (one line) if this trainer's step cannot be captured as a graph."""
    from trainlab.nn import DropoutFamily, NoiseFamily

    random_layers = sorted({type(m).__name__ for m in trainer.model.modules()
                            if isinstance(m, (DropoutFamily, NoiseFamily))})
    if random_layers:
        raise ConfigError(f"cuda_graphs: layers that draw random numbers in training cannot be captured "
                          f"({', '.join(random_layers)}: one generator per member); train without cuda_graphs")
    if trainer.augment is not None:
        raise ConfigError("cuda_graphs: augmentation cannot be captured (random, may change shapes); "
                          "train without cuda_graphs or without augment")
    if getattr(trainer.optimizer, "needs_closure", False):
        raise ConfigError(f"cuda_graphs: {type(trainer.optimizer).__name__} re-evaluates the loss in a line "
                          f"search and cannot be captured; use a first-order optimizer")
    from trainlab.optim import Lookahead

    if isinstance(trainer.optimizer, Lookahead):
        raise ConfigError("cuda_graphs: Lookahead decides on the host at every step which members synchronize "
                          "and cannot be captured; train without cuda_graphs or without lookahead")
    if getattr(trainer.optimizer, "clip", None) is not None:
        raise ConfigError("cuda_graphs: gradient clipping counts its steps on the host (a replayed step would not "
                          "count) and cannot be captured; train without cuda_graphs or without clipping")


@dataclass
class _Static:
    """The buffers (and, on a GPU, the graphs) of one batch shape."""

    x: torch.Tensor
    y: torch.Tensor
    loss: torch.Tensor | None = None
    key: tuple = ()
    graphs: list[Any] = field(default_factory=list)


class GraphStep:
    """One training step of ``trainer`` on static buffers; captured as CUDA graphs when ``capture``.

    ``capture=None`` captures exactly when the model is on a CUDA device."""

    def __init__(self, trainer: Trainer, capture: bool | None = None) -> None:
        check_capturable(trainer)
        self.trainer = trainer
        self.capture = trainer.device.type == "cuda" if capture is None else bool(capture)
        if self.capture and trainer.device.type != "cuda":
            raise ConfigError(f"cuda_graphs: capture needs a CUDA device, the model is on {trainer.device}")
        self._static: dict[tuple, _Static] = {}
        #: number of (re)captures so far (each costs a warm-up step and two recordings)
        self.captures = 0

    # ---- the two phases: the same calls, in the same order, as Trainer.train_step ---------
    def _forward(self, s: _Static) -> None:
        t = self.trainer
        loss = t.loss.forward(t.model.forward(s.x, training=True), s.y)
        if t.regularizers:
            loss = loss + t.penalty()
        if s.loss is None:
            s.loss = loss  # eager: the loss tensor itself (the graph's output under capture)
        else:
            s.loss.copy_(loss)

    def _update(self) -> None:
        t = self.trainer
        t.model.backward(t.loss.backward())
        for r in t.regularizers:
            r.add_grad()
        t.optimizer.step()
        for r in t.regularizers:
            r.after_step(t.optimizer)

    # ---- static buffers and graphs --------------------------------------------------------
    def _key(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple:
        t = self.trainer
        return (tuple(xb.shape), xb.dtype, tuple(yb.shape), yb.dtype, getattr(t.optimizer, "version", 0),
                tuple(p.trainable for p in t.model.parameters()))

    def _buffers(self, xb: torch.Tensor, yb: torch.Tensor) -> _Static:
        shape_key = (tuple(xb.shape), xb.dtype, tuple(yb.shape), yb.dtype)
        s = self._static.get(shape_key)
        if s is None:
            dev = self.trainer.device
            s = self._static[shape_key] = _Static(torch.empty((1,) + tuple(xb.shape), dtype=xb.dtype, device=dev),
                                                  torch.empty(tuple(yb.shape), dtype=yb.dtype, device=dev))
        return s

    def _load(self, s: _Static, xb: torch.Tensor, yb: torch.Tensor) -> None:
        if self.capture and xb.device.type == "cpu":
            xb, yb = xb.pin_memory(), yb.pin_memory()  # asynchronous host-to-device copies
        s.x[0].copy_(xb, non_blocking=True)
        s.y.copy_(yb, non_blocking=True)

    def _saved_state(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        t = self.trainer
        tensors = list(t.model.state_dict().values()) + list(t.optimizer.state_dict().values())
        return [(v, v.clone()) for v in tensors]

    def _warm_up(self, s: _Static) -> None:
        """Run one whole step on ``s`` (on a side stream when capturing: lazy allocations happen here,
        not under capture) and undo it: every model and optimizer tensor is restored bit for bit."""
        saved = self._saved_state()
        if self.capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._forward(s)
                self._update()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self._forward(s)
            self._update()
        for live, copy in saved:
            live.copy_(copy)
        s.loss = None

    def _record(self, s: _Static) -> None:
        """Warm up (undone afterwards), then capture the forward and the update graphs of ``s``."""
        self._warm_up(s)
        forward, update = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(forward):
            self._forward(s)
        with torch.cuda.graph(update, pool=forward.pool()):
            self._update()
        s.graphs = [forward, update]
        self.captures += 1

    @staticmethod
    def _loss(s: _Static) -> torch.Tensor:
        """The loss the forward phase just wrote (eager: the tensor itself; captured: the graph's output)."""
        assert s.loss is not None, "GraphStep: the forward phase has not run"
        return s.loss

    # ---- the step ---------------------------------------------------------------------------
    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Train one step on ``(xb, yb)``; returns the objective per member (a new tensor)."""
        t = self.trainer
        s = self._buffers(xb, yb)
        self._load(s, xb, yb)
        if not self.capture:
            self._forward(s)
            loss, s.loss = self._loss(s), None
            t._note_divergence(loss)
            self._update()
        else:
            key = self._key(xb, yb)
            if s.key != key:
                self._record(s)
                s.key = key
            s.graphs[0].replay()
            loss = self._loss(s).clone()
            if t._note_divergence(loss):  # a member froze: its update must not run, recapture
                self._record(s)
                s.key = self._key(xb, yb)
                s.graphs[0].replay()
            s.graphs[1].replay()
        t.step += 1
        t._batch_loss_sum += loss.double()
        t._batches_since_eval += 1
        return loss
