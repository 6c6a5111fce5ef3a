"""The dropout family: Dropout (two conventions), DropConnect, and MC-dropout prediction.

Every random draw comes from the member's own generator
(``population.generators(x.device)``), so member *i* of a population drops exactly
the units it would drop if trained alone with the same seed.

``p`` is always the **drop** probability, as in ``torch.nn.Dropout(p)`` and Keras'
``Dropout(rate)``. Srivastava et al. (2014) and TensorFlow 1's ``keep_prob`` use the
*keep* probability instead; see ``docs/dropout.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
from dataclasses import dataclass
from typing import Any
import warnings

import torch

from trainlab.errors import ConfigError
from trainlab.nn._linear import Linear
from trainlab.nn._module import Module
from trainlab.population import Population, member_draw, member_values, member_view

__all__ = [
    "DropoutFamily",
    "Dropout",
    "DropConnectLinear",
    "MCUncertainty",
    "mc_dropout",
    "mc_dropout_samples",
    "mc_dropout_predict",
]

_MODES = ("inverted", "classic")
#: at or above this drop probability a warning suggests a keep/drop mix-up
SUSPICIOUS_P = 0.8


def _check_drop_probability(value: Any, size: int, *, owner: str, warn: bool = False,
                            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(size,)`` drop probabilities, each in ``[0, 1)``; optionally warn about keep/drop mix-ups."""
    t = member_values(value, size, name=f"{owner} p", dtype=torch.float64)
    vals = t.tolist()
    for i, v in enumerate(vals):
        if not 0.0 <= v < 1.0:
            where = f" (member {i})" if size > 1 else ""
            raise ConfigError(f"{owner} p is the drop probability and must satisfy 0 <= p < 1, got {v}{where}")
    if warn:
        high = [v for v in vals if v >= SUSPICIOUS_P]
        if high:
            v = high[0]
            warnings.warn(
                f"{owner} p={v} drops {v:.0%} of the units: p is the drop probability (torch.nn.Dropout's p, "
                f"Keras' rate), not the keep probability (Srivastava et al.'s p, TF1's keep_prob); "
                f"this may be a keep probability mix-up. If you meant to keep {v:.0%}, use p={1.0 - v:.4g}",
                UserWarning,
                stacklevel=3,
            )
    return t.to(device=device, dtype=dtype)


def _size_of(value: Any, name: str) -> int:
    """How many members a setting lists (1 for a scalar); rejects what is neither."""
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, Sequence, torch.Tensor)):
        raise ConfigError(f"{name} must be a number or a list of numbers (one per member), got {value!r}")
    if isinstance(value, torch.Tensor):
        return max(value.numel(), 1)
    return len(value) if isinstance(value, Sequence) else 1


def _as_keep_mask(mask: torch.Tensor, *, owner: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise ConfigError(f"{owner}.fix_mask expects a tensor of 0/1 (or booleans), got {type(mask).__name__}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise ConfigError(f"{owner}.fix_mask expects a keep-mask of 0/1 (or booleans): 1 = kept, 0 = dropped")
    return mask.detach().to(torch.bool).clone()


class DropoutFamily:
    """Mixin of the layers that drop things at random (units, weights).

    * ``mc``: when ``True`` the layer samples even in eval mode (``training=False``).
      :func:`mc_dropout` sets it on these layers only, so Monte-Carlo dropout never
      switches anything else (BatchNorm, ...) into training mode.
    * ``fix_mask(keep)`` / ``release_mask()``: hold a keep-mask (``True`` = kept) fixed
      for every sampling forward (gradient checks, demonstrations); no random numbers
      are drawn while a mask is fixed.
    * ``last_mask``: the keep-mask of the last sampling forward (``None`` after a
      deterministic one).
    """

    mc: bool = False
    _fixed_keep: torch.Tensor | None = None
    _last_keep: torch.Tensor | None = None

    def _init_family(self) -> None:
        self.mc = False
        self._fixed_keep = None
        self._last_keep = None

    def _sampling(self, training: bool) -> bool:
        return training or self.mc

    def fix_mask(self, keep: torch.Tensor) -> None:
        """Use ``keep`` (1/``True`` = kept) in every sampling forward until :meth:`release_mask`."""
        self._fixed_keep = _as_keep_mask(keep, owner=type(self).__name__)

    def release_mask(self) -> None:
        """Go back to drawing a fresh mask on every sampling forward."""
        self._fixed_keep = None

    @property
    def last_mask(self) -> torch.Tensor | None:
        """Boolean keep-mask used by the last sampling forward."""
        return self._last_keep

    def _keep_mask(self, population: Population, shape: tuple[int, ...], p: torch.Tensor, *,
                   device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Float 0/1 keep-mask ``(P, *shape)``: fixed, or ``u >= p`` with ``u ~ U[0,1)`` per member."""
        if self._fixed_keep is not None:
            want = (population.size, *shape)
            if tuple(self._fixed_keep.shape) != want:
                raise ConfigError(f"{type(self).__name__}: the fixed mask has shape {tuple(self._fixed_keep.shape)}, "
                                  f"this forward needs {want}")
            keep = self._fixed_keep.to(device=device, dtype=dtype)
        else:
            u = member_draw(population, shape, kind="uniform", device=device, dtype=dtype)
            # P(u >= p) = 1 - p; in place, u becomes the 0/1 mask (no second allocation).
            keep = u.ge_(member_view(p, u.ndim))
        self._last_keep = keep.to(torch.bool)
        return keep


class Dropout(DropoutFamily, Module):
    """Drop each unit with probability ``p`` while training; ``p`` may differ per member.

    ``mode="inverted"`` (default; ``torch.nn.Dropout``, Keras ``Dropout``)::

        training:  y = x * m / (1 - p),   m ~ Bernoulli(1 - p) per unit
        eval:      y = x

    ``mode="classic"`` (Srivastava et al. 2014; the course notes)::

        training:  y = x * m
        eval:      y = x * (1 - p)       (scaled by the KEEP probability)

    Either way ``E[y_train] = y_eval`` for every unit, so eval runs the "mean network".
    Backward passes the gradient through the same mask and scale: ``dx = g * m / (1-p)``
    (inverted) or ``dx = g * m`` (classic) in training; ``dx = g`` or ``g * (1 - p)`` in eval.

    A shared input ``(1, N, ...)`` (input dropout on the data batch) gives a
    ``(P, N, ...)`` output, each member with its own mask; its ``dx`` is summed back to
    ``(1, N, ...)``. In inverted eval mode the input is returned as is.

    Per-layer rates (the course's input 0.2 / hidden 0.5) are separate layers:
    ``Sequential([Dropout(0.2), Linear(784, 512), ReLU(), Dropout(0.5), ...])``.

    See: ``torch.nn.Dropout``; Srivastava et al., JMLR 15 (2014),
    https://jmlr.org/papers/v15/srivastava14a.html (whose ``p`` is the keep probability).

    Parameters
    ----------
    p:
        Drop probability in ``[0, 1)``: one number, or one per member. ``p >= 0.8``
        warns, since it is often a keep probability passed by mistake.
    mode:
        ``"inverted"`` or ``"classic"``: where the ``1 - p`` correction goes.

    After ``build``, ``rate`` holds the ``(P,)`` drop probabilities.
    """

    def __init__(self, p: float | Sequence[float] = 0.5, *, mode: str = "inverted") -> None:
        owner = type(self).__name__
        if mode not in _MODES:
            raise ConfigError(f"{owner} mode must be 'inverted' or 'classic', got {mode!r}")
        _check_drop_probability(p, _size_of(p, f"{owner} p"), owner=owner, warn=True)
        self._settings = dict(p=p, mode=mode)
        self.p = p
        self.mode = mode
        self._init_family()

    def build(self, in_shape, population: Population, *, device="cpu", dtype=torch.float32):
        super().build(in_shape, population)
        self.population = population
        self.device = torch.device(device)
        self.rate = _check_drop_probability(self.p, population.size, owner=type(self).__name__, dtype=dtype,
                                            device=device)
        keep_prob = 1.0 - self.rate
        # inverted: the training mask carries 1/(1-p); classic: eval multiplies by (1-p)
        self._train_scale = 1.0 / keep_prob if self.mode == "inverted" else None
        self._eval_scale = keep_prob if self.mode == "classic" else None
        return in_shape

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        P = self.population.size
        self._shared = x.shape[0] == 1 and P > 1
        if self._sampling(training):
            keep = self._keep_mask(self.population, self._mask_shape(x), self.rate, device=x.device, dtype=x.dtype)
            if self._train_scale is not None:
                keep.mul_(member_view(self._train_scale, keep.ndim))
            self._mult = keep
            return x * keep
        self._last_keep = None
        if self._eval_scale is None:
            self._mult = None
            self._shared = False  # the output is x itself, of x's shape
            return x
        self._mult = member_view(self._eval_scale, x.ndim)
        return x * self._mult

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        if not self.input_grad:
            return None
        if self._mult is None:
            return g
        dx = g * self._mult  # the units dropped going forward get no gradient going back
        return dx.sum(dim=0, keepdim=True) if self._shared else dx

    def _mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """The per-member shape of the keep-mask: one draw per unit of every example."""
        return tuple(x.shape[1:])


class DropConnectLinear(DropoutFamily, Linear):
    """A :class:`~trainlab.nn.Linear` layer that drops individual *weights* while training.

    Per member, with ``M ~ Bernoulli(1 - p)`` of the weight's shape ``(in, out)``::

        training:  W~ = W * M / (1 - p),   y = x W~ + b
        eval:      y = x W + b             (E[W~] = W)
        backward:  dW = (x^T g) * M / (1 - p),  db = sum_n g,  dx = g W~^T

    Wan et al. (2013) draw a mask per *example*; trainlab draws one weight mask per
    member per mini-batch (a common simplification): per-example masks would hold
    ``N`` copies of ``W`` (``N * in * out`` numbers) and turn one batched matmul into
    ``N`` small ones. The bias is never dropped. At inference Wan et al. moment-match
    a Gaussian and sample; trainlab uses the mean weights ``W`` (the same
    weight-scaling rule as inverted dropout); :func:`mc_dropout_predict` samples instead.

    See: Wan et al., "Regularization of Neural Networks using DropConnect", ICML 2013.
    """

    def __init__(self, in_features: int | None, out_features: int, *, p: float | Sequence[float] = 0.5,
                 init: Any = "xavier_uniform", init_scale: float | Sequence[float] = 1.0, bias: bool = True) -> None:
        super().__init__(in_features, out_features, init=init, init_scale=init_scale, bias=bias)
        _check_drop_probability(p, _size_of(p, "DropConnectLinear p"), owner="DropConnectLinear", warn=True)
        self._settings = dict(in_features=in_features, out_features=out_features, p=p, init=init,
                              init_scale=init_scale, bias=bias)
        self.p = p
        self._init_family()

    def build(self, in_shape, population: Population, *, device="cpu", dtype=torch.float32):
        out = super().build(in_shape, population, device=device, dtype=dtype)
        self.population = population
        self.device = torch.device(device)
        self.rate = _check_drop_probability(self.p, population.size, owner="DropConnectLinear", dtype=dtype,
                                            device=device)
        self._scale = 1.0 / (1.0 - self.rate)
        return out

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        W = self.weight.data
        P = W.shape[0]
        xb = x.expand(P, *x.shape[1:])
        self._x = xb
        self._shared = x.shape[0] == 1 and P > 1
        if self._sampling(training):
            keep = self._keep_mask(self.population, tuple(W.shape[1:]), self.rate, device=W.device, dtype=W.dtype)
            self._mult = keep.mul_(member_view(self._scale, 3))
            self._w = W * self._mult
        else:
            self._last_keep = None
            self._mult = None
            self._w = W
        if self.bias is None:
            return torch.bmm(xb, self._w)
        return torch.baddbmm(self.bias.data, xb, self._w)

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        torch.bmm(self._x.transpose(1, 2), g, out=self.weight.grad)
        if self._mult is not None:
            # y depends on W only through W~ = W * M / (1-p): the chain rule masks and scales dW.
            self.weight.grad.mul_(self._mult)
        if self.bias is not None:
            torch.sum(g, dim=1, keepdim=True, out=self.bias.grad)
        self._x = None
        w, self._w = self._w, None
        if not self.input_grad:
            return None
        dx = torch.bmm(g, w.transpose(1, 2))
        return dx.sum(dim=0, keepdim=True) if self._shared else dx


# ---- Monte-Carlo dropout ---------------------------------------------------------------


def _walk(model: Module) -> Iterator[Module]:
    yield model
    for sub in getattr(model, "layers", ()) or ():
        yield from _walk(sub)


def _family_layers(model: Module) -> list[DropoutFamily]:
    return [m for m in _walk(model) if isinstance(m, DropoutFamily)]


#: the kinds of stochastic layer Monte-Carlo prediction can sample, see :func:`mc_dropout`
MC_KINDS = ("dropout", "pool", "noise")


def _stochastic_kind(layer: Module) -> str | None:
    from trainlab.nn._noise import NoiseFamily  # these modules import this one
    from trainlab.nn._pool import StochasticPool2d

    if isinstance(layer, DropoutFamily):
        return "dropout"
    if isinstance(layer, StochasticPool2d):
        return "pool"
    if isinstance(layer, NoiseFamily):
        return "noise"
    return None


def _mc_kinds(include: Any) -> tuple[str, ...]:
    if include == "all":
        return MC_KINDS
    items = (include,) if isinstance(include, str) else tuple(include) if isinstance(include, (list, tuple)) else None
    if not items or any(k not in MC_KINDS for k in items):
        raise ConfigError(f"MC include must be 'all' or some of {', '.join(repr(k) for k in MC_KINDS)}, "
                          f"got {include!r}")
    return items


def _layer_device(layer: Module) -> torch.device:
    dev = getattr(layer, "device", None)
    if dev is None:  # the noise layers keep their per-member std on the model's device
        dev = layer.sigma.device
    return torch.device(dev)


@contextlib.contextmanager
def mc_dropout(model: Module, *, include: str | Sequence[str] = "all") -> Iterator[list[Module]]:
    """Within the block, the stochastic layers of ``model`` sample in eval mode.

    ``include`` says which (default ``"all"``: every stochastic layer):

    * ``"dropout"``: the dropout family (Dropout, SpatialDropout2d, DropConnectLinear);
    * ``"pool"``: StochasticPool2d (a drawn position per window instead of the weighted average);
    * ``"noise"``: GaussianNoise and NoisyLinear (fresh noise instead of none).

    ``"all"`` is Gal & Ghahramani's Monte-Carlo estimate for a net trained with any of
    these stochastic regularizers (each pass samples from the same distribution training
    did); ``include="dropout"`` is MC dropout in the narrow sense (the behaviour before
    issue 18). Only those layers get ``mc = True``; the model is still called with
    ``training=False``, so BatchNorm and every other layer stay in inference mode.
    On exit (normal or by exception) the flags return to their previous values and
    the members' generators to their state on entry: sampling for predictions never
    changes the masks that training draws next, and repeating a call repeats its draws.

    Yields the layers it switched. Containers are searched through their ``layers``.
    """
    kinds = _mc_kinds(include)
    layers = [m for m in _walk(model) if _stochastic_kind(m) in kinds]
    if not layers:
        names = {"dropout": "Dropout, DropConnectLinear", "pool": "StochasticPool2d",
                 "noise": "GaussianNoise, NoisyLinear"}
        raise ConfigError(f"MC dropout needs stochastic layers ({', '.join(names[k] for k in kinds)}), but "
                          f"{type(model).__name__} has none: every pass would give the same output")
    populations: dict[int, Population] = {}
    for layer in layers:
        pop = getattr(layer, "population", None)
        if pop is None:
            raise ConfigError("the model is not built yet: call model.build(input_shape, population) first")
        pop.generators(_layer_device(layer))  # make sure the generators exist so their state can be restored
        populations[id(pop)] = pop
    states = [(pop, pop.get_state()) for pop in populations.values()]
    flags = [layer.mc for layer in layers]
    try:
        for layer in layers:
            layer.mc = True
        yield layers
    finally:
        for layer, flag in zip(layers, flags):
            layer.mc = flag
        for pop, state in states:
            pop.set_state(state)


def _check_call(fn: str, x: torch.Tensor, samples: Any, batch_size: Any) -> None:
    for name, value in (("samples", samples), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{fn} {name} must be an integer >= 1, got {value!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"{fn} x must be a tensor of shape (N, ...) with N >= 1, got {shape}")


@torch.no_grad()
def mc_dropout_samples(model: Module, x: torch.Tensor, *, samples: int = 50, batch_size: int = 1000,
                       include: str | Sequence[str] = "all") -> torch.Tensor:
    """Raw outputs of ``samples`` stochastic passes: ``(T, P, N, ...)`` for inputs ``(N, ...)``.

    ``include`` chooses the stochastic layers that sample, as in :func:`mc_dropout`.
    Holds all ``T`` passes in memory; :func:`mc_dropout_predict` streams them instead.
    """
    _check_call("mc_dropout_samples", x, samples, batch_size)
    outs = []
    with mc_dropout(model, include=include):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].unsqueeze(0)
            outs.append(torch.stack([model.forward(xb, training=False) for _ in range(samples)]))
    return torch.cat(outs, dim=2)


@dataclass(frozen=True)
class MCUncertainty:
    """Per-example uncertainty of MC-dropout predictions, each ``(P, N)`` (natural log).

    * ``entropy``: predictive entropy ``H[p_bar] = -sum_c p_bar_c log p_bar_c`` of the
      mean probabilities; between 0 (certain) and ``log C``. Total uncertainty: it
      counts both noisy data and an unsure model.
    * ``variance``: ``Var_t[p_t,c*]``, the spread over the ``T`` passes of the
      probability of the winning class ``c* = argmax_c p_bar_c`` (divided by ``T``;
      0 when ``T = 1``). Large when the passes disagree about the prediction.
    * ``mutual_information``: ``H[p_bar] - mean_t H[p_t]`` (the BALD score), the part
      of the entropy due to disagreement between passes (model uncertainty); 0 when
      every pass gives the same probabilities.
    """

    entropy: torch.Tensor
    variance: torch.Tensor
    mutual_information: torch.Tensor


def _entropy(q: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(q, q).sum(dim=-1)


@torch.no_grad()
def mc_dropout_predict(model: Module, x: torch.Tensor, *, samples: int = 50, batch_size: int = 1000,
                       include: str | Sequence[str] = "all") -> tuple[torch.Tensor, MCUncertainty]:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): average ``samples`` stochastic passes.

    ``x`` is ``(N, ...)``, shared by every member; the model outputs logits ``(P, N, C)``.
    The stochastic layers chosen by ``include`` sample (default ``"all"``: dropout family,
    StochasticPool2d and the noise layers; see :func:`mc_dropout`); everything else runs
    in eval mode. Returns the mean softmax probabilities ``(P, N, C)`` and an
    :class:`MCUncertainty` (predictive entropy, variance of the winning class'
    probability, mutual information), in the model's dtype.

    The passes are accumulated in float64 as differences from the first pass, so a
    model whose passes all agree (``p = 0``) gives exactly zero variance and mutual
    information and mean probabilities equal to ``softmax`` of the eval output.
    """
    _check_call("mc_dropout_predict", x, samples, batch_size)
    means, ents, variances, infos = [], [], [], []
    out_dtype = None
    with mc_dropout(model, include=include):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].unsqueeze(0)
            q0 = h0 = s1 = s2 = sh = None
            for _ in range(samples):
                z = model.forward(xb, training=False)
                out_dtype = z.dtype
                q = torch.softmax(z.to(torch.float64), dim=-1)
                h = _entropy(q)
                if q0 is None:
                    q0, h0 = q, h
                    s1, s2, sh = torch.zeros_like(q), torch.zeros_like(q), torch.zeros_like(h)
                    continue
                d = q - q0
                s1 += d
                s2 += d * d
                sh += h - h0
            m1 = s1 / samples
            mean = q0 + m1
            var = (s2 / samples - m1 * m1).clamp_min_(0.0)
            win = mean.argmax(dim=-1, keepdim=True)
            ent = _entropy(mean)
            means.append(mean)
            ents.append(ent)
            variances.append(var.gather(-1, win).squeeze(-1))
            infos.append((ent - (h0 + sh / samples)).clamp_min_(0.0))

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=1).to(out_dtype)

    return cat(means), MCUncertainty(cat(ents), cat(variances), cat(infos))
