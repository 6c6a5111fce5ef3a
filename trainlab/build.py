"""Resolve a validated config into objects: data, model, loss, optimizer, trainer.

This is the one place where names ("sgd", "relu", "mnist-5k") become classes.
Layer names resolve through :data:`trainlab.nn.LAYERS` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
import inspect
from typing import Any

import torch

from trainlab import nn
from trainlab.nn import LAYERS, register_layer
from trainlab.errors import ConfigError
from trainlab.optim import OPTIMIZERS, Optimizer
from trainlab.population import Population

__all__ = ["LAYERS", "register_layer", "build_layer", "build_model", "build_loss", "build_optimizer",
           "build_population", "resolve_device", "Run", "build_run"]

#: layers whose size is given as ``out`` in configs (``in_features`` comes from the input)
_LINEAR_LIKE = {"linear", "dropconnect", "noisy_linear"}
_RELU_LIKE = {"relu", "leaky_relu", "elu", "gelu", "softplus", "prelu", "maxout", "silu", "swish", "mish", "hardswish"}


def build_layer(spec: Mapping[str, Any], index: int = 0, *, where: str | None = None) -> nn.Module:
    """``{"type": "linear", "out": 100, "init": "he_normal"}`` -> ``Linear(None, 100, init=...)``.

    ``type = "residual"`` takes ``block`` (a list of layer tables, ``conv_block`` allowed) and
    ``shortcut`` (``"auto"``, ``"identity"``, ``"projection"`` or a list of layer tables).
    """
    where = where or f"model.layers[{index}]"
    spec = dict(spec)
    kind = spec.pop("type", None)
    if not isinstance(kind, str) or kind not in LAYERS:
        raise ConfigError(f"config: {where}.type must be one of {', '.join(sorted(LAYERS))}, got {kind!r}")
    cls = LAYERS[kind]
    if kind == "residual":
        for key in ("block", "shortcut"):
            v = spec.get(key)
            if isinstance(v, list):
                if not all(isinstance(t, Mapping) for t in v):
                    raise ConfigError(f"config: {where}.{key} must be a list of layer tables, got {v!r}")
                spec[key] = [layer for j, t in enumerate(v) for layer in _build_layers(t, j, where=f"{where}.{key}[{j}]")]
        if not isinstance(spec.get("block"), list):
            raise ConfigError(f"config: {where}.block must be a list of layer tables, got {spec.get('block')!r}")
    if kind in _LINEAR_LIKE:
        if "out" in spec:
            spec["out_features"] = spec.pop("out")
        spec.setdefault("in_features", None)
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p != "self"]
    for k in spec:
        if k not in allowed:
            shown = ["out" if a == "out_features" else a for a in allowed if a != "in_features"]
            raise ConfigError(f"config: unknown key '{where}.{k}' for a {kind} layer (allowed: {', '.join(shown) or 'none'})")
    try:
        return cls(**spec)
    except ConfigError as e:
        raise ConfigError(f"config: {where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"config: {where}: {e}") from None


def _build_layers(spec: Mapping[str, Any], index: int, *, where: str | None = None) -> list[nn.Module]:
    """One ``[[model.layers]]`` entry -> its layers: ``type = "conv_block"`` expands to
    Conv -> norm -> activation -> dropout (-> pool), see :func:`trainlab.nn.conv_block`."""
    where = where or f"model.layers[{index}]"
    if spec.get("type") != "conv_block":
        return [build_layer(spec, index, where=where)]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    kwargs.setdefault("in_channels", None)
    allowed = [p for p in inspect.signature(nn.conv_block).parameters if p != "in_channels"]
    for k in kwargs:
        if k not in allowed and k != "in_channels":
            raise ConfigError(f"config: unknown key '{where}.{k}' for a conv_block "
                              f"(allowed: {', '.join(allowed)})")
    try:
        return nn.conv_block(**kwargs)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"config: {where}: {e}") from None


def _activation(name: str, cfg: Mapping[str, Any]) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(cfg["slope"])
    if name == "prelu":
        return nn.PReLU(1 if cfg.get("prelu_shared") else None, init=cfg.get("prelu_init", 0.25))
    if name == "maxout":
        return nn.Maxout(cfg.get("maxout_pieces", 2))
    return LAYERS[name]()


def build_model(model_cfg: Mapping[str, Any], num_classes: int) -> nn.Sequential:
    """An unbuilt :class:`~trainlab.nn.Sequential` from the ``[model]`` table.

    ``type = "mlp"``: [GaussianNoise] -> [Dropout(input_dropout)] -> (Linear -> [norm] ->
    activation -> [Dropout(dropout)]) per hidden width -> Linear(num_classes); the
    bracketed layers appear only when switched on (a non-zero rate for some member).
    The norm sits between the affine map and the nonlinearity, as in Ioffe & Szegedy.

    ``type = "resnet"``: :func:`trainlab.nn.resnet` with ``depth``, ``width``, ``preact``.
    """
    if model_cfg["type"] == "sequential":
        return nn.Sequential(layer for i, s in enumerate(model_cfg["layers"]) for layer in _build_layers(s, i))
    if model_cfg["type"] == "resnet":
        # depth/width/preact, and the shared keys activation, init, init_scale, dropout, bn_*.
        init = model_cfg["init"]
        try:
            return nn.Sequential(nn.resnet(
                num_classes, depth=model_cfg["depth"], width=model_cfg["width"], preact=model_cfg["preact"],
                activation=lambda: _activation(model_cfg["activation"], model_cfg), dropout=model_cfg["dropout"],
                dropout_mode=model_cfg["dropout_mode"],
                init=("he_normal" if model_cfg["activation"] in _RELU_LIKE else "xavier_normal") if init == "auto" else init,
                init_scale=model_cfg["init_scale"], bn_momentum=model_cfg["bn_momentum"],
                bn_inference=model_cfg["bn_inference"]))
        except ConfigError as e:
            raise ConfigError(f"config: model: {e}") from None
    act = model_cfg["activation"]
    init = model_cfg["init"]
    if init == "auto":
        # The textbook's rule: He for ReLU-like units, Xavier for sigmoid/tanh/linear;
        # SELU needs LeCun-normal, N(0, 1/fan_in), for its self-normalizing fixed point.
        init = "lecun_normal" if act == "selu" else "he_normal" if act in _RELU_LIKE else "xavier_normal"
    def on(v: Any) -> bool:
        return any(x > 0 for x in v) if isinstance(v, list) else v > 0

    def dropout(rate: Any) -> nn.Module:
        if model_cfg["dropout_mode"] == "alpha":
            return nn.AlphaDropout(rate)
        return nn.Dropout(rate, mode=model_cfg["dropout_mode"])

    layers: list[nn.Module] = []
    if on(model_cfg["input_noise"]):
        layers.append(nn.GaussianNoise(model_cfg["input_noise"]))
    if on(model_cfg["input_dropout"]):
        layers.append(dropout(model_cfg["input_dropout"]))
    # maxout: each hidden Linear gives k pieces per unit, Maxout(k) takes their max
    pieces = model_cfg.get("maxout_pieces", 2) if act == "maxout" else 1
    for width in model_cfg["hidden"]:
        layers.append(nn.Linear(None, width * pieces, init=init, init_scale=model_cfg["init_scale"]))
        if model_cfg["norm"] == "batchnorm":
            layers.append(nn.BatchNorm(momentum=model_cfg["bn_momentum"], inference=model_cfg["bn_inference"],
                                       eps=model_cfg.get("bn_eps", 1e-5),
                                       running_variance=model_cfg.get("bn_running_var", "unbiased"),
                                       running_var_init=model_cfg.get("bn_running_var_init", 1.0)))
        elif model_cfg["norm"] == "layernorm":
            layers.append(nn.LayerNorm())
        layers.append(_activation(act, model_cfg))
        if on(model_cfg["dropout"]):
            layers.append(dropout(model_cfg["dropout"]))
    layers.append(nn.Linear(None, num_classes, init=init, init_scale=model_cfg["init_scale"]))
    return nn.Sequential(layers)


def build_loss(loss_cfg: Mapping[str, Any]) -> nn.Loss:
    name = loss_cfg["name"]
    if name == "mse":
        return nn.MeanSquaredError()
    if name == "bce":
        return nn.BCEWithLogits()
    if name == "focal":
        return nn.SigmoidFocalLoss(gamma=loss_cfg["focal_gamma"], alpha=loss_cfg["focal_alpha"])
    return nn.SoftmaxCrossEntropy(label_smoothing=loss_cfg["label_smoothing"], weight=loss_cfg.get("class_weights"))


def build_optimizer(optim_cfg: Mapping[str, Any], params: list[nn.Parameter]) -> Optimizer:
    """The ``[optim]`` table's optimizer; ``lookahead_k > 0`` wraps it in :class:`~trainlab.optim.Lookahead`."""
    from trainlab.optim import Lookahead
    from trainlab.second_order import CLOSURE_OPTIMIZERS

    name = optim_cfg["name"]
    cls = OPTIMIZERS[name] if name in OPTIMIZERS else CLOSURE_OPTIMIZERS[name]
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in optim_cfg.items() if k in accepted and k != "params" and v is not None}
    if name in CLOSURE_OPTIMIZERS and optim_cfg.get("lookahead_k"):
        raise ConfigError(f"config: optim.lookahead_k wraps a first-order optimizer, not {name!r}")
    wd = optim_cfg.get("weight_decay") or 0.0
    if "weight_decay" not in accepted and (any(v > 0 for v in wd) if isinstance(wd, list) else wd > 0):
        raise ConfigError(f"config: optim.weight_decay is not used by {name!r}; penalize the weights with "
                          "regularize.l2 instead")
    opt = cls(params, **kwargs)
    if optim_cfg.get("clip_norm") is not None or optim_cfg.get("clip_value") is not None:
        from trainlab.optim import ClipGradients

        ClipGradients(norm=optim_cfg.get("clip_norm"), value=optim_cfg.get("clip_value")).attach(opt)
    if optim_cfg.get("lookahead_k"):
        opt = Lookahead(opt, k=optim_cfg["lookahead_k"], alpha=optim_cfg["lookahead_alpha"])
    return opt


def build_population(cfg: Mapping[str, Any]) -> Population:
    pop = cfg["population"]
    return Population(pop["size"], seed=cfg["seed"], seeds=pop["seeds"])


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; CUDA must be present."""
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"config: device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"config: device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("config: device is 'cuda' but no CUDA GPU is available here (use device = 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"config: device {name!r} does not exist; {torch.cuda.device_count()} GPU(s) present")
    return dev


def build_regularizers(reg_cfg: Mapping[str, Any]) -> list:
    """Penalties and constraints from the ``[regularize]`` table (only those switched on)."""
    from trainlab.regularize import L1, L2, ElasticNet, MaxNorm

    def on(v: Any) -> bool:
        return v is not None and (any(x > 0 for x in v) if isinstance(v, list) else v > 0)

    out: list = []
    inc = reg_cfg["include_1d"]
    if on(reg_cfg["l1"]) and on(reg_cfg["l2"]):
        out.append(ElasticNet(reg_cfg["l1"], reg_cfg["l2"], form=reg_cfg["l2_form"], proximal=reg_cfg["l1_proximal"],
                              include_1d=inc))
    elif on(reg_cfg["l1"]):
        out.append(L1(reg_cfg["l1"], proximal=reg_cfg["l1_proximal"], include_1d=inc))
    elif on(reg_cfg["l2"]):
        out.append(L2(reg_cfg["l2"], form=reg_cfg["l2_form"], include_1d=inc))
    if reg_cfg["max_norm"] is not None:
        out.append(MaxNorm(reg_cfg["max_norm"]))
    return out


def build_callbacks(cfg: Mapping[str, Any]) -> list:
    from trainlab.train import EarlyStopping

    es = cfg["early_stopping"]
    out: list = []
    if es["enabled"]:
        out.append(EarlyStopping(es["monitor"], mode=es["mode"], patience=es["patience"], min_delta=es["min_delta"],
                                 restore_best=es["restore_best"]))
    if cfg["optim"].get("swa_start") is not None:  # after early stopping: the average is what the run ends with
        from trainlab.train import SWA

        out.append(SWA(start_epoch=cfg["optim"]["swa_start"], every=cfg["optim"]["swa_every"]))
    return out


@dataclass
class Run:
    """Everything a config builds: data splits, the built model, loss, optimizer and trainer."""

    config: dict[str, Any]
    splits: Any
    model: nn.Sequential
    loss: nn.Loss
    optimizer: Optimizer
    trainer: Any


def build_run(cfg: Mapping[str, Any], *, progress: bool = False,
              callbacks: list[Callable] | None = None, splits: Any = None, live: bool = False) -> Run:
    """Load data and build every object a config describes (model built for its population).

    ``splits``: data already loaded for this config (e.g. by the doctor, which builds many runs
    on one data set); the objects and their order of random draws are the same either way.
    ``progress`` / ``live``: the Trainer's console lines / live notebook curves. Members are
    named by :func:`trainlab.labels.member_labels`.
    """
    from trainlab.data import load_splits
    from trainlab.labels import member_labels
    from trainlab.train import Trainer

    device = resolve_device(cfg["device"])
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg["dtype"]]
    d = cfg["data"]
    if splits is None:
        splits = load_splits(d["name"], train=d["train"], val=d["val"], test=d["test"], seed=cfg["seed"],
                             preprocess=d["preprocess"], flatten=d["flatten"], data_dir=d["data_dir"],
                             cache_dir=d["cache_dir"], download=d["download"], device=device, dtype=dtype)
        from trainlab.data import plant_faults

        splits = plant_faults(splits, d, seed=cfg["seed"])
    population = build_population(cfg)
    model = build_model(cfg["model"], splits.num_classes)
    model.build(splits.input_shape, population, device=device, dtype=dtype)
    loss = build_loss(cfg["loss"])
    loss.build(population.size, device=device, dtype=dtype)
    optimizer = build_optimizer(cfg["optim"], model.parameters())
    if "schedule" in cfg:
        from trainlab.schedule import from_config as build_schedule

        build_schedule(cfg["schedule"], optimizer)  # attached to the optimizer; None for the constant default
    from trainlab.augment import from_config as build_augmenter

    augment = build_augmenter(cfg["augment"], population, dataset=d["name"], num_classes=splits.num_classes)
    t = cfg["train"]
    n_train = int(splits.train.x.shape[0])
    if t["batch_size"] > n_train:
        import warnings

        warnings.warn(f"train.batch_size {t['batch_size']} is larger than the {n_train} training examples: every "
                      f"step is one full batch of {n_train} (full-batch gradient descent); lower batch_size or "
                      "use more data", stacklevel=2)
    trainer = Trainer(model, loss, optimizer, epochs=t["epochs"], steps=t["steps"], batch_size=t["batch_size"],
                      seed=cfg["seed"], eval_every=t["eval_every"], eval_train=t["eval_train"],
                      eval_batch_size=t["eval_batch_size"], progress=progress,
                      callbacks=build_callbacks(cfg) + list(callbacks or []),
                      regularizers=build_regularizers(cfg["regularize"]), augment=augment, live=live,
                      labels=member_labels(cfg), cuda_graphs=t.get("cuda_graphs", False),
                      diverge_factor=t["diverge_factor"], diverge_evaluations=t["diverge_evaluations"])
    return Run(dict(cfg), splits, model, loss, optimizer, trainer)
