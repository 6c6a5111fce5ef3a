"""Two backward kernels in a form the JIT tracer can record (``Trainer(trace_step=True)``).

``torch.jit.trace`` records every ATen call of a step, but refuses a call with a ``bool[3]``
argument ("Found an unsupported argument type in the JIT tracer"): the output masks of
``aten::native_batch_norm_backward`` and ``aten::convolution_backward``. A TorchScript function
that makes the same call is recorded instead (a scripted function called while tracing becomes a
call in the trace). Outside a trace -- every normal step -- the layers call the kernel directly,
as before: the scripted wrapper runs only while a trace records, and runs the very same kernel,
so both give the same bits (``tests/train_tests/test_trace_step.py``).

The wrappers are scripted on first use, not at import (``torch.jit.script`` warns that TorchScript
is deprecated; that warning is silenced here, where it is expected; see docs/training.md).
"""

import warnings
from typing import Any, Callable, List, Optional

import torch

__all__ = ["batch_norm_backward", "convolution_backward"]

_native_batch_norm_backward = torch.ops.aten.native_batch_norm_backward.default
_convolution_backward = torch.ops.aten.convolution_backward.default

_scripted: dict[str, Callable[..., Any]] = {}


# TorchScript reads these annotations (typing's spellings, not ``X | None``). They return only the
# gradients the mask asks for: the tracer cannot record an undefined tensor.
def _bn_script(g: torch.Tensor, x: torch.Tensor, w: Optional[torch.Tensor], mean: torch.Tensor,
               invstd: torch.Tensor, eps: float, mask: List[bool]) -> List[torch.Tensor]:
    out = torch.ops.aten.native_batch_norm_backward(g, x, w, None, None, mean, invstd, True, eps, mask)
    requested: List[torch.Tensor] = []
    for i in range(3):
        if mask[i]:
            requested.append(out[i])
    return requested


def _conv_script(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias_sizes: Optional[List[int]],
                 stride: List[int], padding: List[int], dilation: List[int], groups: int,
                 mask: List[bool]) -> List[torch.Tensor]:
    out = torch.ops.aten.convolution_backward(g, x, w, bias_sizes, stride, padding, dilation, False, [0, 0], groups,
                                              mask)
    requested: List[torch.Tensor] = []
    for i in range(3):
        if mask[i]:
            requested.append(out[i])
    return requested


def _masked(requested: list[torch.Tensor], mask: list[bool]) -> tuple[torch.Tensor | None, ...]:
    it = iter(requested)
    return tuple(next(it) if m else None for m in mask)


def _script(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    f = _scripted.get(name)
    if f is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            f = _scripted[name] = torch.jit.script(fn)
    return f


def batch_norm_backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor | None, mean: torch.Tensor,
                        invstd: torch.Tensor, eps: float,
                        mask: list[bool]) -> Any:
    """``aten::native_batch_norm_backward`` in training mode (saved batch statistics, no running ones): the
    three gradients, None where ``mask`` asks for none (typed ``Any``, as the op itself)."""
    if torch.jit.is_tracing():
        return _masked(_script("bn", _bn_script)(g, x, w, mean, invstd, eps, mask), mask)
    return _native_batch_norm_backward(g, x, w, None, None, mean, invstd, True, eps, mask)


def convolution_backward(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias_sizes: list[int] | None,
                         stride: list[int], padding: list[int], dilation: list[int], groups: int,
                         mask: list[bool]) -> Any:
    """``aten::convolution_backward`` of a plain (not transposed) convolution: as above."""
    if torch.jit.is_tracing():
        return _masked(_script("conv", _conv_script)(g, x, w, bias_sizes, stride, padding, dilation, groups, mask),
                       mask)
    return _convolution_backward(g, x, w, bias_sizes, stride, padding, dilation, False,
                                 [0, 0], groups, mask)
