"""Training checkpoints: safetensors + JSON, written atomically, never unpickled.

A run directory's checkpoint is:

* ``checkpoint-<step>.safetensors`` -- every tensor of :meth:`Trainer.state_dict`
  (weights, optimizer state, BN statistics, random generator states as plain
  uint8 tensors, masks, the current epoch's shuffle, early-stopping state);
* ``checkpoint.json`` -- the commit point: format/version, the tensor file's name and
  SHA-256, step, history and the plain state of the trainer and its callbacks.

Writing: the tensor file goes to a temp file, is fsynced and renamed; then the
previous ``checkpoint.json`` is kept as ``checkpoint.prev.json`` and the new JSON is
written the same way. A kill or a full disk (ENOSPC) at any moment therefore leaves
the previous checkpoint complete and loadable, and no partial file under a final
name. Loading verifies the SHA-256; a truncated or corrupted checkpoint is reported
and the previous good one is used, with a warning.

Tensors are read with ``safetensors`` (which cannot execute code); JSON with
``json``. There is no pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
import warnings

import torch

from trainlab.errors import CheckpointError
from trainlab.io import atomic_write_bytes, atomic_write_text, read_regular_file

__all__ = ["save_checkpoint", "load_checkpoint", "has_checkpoint", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1
_JSON = "checkpoint.json"
_PREV = "checkpoint.prev.json"
_MAX_JSON = 1 << 30  # the JSON holds the History: large for long runs, never a gigabyte


def has_checkpoint(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / _JSON).exists() or (d / _PREV).exists()


def save_checkpoint(directory: str | Path, trainer: Any, *, extra: dict[str, Any] | None = None) -> Path:
    """Write the trainer's complete state into ``directory`` (atomically; keeps the previous one)."""
    from safetensors.torch import save as st_save

    from trainlab import __version__

    d = Path(directory)
    tensors, state = trainer.state_dict()
    data = st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
                   metadata={"format": "trainlab-checkpoint"})
    name = f"checkpoint-{trainer.step:09d}.safetensors"
    atomic_write_bytes(d / name, data)
    meta = {"format": "trainlab-checkpoint", "version": CHECKPOINT_VERSION, "trainlab_version": __version__,
            "tensors": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "population_size": trainer.size,
            "state": state, **(extra or {})}
    current = d / _JSON
    if current.exists():
        try:
            atomic_write_bytes(d / _PREV, current.read_bytes())
        except OSError:
            pass  # keeping the older one is a courtesy; the new checkpoint is what matters
    atomic_write_text(current, json.dumps(meta))
    _remove_unreferenced(d)
    return current


def _remove_unreferenced(d: Path) -> None:
    keep = set()
    for js in (_JSON, _PREV):
        try:
            keep.add(json.loads((d / js).read_text())["tensors"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    for f in d.glob("checkpoint-*.safetensors"):
        if f.name not in keep:
            try:
                f.unlink()
            except OSError:
                pass


def _read_one(d: Path, js_name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    js = d / js_name
    try:
        meta = json.loads(read_regular_file(js, limit=_MAX_JSON, what="checkpoint metadata").decode("utf-8"))
    except CheckpointError as e:
        if "file not found" in str(e):
            raise CheckpointError(f"{js}: not found") from None
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{js}: not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{js}: corrupt checkpoint metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "trainlab-checkpoint":
        raise CheckpointError(f"{js}: not a trainlab checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{js}: checkpoint version {meta.get('version')!r} is not supported "
                              f"(this trainlab reads version {CHECKPOINT_VERSION})")
    tf = d / str(meta.get("tensors", ""))
    size = meta.get("bytes")
    try:
        data = read_regular_file(tf, limit=int(size) if isinstance(size, int) else 2**40,
                                 exact=size if isinstance(size, int) else None, what="checkpoint tensor file")
    except CheckpointError as e:
        if "file not found" in str(e) or "is a directory" in str(e):
            raise CheckpointError(f"{tf}: checkpoint tensor file missing") from None
        raise
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"{tf}: corrupt or truncated checkpoint (SHA-256 does not match {js.name})")
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{tf}: not a safetensors file ({str(e).splitlines()[0]})") from None
    return tensors, meta


def load_checkpoint(directory: str | Path, trainer: Any) -> dict[str, Any]:
    """Restore ``trainer`` from the newest good checkpoint in ``directory``; returns its metadata.

    A corrupt newest checkpoint falls back to the previous one with a warning; if
    none is good, one :class:`CheckpointError` names the files and what is wrong.
    """
    d = Path(directory)
    problems = []
    for js_name in (_JSON, _PREV):
        if not (d / js_name).exists():
            continue
        try:
            tensors, meta = _read_one(d, js_name)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if meta.get("population_size") != trainer.size:
            raise CheckpointError(f"{d / js_name}: checkpoint has {meta.get('population_size')} member(s), "
                                  f"this run has {trainer.size}")
        if problems:
            warnings.warn(f"{problems[0]}; using the previous checkpoint ({js_name}, step {meta['state']['step']})",
                          stacklevel=2)
        trainer.load_state_dict(tensors, meta["state"], source=str(d / meta["tensors"]))
        return meta
    if problems:
        raise CheckpointError("; ".join(problems))
    raise CheckpointError(f"{d}: no checkpoint to resume from")
