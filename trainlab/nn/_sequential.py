"""A chain of layers: the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.nn._module import Container, Module, Parameter, promises
from trainlab.population import Population

__all__ = ["Sequential"]


def _intact(pair: tuple[Module, Module], layers: list[Module], i: int, j: int, method: str) -> bool:
    """Whether a planned in-place pair still holds: ``layers[i]`` and its neighbour ``layers[j]`` are the two
    layers of the plan (the list may have changed since ``build``) and no observer has wrapped ``method`` of
    either (a wrapper may keep the tensor, see ``Sequential._plan_in_place``)."""
    return (0 <= j < len(layers) and pair[0] is layers[i] and pair[1] is layers[j]
            and method not in vars(pair[0]) and method not in vars(pair[1]))


class Sequential(Container):
    """``Sequential([Linear(784, 100), ReLU(), Linear(100, 10)])``.

    ``build(input_shape, population)`` builds every layer in order. Parameters are
    named ``"<index>.<name>"`` (``"0.weight"``, ``"0.bias"``, ...), like
    ``torch.nn.Sequential``'s state dict.
    """

    def __init__(self, layers: Iterable[Module]) -> None:
        self.layers = list(layers)
        # set by build (_plan_in_place): index -> (the layer, the neighbour whose promise it relies on)
        self._in_place_fwd: dict[int, tuple[Module, Module]] = {}
        self._in_place_bwd: dict[int, tuple[Module, Module]] = {}
        if not self.layers:
            raise ConfigError("a model needs at least one layer, got an empty layer list")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Module):
                raise ConfigError(f"layer {i} is not a trainlab layer: {layer!r}")
        self.population: Population | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None

    def build(self, in_shape: tuple[int, ...], population: Population | int = 1, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> tuple[int, ...]:
        if isinstance(population, int):
            population = Population(population)
        super().build(in_shape, population)
        self.population = population
        self.input_shape = tuple(in_shape)
        self.device = torch.device(device)
        self.dtype = dtype
        shape = tuple(in_shape)
        for layer in self.layers:
            shape = layer.build(shape, population, device=device, dtype=dtype)
        self.output_shape = shape
        self._set_input_grad()
        self._plan_in_place()
        return shape

    def _plan_in_place(self) -> None:
        """Which layers may overwrite their argument when this chain runs them.

        A layer with ``forward_in_place`` (ReLU) runs in place on the output of the layer before it when that
        layer promises a fresh output (:attr:`Module.fresh_output`): nobody else holds the tensor, so
        overwriting it saves an allocation and a pass over memory and changes no value. Likewise its
        ``backward_in_place`` on the gradient from the layer after it when that layer promises a fresh input
        gradient. The chain's own input (the data) and the gradient handed to :meth:`backward` are never
        overwritten: a layer at either end of the chain has no such neighbour in it. The plan names the two
        layers of each pair, so a layer list changed after ``build`` runs those pairs out of place.
        """
        L = self.layers
        self._in_place_fwd = {i: (L[i], L[i - 1]) for i in range(1, len(L))
                              if hasattr(L[i], "forward_in_place") and promises(L[i - 1], "forward", "fresh_output")}
        self._in_place_bwd = {i: (L[i], L[i + 1]) for i in range(len(L) - 1)
                              if hasattr(L[i], "backward_in_place")
                              and promises(L[i + 1], "backward", "fresh_input_grad")}

    def _set_input_grad(self) -> None:
        # Only the first layer may skip its input gradient; the others feed the chain.
        for i, layer in enumerate(self.layers):
            layer.input_grad = True if i else self.input_grad

    @property
    def size(self) -> int:
        """Population size ``P``."""
        if self.population is None:
            raise ConfigError("the model is not built yet: call model.build(input_shape, population)")
        return self.population.size

    def forward(self, x: torch.Tensor, *, training: bool) -> torch.Tensor:
        plan = self._in_place_fwd
        layers = self.layers
        for i, layer in enumerate(layers):
            pair = plan.get(i)
            if pair is not None and _intact(pair, layers, i, i - 1, "forward"):
                x = layer.forward_in_place(x, training=training)  # type: ignore[attr-defined]
            else:
                x = layer.forward(x, training=training)
        return x

    def backward(self, g: torch.Tensor) -> torch.Tensor | None:
        plan = self._in_place_bwd
        layers = self.layers
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            pair = plan.get(i)
            if pair is not None and _intact(pair, layers, i, i + 1, "backward"):
                dx = layer.backward_in_place(g)  # type: ignore[attr-defined]
            else:
                dx = layer.backward(g)
            if dx is None:  # the first layer, when no input gradient is wanted (see _set_input_grad)
                return None
            g = dx
        return g

    def children(self) -> list[Module]:
        return list(self.layers)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters().items()]

    def named_parameters(self) -> dict[str, Parameter]:
        out: dict[str, Parameter] = {}
        for i, layer in enumerate(self.layers):
            for name, p in layer.named_parameters().items():
                out[f"{i}.{name}"] = p
        return out

    def buffers(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            for name, b in layer.buffers().items():
                out[f"{i}.{name}"] = b
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by name, each ``(P, ...)``."""
        out = {k: p.data for k, p in self.named_parameters().items()}
        out.update(self.buffers())
        return out

    def load_state_dict(self, state: Mapping[str, torch.Tensor], *, source: str = "state dict") -> None:
        """Copy tensors in; any missing, unexpected or mis-shaped entry is one error listing them all."""
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        unexpected = sorted(set(state) - set(mine))
        shapes = [f"{k}: expected {tuple(mine[k].shape)}, got {tuple(state[k].shape)}"
                  for k in mine if k in state and tuple(mine[k].shape) != tuple(state[k].shape)]
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected " + ", ".join(unexpected))
        if shapes:
            problems.append("shape mismatch " + "; ".join(shapes))
        if problems:
            raise CheckpointError(f"{source} does not fit this model: " + " | ".join(problems))
        for k, t in mine.items():
            t.copy_(state[k].to(device=t.device, dtype=t.dtype))

    def num_parameters(self) -> int:
        """Parameters per member."""
        return sum(p.data[0].numel() for p in self.parameters())

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential([\n  {inner}\n])"
