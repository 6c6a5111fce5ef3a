"""Residual connections: ``y = F(x) + S(x)``, the block plus its shortcut (He et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.nn._conv import Conv2d
from trainlab.nn._linear import Linear
from trainlab.nn._module import Container, Module, Parameter
from trainlab.nn._norm import BatchNorm
from trainlab.nn._sequential import Sequential
from trainlab.population import Population

__all__ = ["Residual", "SHORTCUTS", "resnet"]

#: the shortcut settings given by name
SHORTCUTS = ("auto", "identity", "projection")


def _as_sequential(layers: Module | Sequence[Module], what: str) -> Sequential:
    if isinstance(layers, Sequential):
        return layers
    if isinstance(layers, Module):
        return Sequential([layers])
    if isinstance(layers, (list, tuple)):
        if not layers:
            raise ConfigError(f"Residual {what} needs at least one layer, got an empty list")
        return Sequential(layers)
    raise ConfigError(f"Residual {what} must be a trainlab layer or a list of layers, got {layers!r}")


class Residual(Container):
    """``y = F(x) + S(x)``: a block ``F`` (a list of layers) with a skip connection ``S`` around it.

    Forward adds the block's output to the shortcut's. Backward is the sum rule for an
    input used twice: ``dL/dx = F'(x)^T g + S'(x)^T g``; with the identity shortcut the
    second term is ``g`` itself, the "gradient highway" that lets deep nets train
    (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016). Each
    parameter's gradient comes from its own branch.

    The activation after the sum of the original ResNet is *not* part of the container:
    put it after the ``Residual`` in the model (post-activation), or put BN -> activation
    first inside the block and nothing after (pre-activation, He et al., "Identity
    Mappings in Deep Residual Networks", ECCV 2016). :func:`~trainlab.nn.resnet` builds both.

    Parameters
    ----------
    block:
        The layers of ``F``: a list of layers or one layer (a :class:`Sequential` is used
        as is). E.g. ``[Conv2d(None, 16, 3, padding=1, bias=False), BatchNorm(), ReLU(),
        Conv2d(None, 16, 3, padding=1, bias=False), BatchNorm()]``.
    shortcut:
        ``"auto"`` (default): the identity when ``F`` keeps the per-example shape, else a
        projection. ``"identity"``: always the identity (a shape change is an error).
        ``"projection"``: always a projection. Or your own layers (a list or a layer).
        The projection (He et al.'s option B) is, for feature maps ``(C, H, W) ->
        (C', H', W')``, a 1x1 convolution with stride ``ceil(H / H')`` and no bias followed by a
        :class:`BatchNorm` when ``F`` contains a BatchNorm (else a 1x1 convolution with a
        bias); for flat features ``(D,) -> (D',)`` a :class:`Linear`.

    Parameter and buffer names are ``block.<i>.<name>`` and ``shortcut.<i>.<name>``, as in
    the torch module :func:`trainlab.export.to_torch` gives.

    See: torchvision.models.resnet.BasicBlock (there the final ReLU is inside the block).
    """

    def __init__(self, block: Module | Sequence[Module],
                 shortcut: str | Module | Sequence[Module] = "auto") -> None:
        self.block = _as_sequential(block, "block")
        self.shortcut: Sequential | None = None
        setting: str | list[Module]
        if isinstance(shortcut, str):
            if shortcut not in SHORTCUTS:
                raise ConfigError(f"Residual shortcut must be one of {', '.join(SHORTCUTS)} or a list of layers, "
                                  f"got {shortcut!r}")
            setting = shortcut
        else:
            self.shortcut = _as_sequential(shortcut, "shortcut")
            setting = list(self.shortcut.layers)
        self._settings = dict(block=list(self.block.layers), shortcut=setting)
        self._shortcut_setting = shortcut
        self._shared = False

    # ---- build --------------------------------------------------------------------------
    def _projection(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Sequential:
        if len(in_shape) == 3 and len(out_shape) == 3:
            (C, H, W), (Co, Ho, Wo) = in_shape, out_shape
            sh, sw = math.ceil(H / Ho), math.ceil(W / Wo)
            if (H - 1) // sh + 1 != Ho or (W - 1) // sw + 1 != Wo:
                raise ConfigError(f"Residual: no 1x1 strided convolution maps {in_shape} to the block's output "
                                  f"{out_shape}; give the shortcut layers yourself")
            with_bn = any(isinstance(m, BatchNorm) for m in self.block.modules())
            layers: list[Module] = [Conv2d(C, Co, 1, stride=(sh, sw), bias=not with_bn, init="he_normal")]
            if with_bn:
                layers.append(BatchNorm(Co))
            return Sequential(layers)
        if len(in_shape) == 1 and len(out_shape) == 1:
            return Sequential([Linear(in_shape[0], out_shape[0])])
        raise ConfigError(f"Residual: the block maps {in_shape} to {out_shape}; a projection shortcut needs both "
                          "to be feature maps (C, H, W) or both flat (D,)")

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        in_shape = tuple(in_shape)
        out_shape = tuple(self.block.build(in_shape, population, device=device, dtype=dtype))
        setting = self._shortcut_setting
        if isinstance(setting, str):
            if setting == "identity" and out_shape != in_shape:
                raise ConfigError(f"Residual shortcut='identity' needs the block to keep the per-example shape, "
                                  f"but it maps {in_shape} to {out_shape}; use shortcut='auto' (a projection)")
            self.shortcut = (self._projection(in_shape, out_shape)
                             if setting == "projection" or (setting == "auto" and out_shape != in_shape) else None)
        if self.shortcut is not None:
            short_shape = tuple(self.shortcut.build(in_shape, population, device=device, dtype=dtype))
            if short_shape != out_shape:
                raise ConfigError(f"Residual: the shortcut gives per-example shape {short_shape} but the block "
                                  f"gives {out_shape}; they must match to be added")
        self._set_input_grad()
        return out_shape

    def _set_input_grad(self) -> None:
        # The input gradient of the whole is the sum of both branches': needed from both or neither.
        self.block.input_grad = self.input_grad
        if self.shortcut is not None:
            self.shortcut.input_grad = self.input_grad

    # ---- forward / backward -------------------------------------------------------------
    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._shared = bool(x.shape[0] == 1 and self.population_size > 1)
        y = self.block.forward(x, training=training)
        s = x if self.shortcut is None else self.shortcut.forward(x, training=training)
        return y + s  # a shared input (1, N, ...) broadcasts to every member

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        # Both branches read x: their input gradients add (each branch fills its own parameters').
        g_block = self.block.backward(g)
        if self.shortcut is not None:
            g_skip = self.shortcut.backward(g)
        else:
            # Identity: dS/dx = I; a shared input receives the members' sum.
            g_skip = (g.sum(dim=0, keepdim=True) if self._shared else g) if self.input_grad else None
        if g_block is None or g_skip is None:  # input_grad is off (the model's first layer)
            return None
        return g_block + g_skip

    # ---- state --------------------------------------------------------------------------
    def children(self) -> list[Module]:
        out: list[Module] = [self.block]
        return out + ([self.shortcut] if self.shortcut is not None else [])

    def parameters(self) -> list[Parameter]:
        return list(self.named_parameters().values())

    def named_parameters(self) -> dict[str, Parameter]:
        out = {f"block.{k}": p for k, p in self.block.named_parameters().items()}
        if self.shortcut is not None:
            out.update({f"shortcut.{k}": p for k, p in self.shortcut.named_parameters().items()})
        return out

    def buffers(self) -> dict[str, torch.Tensor]:
        out = {f"block.{k}": b for k, b in self.block.buffers().items()}
        if self.shortcut is not None:
            out.update({f"shortcut.{k}": b for k, b in self.shortcut.buffers().items()})
        return out

    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def __repr__(self) -> str:
        inner = ", ".join(repr(l) for l in self.block.layers)
        # a string setting, or the layers given (then __init__ made self.shortcut from them)
        short = (repr(self._shortcut_setting) if isinstance(self._shortcut_setting, str) or self.shortcut is None
                 else "[" + ", ".join(repr(l) for l in self.shortcut.layers) + "]")
        return f"Residual([{inner}], shortcut={short})"


def resnet(
    num_classes: int,
    *,
    depth: int = 8,
    width: int = 16,
    preact: bool = False,
    activation: str | Callable[[], Module] = "relu",
    dropout: float | Sequence[float] = 0.0,
    dropout_mode: str = "inverted",
    init: Any = "he_normal",
    init_scale: float | Sequence[float] = 1.0,
    bn_momentum: float | Sequence[float] = 0.1,
    bn_inference: str = "running",
) -> list[Module]:
    """The layers of a small CIFAR-style ResNet (He et al. 2016, section 4.2): ``depth = 6n + 2``.

    A 3x3 stem convolution, then three stages of ``n`` basic blocks (two 3x3 convolutions
    each) with ``width``, ``2 width`` and ``4 width`` channels -- the first block of stages
    2 and 3 halves the map with stride 2 and gets a projection shortcut -- then global
    average pooling and a :class:`Linear` classifier. ``depth`` counts the layers with
    weights: ``6n + 2`` = 8, 14, 20 (ResNet-20), 32, 44, 56, 110.

    ``preact=False`` (the original, "post-activation")::

        stem:  Conv -> BN -> act
        block: Residual([Conv -> BN -> act -> dropout -> Conv -> BN]) -> act

    Every convolution is followed by BN then the activation then dropout, the course's
    order (notes 003): BN standardizes what the convolution produced, the nonlinearity
    acts on standardized values, and dropout's zeros reach the next convolution as zeros.
    The convolutions have no bias (BN's shift replaces it).

    ``preact=True`` (He et al., "Identity Mappings in Deep Residual Networks", 2016)::

        stem:  Conv
        block: Residual([BN -> act -> Conv -> BN -> act -> dropout -> Conv])
        head:  BN -> act -> pool -> Linear

    Here nothing follows the sum, so the shortcut path from the output back to the stem
    is a chain of identities: the gradient reaches every block unattenuated. Where the
    shape changes the shortcut is a 1x1 strided convolution without BN (the next block
    begins with BN); in the post-activation net it is the 1x1 convolution + BN of
    :class:`Residual`'s automatic projection (He et al.'s option B).

    ``dropout`` (one rate or one per member; 0 leaves it out) is spatial (whole channels,
    :class:`SpatialDropout2d`) and sits between the two convolutions of each block, where
    wide ResNets put it (Zagoruyko & Komodakis 2016).
    """
    from trainlab.nn._blocks import BLOCK_ACTIVATIONS
    from trainlab.nn._conv import SpatialDropout2d
    from trainlab.nn._dropout import _check_drop_probability, _size_of
    from trainlab.nn._pool import GlobalAvgPool2d

    for name, value, low in (("depth", depth, 8), ("width", width, 1), ("num_classes", num_classes, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"resnet {name} must be an integer >= {low}, got {value!r}")
    if (depth - 2) % 6:
        raise ConfigError(f"resnet depth must be 6n + 2 (8, 14, 20, 32, 44, 56, 110), got {depth}")
    if not isinstance(preact, bool):
        raise ConfigError(f"resnet preact must be true or false, got {preact!r}")
    if isinstance(activation, str):
        if activation not in BLOCK_ACTIVATIONS:
            raise ConfigError(f"resnet activation must be one of {', '.join(BLOCK_ACTIVATIONS)}, got {activation!r}")
        act_cls = BLOCK_ACTIVATIONS[activation]
        make_act: Callable[[], Module] = lambda: act_cls()  # noqa: E731
    elif callable(activation):
        make_act = activation
    else:
        raise ConfigError(f"resnet activation must be a name or a function returning a layer, got {activation!r}")
    rates = _check_drop_probability(dropout, _size_of(dropout, "resnet dropout"), owner="resnet dropout")
    use_dropout = bool((rates > 0).any())
    n = (depth - 2) // 6

    def conv(out: int, stride: int = 1) -> Conv2d:
        return Conv2d(None, out, 3, stride=stride, padding=1, bias=False, init=init, init_scale=init_scale)

    def bn() -> BatchNorm:
        return BatchNorm(momentum=bn_momentum, inference=bn_inference)

    def drop() -> list[Module]:
        return [SpatialDropout2d(dropout, mode=dropout_mode)] if use_dropout else []

    layers: list[Module] = [conv(width)]
    if not preact:
        layers += [bn(), make_act()]
    for stage in range(3):
        out = width * 2 ** stage
        for j in range(n):
            stride = 2 if stage > 0 and j == 0 else 1
            if preact:
                block = [bn(), make_act(), conv(out, stride), bn(), make_act(), *drop(), conv(out)]
                # The next block starts with BN, so the projection needs none (He et al.'s preact code).
                change = stride != 1 or (stage > 0 and j == 0)
                shortcut = ([Conv2d(None, out, 1, stride=stride, bias=False, init=init, init_scale=init_scale)]
                            if change else "identity")
                layers.append(Residual(block, shortcut=shortcut))
            else:
                block = [conv(out, stride), bn(), make_act(), *drop(), conv(out), bn()]
                layers += [Residual(block), make_act()]
    if preact:
        layers += [bn(), make_act()]
    layers += [GlobalAvgPool2d(), Linear(None, num_classes, init=init, init_scale=init_scale)]
    return layers
