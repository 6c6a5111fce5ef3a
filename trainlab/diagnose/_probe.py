"""Probes: per-layer statistics of activations, gradients and weights, for every member.

A :class:`Probe` is a trainer :class:`~trainlab.train.Callback`. Every ``every``
steps (and at each evaluation) it

* runs the layers' forwards **in eval mode** on a fixed probe set (by default the
  first ``examples`` training images), layer by layer, and summarizes each layer's
  output per member: mean, std, a histogram, and for the units that can fail --
  the fraction of *saturated* sigmoid/tanh outputs and the fraction of *dead* ReLU
  units (a unit that is never active on any example of the probe set passes no
  gradient to its weights);
* reads each weight's gradient (``param.grad``, filled by the step's backward) and
  its norm; the ratio of the first to the last weight layer's RMS gradient shows
  vanishing (<< 1) or exploding (>> 1) gradients;
* measures the update-to-weight ratio ``||w_after - w_before|| / ||w_before||`` of
  the step (a copy of the weights is kept only just before a sampled step);
* summarizes the weights (norm, histogram, and the *unit spread*: how different the
  units of a layer are; 0 means every unit has the same incoming weights -- the
  symmetry a zero or constant initialization never breaks).

The probe never disturbs training and never changes a setting of the model it observes:
eval-mode forwards update no BatchNorm statistics and draw no random numbers (and the
members' generators are saved and restored around the pass anyway, so even a layer that
samples in eval mode, e.g. MC dropout, leaves no trace); a batch norm layer that must read
its running averages before its population statistics exist is read from a copy of the
model; the layers' caches the pass overwrites are rebuilt by the next training forward.
Training with a probe gives bit for bit the same weights as training without one, and the
model's state and settings are bitwise the same after a probe pass as before (tested).

Results live in ``trainer.history.info[key]`` (``"probes"`` by default), so they are
saved with the run's ``history.json`` and in checkpoints; each evaluation record
also gets ``probe_*`` summary metrics (one value per member), which go to
``metrics.jsonl``. Everything is per member: a list with one value per member.

Conventions (constants below): a sigmoid output is *saturated* where its slope
``y (1 - y)`` is below 5% of its maximum 1/4 (``y < 0.0127`` or ``y > 0.9873``), a
tanh output where ``1 - y^2 < 0.05`` (``|y| > 0.9747``). A ReLU unit is *dead* when
its output is 0 for every example of the probe set; Leaky ReLU with a slope > 0,
ELU, GELU and Softplus always pass some gradient, so none of their units is dead
(Leaky ReLU's *inactive* fraction -- negative on every example -- is recorded too).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import contextlib
import copy
import math
import time
from typing import Any

import torch

from trainlab import nn
from trainlab.errors import ConfigError
from trainlab.train import Callback, Trainer

__all__ = ["Probe", "probe_model", "layer_table", "summarize_record", "SATURATION_SLOPE"]

#: an output counts as saturated where the activation's slope is below this fraction of its maximum
SATURATION_SLOPE = 0.05
_SIGMOID_EDGE = (1.0 - math.sqrt(1.0 - SATURATION_SLOPE)) / 2.0  # y(1-y) = 0.05/4  ->  y = 0.01266
_TANH_EDGE = math.sqrt(1.0 - SATURATION_SLOPE)  # 1 - y^2 = 0.05  ->  |y| = 0.9747
#: examples per forward chunk of a probe pass (bounds the memory of a pass over many examples)
_CHUNK = 2000

_FAMILIES: dict[type, str] = {
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.ELU: "smooth",
    nn.GELU: "smooth",
    nn.Softplus: "smooth",
    nn.Identity: "identity",
}
_RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


def _family(layer: nn.Module) -> str | None:
    for cls, fam in _FAMILIES.items():
        if isinstance(layer, cls):
            return fam
    return None


def _role(layer: nn.Module) -> str:
    if _family(layer) is not None:
        return "activation"
    if layer.children():
        # A container (Residual): its row measures what it outputs, not the first weight inside it.
        return "other"
    names = {p.kind for p in layer.parameters()}
    if "weight" in names:
        return "weight"
    if "norm" in names or type(layer).__name__.endswith("Norm"):
        return "norm"
    if isinstance(layer, nn.DropoutFamily) or isinstance(layer, nn.NoiseFamily):
        return "noise"
    return "other"


def _weight(layer: nn.Module) -> nn.Parameter | None:
    for p in layer.parameters():
        if p.kind == "weight" and p.name == "weight":
            return p
    for p in layer.parameters():
        if p.kind == "weight":
            return p
    return None


def _unit_matrix(layer: nn.Module) -> torch.Tensor | None:
    """``(P, units, inputs[+1])``: each unit's incoming weights (and its bias), unit by unit.

    Linear stores ``(P, in, out)`` (units last); convolutions ``(P, out, in, kh, kw)``
    (units first). Any other weight is read units-first.
    """
    w = _weight(layer)
    if w is None:
        return None
    P = w.data.shape[0]
    if isinstance(layer, nn.Linear):
        m = w.data.transpose(1, 2)
    else:
        m = w.data.reshape(P, w.data.shape[1], -1)
    bias = getattr(layer, "bias", None)
    if isinstance(bias, nn.Parameter) and bias.data.numel() == P * m.shape[1]:
        m = torch.cat([m, bias.data.reshape(P, m.shape[1], 1)], dim=2)
    return m


def layer_table(model: nn.Sequential) -> list[dict[str, Any]]:
    """One row per layer: index, name (``"3:ReLU"``), type, role, activation family, weight shape (per member)."""
    rows = []
    for i, layer in enumerate(model.layers):
        fam = _family(layer)
        w = _weight(layer)
        rows.append({"index": i, "name": f"{i}:{type(layer).__name__}", "type": type(layer).__name__,
                     "role": _role(layer), "family": fam,
                     "weight_shape": list(w.data.shape[1:]) if w is not None else None})
    return rows


def _needs_running_statistics(model: nn.Sequential) -> bool:
    """A ``BatchNorm(inference="population")`` layer whose population statistics do not exist yet (the trainer
    computes them at evaluations): it cannot run in eval mode, so the probe reads the running averages."""
    return any(getattr(layer, "inference", None) == "population"
               and bool((getattr(layer, "population_batches", torch.ones(1)) == 0).any())
               for layer in model.modules())


@contextlib.contextmanager
def _quiet_pass(model: nn.Sequential) -> Iterator[nn.Sequential]:
    """The model to run a probe pass on, leaving the members' random streams as they were.

    Eval-mode forwards update no statistics; the members' generators are saved and restored
    anyway, so a layer that samples in eval mode (MC dropout) leaves no trace. Where a batch
    norm layer must read its running averages instead of population statistics that do not exist
    yet, the pass runs on a copy of the model with that copy's setting changed: the probe never
    changes a setting of the model it observes.
    """
    if _needs_running_statistics(model):
        copy_ = copy.deepcopy(model)
        for layer in copy_.modules():
            if getattr(layer, "inference", None) == "population" and bool(
                    (getattr(layer, "population_batches", torch.ones(1)) == 0).any()):
                layer.inference = "running"  # type: ignore[attr-defined]
        yield copy_
        return
    pop = model.population
    if pop is None:
        yield model
        return
    saved_rng = pop.get_state()
    try:
        yield model
    finally:
        pop.set_state(saved_rng)


class _LayerStats:
    """Accumulates one layer's output statistics over the chunks of a pass."""

    def __init__(self, family: str | None, bins: int, slope: torch.Tensor | None) -> None:
        self.family, self.bins, self.slope = family, bins, slope
        self.n = 0
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None
        self.bad: torch.Tensor | None = None
        self.unit_max: torch.Tensor | None = None
        self.saturated: torch.Tensor | None = None
        self.zeros: torch.Tensor | None = None
        self.hist: torch.Tensor | None = None
        self.range: tuple[float, float] | None = None

    @staticmethod
    def _acc(old: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
        return new if old is None else old + new

    def add(self, y: torch.Tensor, P: int) -> None:
        y = y.expand(P, *y.shape[1:]) if y.shape[0] != P else y
        flat = y.reshape(P, -1)
        s = flat.sum(1, dtype=torch.float64)
        sq = torch.linalg.vector_norm(flat, dim=1, dtype=torch.float64).square()
        bad = ~(torch.isfinite(s) & torch.isfinite(sq))  # a member with any NaN/inf value (diverged)
        self.sum, self.sumsq = self._acc(self.sum, s), self._acc(self.sumsq, sq)
        self.bad = bad if self.bad is None else self.bad | bad
        self.n += flat.shape[1]
        if bool(bad.any()):
            flat = torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
        fam = self.family
        if fam in ("relu", "leaky_relu") and y.ndim >= 3:
            # per unit (a feature, or a channel: axis 2), the largest value over examples and positions
            um = y.transpose(1, 2).reshape(P, y.shape[2], -1).amax(dim=2)
            self.unit_max = um if self.unit_max is None else torch.maximum(self.unit_max, um)
            self.zeros = self._acc(self.zeros, (flat == 0).sum(1))
        if fam == "sigmoid":
            self.saturated = self._acc(self.saturated, ((flat - 0.5).abs() > 0.5 - _SIGMOID_EDGE).sum(1))
        elif fam == "tanh":
            self.saturated = self._acc(self.saturated, (flat.abs() > _TANH_EDGE).sum(1))
        if self.bins:
            self._add_hist(flat, P)

    def _add_hist(self, flat: torch.Tensor, P: int) -> None:
        if self.range is None:
            if self.family in _RANGES:
                self.range = _RANGES[self.family]
            else:
                lo, hi = float(flat.min()), float(flat.max())
                if self.family == "relu":
                    lo = 0.0
                if not hi - lo > 1e-12:
                    lo, hi = lo - 0.5, hi + 0.5
                self.range = (lo, hi)
        self.hist = self._acc(self.hist, _histogram(flat, self.range, self.bins))

    def result(self) -> dict[str, Any]:
        """The layer's numbers per member (after at least one :meth:`add`)."""
        if self.sum is None or self.sumsq is None or self.bad is None:
            raise RuntimeError("_LayerStats.result() before any add()")
        n = max(self.n, 1)
        mean = self.sum / n
        var = (self.sumsq / n - mean * mean).clamp_(min=0)
        bad = self.bad
        out: dict[str, Any] = {"mean": _members(torch.where(bad, float("nan"), mean)),
                               "std": _members(torch.where(bad, float("nan"), var.sqrt()))}
        if self.unit_max is not None:
            inactive = (self.unit_max <= 0).double().mean(1)
            out["inactive"] = _members(inactive)
            if self.family == "relu" or self.slope is None:
                dead = inactive
            else:  # Leaky ReLU: a unit with slope > 0 always passes gradient; slope 0 is a ReLU
                dead = torch.where(self.slope.to(inactive) > 0, torch.zeros_like(inactive), inactive)
            out["dead"] = _members(dead)
            if self.zeros is not None:
                out["zero"] = _members(self.zeros.double() / n)
        if self.saturated is not None:
            out["saturated"] = _members(self.saturated.double() / n)
        if self.hist is not None and self.range is not None:
            out["hist"] = self.hist.cpu().tolist()
            out["range"] = [float(self.range[0]), float(self.range[1])]
        return out


def _histogram(flat: torch.Tensor, rng: tuple[float, float], bins: int) -> torch.Tensor:
    """``(P, bins)`` counts of each member's values on ``bins`` equal bins over ``rng`` (outside: end bins)."""
    lo, hi = rng
    # clamp into the range so values outside land in the end bins (histc would drop them)
    x = flat.clamp(lo, hi)
    return torch.stack([torch.histc(x[m], bins=bins, min=lo, max=hi) for m in range(flat.shape[0])]).long()


def _members(t: torch.Tensor) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in t.detach().double().cpu().tolist()]


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a / b.clamp(min=1e-30)


@torch.no_grad()
def probe_model(model: nn.Sequential, x: torch.Tensor, *, bins: int = 40, gradients: bool = True,
                before: dict[int, torch.Tensor] | None = None, layers: Sequence[dict[str, Any]] | None = None,
                light: bool = False) -> dict[str, Any]:
    """One probe measurement of a built model: activations on ``x``, weights, and (optionally) gradients.

    ``x`` is ``(N, ...)`` (shared by every member) or ``(P, N, ...)``. ``gradients``
    reads each weight's ``.grad`` as the last backward left it; ``before`` maps a
    layer index to that weight's values before the last step (for the update ratio).
    ``light=True`` (the probe's sampled steps) keeps only what is cheap: the
    nonlinearities' outputs and the weights', gradients' and updates' norms -- no
    histograms, no pre-activation statistics, no unit spread.
    Returns ``{"layers": {index: {...}}, "summary": {...}}``, every number per member.
    """
    P = model.size
    table = list(layers) if layers is not None else layer_table(model)
    bins = 0 if light else bins
    measured = ("activation",) if light else ("activation", "weight", "norm", "other")
    stats: dict[int, _LayerStats] = {}
    for row, layer in zip(table, model.layers):
        if row["role"] in measured and row["family"] != "identity":
            slope = layer._p if isinstance(layer, nn.LeakyReLU) else None
            stats[row["index"]] = _LayerStats(row["family"], bins, slope)
    xs = x.unsqueeze(0) if x.ndim == len(model.input_shape or ()) + 1 else x
    with _quiet_pass(model) as observed:
        for start in range(0, xs.shape[1], _CHUNK):
            h = xs[:, start:start + _CHUNK]
            for i, layer in enumerate(observed.layers):
                out = layer.forward(h, training=False)
                if i in stats and out is not h:
                    stats[i].add(out, P)
                h = out
    res: dict[str, dict[str, Any]] = {}
    for i, st in stats.items():
        if st.n:
            res[str(i)] = {"act": st.result()}
    def norm(t: torch.Tensor) -> torch.Tensor:  # float32 is plenty for ratios of norms
        return torch.linalg.vector_norm(t, dim=1).double()

    for row, layer in zip(table, model.layers):
        w = _weight(layer)
        if w is None:
            continue
        i = row["index"]
        w2 = w.data.reshape(P, -1)
        entry = res.setdefault(str(i), {})
        wn = norm(w2)
        ws: dict[str, Any] = {"norm": _members(wn), "rms": _members(wn / math.sqrt(w2.shape[1]))}
        if not light:
            units = _unit_matrix(layer)
            if units is not None and units.shape[1] > 1:
                u = units
                spread = (u - u.mean(dim=1, keepdim=True)).abs().amax(dim=(1, 2))
                ws["unit_spread"] = _members(_ratio(spread, u.abs().amax(dim=(1, 2))))
        if bins:
            wf = torch.nan_to_num(w2, nan=0.0, posinf=0.0, neginf=0.0)
            a = float(wf.abs().max())
            a = a if a > 0 else 1.0
            ws["hist"] = _histogram(wf, (-a, a), bins).cpu().tolist()
            ws["range"] = [-a, a]
        entry["weight"] = ws
        if gradients:
            gn = norm(w.grad.reshape(P, -1))
            entry["grad"] = {"norm": _members(gn), "rms": _members(gn / math.sqrt(w2.shape[1]))}
        if before is not None and i in before:
            w0 = before[i].reshape(P, -1)
            entry["update_ratio"] = _members(_ratio(norm(w2 - w0), norm(w0)))
    return {"layers": res, "summary": summarize_record({"layers": res}, table, P)}


def summarize_record(record: dict[str, Any], table: Sequence[dict[str, Any]], P: int) -> dict[str, Any]:
    """Whole-net numbers per member from one record's layers.

    ``dead``: dead ReLU units / all ReLU-family units; ``saturated``: saturated
    outputs / all sigmoid+tanh outputs (mean of the layers); ``grad_ratio``: RMS
    gradient of the first weight layer / the last; ``update_ratio``: median over the
    weight layers; ``act_std_ratio``: std of the last hidden activation / the first;
    ``min_unit_spread``: the smallest unit spread over hidden weight layers.
    """
    layers = record["layers"]

    def col(i: int, *path: str) -> list[float | None] | None:
        node: Any = layers.get(str(i))
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        return node

    def present(cols: Iterable[list[float | None] | None]) -> list[list[float | None]]:
        return [c for c in cols if c is not None]

    def values(rows: list[list[float | None]], m: int) -> list[float]:
        """Member ``m``'s values over ``rows``, the missing ones left out."""
        return [v for r in rows if (v := r[m]) is not None]

    def nanmean(rows: list[list[float | None]]) -> list[float | None]:
        out: list[float | None] = []
        for m in range(P):
            vals = values(rows, m)
            out.append(sum(vals) / len(vals) if vals else None)
        return out

    acts = [r for r in table if r["role"] == "activation" and r["family"] != "identity"]
    weights = [r for r in table if r["role"] == "weight"]
    s: dict[str, Any] = {}
    relus = [r for r in acts if r["family"] in ("relu", "leaky_relu")]
    dead_rows = present(col(r["index"], "act", "dead") for r in relus)
    if dead_rows:
        s["dead"] = nanmean(dead_rows)
        s["dead_max_layer"] = [max(values(dead_rows, m), default=None) for m in range(P)]
        s["inactive"] = nanmean(present(col(r["index"], "act", "inactive") for r in relus))
    sat_rows = present(col(r["index"], "act", "saturated") for r in acts if r["family"] in ("sigmoid", "tanh"))
    if sat_rows:
        s["saturated"] = nanmean(sat_rows)
        s["saturated_max_layer"] = [max(values(sat_rows, m), default=None) for m in range(P)]
    if len(weights) >= 2:
        first, last = col(weights[0]["index"], "grad", "rms"), col(weights[-1]["index"], "grad", "rms")
        if first is not None and last is not None:
            s["grad_ratio"] = [None if a is None or b is None or b == 0 else a / b for a, b in zip(first, last)]
    ups = present(col(r["index"], "update_ratio") for r in weights)
    if ups:
        med: list[float | None] = []
        for m in range(P):
            vals = sorted(values(ups, m))
            med.append(vals[len(vals) // 2] if vals else None)
        s["update_ratio"] = med
    stds = present(col(r["index"], "act", "std") for r in acts)
    if len(stds) >= 2:
        a0, a1 = stds[0], stds[-1]
        s["act_std_first"] = a0
        s["act_std_last"] = a1
        s["act_std_ratio"] = [None if x is None or y is None or x == 0 else y / x for x, y in zip(a0, a1)]
    spreads = present(col(r["index"], "weight", "unit_spread") for r in weights[:-1])
    if spreads:
        s["min_unit_spread"] = [min(values(spreads, m), default=None) for m in range(P)]
    return s


class Probe(Callback):
    """Record per-layer statistics every ``every`` steps and at evaluations (see the module doc).

    Parameters
    ----------
    x:
        The probe inputs ``(N, ...)``; default: the first ``examples`` training inputs.
    every:
        Steps between measurements (``None``: only at evaluations, the start and the end).
    at_evaluate:
        Also measure at every evaluation (and add ``probe_*`` metrics to its record).
    examples:
        Size of the default probe set.
    bins:
        Histogram bins (0: no histograms).
    histograms:
        ``"evaluate"`` (default): keep histograms only at the start, evaluations and
        the end (sampled steps keep the scalars); ``"always"``; ``"never"``.
    key:
        Where the records go in ``trainer.history.info``.
    """

    def __init__(self, x: torch.Tensor | None = None, *, every: int | None = 10, at_evaluate: bool = True,
                 examples: int = 500, bins: int = 40, histograms: str = "evaluate", key: str = "probes") -> None:
        if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
            raise ConfigError(f"Probe every must be an integer >= 1 or None, got {every!r}")
        if not isinstance(examples, int) or isinstance(examples, bool) or examples < 1:
            raise ConfigError(f"Probe examples must be an integer >= 1, got {examples!r}")
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 0:
            raise ConfigError(f"Probe bins must be an integer >= 0, got {bins!r}")
        if histograms not in ("evaluate", "always", "never"):
            raise ConfigError(f"Probe histograms must be 'evaluate', 'always' or 'never', got {histograms!r}")
        self.x, self.every, self.at_evaluate, self.examples = x, every, at_evaluate, examples
        self.bins, self.histograms, self.key = bins, histograms, key
        self.data: dict[str, Any] = {}
        self.seconds = 0.0
        self._before: dict[int, torch.Tensor] | None = None
        self._last_step = -1

    # ---- hooks ----------------------------------------------------------------------
    def on_train_begin(self, trainer: Trainer) -> None:
        t0 = time.perf_counter()
        model = trainer.model
        if self.x is None:
            self._x = trainer._train_x[: self.examples]
        else:
            self._x = self.x.to(device=model.device, dtype=model.dtype)
        self._table = layer_table(model)
        info = trainer.history.info
        existing = info.get(self.key)
        if isinstance(existing, dict) and existing.get("records") is not None:
            self.data = existing  # resumed from a checkpoint: go on appending to the saved records
        else:
            self.data = {"every": self.every, "examples": int(self._x.shape[0]), "bins": self.bins,
                         "layers": self._table, "records": [], "seconds": 0.0}
            info[self.key] = self.data
        self._last_step = self.data["records"][-1]["step"] if self.data["records"] else -1
        if trainer.step != self._last_step:
            self._measure(trainer, "begin", gradients=False)
        self._snapshot_if_next_sampled(trainer)
        self._tick(t0)

    def on_evaluate(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if not self.at_evaluate:
            return
        t0 = time.perf_counter()
        rec = self._measure(trainer, "evaluate")
        for k, v in rec["summary"].items():
            if k in ("dead", "saturated", "grad_ratio", "update_ratio", "act_std_ratio"):
                record[f"probe_{k}"] = v
        self._tick(t0)

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        t0 = time.perf_counter()
        if self.every is not None and trainer.step % self.every == 0 and trainer.step != self._last_step:
            self._measure(trainer, "step")
        self._snapshot_if_next_sampled(trainer)
        self._tick(t0)

    def on_train_end(self, trainer: Trainer) -> None:
        t0 = time.perf_counter()
        if trainer.step != self._last_step:
            self._measure(trainer, "end")
        self._before = None
        self._tick(t0)

    # ---- measuring -------------------------------------------------------------------
    def _tick(self, t0: float) -> None:
        dt = time.perf_counter() - t0
        self.seconds += dt
        if self.data:
            self.data["seconds"] = round(self.data.get("seconds", 0.0) + dt, 6)

    def _sampled(self, step: int) -> bool:
        return self.every is not None and step % self.every == 0

    def _snapshot_if_next_sampled(self, trainer: Trainer) -> None:
        if self._sampled(trainer.step + 1):
            self._before = {r["index"]: w.data.clone() for r, layer in zip(self._table, trainer.model.layers)
                            if r["role"] == "weight" and (w := _weight(layer)) is not None}
        else:
            self._before = None

    def _measure(self, trainer: Trainer, at: str, *, gradients: bool = True) -> dict[str, Any]:
        full = self.histograms == "always" or (self.histograms == "evaluate" and at != "step")
        before = self._before if (self._before is not None and self._sampled(trainer.step)) else None
        res = probe_model(trainer.model, self._x, bins=self.bins if self.histograms != "never" else 0,
                          gradients=gradients and trainer.step > 0, before=before, layers=self._table,
                          light=not full)
        spe = getattr(trainer, "steps_per_epoch", None)
        rec = {"step": trainer.step, "epoch": round(trainer.step / spe, 6) if spe else None, "at": at, **res}
        self.data["records"].append(rec)
        self._last_step = trainer.step
        return rec

    # ---- reading ---------------------------------------------------------------------
    @property
    def records(self) -> list[dict[str, Any]]:
        return self.data.get("records", [])

    def series(self, name: str) -> tuple[list[int], list[list[float | None]]]:
        """``(steps, values)`` of a summary number over the records (values: one list per record, per member)."""
        steps, vals = [], []
        for r in self.records:
            if name in r["summary"]:
                steps.append(r["step"])
                vals.append(r["summary"][name])
        return steps, vals
