"""Monte-Carlo prediction: sample every stochastic layer at inference (Gal & Ghahramani 2016).

Kept apart from the layers it samples (dropout, stochastic pooling, noise), which it imports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.nn._dropout import DropoutFamily
from trainlab.nn._module import Module
from trainlab.nn._noise import NoiseFamily
from trainlab.nn._pool import StochasticPool2d
from trainlab.population import Population

__all__ = ["MC_KINDS", "MCUncertainty", "mc_dropout", "mc_dropout_samples", "mc_dropout_predict"]


# ---- Monte-Carlo dropout ---------------------------------------------------------------


def _family_layers(model: Module) -> list[DropoutFamily]:
    return [m for m in model.modules() if isinstance(m, DropoutFamily)]


#: the kinds of stochastic layer Monte-Carlo prediction can sample, see :func:`mc_dropout`
MC_KINDS = ("dropout", "pool", "noise")


def _stochastic_kind(layer: Module) -> str | None:
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
        sigma: torch.Tensor = getattr(layer, "sigma")
        dev = sigma.device
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

    Yields the layers it switched. Containers (Sequential, Residual) are searched through ``model.modules()``.
    """
    kinds = _mc_kinds(include)
    layers = [m for m in model.modules() if _stochastic_kind(m) in kinds]
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
    # ``mc`` lives on the stochastic families (mixins beside Module), hence getattr/setattr on a Module
    flags: list[bool] = [getattr(layer, "mc") for layer in layers]
    try:
        for layer in layers:
            setattr(layer, "mc", True)
        yield layers
    finally:
        for layer, flag in zip(layers, flags):
            setattr(layer, "mc", flag)
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
    means: list[torch.Tensor] = []
    ents: list[torch.Tensor] = []
    variances: list[torch.Tensor] = []
    infos: list[torch.Tensor] = []
    out_dtype: torch.dtype | None = None
    with mc_dropout(model, include=include):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].unsqueeze(0)
            # the first pass, then sums of the differences from it (q: probabilities, h: entropies)
            z = model.forward(xb, training=False)
            out_dtype = z.dtype
            q0 = torch.softmax(z.to(torch.float64), dim=-1)
            h0 = _entropy(q0)
            s1, s2, sh = torch.zeros_like(q0), torch.zeros_like(q0), torch.zeros_like(h0)
            for _ in range(samples - 1):
                z = model.forward(xb, training=False)
                q = torch.softmax(z.to(torch.float64), dim=-1)
                h = _entropy(q)
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
