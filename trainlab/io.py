"""Saving and loading models: ``safetensors`` for tensors, JSON for the rest. No pickle.

A saved model is two files side by side:

* ``model.safetensors`` -- every parameter and buffer, ``(P, ...)``, by name
  (``"0.weight"``, ...), plus the fitted preprocessing statistics
  (``"preprocess.<key>"``);
* ``model.json`` -- ``format`` (``"trainlab-model"``), ``format_version``, ``tensors``
  (the tensor file's name, size in bytes and SHA-256: checked on load, and reads are
  bounded by that size; a non-regular file such as a FIFO or a symlink to a device is
  refused), the
  trainlab version, the architecture (layer types and settings), input shape,
  population size and seeds, dtype, class count, data set and preprocessing name,
  options and scalar statistics.

Loading rebuilds the architecture from the JSON, then copies tensors in; any
mismatch is one :class:`~trainlab.errors.CheckpointError` naming the file.
Writes go to a temporary file in the same directory and are renamed into place,
so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import json
import os
from pathlib import Path
import tempfile
from typing import Any

import torch

from trainlab.data import Preprocessor
from trainlab.errors import CheckpointError, ConfigError
from trainlab.init import Initializer
from trainlab.nn import Module, Sequential
from trainlab.population import Population

__all__ = ["save_model", "load_model", "SavedModel", "atomic_write_bytes", "atomic_write_text", "read_regular_file",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file + fsync + rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.filename is None:  # f.write/fsync name no file: the message needs it
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(v: Any) -> Any:
    if isinstance(v, Initializer):
        return v.name
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def architecture(model: Sequential) -> list[dict[str, Any]]:
    """The layers as ``{"type": name, **settings}`` (names from :data:`trainlab.build.LAYERS`)."""
    from trainlab.build import LAYERS

    names = {cls: name for name, cls in LAYERS.items()}

    def spec(layer: Module, where: str) -> dict[str, Any]:
        if type(layer) not in names:
            raise ConfigError(f"layer {where} ({type(layer).__name__}) is not registered in trainlab.build.LAYERS; "
                              "register it to save the model")
        out: dict[str, Any] = {"type": names[type(layer)]}
        for k, v in layer.settings().items():
            # A container's settings hold layers (Residual's block and shortcut): saved as layer tables.
            if isinstance(v, list) and v and all(isinstance(x, Module) for x in v):
                out[k] = [spec(x, f"{where}.{k}[{j}]") for j, x in enumerate(v)]
            else:
                out[k] = _jsonable(v)
        return out

    return [spec(layer, str(i)) for i, layer in enumerate(model.layers)]


class SavedModel:
    """A loaded model with its metadata and preprocessing."""

    def __init__(self, model: Sequential, meta: dict[str, Any], preprocessor: Preprocessor | None) -> None:
        self.model, self.meta, self.preprocessor = model, meta, preprocessor


def save_model(directory: str | Path, model: Sequential, *, preprocessor: Preprocessor | None = None,
               num_classes: int | None = None, extra: Mapping[str, Any] | None = None,
               name: str = "model") -> tuple[Path, Path]:
    """Write ``<name>.safetensors`` and ``<name>.json`` into ``directory``."""
    from safetensors.torch import save as st_save

    from trainlab import __version__

    if model.population is None or model.input_shape is None or model.output_shape is None:
        raise ConfigError("save_model needs a built model: call model.build(input_shape, population) first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": "trainlab-model",
        "format_version": FORMAT_VERSION,
        "trainlab_version": __version__,
        "layers": architecture(model),
        "input_shape": list(model.input_shape),
        "output_shape": list(model.output_shape),
        "population": {"size": model.size, "seeds": model.population.seeds},
        "dtype": str(model.dtype).replace("torch.", ""),
        "num_classes": num_classes,
    }
    if preprocessor is not None:
        pstate = preprocessor.state_dict()
        scalars = {}
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                tensors[f"preprocess.{k}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[k] = v
        meta["preprocess"] = {"name": preprocessor.name, "options": _jsonable(preprocessor.options()),
                              "scalars": scalars}
    if extra:
        meta.update(_jsonable(dict(extra)))
    st_path, js_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    data = st_save(tensors, metadata={"format": "trainlab-model"})
    meta["tensors"] = {"file": st_path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(st_path, data)
    atomic_write_text(js_path, json.dumps(meta, indent=1))
    return st_path, js_path


#: model.json is small (the architecture and a few statistics): a larger one is not a trainlab model file
MAX_META_BYTES = 16 * 2**20


def read_regular_file(path: str | Path, *, limit: int, what: str = "file", exact: int | None = None) -> bytes:
    """The bytes of ``path``, refusing anything but a regular file (a symlink to ``/dev/urandom``, a FIFO, a
    device: one :class:`CheckpointError`, no hang) and reading at most ``limit`` bytes (more is an error).
    With ``exact``, the size the metadata declares, any other size is an error too."""
    import stat

    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise CheckpointError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise CheckpointError(f"{p}: is a directory, expected a {what}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                    stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise CheckpointError(f"{p}: is {kind}, not a regular file; refusing to read it as a {what}")
        if exact is not None and st.st_size != exact:
            raise CheckpointError(f"{p}: corrupt or truncated {what} ({st.st_size} bytes, the metadata declares "
                                  f"{exact})")
        if st.st_size > limit:
            raise CheckpointError(f"{p}: {st.st_size} bytes, more than the {limit} a {what} may have")
        data = f.read(min(limit, st.st_size) + 1)  # a regular file: its size is known (read() preallocates)
    if len(data) > min(limit, st.st_size) or (exact is not None and len(data) != exact):
        raise CheckpointError(f"{p}: changed size while being read ({what})")
    return data


def _read_meta(js_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(read_regular_file(js_path, limit=MAX_META_BYTES, what="model metadata file"
                                            ).decode("utf-8"))
    except CheckpointError as e:
        if "file not found" in str(e):
            raise CheckpointError(f"{js_path}: file not found (a saved model needs .json and .safetensors)"
                                  ) from None
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{js_path}: file not found (a saved model needs .json and .safetensors)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{js_path}: corrupt model metadata (not valid JSON: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "trainlab-model":
        raise CheckpointError(f"{js_path}: not a trainlab model file (format field missing or wrong)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{js_path}: model format version {meta.get('format_version')!r} is not supported "
                              f"(this trainlab reads version {FORMAT_VERSION})")
    return meta


def _read_tensors(st_path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor file, bounded by the size model.json declares and checked against its SHA-256 (models saved
    before the checksum existed: bounded by the file's own size, not checked)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    declared = meta.get("tensors") if isinstance(meta.get("tensors"), dict) else None
    if declared is not None:
        try:
            size, digest = int(declared["bytes"]), str(declared["sha256"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{st_path.with_suffix('.json')}: corrupt model metadata (tensors entry)") from None
        data = read_regular_file(st_path, limit=size, exact=size, what="model tensor file")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CheckpointError(f"{st_path}: corrupt model file (SHA-256 does not match "
                                  f"{st_path.with_suffix('.json').name}); the weights were changed after saving")
    else:
        data = read_regular_file(st_path, limit=2**40, what="model tensor file")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{st_path}: corrupt or truncated safetensors file ({str(e).splitlines()[0]})") from None


def load_model(path: str | Path, *, device: str | torch.device = "cpu", name: str = "model") -> SavedModel:
    """Load a model saved by :func:`save_model` (``path`` is its directory or its .json/.safetensors)."""
    from trainlab.build import build_layer
    from trainlab.data import make_preprocessor

    p = Path(path)
    if not p.exists() and not p.with_suffix(".json").exists():
        raise CheckpointError(f"{p}: no such run directory or model file")
    if p.is_dir():
        js_path, st_path = p / f"{name}.json", p / f"{name}.safetensors"
    else:
        stem = p.with_suffix("")
        js_path, st_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    meta = _read_meta(js_path)
    tensors = _read_tensors(st_path, meta)
    try:
        layers = [build_layer(spec, i) for i, spec in enumerate(meta["layers"])]
        pop = Population(int(meta["population"]["size"]), seeds=meta["population"]["seeds"])
        dtype = _DTYPES[meta["dtype"]]
        model = Sequential(layers)
        model.build(tuple(meta["input_shape"]), pop, device=device, dtype=dtype)
    except (KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"{js_path}: cannot rebuild the model ({e})") from None
    model_state = {k: v for k, v in tensors.items() if not k.startswith("preprocess.")}
    model.load_state_dict(model_state, source=str(st_path))
    preprocessor = None
    if "preprocess" in meta:
        pm = meta["preprocess"]
        try:
            preprocessor = make_preprocessor(pm["name"], **pm.get("options", {}))
            state: dict[str, torch.Tensor | float | int] = {k[len("preprocess."):]: v for k, v in tensors.items()
                                                        if k.startswith("preprocess.")}
            state.update(pm.get("scalars", {}))
            preprocessor.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{st_path}: preprocessing state does not load ({e})") from None
    return SavedModel(model, meta, preprocessor)
