"""Affine layer on the population axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from trainlab.errors import ConfigError
from trainlab.init import Initializer, get_initializer
from trainlab.nn._module import Module, Parameter, check_size, draw_weight
from trainlab.population import Population

__all__ = ["Linear"]


class Linear(Module):
    """``y = x W + b`` for every member: ``x (P, N, in) -> y (P, N, out)``.

    Weight ``(P, in, out)``, bias ``(P, 1, out)``. The textbook's layout (``x @ W``,
    ``W`` of shape ``(in, out)``) is used, so ``W.T`` is ``torch.nn.Linear.weight``.
    One ``baddbmm`` serves all members; an input of shape ``(1, N, in)`` is shared
    by every member (the data batch) and is broadcast without a copy.

    Backward (per member): ``dW = x^T g``, ``db = sum_n g``, ``dx = g W^T``.

    Parameters
    ----------
    in_features, out_features:
        Sizes. ``in_features=None`` takes the size from the input shape at build.
    init:
        Weight initializer name or object (see :mod:`trainlab.init`); default
        ``"xavier_uniform"`` (Keras' default). Biases start at zero.
    init_scale:
        Multiplies each member's initial weights: a number or one per member.
    bias:
        Whether to have a bias.
    """

    # forward's output comes from baddbmm/bmm and backward's input gradient from bmm (or their sum over
    # members): new tensors the layer does not keep (see Module.fresh_output)
    fresh_output = True
    fresh_input_grad = True
    # what backward needs from the last forward (the input, the weight used); None outside forward/backward
    _x: torch.Tensor | None = None
    _w: torch.Tensor | None = None
    # (the weight tensor, its transpose view), see _transposed
    _wt: tuple[torch.Tensor, torch.Tensor] | None = None

    def __init__(
        self,
        in_features: int | None,
        out_features: int,
        *,
        init: str | Initializer | Mapping[str, Any] = "xavier_uniform",
        init_scale: float | Sequence[float] = 1.0,
        bias: bool = True,
    ) -> None:
        check_size(out_features, "out_features", "Linear", optional=False)
        check_size(in_features, "in_features", "Linear")
        self._settings = dict(in_features=in_features, out_features=out_features, init=init,
                              init_scale=init_scale, bias=bias)
        self.in_features = in_features
        self.out_features = out_features
        self.initializer = get_initializer(init)
        self.init_scale = init_scale
        self.has_bias = bias

    def build(self, in_shape: tuple[int, ...], population: Population, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        super().build(in_shape, population)
        if len(in_shape) != 1:
            raise ConfigError(f"Linear expects flat inputs of shape (features,), got {in_shape}; add a Flatten layer first")
        if self.in_features is None:
            self.in_features = in_shape[0]
        elif in_shape[0] != self.in_features:
            raise ConfigError(f"Linear({self.in_features}, {self.out_features}) got inputs with {in_shape[0]} features")
        P = population.size
        self.weight = draw_weight(self.initializer, (self.in_features, self.out_features), population,
                                  self.init_scale, what=f"Linear({self.in_features}, {self.out_features})",
                                  device=device, dtype=dtype)
        self.bias = (
            Parameter(torch.zeros(P, 1, self.out_features, device=device, dtype=dtype), kind="bias", decay=False,
                      name="bias")
            if self.has_bias else None
        )
        return (self.out_features,)

    def parameters(self) -> list[Parameter]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    # ---- the affine core (DropConnectLinear and NoisyLinear change only the weight it uses) ----
    def _effective_weight(self, training: bool) -> torch.Tensor:
        """The weight this forward multiplies by: ``W`` itself here; DropConnect masks it, weight
        noise perturbs it. Its backward hook is :meth:`_chain_weight_grad`."""
        return self.weight.data

    def _chain_weight_grad(self, grad: torch.Tensor) -> None:
        """Turn ``dL/dW~`` (in ``grad``, in place) into ``dL/dW`` for the effective weight ``W~``;
        the identity when ``W~ = W`` or ``W~ = W + noise``."""

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        P = self.weight.data.shape[0]
        # (an expand to the shape x already has would be one more dispatcher call per layer and step)
        xb = x if x.shape[0] == P else x.expand(P, *x.shape[1:])
        self._x = xb
        # bool(): while trace_step records, sizes are 0-dim tensors, and a comparison kept on the layer would
        # be a kernel of every replay and one more output of the recording (the same for the other layers)
        self._shared = bool(x.shape[0] == 1 and P > 1)
        w = self._w = self._effective_weight(training)
        if self.bias is None:
            return torch.bmm(xb, w)
        return torch.baddbmm(self.bias.data, xb, w)

    def _transposed(self, w: torch.Tensor) -> torch.Tensor:
        """``w.transpose(1, 2)``; for the layer's own weight tensor (updated in place, so a view of it stays
        current) the view is made once and kept."""
        cached = self._wt
        if cached is not None and cached[0] is w:
            return cached[1]
        wt = w.transpose(1, 2)
        if w is self.weight.data:
            self._wt = (w, wt)
        return wt

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        assert self._x is not None and self._w is not None, f"{type(self).__name__}.backward without a forward"
        torch.bmm(self._x.transpose(1, 2), g, out=self.weight.grad)
        self._chain_weight_grad(self.weight.grad)
        if self.bias is not None:
            torch.sum(g, dim=1, keepdim=True, out=self.bias.grad)
        self._x = None
        w, self._w = self._w, None
        if not self.input_grad:
            return None
        dx = torch.bmm(g, self._transposed(w))  # through the weights actually used
        # An input shared by all members receives the sum of their gradients.
        return dx.sum(dim=0, keepdim=True) if self._shared else dx
