"""Pieces the experiments share: data, nets, probes, recorders, per-member optimizers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import functools
from typing import Any

import numpy as np
import torch

from trainlab import nn
from trainlab.data import Arrays, Splits, load_splits
from trainlab.errors import ConfigError
from trainlab.init import Initializer
from trainlab.experiments._core import Preset
from trainlab.nn import Module
from trainlab.optim import Optimizer
from trainlab.population import Population
from trainlab.train import Callback, Trainer

__all__ = [
    "splits",
    "present",
    "built_population",
    "pool_train",
    "mlp",
    "linear_layers",
    "activation_outputs",
    "weight_grad_norms",
    "StepLoss",
    "MemberOptimizers",
    "smooth",
    "steps_to_reach",
    "tolist",
]

_ACTIVATIONS: dict[str, Callable[[], Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


# ---- data ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _splits_cached(data: str, data_dir: str | None, download: bool, train: int | None, val: int,
                   test: int | None, seed: int, preprocess: str, options: tuple[tuple[str, Any], ...]) -> Splits:
    return load_splits(data, train=train, val=val, test=test, seed=seed, preprocess=preprocess,
                       data_dir=data_dir, download=download, preprocess_options=dict(options) or None)


EMBEDDED_POOL = 5000
#: the textbook preset's test split on the embedded pool (its settings ask for the 10,000 official ones)
EMBEDDED_TEXTBOOK_TEST = 1000


def _fit_pool(preset: Preset, train: int | None, val: int, test: int | None) -> tuple[int | None, int, int | None]:
    """Sizes that fit the embedded pool. The textbook preset's sizes are meant for full MNIST: on
    the pool its test split shrinks to 1,000 and its training split to what is left (the
    preset's note says so); the smoke and quick presets are made to fit, so there it is an error."""
    if not preset.embedded:
        return train, val, test
    if preset.name == "textbook":
        if test is None or test > EMBEDDED_TEXTBOOK_TEST:
            test = EMBEDDED_TEXTBOOK_TEST
        if train is not None and train + val + test > EMBEDDED_POOL:
            train = EMBEDDED_POOL - val - test
    if train is not None and train + val + (test or 0) > EMBEDDED_POOL:
        raise ConfigError(f"{preset.data} holds {EMBEDDED_POOL} images; train={train} + val={val} + test={test} "
                          "do not fit")
    return train, val, test


def pool_train(preset: Preset, *, val: int = 0, test: int | None = 1000) -> int:
    """The largest training split the preset's data allows next to ``val`` and ``test`` (a large
    number for the full data sets)."""
    if not preset.embedded:
        return 10**9
    _, val, test = _fit_pool(preset, None, val, test)
    return EMBEDDED_POOL - val - (test or 0)


def splits(preset: Preset, *, train: int | None, val: int = 0, test: int | None = 1000,
           preprocess: str = "minmax", seed: int | None = None, **preprocess_options: Any) -> Splits:
    """Seeded, stratified train/val/test parts of the preset's data (cached per process).

    ``train=None`` takes what val and test leave. On the embedded pool (5,000 images)
    the textbook preset's full-MNIST sizes are capped (see :func:`_fit_pool`).
    """
    train, val, test = _fit_pool(preset, train, val, test)
    return _splits_cached(preset.data, preset.data_dir, preset.download, train, val, test,
                          preset.seed if seed is None else seed, preprocess, tuple(sorted(preprocess_options.items())))


def present(part: Arrays | None, name: str) -> Arrays:
    """A split part the experiment asked for (``splits(..., test=n)`` with ``n > 0`` has a test part);
    one clear error where it is missing rather than an AttributeError on ``None``."""
    if part is None:
        raise ConfigError(f"these splits have no {name} part: ask splits() for {name} > 0")
    return part


# ---- models -------------------------------------------------------------------------------


def mlp(P: int, hidden: Sequence[int], *, activation: str = "relu",
        init: str | Initializer | Mapping[str, Any] = "he_normal",
        init_scale: float | Sequence[float] | Sequence[Sequence[float]] = 1.0,
        batchnorm: bool | Mapping[str, Any] = False,
        dropout: float | Sequence[float] | None = None, dropout_mode: str = "inverted", n_in: int = 784,
        n_out: int = 10, seed: int = 0, leaky_slope: float = 0.01, bias: bool = True,
        dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> activation -> [Dropout]`` per hidden layer, then ``Linear``.

    ``init_scale`` is one number, one per member, or (per layer) a list with one entry
    per Linear layer (each a number or one per member). ``batchnorm`` is True (torch's
    BatchNorm defaults) or a mapping of BatchNorm settings (:func:`batch_norm_settings`).
    """
    from trainlab.nn import BatchNorm

    n_linear = len(hidden) + 1
    # one init_scale per Linear layer: a number or one per member (a nested list of the wrong length
    # reaches Linear as it is, and Linear refuses it with its own message)
    scales: list[Any]
    if isinstance(init_scale, Sequence) and len(init_scale) == n_linear and any(
            isinstance(s, Sequence) for s in init_scale):
        scales = list(init_scale)
    else:
        scales = [init_scale] * n_linear
    layers: list[Module] = []
    for i, width in enumerate(hidden):
        layers.append(nn.Linear(None, width, init=init, init_scale=scales[i], bias=bias))
        if batchnorm is not False and batchnorm is not None:
            layers.append(BatchNorm(**(dict(batchnorm) if isinstance(batchnorm, Mapping) else {})))
        layers.append(nn.LeakyReLU(leaky_slope) if activation == "leaky_relu" else _ACTIVATIONS[activation]())
        if dropout is not None:
            layers.append(nn.Dropout(dropout, mode=dropout_mode))
    layers.append(nn.Linear(None, n_out, init=init, init_scale=scales[-1], bias=bias))
    model = nn.Sequential(layers)
    model.build((n_in,), Population(P, seed=seed), dtype=dtype)
    return model


def built_population(model: nn.Sequential) -> Population:
    """The population of a built model (what an Augmenter or a probe draws from)."""
    if model.population is None:
        raise ConfigError("the model is not built yet: call model.build(input_shape, population)")
    return model.population


def batch_norm_settings(preset: Preset) -> dict[str, Any]:
    """BatchNorm settings for ``preset``: the textbook's own BN at the textbook preset
    (``common/layers.py`` BatchNormalization: keep-momentum 0.9 = torch momentum 0.1, biased
    running variance starting at 0, eps 10e-7 = 1e-6, per-activation statistics; see
    :func:`trainlab.nn.textbook_batch_norm`), torch's defaults otherwise."""
    if preset.name == "textbook":
        return dict(eps=1e-6, momentum=0.1, running_variance="biased", running_var_init=0.0, statistics="activation")
    return {}


def linear_layers(model: nn.Sequential) -> list[nn.Linear]:
    return [layer for layer in model.layers if isinstance(layer, nn.Linear)]


def _is_activation(layer: Module) -> bool:
    return type(layer).__name__ in ("Sigmoid", "Tanh", "ReLU", "LeakyReLU", "Identity", "ELU", "GELU", "Softplus")


@torch.no_grad()
def activation_outputs(model: nn.Sequential, x: torch.Tensor, *, training: bool = False,
                       pre: bool = False) -> list[torch.Tensor]:
    """Each hidden layer's output, ``(P, N, width)`` per layer, by calling the layers in turn.

    ``pre=True`` gives the inputs of the activation layers (pre-activations) instead.
    ``x`` is ``(N, in)`` (shared by all members) or ``(P, N, in)``.
    """
    h = x.unsqueeze(0) if x.ndim == 2 else x
    outs = []
    for layer in model.layers:
        if pre and _is_activation(layer):
            outs.append(h.expand(model.size, *h.shape[1:]))
        h = layer.forward(h, training=training)
        if not pre and _is_activation(layer):
            outs.append(h)
    return outs


def weight_grad_norms(model: nn.Sequential, loss: nn.Loss, x: torch.Tensor, y: torch.Tensor,
                      *, training: bool = True) -> torch.Tensor:
    """``(layers, P)``: the L2 norm of every Linear layer's weight gradient on one batch."""
    with torch.no_grad():
        out = model.forward(x.unsqueeze(0), training=training)
        loss.build(model.size, device=out.device, dtype=out.dtype)
        loss.forward(out, y)
        model.backward(loss.backward())
        return torch.stack([layer.weight.grad.reshape(model.size, -1).norm(dim=1)
                            for layer in linear_layers(model)])


# ---- recorders ------------------------------------------------------------------------------


class StepLoss(Callback):
    """Records the training objective of every step, ``(steps, P)`` in :attr:`values`."""

    def __init__(self) -> None:
        self._rows: list[torch.Tensor] = []

    def on_step_end(self, trainer: Trainer, loss: torch.Tensor) -> None:
        self._rows.append(loss.detach().double().cpu())

    @property
    def values(self) -> np.ndarray:
        return torch.stack(self._rows).numpy() if self._rows else np.zeros((0, 0))


class MemberOptimizers:
    """A different optimizer class per member of one population (the textbook's comparisons).

    Each member's parameters are *views* of its slice of the population's tensors
    (``data[i:i+1]``, ``grad[i:i+1]``), so the layers' backward fills every member's
    gradient and each optimizer updates its member in place. Exposes what the
    Trainer uses: ``step``, ``set_active``, ``lr``, ``active``.
    """

    def __init__(self, params: Sequence[nn.Parameter], makers: Sequence[Callable[[list[nn.Parameter]], Optimizer]]
                 ) -> None:
        params = list(params)
        P = params[0].data.shape[0]
        if len(makers) != P:
            raise ConfigError(f"MemberOptimizers needs one optimizer per member: {P} members, {len(makers)} given")
        self.size = P
        self.optimizers: list[Optimizer] = []
        for i, make in enumerate(makers):
            views = []
            for p in params:
                v = nn.Parameter(p.data[i:i + 1], kind=p.kind, decay=p.decay, trainable=p.trainable, name=p.name)
                v.grad = p.grad[i:i + 1]
                views.append(v)
            self.optimizers.append(make(views))
        self.active = torch.ones(P, dtype=torch.bool)

    @property
    def lr(self) -> torch.Tensor:
        return torch.cat([o.lr for o in self.optimizers])

    def set_active(self, mask: torch.Tensor) -> None:
        self.active = mask.clone()
        for i, o in enumerate(self.optimizers):
            o.set_active(mask[i:i + 1])

    def step(self) -> None:
        for o in self.optimizers:
            o.step()


# ---- small numeric helpers -------------------------------------------------------------------


def smooth(a: np.ndarray, window: int) -> np.ndarray:
    """Moving average along axis 0 (the curve the textbook plots), same length as ``a``."""
    a = np.asarray(a, dtype=float)
    if window <= 1 or len(a) == 0:
        return a
    c = np.cumsum(np.insert(a, 0, 0.0, axis=0), axis=0)
    out = np.empty_like(a)
    for i in range(len(a)):
        lo = max(0, i - window + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def steps_to_reach(curve: np.ndarray, level: float) -> float:
    """First step (1-based) at which ``curve`` (one member) is at or below ``level``; inf if never."""
    hit = np.nonzero(np.asarray(curve) <= level)[0]
    return float(hit[0] + 1) if len(hit) else float("inf")


def _sig(v: float) -> float:
    return float(f"{v:.6g}")


def tolist(x: Any) -> Any:
    """Tensors/arrays/numbers to (nested) lists of Python floats with 6 significant digits, for JSON."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [tolist(v) for v in x]
    if isinstance(x, dict):
        return {k: tolist(v) for k, v in x.items()}
    if isinstance(x, (float, np.floating)):
        return _sig(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x
