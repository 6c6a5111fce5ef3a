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
(the model is deterministic, see below, so it gives the same loss). The forward also updates the
model's buffers (BatchNorm's running averages), so they are copied before each forward replay and
put back before the second one: they are updated once, as in the eager step. (Written without a GPU
to run it on: the CPU tests cannot reach this branch.)

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

On a CPU there is nothing to capture as a CUDA graph: the same static-buffer step runs eagerly,
and gives bit-identical results to the normal step (``tests/train_tests/test_cuda_graphs.py``),
which is how the step's logic is tested without a GPU.

**The traced step on a CPU** (``Trainer(trace_step=True)``, ``GraphStep(trace=True)``). The CPU's
counterpart of CUDA graphs: the step is recorded by ``torch.jit.trace`` as the same two phases --
forward and loss; backward, regularizers and update -- and replayed by TorchScript's interpreter,
which calls the same ATen kernels in the same order without the Python between them (the layers'
code, the dispatcher's Python bindings). Same kernels, same arguments: the same bits. How it is kept
exact:

- *Every tensor the step can touch is an input*: all tensors reachable from the model, the loss, the
  optimizer and the regularizers (parameters, gradients, buffers, optimizer state, kept scratch
  buffers, their views), and the batch. An in-place write to an input is a visible effect, so the
  tracer keeps it, and nothing is folded in as a constant. The forward phase returns, besides the
  loss, every tensor it made that the layers keep (found by walking the same objects after it: the
  activations and statistics the backward reads); the update phase takes them as inputs. Python
  attributes are left as the recording left them (a replay updates tensors, not attributes; nothing
  outside the step reads a layer's saved activations).
- *The first step of a key runs eagerly*, so that what layers build once (kept transposes, scratch
  buffers, the loss's constant tensors) exists before the recording and is an input, not work
  redone in every replay.
- *Divergence as in the eager step*: between the two phases the loss is checked; if a member still
  training has a non-finite objective, what the forward wrote in place (the model's buffers:
  BatchNorm's running averages; copied before each forward replay) is put back and the batch runs
  again eagerly, which freezes the member before its update.
- *Checked against the eager step before it is trusted*: the step after a recording runs eagerly
  *and* as a replay from the same state, the replay on a copy of the batch while the static buffers
  hold NaN; the loss, every reachable tensor and the model's and optimizer's state dicts must be
  equal bit for bit. If anything differs (a Python value the recording baked in, a tensor it read as
  a constant, an effect it lost), the trainer keeps the eager step for good and says why in
  :attr:`GraphStep.refused` (``trainer.trace_refused``).
- Refused as for CUDA graphs (random layers, augmentation, closure optimizers, Lookahead, clipping).
  A step during which an observer has wrapped a layer's ``forward``/``backward`` (an instance
  attribute over the method, as the probes' capture does for its own pass) runs eagerly.

TorchScript is deprecated upstream (``torch.jit.trace`` warns); the warning is silenced where the
recording is made, and where tracing is not available or fails the trainer falls back to the eager
step with the reason in :attr:`GraphStep.refused`. Speed: docs/benchmarks.md, *Sixth pass*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
import math
import warnings

import torch

from trainlab.errors import ConfigError

#: the Trainer (not imported: it imports this module)
Trainer = Any

__all__ = ["GraphStep", "check_capturable"]


def check_capturable(trainer: Trainer, option: str = "cuda_graphs") -> None:
    """Raise ``ConfigError`` (one line) if this trainer's step cannot be captured as a graph (or traced)."""
    from trainlab.nn import DropoutFamily, NoiseFamily

    random_layers = sorted({type(m).__name__ for m in trainer.model.modules()
                            if isinstance(m, (DropoutFamily, NoiseFamily))})
    if random_layers:
        raise ConfigError(f"{option}: layers that draw random numbers in training cannot be captured "
                          f"({', '.join(random_layers)}: one generator per member); train without {option}")
    if trainer.augment is not None:
        raise ConfigError(f"{option}: augmentation cannot be captured (random, may change shapes); "
                          f"train without {option} or without augment")
    if getattr(trainer.optimizer, "needs_closure", False):
        raise ConfigError(f"{option}: {type(trainer.optimizer).__name__} re-evaluates the loss in a line "
                          f"search and cannot be captured; use a first-order optimizer")
    from trainlab.optim import Lookahead

    if isinstance(trainer.optimizer, Lookahead):
        raise ConfigError(f"{option}: Lookahead decides on the host at every step which members synchronize "
                          f"and cannot be captured; train without {option} or without lookahead")
    if getattr(trainer.optimizer, "clip", None) is not None:
        raise ConfigError(f"{option}: gradient clipping counts its steps on the host (a replayed step would not "
                          f"count) and cannot be captured; train without {option} or without clipping")


def check_traceable(trainer: Trainer) -> str | None:
    """Why this trainer's step cannot be traced (beyond :func:`check_capturable`), or None."""
    if not hasattr(torch, "jit") or not hasattr(torch.jit, "trace"):
        return "this PyTorch has no torch.jit.trace"
    return None


def _observed(modules: list[Any]) -> bool:
    """Whether an observer has wrapped a layer's ``forward``/``backward`` (an instance attribute over the
    method): it would see nothing of a replay, so such a step runs eagerly."""
    return any("forward" in vars(m) or "backward" in vars(m) for m in modules)


def _walk(objs: list[Any]) -> list[torch.Tensor]:
    """Every tensor reachable from ``objs`` through trainlab objects' attributes, lists, tuples and dicts
    (each once, in a fixed order). A ``torch.Size`` is not entered: while tracing its entries are 0-dim
    tensors, but they are sizes, fixed for a recording's key, and the update's recording may take them as the
    constants they are (passed from the forward they would be unboxed in every replay)."""
    seen: set[int] = set()
    out: list[torch.Tensor] = []
    stack = list(reversed(objs))
    while stack:
        o = stack.pop()
        if isinstance(o, torch.Tensor):
            if id(o) not in seen:
                seen.add(id(o))
                out.append(o)
            continue
        if id(o) in seen or isinstance(o, torch.Size):
            continue
        if isinstance(o, (list, tuple)):
            seen.add(id(o))
            stack.extend(reversed(o))
        elif isinstance(o, dict):
            seen.add(id(o))
            stack.extend(reversed(list(o.values())))
        elif (hasattr(o, "__dict__") and not isinstance(o, type)
              and any(c.__module__.startswith("trainlab.") for c in type(o).__mro__)):  # a user's layer too
            seen.add(id(o))
            stack.extend(reversed(list(vars(o).values())))
    return out


def _with_sizes_folded(fn: Any) -> Any:
    """The recording ``fn`` with every size it reads made a constant: the sizes a layer computes a view from
    (BatchNorm's channel layouts: 36 ``size``, ``NumToTensor`` and 21 ``Int`` nodes per BN-MLP forward) are
    otherwise read, boxed into 0-dim tensors and unboxed again in every replay, about 1 µs each. A recording
    is made for one key (batch shape and dtype, the same state tensors), so every input keeps the shape it was
    recorded with; the tracer has already baked in whatever Python decided from those sizes. The result is
    checked against the eager step like any recording. Where TorchScript lacks the passes used here (they are
    internal), the recording is kept as it is."""
    try:
        graph = fn.graph.copy()
        folded = 0
        for node in list(graph.nodes()):
            if node.kind() != "aten::size" or node.inputsSize() != 2:
                continue
            value, dim = node.inputs()
            sizes = value.type().sizes() if isinstance(value.type(), torch._C.TensorType) else None
            d = dim.toIValue()
            if sizes is None or not isinstance(d, int) or any(n is None for n in sizes):
                continue
            const = graph.insertConstant(int(sizes[d]))
            const.node().moveBefore(node)
            node.output().replaceAllUsesWith(const)
            folded += 1
        if not folded:
            return fn
        torch._C._jit_pass_constant_propagation(graph)
        torch._C._jit_pass_dce(graph)
        return torch._C._create_function_from_graph(fn.name, graph)
    except (AttributeError, RuntimeError, TypeError):  # an internal API moved or refused: keep the recording
        return fn


def _writable(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors an in-place kernel may write: not an expanded view (one element at several places)."""
    return [v for v in tensors if torch._debug_has_internal_overlap(v) == 0]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit as numbers (NaN where NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        na, nb = torch.isnan(a), torch.isnan(b)
        return torch.equal(na, nb) and torch.equal(a.masked_fill(na, 0), b.masked_fill(nb, 0))
    return torch.equal(a, b)


@dataclass
class _Static:
    """The buffers (and, on a GPU, the graphs; on a CPU with ``trace``, the traced step) of one batch shape."""

    x: torch.Tensor
    y: torch.Tensor
    loss: torch.Tensor | None = None
    key: tuple = ()
    graphs: list[Any] = field(default_factory=list)
    #: the traced forward and update, their state inputs (every reachable tensor), those a step can write (no
    #: element twice in memory), what the forward writes in place and its backup (for CUDA graphs: the model's
    #: buffers'), whether the recording was checked against the eager step
    traced: tuple[Callable[..., Any], Callable[..., Any]] | None = None
    inputs: list[torch.Tensor] = field(default_factory=list)
    writable: list[torch.Tensor] = field(default_factory=list)
    state: list[torch.Tensor] = field(default_factory=list)
    backup: list[torch.Tensor] = field(default_factory=list)
    verified: bool = False


class GraphStep:
    """One training step of ``trainer`` on static buffers; captured as CUDA graphs when ``capture``.

    ``capture=None`` captures exactly when the model is on a CUDA device. ``trace=True`` (CPU only) records
    the whole step with ``torch.jit.trace`` and replays it, checked against the eager step first."""

    def __init__(self, trainer: Trainer, capture: bool | None = None, *, trace: bool = False) -> None:
        check_capturable(trainer, "trace_step" if trace else "cuda_graphs")
        self.trainer = trainer
        self.trace = bool(trace)
        if self.trace and capture:
            raise ConfigError("trace_step and cuda_graphs exclude each other: trace_step is for a CPU, cuda_graphs "
                              "for a GPU")
        if self.trace and trainer.device.type != "cpu":
            raise ConfigError(f"trace_step runs on a CPU, the model is on {trainer.device}; on a GPU use cuda_graphs")
        self.capture = (trainer.device.type == "cuda" if capture is None else bool(capture)) and not self.trace
        if self.capture and trainer.device.type != "cuda":
            raise ConfigError(f"cuda_graphs: capture needs a CUDA device, the model is on {trainer.device}")
        self._static: dict[tuple, _Static] = {}
        self._params = trainer.model.parameters()  # the model's layers are fixed once it is built
        self._modules = list(trainer.model.modules())
        #: number of (re)captures so far (each costs a warm-up step and two recordings; traced: an eager step,
        #: the two recordings and a check against the eager step)
        self.captures = 0
        #: steps run by a traced replay (the others ran eagerly: recordings, checks, diverging batches)
        self.replays = 0
        #: why the traced step is not used (None while it is, or may be)
        self.refused: str | None = check_traceable(trainer) if self.trace else None

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
        # a parameter's tensors by identity too: a graph (or trace) reads them where they were recorded
        return (tuple(xb.shape), xb.dtype, tuple(yb.shape), yb.dtype, getattr(t.optimizer, "version", 0),
                tuple([(p.trainable, id(p.data), id(p.grad)) for p in self._params]))

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

    # ---- the traced step (CPU) -----------------------------------------------------------------
    def _eager(self, s: _Static) -> torch.Tensor:
        """The step as :meth:`Trainer.train_step` runs it, on the static buffers."""
        self._forward(s)
        loss, s.loss = self._loss(s), None
        self.trainer._note_divergence(loss)
        self._update()
        return loss

    def _diverges(self, loss: torch.Tensor) -> bool:
        """Whether a member still training has a non-finite objective (what ``_note_divergence`` would freeze).
        A finite sum says no at once; otherwise (a frozen member's NaN, an overflowing sum) member by member."""
        if math.isfinite(loss.sum().item()):
            return False
        return bool((~torch.isfinite(loss) & self.trainer.alive).any())

    def _reachable(self, s: _Static) -> list[torch.Tensor]:
        """The trace's state inputs: every tensor reachable from the model, loss, optimizer and regularizers,
        but the batch buffers (the trace's first two inputs: a replay passes the batch itself there)."""
        t = self.trainer
        return [v for v in _walk([t.model, t.loss, t.optimizer, list(t.regularizers)]) if v is not s.x and v is not s.y]

    def _undo(self, s: _Static, writable: list[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
        """Put the tensors back as they were before a recording, and run the batch eagerly."""
        torch._foreach_copy_(writable, before)
        s.loss = None
        return self._eager(s)

    def _give_up(self, s: _Static, exc: Exception, writable: list[torch.Tensor],
                 before: list[torch.Tensor]) -> torch.Tensor:
        """A recording failed: the eager step from now on, with the reason; this batch runs eagerly."""
        self.refused = f"torch.jit.trace failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return self._undo(s, writable, before)

    def _record_trace(self, s: _Static) -> torch.Tensor:
        """Record the step as two traces (the tracer runs each once, for real) and return its loss: the forward,
        which returns the loss and every tensor it made that the layers keep (what the backward reads), and the
        update (backward, regularizers, optimizer), which takes those. Between them the loss is checked as in
        :meth:`Trainer.train_step`; a batch on which a member diverges is undone and run again eagerly."""
        t = self.trainer
        inputs = self._reachable(s)
        known = {id(v) for v in inputs}
        writable = _writable(inputs)
        before = [v.clone() for v in writable]
        made: list[list[torch.Tensor]] = []

        def forward(x: torch.Tensor, y: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self._forward(s)
            loss, s.loss = self._loss(s), None
            made.append([loss] + [v for v in self._reachable(s) if id(v) not in known])
            return tuple(made[0])

        def update(loss: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *state_and_made: torch.Tensor) -> torch.Tensor:
            self._update()  # a layer may keep the batch itself: x and y are inputs here too
            return loss

        def trace(fn: Callable[..., Any], args: tuple[torch.Tensor, ...]) -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation, the tracer's shape warnings
                return _with_sizes_folded(torch.jit.trace(fn, args, check_trace=False))

        try:
            fwd = trace(forward, (s.x, s.y, *inputs))
        except Exception as exc:  # noqa: BLE001 -- any failure to trace: the eager step, and the reason
            return self._give_up(s, exc, writable, before)
        loss, kept = made[0][0], made[0][1:]
        if self._diverges(loss):  # the eager step's path: freeze before the update
            return self._undo(s, writable, before)
        t._note_divergence(loss)  # nothing diverged: at the first step it keeps the initial loss
        # what the forward wrote in place (BatchNorm's running averages; the model's buffers in any case)
        buffers = {id(v) for v in t.model.buffers().values()}
        written = [v for v, b in zip(writable, before) if id(v) in buffers or not _same(v, b)]
        try:
            upd = trace(update, (loss, s.x, s.y, *inputs, *kept))
        except Exception as exc:  # noqa: BLE001
            return self._give_up(s, exc, writable, before)
        self.captures += 1
        s.traced, s.inputs, s.writable, s.verified = (fwd, upd), inputs, writable, False
        # kept before each replay and put back if a member diverges, so that the eager rerun writes it once
        s.state = written
        s.backup = [torch.empty_like(v) for v in s.state]
        return loss

    @staticmethod
    def _replay(s: _Static, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The recorded forward: the loss and the tensors the update takes."""
        assert s.traced is not None
        out = s.traced[0](x, y, *s.inputs)
        return out[0], out[1:]

    def _verify(self, s: _Static) -> torch.Tensor:
        """The first step after a recording: eager, and the replay from the same state; equal bit for bit,
        or the traced step is given up. The eager step's result is kept either way."""
        t = self.trainer
        assert s.traced is not None
        inputs, writable = s.inputs, s.writable
        before = [v.clone() for v in writable]
        loss = self._eager(s)
        if s.key != self._key(s.x[0], s.y):  # a member froze: this recording is stale, record again next step
            s.traced = None
            return loss
        after = [v.clone() for v in writable]
        states = (t.model.state_dict(), t.optimizer.state_dict())
        named = [{k: v.clone() for k, v in d.items()} for d in states]
        torch._foreach_copy_(writable, before)
        # the replay reads a copy of the batch while the buffers hold NaN: a recording that kept reading the
        # buffers (not its inputs) cannot pass
        x, y = s.x.clone(), s.y.clone()
        for buf in (s.x, s.y):
            buf.fill_(math.nan if buf.is_floating_point() else -1)
        with torch.jit.optimized_execution(False):
            replayed, kept = self._replay(s, x, y)
            s.traced[1](replayed, x, y, *inputs, *kept)
        s.x.copy_(x)
        s.y.copy_(y)
        problem = None
        if not _same(replayed, loss):
            problem = "the loss"
        elif not all(_same(a, b) for a, b in zip(writable, after)):
            problem = "a tensor of the model or optimizer"
        else:
            for d, want in zip((t.model.state_dict(), t.optimizer.state_dict()), named):
                bad = [k for k in want if k not in d or not _same(d[k], want[k])]
                if bad:
                    problem = f"state {bad[0]!r}"
                    break
        torch._foreach_copy_(writable, after)
        if problem is not None:
            self.refused = f"the traced step differs from the eager step in {problem}: trained eagerly"
            s.traced = None
        else:
            s.verified = True
        return loss

    def _traced_step(self, s: _Static, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """A replay of the recorded step on the batch itself (no copy into the buffers); the first step of a key,
        the recording, its check and a diverging batch run eagerly on the buffers."""
        t = self.trainer
        if _observed(self._modules):  # an observer's wrapper sees only an eager step
            self._load(s, xb, yb)
            return self._eager(s)
        key = self._key(xb, yb)
        if s.key != key or s.traced is None or not s.verified:
            self._load(s, xb, yb)
            if s.key != key:  # a new key: one eager step first, so that what the layers build at their first
                s.key, s.traced, s.verified = key, None, False  # step exists and is an input of the recording
                return self._eager(s)
            return self._record_trace(s) if s.traced is None else self._verify(s)
        if s.state:
            torch._foreach_copy_(s.backup, s.state)
        x = xb.unsqueeze(0)
        with torch.jit.optimized_execution(False):  # the plain interpreter: no graph optimization passes
            loss, kept = self._replay(s, x, yb)
            if self._diverges(loss):  # as the eager step: the forward again, the member frozen, the update
                if s.state:
                    torch._foreach_copy_(s.state, s.backup)
                self._load(s, xb, yb)
                return self._eager(s)
            if t.step == 0:
                t._note_divergence(loss)  # nothing diverged: it keeps the first step's loss
            s.traced[1](loss, x, yb, *s.inputs, *kept)
        self.replays += 1
        return loss

    # ---- the step ---------------------------------------------------------------------------
    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Train one step on ``(xb, yb)``; returns the objective per member (a new tensor)."""
        t = self.trainer
        s = self._buffers(xb, yb)
        if self.trace and self.refused is None:
            loss = self._traced_step(s, xb, yb)
        elif not self.capture:
            self._load(s, xb, yb)
            loss = self._eager(s)
        else:
            self._load(s, xb, yb)
            key = self._key(xb, yb)
            if s.key != key:
                self._record(s)
                s.key = key
            # the forward writes the model's buffers (BatchNorm's running averages): kept, so that a forward
            # replayed again after a divergence updates them once, as the eager step does
            buffers = _writable(list(t.model.buffers().values()))
            if buffers:
                if len(s.backup) != len(buffers):
                    s.backup = [torch.empty_like(v) for v in buffers]
                torch._foreach_copy_(s.backup, buffers)  # one multi-tensor copy
            s.graphs[0].replay()
            loss = self._loss(s).clone()
            if t._note_divergence(loss):  # a member froze: its update must not run, recapture
                if buffers:
                    torch._foreach_copy_(buffers, s.backup)
                self._record(s)
                s.key = self._key(xb, yb)
                s.graphs[0].replay()
            s.graphs[1].replay()
        t.step += 1
        t._batch_loss_sum += loss.double()
        t._batches_since_eval += 1
        return loss
