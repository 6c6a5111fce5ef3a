"""The training loop: mini-batch SGD for a whole population at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from typing import Any, Protocol, cast

import torch

from trainlab.errors import ConfigError
from trainlab.nn import Loss, Sequential
from trainlab.optim import Optimizer
from trainlab.population import Population
from trainlab.regularize import Regularizer
from trainlab.train._callback import Callback
from trainlab.train._history import History
from trainlab.train._watch import watchers

__all__ = ["Trainer", "Callback", "as_arrays"]


class _ClosureOptimizer(Protocol):
    """An optimizer whose step re-evaluates the objective (``needs_closure = True``: L-BFGS)."""

    def check_deterministic(self, model: Sequential, augment: object = None) -> None: ...

    def step(self, closure: Callable[[], torch.Tensor] | None = None, loss: torch.Tensor | None = None) -> None: ...


def _closure_optimizer(optimizer: Optimizer) -> _ClosureOptimizer | None:
    """``optimizer`` seen as one that needs a closure, or None (the flag is the optimizer's own declaration)."""
    return cast(_ClosureOptimizer, optimizer) if getattr(optimizer, "needs_closure", False) else None


class Batched(Protocol):
    """Data with ``.x`` (inputs) and ``.y`` (targets), as :class:`trainlab.data.Arrays`."""

    @property
    def x(self) -> torch.Tensor: ...

    @property
    def y(self) -> torch.Tensor: ...


#: what :meth:`Trainer.fit` takes for a split: an ``(x, y)`` pair or an object with ``.x``/``.y``
Data = Batched | tuple[torch.Tensor, torch.Tensor] | Sequence[torch.Tensor]


class BatchTransform(Protocol):
    """A training-batch transform (data augmentation, :class:`trainlab.augment.Augmenter`):
    ``augment(x (1, N, ...), y, trainer) -> (x', targets)``. It may also have ``state_dict`` /
    ``load_state_dict``, saved in checkpoints."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor, trainer: Any = ...) -> tuple[torch.Tensor, torch.Tensor]:
        ...


def as_arrays(data: Data | None, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Accept an object with ``.x``/``.y`` or an ``(x, y)`` pair."""
    if data is None:
        return None
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, Sequence) and len(data) == 2:
        x, y = data
    else:
        raise ConfigError(f"{name} data must be (x, y) or have .x and .y, got {type(data).__name__}")
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"{name} data has {x.shape[0]} inputs but {y.shape[0]} targets")
    if x.shape[0] == 0:
        raise ConfigError(f"{name} data is empty")
    return x, y


class Trainer:
    """Train a built :class:`~trainlab.nn.Sequential` population.

    Each step takes the next mini-batch of a seeded shuffle (shared by all members:
    member *i* of a population sees exactly the batches it would see alone),
    runs forward (``training=True``), the loss (one value per member), backward,
    and the optimizer. A member whose loss is NaN/inf is frozen at that step and
    recorded in ``history.diverged``; so is one whose finite loss explodes
    (``diverge_factor``, ``diverge_evaluations``: see :meth:`_check_exploding`);
    the others go on. Evaluations (by default
    at the end of each epoch) run in eval mode over whole splits.

    Parameters
    ----------
    epochs / steps:
        How long to train: ``steps`` (iterations), if given, wins over ``epochs``.
    batch_size:
        Examples per step; the last batch of an epoch may be smaller.
    seed:
        Seeds the shuffling (a ``torch.Generator`` of the trainer's own).
    eval_every:
        Steps between evaluations (default: one epoch).
    eval_train:
        Also evaluate on the whole training split (``train_loss``, ``train_acc``).
    progress:
        Show progress: a line per epoch that stays and a live bar within the epoch
        (:class:`~trainlab.train.ConsoleSink`; plain lines when not on a terminal).
    live:
        In Jupyter: redraw the learning curves in place after every evaluation, with a
        notebook progress bar (:class:`trainlab.train.LiveCurves`).
    labels:
        A name per member for tables, legends and metrics (``history.labels``); from a config,
        :func:`trainlab.labels.member_labels` names members by the settings in which they differ.
    sinks:
        Observers of the training events (same hooks as callbacks) that never change
        training and are not saved in checkpoints: the console, the live plot.
    cuda_graphs:
        Run each step on static buffers, captured as CUDA graphs (forward, then backward and
        update) and replayed, when the model is on a GPU (:mod:`trainlab.train._graphs`); on a CPU
        the same static-buffer step runs eagerly, with the same results as the normal step.
        Refused for layers that draw random numbers, augmentation and L-BFGS.
    trace_step:
        On a CPU, record the whole step once per batch shape with ``torch.jit.trace`` and replay it
        (the same kernels without the Python between them: faster for small models, the same bits),
        checked bit for bit against the eager step before it is used; refused as ``cuda_graphs``,
        and falls back to the eager step (the reason in ``trainer.trace_refused``) where a trace
        cannot be made or does not match (:mod:`trainlab.train._graphs`, docs/training.md).
    """

    def __init__(self, model: Sequential, loss: Loss, optimizer: Optimizer, *, epochs: int = 10,
                 steps: int | None = None, batch_size: int = 100, seed: int = 0, eval_every: int | None = None,
                 eval_train: bool = True, eval_batch_size: int = 1000, progress: bool = False,
                 callbacks: Sequence[Callback] = (), regularizers: Sequence[Regularizer] = (),
                 augment: BatchTransform | None = None, live: bool = False, sinks: Sequence[Callback] = (),
                 labels: Sequence[str] | None = None, diverge_factor: float = 1000.0,
                 diverge_evaluations: int = 2, cuda_graphs: bool = False, trace_step: bool = False) -> None:
        if model.population is None:
            raise ConfigError("the model is not built: call model.build(input_shape, population) first")
        for name, v in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"Trainer {name} must be an integer >= 1, got {v!r}")
        for name, maybe in (("steps", steps), ("eval_every", eval_every)):
            if maybe is not None and (not isinstance(maybe, int) or isinstance(maybe, bool) or maybe < 1):
                raise ConfigError(f"Trainer {name} must be an integer >= 1 or None, got {maybe!r}")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.epochs, self.steps, self.batch_size = epochs, steps, batch_size
        self.seed, self.eval_every, self.eval_train = seed, eval_every, eval_train
        self.eval_batch_size, self.progress = eval_batch_size, progress
        # What rides on the optimizer (a learning-rate schedule, gradient clipping's recorder) runs first, so
        # the records it completes (lr, grad_norm) are whole when the other callbacks see them.
        self.callbacks = [h for h in getattr(optimizer, "hooks", ()) if h not in callbacks] + list(callbacks)
        self.regularizers = list(regularizers)
        #: ``augment(x (1, N, ...), y, trainer) -> (x', targets)``: training batches only. ``x'`` may
        #: gain the population axis (each member its own augmentation) and ``targets`` may be
        #: soft ``(N, C)`` / ``(P, N, C)`` (mixup, cutmix). Its ``state_dict``/``load_state_dict``
        #: (if any) are saved in checkpoints.
        self.augment = augment
        for r in self.regularizers:
            r.attach(model)
        if labels is not None and len(labels) != model.size:
            raise ConfigError(f"Trainer labels must name each of the {model.size} members, got {len(labels)}")
        self.labels = None if labels is None else [str(x) for x in labels]
        #: observers that never change training (console, live plot); unlike callbacks, not checkpointed
        self.sinks = list(sinks)
        if progress:
            from trainlab.train._console import ConsoleSink

            self.sinks.append(ConsoleSink())
        if live:
            from trainlab.train._live import LiveCurves

            self.sinks.append(LiveCurves())
        closure_optimizer = _closure_optimizer(optimizer)
        if closure_optimizer is not None:  # L-BFGS: refuses random layers and augmentation
            closure_optimizer.check_deterministic(model, augment)
        self.size = model.size
        self.device = model.device
        self.loss.build(self.size, device=self.device, dtype=model.dtype)
        model.input_grad = False  # nobody needs d(loss)/d(data) while training
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0
        self.alive = torch.ones(self.size, dtype=torch.bool, device=self.device)
        self.running = torch.ones(self.size, dtype=torch.bool, device=self.device)
        self.history = History(self.size)
        self.should_stop = False
        #: set (e.g. by a signal handler) to stop at the next step boundary, after callbacks' on_interrupt
        self.interrupt_requested = False
        self._perm: torch.Tensor | None = None
        self._pos = 0
        self._batch_loss_sum = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        self._batches_since_eval = 0
        # The exploding-loss rule (see _check_exploding): step-0 loss, evaluations above the bound in a row,
        # and the step of the first of them, per member.
        if not diverge_factor > 1 or not isinstance(diverge_evaluations, int) or diverge_evaluations < 1:
            raise ConfigError(f"Trainer diverge_factor must be > 1 and diverge_evaluations an integer >= 1, got "
                              f"{diverge_factor!r} and {diverge_evaluations!r}")
        self.diverge_factor, self.diverge_evaluations = float(diverge_factor), diverge_evaluations
        self._initial_loss = torch.full((self.size,), math.nan, dtype=torch.float64, device=self.device)
        self._above = torch.zeros(self.size, dtype=torch.int64, device=self.device)
        self._above_since = torch.zeros(self.size, dtype=torch.int64, device=self.device)
        self._graph_step = None
        if cuda_graphs or trace_step:
            from trainlab.train._graphs import GraphStep

            self._graph_step = GraphStep(self, capture=True if cuda_graphs and trace_step else None,
                                         trace=trace_step)

    @property
    def trace_refused(self) -> str | None:
        """With ``trace_step``: why the step runs eagerly (None while the traced step is used)."""
        g = self._graph_step
        return g.refused if g is not None and g.trace else None

    # ---- members ----------------------------------------------------------------------
    def stop_members(self, members: torch.Tensor) -> None:
        """Stop updating these members (a bool mask), e.g. from early stopping."""
        self.running &= ~members.to(self.running.device)
        self._sync_active()

    def _sync_active(self) -> None:
        active = self.alive & self.running
        self.optimizer.set_active(active)
        for layer in self.model.modules():  # e.g. BatchNorm: a stopped member's running statistics freeze too
            if hasattr(layer, "set_active"):
                layer.set_active(active)
        if not bool(active.any()):
            self.should_stop = True

    # ---- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss (and accuracy, for classification) per member over ``(x, y)`` in eval mode."""
        n = x.shape[0]
        total = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.size, dtype=torch.float64, device=self.device)
        for i in range(0, n, self.eval_batch_size):
            xb, yb = x[i:i + self.eval_batch_size], y[i:i + self.eval_batch_size]
            out = self.model.forward(xb.unsqueeze(0), training=False)
            total += self.loss.forward(out, yb).double() * xb.shape[0]
            if self.loss.classification:
                correct += (out.argmax(dim=-1) == yb.unsqueeze(0)).sum(dim=1).double()
        res = {"loss": total / n}
        if self.loss.classification:
            res["acc"] = correct / n
        return res

    def _evaluate_all(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor] | None]) -> dict[str, Any]:
        rec: dict[str, Any] = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 6)}
        self._refresh_population_statistics()
        if self._batches_since_eval:
            mean = self._batch_loss_sum / self._batches_since_eval
            rec["batch_loss"] = mean.tolist()
            self._check_exploding(mean)
        self._batch_loss_sum.zero_()
        self._batches_since_eval = 0
        rec.update(self._evaluate_splits(splits))
        return rec

    def _check_exploding(self, mean_loss: torch.Tensor) -> None:
        """A finite but exploding loss is divergence too (NaN/inf is caught at the step it happens).

        Rule: member m is diverged when its mean training objective between two evaluations exceeds
        ``diverge_factor * max(L0[m], 1)`` -- ``L0`` its loss at step 0, before any update -- at
        ``diverge_evaluations`` evaluations in a row. It is frozen then (like a NaN member) and recorded in
        ``history.diverged`` at the step of the *first* of those evaluations, with the rule as its reason.
        With the defaults (1000, 2) a cross-entropy member is diverged above ~2300 nats, which no member
        that is still learning reaches (chance is ln 10 = 2.3); lr 1e6 sits at ~1e16.
        """
        bound = self.diverge_factor * torch.clamp(torch.nan_to_num(self._initial_loss, nan=1.0), min=1.0)
        above = (mean_loss > bound) & self.alive
        self._above_since = torch.where(above & (self._above == 0), torch.full_like(self._above_since, self.step),
                                        self._above_since)
        self._above = torch.where(above, self._above + 1, torch.zeros_like(self._above))
        bad = (self._above >= self.diverge_evaluations) & self.alive
        if bool(bad.any()):
            for m in bad.nonzero().flatten().tolist():
                first = int(self._above_since[m])
                self.history.diverged[m] = {
                    "step": first, "epoch": round(first / self.steps_per_epoch, 6), "loss": str(float(mean_loss[m])),
                    "reason": f"exploding: mean training loss above {self.diverge_factor:g} x max(step-0 loss "
                              f"{float(self._initial_loss[m]):.4g}, 1) for {self.diverge_evaluations} evaluation(s)"}
            self.alive &= ~bad
            self._sync_active()

    def _refresh_population_statistics(self) -> None:
        """BatchNorm with ``inference="population"`` needs a pass over the training data before evaluating."""
        if any(getattr(l, "inference", None) == "population" for l in self.model.modules()):
            from trainlab.nn import compute_population_statistics

            compute_population_statistics(self.model, self._train_x, batch_size=self.batch_size)

    def _evaluate_splits(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor] | None]) -> dict[str, Any]:
        rec: dict[str, Any] = {}
        for name, data in splits.items():
            if data is None:
                continue
            for k, v in self.evaluate(*data).items():
                rec[f"{name}_{k}"] = v.tolist()
        if self.regularizers:
            rec["penalty"] = self.penalty().tolist()
        return rec

    def penalty(self) -> torch.Tensor:
        """The sum of all regularizers' penalties, per member (zeros without any)."""
        total = torch.zeros(self.size, dtype=self.model.dtype, device=self.device)
        for r in self.regularizers:
            p = r.penalty()
            if p is not None:
                total = total + p
        return total

    # ---- training -----------------------------------------------------------------------
    def fit(self, train: Data, val: Data | None = None, test: Data | None = None) -> History:
        """Train on ``train``; evaluate on ``val`` (and ``test``) as it goes. Returns the History.

        Calling ``fit`` again (or after :meth:`load_state_dict`) continues where training
        stopped: the step count, the position in the current epoch's shuffle, the
        random generators and every accumulator are part of the trainer's state.
        """
        pair = as_arrays(train, "training")
        if pair is None:
            raise ConfigError("Trainer.fit needs training data: (x, y) or an object with .x and .y, got None")
        xt, yt = pair
        self._train_x = xt
        splits = {"train": (xt, yt) if self.eval_train else None, "val": as_arrays(val, "validation"),
                  "test": as_arrays(test, "test")}
        n = xt.shape[0]
        # A layer that normalizes with batch statistics (BatchNorm) cannot train on a
        # batch of one: such a final batch is dropped (with a warning), never val/test data.
        self._needs_batch_statistics = any(getattr(l, "needs_batch_statistics", False) for l in self.model.modules())
        drop_last_one = self._needs_batch_statistics and n % self.batch_size == 1 and n > 1
        self.steps_per_epoch = math.ceil(n / self.batch_size) - (1 if drop_last_one else 0)
        total = self.steps if self.steps is not None else self.epochs * self.steps_per_epoch
        eval_every = self.eval_every or self.steps_per_epoch
        self.history.info.update(steps_per_epoch=self.steps_per_epoch, total_steps=total, batch_size=self.batch_size,
                                 train_size=n)
        if self.labels is not None:
            self.history.info["member_labels"] = list(self.labels)
        for cb in self._listeners():
            cb.on_train_begin(self)
        with torch.no_grad():
            while self.step < total and not self.should_stop:
                if self._perm is None:  # a new epoch: a new shuffle, shared by all members
                    self._perm = torch.randperm(n, generator=self.generator)
                    self._pos = 0
                perm = self._perm.to(xt.device)
                xs, ys = xt.index_select(0, perm), yt.index_select(0, perm)
                while self._pos < n and self.step < total and not self.should_stop:
                    i = self._pos
                    self._pos += self.batch_size
                    if n - i == 1 and n > 1 and self._needs_batch_statistics:
                        self._warn_batch_of_one(n)
                        continue
                    loss = self.train_step(xs[i:i + self.batch_size], ys[i:i + self.batch_size])
                    if self.step % eval_every == 0 or self.step == total:
                        rec = self._evaluate_all(splits)
                        self.history.append(rec)
                        for cb in self._listeners():
                            cb.on_evaluate(self, rec)
                    for cb in self._listeners():
                        cb.on_step_end(self, loss)
                    if self.interrupt_requested:
                        # At a step boundary every piece of state is consistent: save and stop.
                        for cb in self._listeners():
                            cb.on_interrupt(self)
                        raise KeyboardInterrupt(f"interrupted at step {self.step}")
                if self._pos >= n:
                    self._perm = None
            if self._batches_since_eval:  # stopped between evaluations: record where it ended
                rec = self._evaluate_all(splits)
                self.history.append(rec)
        for cb in self._listeners():
            cb.on_train_end(self)
        # What the caller ends up with (e.g. after early stopping restored the best weights).
        self._refresh_population_statistics()
        self.history.final = self._evaluate_splits(splits)
        return self.history

    # ---- state (checkpoints) ------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue bit for bit: ``(tensors, json_state)``.

        Tensors: model parameters and buffers, optimizer state, the shuffle and member
        random generators (as plain uint8 tensors), member masks, accumulators and the
        current epoch's permutation; callbacks' tensors. JSON: step, position, history,
        callbacks' plain state.
        """
        t: dict[str, torch.Tensor] = {}
        for k, v in self.model.state_dict().items():
            t[f"model.{k}"] = v
        for k, v in self.optimizer.state_dict().items():
            t[f"optim.{k}"] = v
        t["rng.shuffle"] = self.generator.get_state()
        for dev, states in self._population().get_state().items():
            for i, st in enumerate(states):
                t[f"rng.member.{dev}.{i}"] = st
        t["trainer.alive"] = self.alive
        t["trainer.running"] = self.running
        t["trainer.batch_loss_sum"] = self._batch_loss_sum
        t["trainer.initial_loss"] = self._initial_loss
        t["trainer.above"] = self._above
        t["trainer.above_since"] = self._above_since
        if self._perm is not None:
            t["trainer.perm"] = self._perm
        if self.augment is not None and hasattr(self.augment, "state_dict"):
            for k, v in self.augment.state_dict().items():
                t[f"augment.{k}"] = v
        meta: dict[str, Any] = {"step": self.step, "pos": self._pos, "batches_since_eval": self._batches_since_eval,
                                "history": self.history.to_dict(), "callbacks": {}}
        for i, cb in enumerate(self.callbacks):
            ct, cm = cb.state_dict()
            for k, v in ct.items():
                t[f"callback.{i}.{k}"] = v
            if cm:
                meta["callbacks"][str(i)] = cm
        return {k: v.detach() for k, v in t.items()}, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], *, source: str = "checkpoint"
                        ) -> None:
        """Restore :meth:`state_dict`'s output. Weights first, random generators last."""
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.model.load_state_dict(part("model."), source=source)
        self.optimizer.load_state_dict(part("optim."), source=source)
        for i, cb in enumerate(self.callbacks):
            cb.load_state_dict(part(f"callback.{i}."), meta.get("callbacks", {}).get(str(i), {}))
        self.alive.copy_(tensors["trainer.alive"])
        self.running.copy_(tensors["trainer.running"])
        self._batch_loss_sum.copy_(tensors["trainer.batch_loss_sum"])
        for name, t in (("initial_loss", self._initial_loss), ("above", self._above),
                        ("above_since", self._above_since)):
            if f"trainer.{name}" in tensors:  # checkpoints from before the exploding-loss rule lack them
                t.copy_(tensors[f"trainer.{name}"])
        self._perm = tensors.get("trainer.perm")
        self._pos = int(meta["pos"])
        self.step = int(meta["step"])
        self._batches_since_eval = int(meta["batches_since_eval"])
        self.history = History.from_dict(meta["history"])
        self._sync_active()
        self.should_stop = False
        # Random state last, so nothing above can draw from it after the restore.
        self.generator.set_state(tensors["rng.shuffle"])
        states: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for k, v in part("rng.member.").items():
            dev, index = k.rsplit(".", 1)
            states.setdefault(dev, []).append((int(index), v))
        self._population().set_state({d: [v for _, v in sorted(lst, key=lambda e: e[0])]
                                      for d, lst in states.items()})
        if self.augment is not None and hasattr(self.augment, "load_state_dict"):
            self.augment.load_state_dict(part("augment."))

    def _population(self) -> Population:
        population = self.model.population
        assert population is not None, "Trainer.__init__ refuses an unbuilt model"
        return population

    def _listeners(self) -> list[Callback]:
        """Callbacks first (they may stop members), then the sinks that only report, then the watchers of
        the calling context (:func:`trainlab.train.watch_training`: report only, e.g. a live lesson)."""
        return [*self.callbacks, *self.sinks, *watchers()]

    def _warn_batch_of_one(self, n: int) -> None:
        if not getattr(self, "_warned_one", False):
            import warnings

            warnings.warn(f"{n} training examples with batch_size {self.batch_size} leave a last batch of one; "
                          "BatchNorm cannot normalize a single example, so that batch is skipped each epoch "
                          "(use another batch size, or GroupNorm/LayerNorm for very small batches)", stacklevel=3)
            self._warned_one = True

    def _objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss + penalties per member at the current weights, every ``.grad`` filled (a closure for L-BFGS)."""
        loss = self.loss.forward(self.model.forward(x, training=True), y)
        if self.regularizers:
            loss = loss + self.penalty()
        self.model.backward(self.loss.backward())
        for r in self.regularizers:
            r.add_grad()
        return loss

    def _note_divergence(self, loss: torch.Tensor) -> bool:
        """Freeze (and record) the members whose objective is not finite; True if any froze now. The first
        step's loss is kept for the exploding-loss rule (:meth:`_check_exploding`)."""
        if self.step == 0:
            self._initial_loss.copy_(loss.detach().double())
        bad = ~torch.isfinite(loss) & self.alive
        if not bool(bad.any()):
            return False
        for m in bad.nonzero().flatten().tolist():
            self.history.diverged[m] = {"step": self.step + 1,
                                        "epoch": round((self.step + 1) / self.steps_per_epoch, 6),
                                        "loss": str(float(loss[m]))}
        self.alive &= ~bad
        self._sync_active()
        for cb in self._listeners():
            cb.on_diverged(self, bad.nonzero().flatten().tolist())
        return True

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One forward/backward/update on a batch shared by all members.

        Returns the training objective per member: the loss plus every
        regularizer's penalty."""
        if self._graph_step is not None:
            return self._graph_step.step(xb, yb)
        x = xb.unsqueeze(0)
        if self.augment is not None:
            x, yb = self.augment(x, yb, self)
        out = self.model.forward(x, training=True)
        loss = self.loss.forward(out, yb)
        if self.regularizers:
            loss = loss + self.penalty()
        self._note_divergence(loss)
        self.model.backward(self.loss.backward())
        for r in self.regularizers:
            r.add_grad()
        closure_optimizer = _closure_optimizer(self.optimizer)
        if closure_optimizer is not None:  # L-BFGS: its line search re-evaluates the batch
            closure_optimizer.step(lambda: self._objective(x, yb), loss)
        else:
            self.optimizer.step()
        for r in self.regularizers:
            r.after_step(self.optimizer)
        self.step += 1
        self._batch_loss_sum += loss.double()
        self._batches_since_eval += 1
        return loss
