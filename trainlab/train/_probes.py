"""Live per-layer probes: what every layer of every member is doing while the population trains.

:class:`LayerProbe` is a trainer :class:`~trainlab.train.Callback`. At step 0 and every ``every``
steps (and once more at the end of training) it builds one plain-data record -- only dicts,
lists, strings, ints, floats and None, so ``json.dumps`` takes it as is -- and hands it to each
of its ``sinks`` (the lab's live stream, the TensorBoard writer, a JSONL file) and keeps the last
``keep`` of them in :attr:`LayerProbe.records`.

How it observes without changing anything
-----------------------------------------
* **Activations and BatchNorm batch statistics** come from one forward pass over a fixed *probe
  batch*: the first ``batch`` training examples. The pass runs in training mode (default
  ``training=True``: what the training steps compute, BatchNorm normalizing with the batch's own
  statistics, dropout dropping), on the weights just after the step. Everything that pass
  changes is put back bit for bit (:func:`trainlab.train._layer_stats.quiet_pass`): BatchNorm's
  running statistics and counters, and every member's random generator (so dropout and noise
  masks of the following training steps are the ones they would have been). No setting of the
  model is touched. ``training=False`` probes the eval-mode network instead (no dropout, BN on
  its running statistics). Training with a probe gives bit for bit the weights of training
  without one (tested).
* **Gradients** are read from each parameter's ``.grad`` as the last training step left it (the
  gradient the optimizer used: the loss's plus any penalty's, after gradient clipping); no extra
  backward pass. The record at step 0 (and the first one after a resume) has none (``null``).
* **Weights** are read as they are.

Conventions (saturation, dead units, histogram bins) are those of
:mod:`trainlab.train._layer_stats`: saturated = sigmoid/tanh slope below 5% of its maximum
(sigmoid ``y < 0.01266`` or ``y > 0.98734``; tanh ``|y| > 0.97468``); dead = a ReLU unit that is
0 for every example of the probe batch; histograms: ``bins`` equal bins between the record's
``edges`` (shared by all members of one layer in one record, so they can be overlaid), end bins
closed, non-finite values left out.

The record
----------
Every per-member value is a list with one entry per member (``null`` where not finite)::

    {
      "kind": "probe", "version": 1,
      "step": 150, "epoch": 4.285714,          # trainer.step, step / steps_per_epoch
      "at": "begin" | "step" | "end",
      "members": 3,
      "labels": ["init_scale=1", "init_scale=0.1", "init_scale=0.01"],   # trainlab.labels
      "lr": [0.05, 0.05, 0.05],                # each member's learning rate now (null: no .lr)
      "alive": [true, true, false],            # false: diverged (frozen) or stopped
      "batch": 256, "training": true, "bins": 30,
      "layers": [                              # Module.modules() order; nested layers too
        {"path": "0", "type": "Linear",
         "weight": {"shape": [784, 100],       # one member's weight shape
                    "edges": [-a, ..., a],     # bins + 1 edges, a = max |w| over members
                    "hist": [[...bins counts...] per member],
                    "norm": [...], "mean": [...], "std": [...]},
         "grad": {"norm": [...],               # all of the layer's parameters together
                  "params": {"weight": [...], "bias": [...]}}            # or null (no step yet)
        },
        {"path": "1", "type": "ReLU",
         "act": {"family": "relu",             # sigmoid tanh relu leaky_relu smooth
                 "edges": [...], "hist": [[...]], "mean": [...], "std": [...],
                 "dead": [...],                # relu; leaky_relu: "inactive" (+ "dead" for slope 0)
                 "saturated": [...]}},         # sigmoid and tanh only
        {"path": "2.block.1", "type": "BatchNorm",
         "bn": {"batch_mean":   {"mean": [...], "spread": [...]},
                "batch_var":    {"mean": [...], "spread": [...]},
                "running_mean": {"mean": [...], "spread": [...]},
                "running_var":  {"mean": [...], "spread": [...]}},
         "weight": ..., "grad": ...}            # gamma/beta have no "weight" entry; their grads do
      ],
      "seconds": 0.004                         # what this record cost
    }

``bn``: the probe batch's statistics (the biased variance BN normalizes with) and the running
averages, each summarized per member by its mean over the features (channels) and its spread
(standard deviation over the features). A layer appears when it has something to show: a
weight, a gradient, an activation or BN statistics (containers such as ``Residual`` contribute
their inner layers). Identity activations are left out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
import math
import time
from typing import Any

import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.train._callback import Callback
from trainlab.train._layer_stats import (BOUNDED_RANGES, SIGMOID_EDGE, TANH_EDGE, activation_family, capture, edges,
                                         finite_range, histogram, members, named_modules)

__all__ = ["LayerProbe", "probe_record", "ProbeSink"]

#: a sink receives every record (a plain dict; it must not change it)
ProbeSink = Callable[[dict[str, Any]], None]


def _int_arg(value: Any, name: str, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"LayerProbe {name} must be an integer >= {low}, got {value!r}")
    return value


def _spread(t: torch.Tensor) -> dict[str, list[float | None]]:
    """Per member: the mean over the features of ``t`` ``(P, ...)`` and the (population) std across them."""
    f = t.reshape(t.shape[0], -1).double()
    return {"mean": members(f.mean(1)), "spread": members(f.std(1, unbiased=False))}


def _moments(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row of ``flat`` ``(P, n)``: mean, (population) std, L2 norm, and whether the row has a
    non-finite value (its numbers are then NaN).

    The sums are torch's reductions in the tensor's own dtype (pairwise summation: a float32 row
    of 10^5 values is summed to about 1e-6 relative); asking torch to accumulate in float64 instead
    costs 20 times more here (a converting pass). The std is the norm of the *centred* row, not
    ``sqrt(E[x^2] - mean^2)``: sigmoid outputs collapsed to 0.5 +- 0.001 (the course's small-init
    picture) would lose every digit of their std to that cancellation in float32.
    """
    n = flat.shape[1]
    mean32 = flat.sum(1) / n
    mean = mean32.double()
    norm = torch.linalg.vector_norm(flat, dim=1).double()
    std = torch.linalg.vector_norm(flat - mean32.unsqueeze(1), dim=1).double() / math.sqrt(n)
    bad = ~(torch.isfinite(mean) & torch.isfinite(norm))
    return mean, std, norm, bad


def _activation_entry(y: torch.Tensor, layer: nn.Module, family: str, P: int, bins: int) -> dict[str, Any]:
    y = y.expand(P, *y.shape[1:]) if y.shape[0] != P else y
    flat = y.reshape(P, -1)
    n = flat.shape[1]
    mean, std, _, bad = _moments(flat)
    rng, finite = finite_range(flat)
    out: dict[str, Any] = {"family": family}
    if family in BOUNDED_RANGES:
        lo, hi = BOUNDED_RANGES[family]
    else:
        lo, hi = rng if rng is not None else (0.0, 1.0)
        if family == "relu":
            lo = 0.0
        if not hi - lo > 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
    out["edges"] = edges(lo, hi, bins)
    out["hist"] = histogram(flat, lo, hi, bins, finite=finite).cpu().tolist()
    out["mean"] = members(torch.where(bad, math.nan, mean))
    out["std"] = members(torch.where(bad, math.nan, std))
    if family in ("relu", "leaky_relu") and y.ndim >= 3:
        # a unit is a feature (dense) or a channel (conv): axis 2; its largest output over examples and positions
        unit_max = y.transpose(1, 2).reshape(P, y.shape[2], -1).amax(dim=2)
        inactive = (unit_max <= 0).double().mean(1)
        inactive = torch.where(bad, math.nan, inactive)
        if family == "relu":
            out["dead"] = members(inactive)
        else:
            out["inactive"] = members(inactive)
            slope = getattr(layer, "_p", None)
            if isinstance(slope, torch.Tensor) and slope.numel() == P:  # LeakyReLU: slope 0 is a ReLU
                out["dead"] = members(torch.where(slope.to(inactive) > 0, torch.zeros_like(inactive), inactive))
    if family == "sigmoid":
        sat = ((flat - 0.5).abs() > 0.5 - SIGMOID_EDGE).sum(1).double() / n
        out["saturated"] = members(torch.where(bad, math.nan, sat))
    elif family == "tanh":
        sat = (flat.abs() > TANH_EDGE).sum(1).double() / n
        out["saturated"] = members(torch.where(bad, math.nan, sat))
    return out


def _bn_entry(layer: nn.BatchNorm, x: torch.Tensor, P: int) -> dict[str, Any]:
    """The probe batch's per-feature mean and biased variance (over the axes BN normalizes over) and the running ones."""
    x = x.expand(P, *x.shape[1:]) if x.shape[0] != P else x
    dims = getattr(layer, "_dims", (1,) if x.ndim == 3 else (1, 3, 4))
    xd = x.double()
    mean = xd.mean(dim=dims)
    var = xd.var(dim=dims, unbiased=False)
    return {"batch_mean": _spread(mean), "batch_var": _spread(var),
            "running_mean": _spread(layer.running_mean), "running_var": _spread(layer.running_var)}


def _weight_entry(w: torch.Tensor, P: int, bins: int) -> dict[str, Any]:
    flat = w.reshape(P, -1)
    rng, finite = finite_range(flat)
    a = max(abs(rng[0]), abs(rng[1])) if rng is not None else 1.0
    a = a if a > 0 else 1.0
    mean, std, norm, _ = _moments(flat)
    return {"shape": list(w.shape[1:]), "edges": edges(-a, a, bins),
            "hist": histogram(flat, -a, a, bins, finite=finite).cpu().tolist(),
            "norm": members(norm), "mean": members(mean), "std": members(std)}


def _grad_entry(params: Sequence[nn.Parameter], P: int) -> dict[str, Any]:
    per: dict[str, list[float | None]] = {}
    norms = [torch.linalg.vector_norm(p.grad.reshape(P, -1), dim=1).double() for p in params]
    for k, (p, g) in enumerate(zip(params, norms)):
        per[p.name or f"param{k}"] = members(g)
    total = torch.linalg.vector_norm(torch.stack(norms), dim=0)
    return {"norm": members(total), "params": per}


@torch.no_grad()
def probe_record(model: nn.Sequential, x: torch.Tensor, *, bins: int = 30, gradients: bool = True,
                 training: bool = True) -> dict[str, Any]:
    """``{"layers": [...]}`` of one probe measurement (the ``layers`` part of :class:`LayerProbe`'s record).

    ``x``: the probe batch, ``(N, ...)`` shared by every member or ``(P, N, ...)``. ``gradients``:
    read each parameter's ``.grad`` (as the last backward left it). Side-effect free.
    """
    P = model.size
    walk = named_modules(model)
    watched = [(p, m) for p, m in walk
               if not m.children() and (activation_family(m) not in (None, "identity") or isinstance(m, nn.BatchNorm))]
    seen = capture(model, x, watched, training=training) if watched else {}
    layers: list[dict[str, Any]] = []
    for path, layer in walk:
        if layer.children():
            continue  # a container: its inner layers have their own entries
        entry: dict[str, Any] = {"path": path, "type": type(layer).__name__}
        fam = activation_family(layer)
        if path in seen and fam not in (None, "identity"):
            entry["act"] = _activation_entry(seen[path][1], layer, fam, P, bins)
        if path in seen and isinstance(layer, nn.BatchNorm):
            entry["bn"] = _bn_entry(layer, seen[path][0], P)
        params = layer.parameters()
        weights = [p for p in params if p.kind == "weight"]
        if weights:
            entry["weight"] = _weight_entry(weights[0].data, P, bins)
        if params:
            entry["grad"] = _grad_entry(params, P) if gradients else None
        if len(entry) > 2:
            layers.append(entry)
    return {"layers": layers}


class LayerProbe(Callback):
    """Probe every layer of every member at step 0 and every ``every`` steps (see the module doc for the record).

    Parameters
    ----------
    every:
        Steps between records (a record is also made at the start and, if the last step was not
        one of them, at the end of training).
    batch:
        Size of the probe batch: the first ``batch`` training examples (fewer if the training
        split is smaller).
    bins:
        Histogram bins.
    sinks:
        Callables that receive each record as it is made (the lab's stream, TensorBoard). A sink
        must be quick (training waits for it) and must not change the record.
    keep:
        How many of the latest records :attr:`records` holds (0: none).
    training:
        Probe the training-mode network (default) or the eval-mode one.
    """

    def __init__(self, every: int = 50, batch: int = 256, bins: int = 30, sinks: Sequence[ProbeSink] = (), *,
                 keep: int = 100, training: bool = True) -> None:
        self.every = _int_arg(every, "every", 1)
        self.batch = _int_arg(batch, "batch", 1)
        self.bins = _int_arg(bins, "bins", 1)
        self.keep = _int_arg(keep, "keep", 0)
        if not isinstance(training, bool):
            raise ConfigError(f"LayerProbe training must be true or false, got {training!r}")
        self.training = training
        self.sinks: list[ProbeSink] = list(sinks)
        for s in self.sinks:
            if not callable(s):
                raise ConfigError(f"LayerProbe sinks must be callables taking a record, got {s!r}")
        self.records: deque[dict[str, Any]] = deque(maxlen=keep)
        #: seconds spent probing (all records)
        self.seconds = 0.0
        self._x: torch.Tensor | None = None
        self._last_step = -1
        self._have_grads = False

    def add_sink(self, sink: ProbeSink) -> None:
        """One more receiver of the records from now on."""
        if not callable(sink):
            raise ConfigError(f"LayerProbe sinks must be callables taking a record, got {sink!r}")
        self.sinks.append(sink)

    # ---- hooks ----------------------------------------------------------------------
    def on_train_begin(self, trainer: Any) -> None:
        xt = trainer._train_x
        n = min(self.batch, int(xt.shape[0]))
        if self.training and n < 2 and any(getattr(m, "needs_batch_statistics", False)
                                           for m in trainer.model.modules()):
            raise ConfigError("LayerProbe needs a probe batch of at least 2 examples for BatchNorm in training mode")
        self._x = xt[:n]
        self._have_grads = False  # a resumed run's .grad tensors are not the last step's
        self._measure(trainer, "begin")

    def on_step_end(self, trainer: Any, loss: torch.Tensor) -> None:
        self._have_grads = True
        if trainer.step % self.every == 0 and trainer.step != self._last_step:
            self._measure(trainer, "step")

    def on_train_end(self, trainer: Any) -> None:
        if trainer.step != self._last_step:
            self._measure(trainer, "end")

    # ---- the record -------------------------------------------------------------------
    def _measure(self, trainer: Any, at: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        model = trainer.model
        P = model.size
        if self._x is None:
            raise RuntimeError("LayerProbe measured before on_train_begin chose its probe batch")
        body = probe_record(model, self._x, bins=self.bins, gradients=self._have_grads, training=self.training)
        spe = getattr(trainer, "steps_per_epoch", None)
        lr = getattr(trainer.optimizer, "lr", None)
        alive = (trainer.alive & trainer.running).tolist() if hasattr(trainer, "running") else [True] * P
        labels = list(trainer.labels) if getattr(trainer, "labels", None) else [f"member {i}" for i in range(P)]
        rec: dict[str, Any] = {
            "kind": "probe", "version": 1, "step": int(trainer.step),
            "epoch": round(trainer.step / spe, 6) if spe else None, "at": at, "members": P, "labels": labels,
            "lr": members(lr.reshape(-1)) if isinstance(lr, torch.Tensor) and lr.numel() == P else [None] * P,
            "alive": [bool(a) for a in alive], "batch": int(self._x.shape[0]), "training": self.training,
            "bins": self.bins, **body}
        dt = time.perf_counter() - t0
        rec["seconds"] = round(dt, 6)
        self.seconds += dt
        self._last_step = trainer.step
        if self.keep:
            self.records.append(rec)
        for sink in self.sinks:
            sink(rec)
        return rec
