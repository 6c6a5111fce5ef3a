"""Transfer learning: reuse a trained model's layers in a new model, freeze, fine-tune.

:func:`transfer_weights` copies layers **by position** from ``source`` into ``target``:
the layers must have the same type and each parameter/buffer the same per-member
shape, else one :class:`~trainlab.errors.CheckpointError` lists every mismatch. By
default every layer but the last parametric one (the output layer, which usually has
a different number of classes) is copied. A one-member source fills every member of
the target; otherwise the member counts must agree. ``members`` says instead, per
target member, which source member it receives (``None``: keep its own weights), so
transferred and from-scratch members can train side by side in one population.

:func:`freeze` stops layers from learning: their parameters get ``trainable=False``
(the optimizer skips them: no update and no weight decay) and ``decay=False`` (no
penalty), and BatchNorm layers keep their running statistics (``freeze_stats``);
``freeze(..., frozen=False)`` puts back exactly what freezing changed.
:func:`set_layer_lr` gives layers their own learning rate (a multiple of the
optimizer's, e.g. 0.1 for early layers when fine-tuning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from trainlab.errors import CheckpointError, ConfigError
from trainlab.nn import Module, Sequential

__all__ = ["transfer_weights", "freeze", "set_layer_lr", "parametric_layers"]


def parametric_layers(model: Sequential) -> list[int]:
    """Indices of layers that have parameters."""
    return [i for i, l in enumerate(model.layers) if l.parameters()]


def _state(layer: Module) -> dict[str, torch.Tensor]:
    out = {n: p.data for n, p in layer.named_parameters().items()}
    out.update(layer.buffers())
    return out


def transfer_weights(source: Sequential, target: Sequential, *, layers: Sequence[int] | None = None,
                     members: Sequence[int | None] | None = None) -> list[int]:
    """Copy the given layers (default: all but the last parametric one) from ``source`` into ``target``.

    ``members``: one entry per target member, the source member it receives, or ``None`` to
    leave that member as it is (e.g. ``[0, 1, None, None]``: members 0 and 1 start from source
    members 0 and 1, members 2 and 3 keep their fresh initialization). Default: a one-member
    source fills every member, else member ``i`` receives source member ``i``.
    """
    if layers is None:
        params = parametric_layers(source)
        last = params[-1] if params else -1
        layers = [i for i in range(len(source.layers)) if i != last]
    problems = []
    for i in layers:
        if i >= len(source.layers) or i >= len(target.layers):
            problems.append(f"layer {i}: missing in the {'source' if i >= len(source.layers) else 'target'}")
            continue
        s, t = source.layers[i], target.layers[i]
        if type(s) is not type(t):
            problems.append(f"layer {i}: {type(s).__name__} in the source, {type(t).__name__} in the target")
            continue
        ss, ts = _state(s), _state(t)
        for name in sorted(set(ss) | set(ts)):
            if name not in ss or name not in ts:
                problems.append(f"layer {i} {name}: only in the {'source' if name in ss else 'target'}")
            elif tuple(ss[name].shape[1:]) != tuple(ts[name].shape[1:]):
                problems.append(f"layer {i} {type(s).__name__}.{name}: {tuple(ss[name].shape[1:])} in the source, "
                                f"{tuple(ts[name].shape[1:])} in the target")
    if problems:
        raise CheckpointError("cannot transfer: " + "; ".join(problems))
    Ps, Pt = source.size, target.size
    if members is None:
        if Ps not in (1, Pt):
            raise CheckpointError(f"cannot transfer: the source has {Ps} members, the target {Pt} (need 1 or {Pt})")
        for i in layers:
            for name, tt in _state(target.layers[i]).items():
                tt.copy_(_state(source.layers[i])[name].to(device=tt.device, dtype=tt.dtype).expand_as(tt))
        return list(layers)
    members = list(members)
    if len(members) != Pt:
        raise ConfigError(f"transfer members must give one entry per target member: the target has {Pt} members, "
                          f"got {len(members)} entries")
    bad = [m for m in members if m is not None and (isinstance(m, bool) or not isinstance(m, int) or not 0 <= m < Ps)]
    if bad:
        raise ConfigError(f"transfer members must be source members 0..{Ps - 1} or None, got {bad}")
    pairs = [(j, m) for j, m in enumerate(members) if m is not None]
    if pairs:
        dst = torch.tensor([j for j, _ in pairs])
        src = torch.tensor([m for _, m in pairs])
        for i in layers:
            ss = _state(source.layers[i])
            for name, tt in _state(target.layers[i]).items():
                rows = ss[name].index_select(0, src.to(ss[name].device))
                tt.index_copy_(0, dst.to(tt.device), rows.to(device=tt.device, dtype=tt.dtype))
    return list(layers)


def _check_layers(model: Sequential, layers: Sequence[int]) -> None:
    bad = [i for i in layers if not 0 <= i < len(model.layers)]
    if bad:
        raise ConfigError(f"layers {bad} do not exist; the model has layers 0..{len(model.layers) - 1}")


#: attribute on a layer holding what :func:`freeze` changed, for the matching unfreeze
_SAVED = "_freeze_saved"


def freeze(model: Sequential, layers: Sequence[int], *, frozen: bool = True) -> None:
    """No updates, no weight decay or penalty, BatchNorm statistics frozen, for these layers.

    Freezing remembers, per layer, each parameter's ``trainable`` and ``decay`` flags and a
    BatchNorm's ``freeze_stats`` as they were; ``frozen=False`` puts back exactly those
    values and changes nothing else (a weight the user had opted out of decay stays opted
    out; a BatchNorm whose statistics the user had frozen stays frozen). Freezing a frozen
    layer again keeps the first record. Unfreezing a layer that :func:`freeze` did not
    freeze only makes its parameters trainable (the one thing "unfrozen" means) and leaves
    ``decay`` and ``freeze_stats`` as they are.
    """
    _check_layers(model, layers)
    for i in layers:
        layer = model.layers[i]
        params = layer.parameters()
        norms = [m for m in layer.modules() if hasattr(m, "freeze_stats")]  # BatchNorm inside a Residual too
        saved = getattr(layer, _SAVED, None)
        if frozen:
            if saved is None:
                setattr(layer, _SAVED, {
                    "params": [(p.trainable, p.decay) for p in params],  # by position
                    "freeze_stats": [m.freeze_stats for m in norms],
                })
            for p in params:
                p.trainable = False
                p.decay = False
            for m in norms:
                m.freeze_stats = True
        elif saved is not None:
            for p, (trainable, decay) in zip(params, saved["params"]):
                p.trainable, p.decay = trainable, decay
            for m, was in zip(norms, saved["freeze_stats"]):
                m.freeze_stats = was
            delattr(layer, _SAVED)
        else:
            for p in params:
                p.trainable = True


def set_layer_lr(model: Sequential, scales: Mapping[int, float]) -> None:
    """``{layer index: factor}``: that layer's parameters learn at factor x the optimizer's rate."""
    _check_layers(model, list(scales))
    for i, s in scales.items():
        if not isinstance(s, (int, float)) or not s >= 0:
            raise ConfigError(f"learning-rate factor for layer {i} must be a number >= 0, got {s!r}")
        for p in model.layers[i].parameters():
            p.lr_scale = float(s)
