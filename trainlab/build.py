"""Resolve a validated config into objects: data, model, loss, optimizer, trainer.

This is the one place where names ("sgd", "relu", "mnist-5k") become classes.
Layer names resolve through :data:`trainlab.nn.LAYERS` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import inspect
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from trainlab import nn
from trainlab.config import (LossConfig, ModelConfig, OptimConfig, RegularizeConfig, Table, plain, table_from_dict,
                             value_is_on)
from trainlab.errors import ConfigError
from trainlab.nn import LAYERS, register_layer
from trainlab.optim import OPTIMIZERS, Optimizer
from trainlab.population import Population

if TYPE_CHECKING:
    from trainlab.config import RunConfig
    from trainlab.data import Splits
    from trainlab.train import Callback, Trainer

T = TypeVar("T", bound=Table)

__all__ = ["LAYERS", "register_layer", "build_layer", "build_model", "build_loss", "build_optimizer",
           "build_population", "build_regularizers", "build_callbacks", "as_run_config", "resolve_device", "Run",
           "build_run"]

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


def _table(cls: type[T], table: T | Mapping[str, Any], name: str) -> T:
    """A typed table, or a plain mapping of its keys validated into one (the public builders take either)."""
    if isinstance(table, cls):
        return table
    assert isinstance(table, Mapping)
    out = table_from_dict(name, table)
    assert isinstance(out, cls)
    return out


def _activation(name: str, m: ModelConfig) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(plain(m.slope))
    if name == "prelu":
        return nn.PReLU(1 if m.prelu_shared else None, init=plain(m.prelu_init))
    if name == "maxout":
        return nn.Maxout(m.maxout_pieces)
    return LAYERS[name]()


def build_model(model_cfg: ModelConfig | Mapping[str, Any], num_classes: int) -> nn.Sequential:
    """An unbuilt :class:`~trainlab.nn.Sequential` from the ``[model]`` table.

    ``type = "mlp"``: [GaussianNoise] -> [Dropout(input_dropout)] -> (Linear -> [norm] ->
    activation -> [Dropout(dropout)]) per hidden width -> Linear(num_classes); the
    bracketed layers appear only when switched on (a non-zero rate for some member).
    The norm sits between the affine map and the nonlinearity, as in Ioffe & Szegedy.

    ``type = "resnet"``: :func:`trainlab.nn.resnet` with ``depth``, ``width``, ``preact``.
    """
    m = _table(ModelConfig, model_cfg, "model")
    if m.type == "sequential":
        return nn.Sequential(layer for i, s in enumerate(plain(m.layers or ())) for layer in _build_layers(s, i))
    if m.type == "resnet":
        # depth/width/preact, and the shared keys activation, init, init_scale, dropout, bn_*.
        init = plain(m.init)
        try:
            return nn.Sequential(nn.resnet(
                num_classes, depth=m.depth, width=m.width, preact=m.preact,
                activation=lambda: _activation(m.activation, m), dropout=plain(m.dropout),
                dropout_mode=m.dropout_mode,
                init=("he_normal" if m.activation in _RELU_LIKE else "xavier_normal") if init == "auto" else init,
                init_scale=plain(m.init_scale), bn_momentum=plain(m.bn_momentum),
                bn_inference=m.bn_inference))
        except ConfigError as e:
            raise ConfigError(f"config: model: {e}") from None
    act = m.activation
    init = plain(m.init)
    if init == "auto":
        # The textbook's rule: He for ReLU-like units, Xavier for sigmoid/tanh/linear;
        # SELU needs LeCun-normal, N(0, 1/fan_in), for its self-normalizing fixed point.
        init = "lecun_normal" if act == "selu" else "he_normal" if act in _RELU_LIKE else "xavier_normal"

    def dropout(rate: Any) -> nn.Module:
        if m.dropout_mode == "alpha":
            return nn.AlphaDropout(rate)
        return nn.Dropout(rate, mode=m.dropout_mode)

    layers: list[nn.Module] = []
    if value_is_on(m.input_noise):
        layers.append(nn.GaussianNoise(plain(m.input_noise)))
    if value_is_on(m.input_dropout):
        layers.append(dropout(plain(m.input_dropout)))
    # maxout: each hidden Linear gives k pieces per unit, Maxout(k) takes their max
    pieces = m.maxout_pieces if act == "maxout" else 1
    for width in m.hidden:
        layers.append(nn.Linear(None, width * pieces, init=init, init_scale=plain(m.init_scale)))
        if m.norm == "batchnorm":
            layers.append(nn.BatchNorm(momentum=plain(m.bn_momentum), inference=m.bn_inference, eps=m.bn_eps,
                                       running_variance=m.bn_running_var, running_var_init=m.bn_running_var_init))
        elif m.norm == "layernorm":
            layers.append(nn.LayerNorm())
        layers.append(_activation(act, m))
        if value_is_on(m.dropout):
            layers.append(dropout(plain(m.dropout)))
    layers.append(nn.Linear(None, num_classes, init=init, init_scale=plain(m.init_scale)))
    return nn.Sequential(layers)


def build_loss(loss_cfg: LossConfig | Mapping[str, Any]) -> nn.Loss:
    c = _table(LossConfig, loss_cfg, "loss")
    if c.name == "mse":
        return nn.MeanSquaredError()
    if c.name == "bce":
        return nn.BCEWithLogits()
    if c.name == "focal":
        return nn.SigmoidFocalLoss(gamma=plain(c.focal_gamma), alpha=plain(c.focal_alpha))
    return nn.SoftmaxCrossEntropy(label_smoothing=plain(c.label_smoothing), weight=plain(c.class_weights))


def build_optimizer(optim_cfg: OptimConfig | Mapping[str, Any], params: list[nn.Parameter]) -> Optimizer:
    """The ``[optim]`` table's optimizer; ``lookahead_k > 0`` wraps it in :class:`~trainlab.optim.Lookahead`."""
    from trainlab.optim import ClipGradients, Lookahead
    from trainlab.second_order import CLOSURE_OPTIMIZERS

    c = _table(OptimConfig, optim_cfg, "optim")
    cls = OPTIMIZERS[c.name] if c.name in OPTIMIZERS else CLOSURE_OPTIMIZERS[c.name]
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in c.as_dict().items() if k in accepted and k != "params" and v is not None}
    if c.name in CLOSURE_OPTIMIZERS and c.lookahead_k:
        raise ConfigError(f"config: optim.lookahead_k wraps a first-order optimizer, not {c.name!r}")
    if "weight_decay" not in accepted and value_is_on(c.weight_decay):
        raise ConfigError(f"config: optim.weight_decay is not used by {c.name!r}; penalize the weights with "
                          "regularize.l2 instead")
    opt = cls(params, **kwargs)
    if c.clip_norm is not None or c.clip_value is not None:
        ClipGradients(norm=plain(c.clip_norm), value=plain(c.clip_value)).attach(opt)
    if c.lookahead_k:
        opt = Lookahead(opt, k=c.lookahead_k, alpha=plain(c.lookahead_alpha))
    return opt


def build_population(cfg: RunConfig) -> Population:
    return Population(cfg.size, seed=cfg.seed, seeds=plain(cfg.population.seeds))


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


def build_regularizers(reg_cfg: RegularizeConfig | Mapping[str, Any]) -> list[Any]:
    """Penalties and constraints from the ``[regularize]`` table (only those switched on)."""
    from trainlab.regularize import L1, L2, ElasticNet, MaxNorm

    r = _table(RegularizeConfig, reg_cfg, "regularize")
    out: list[Any] = []
    l1, l2 = plain(r.l1), plain(r.l2)
    if value_is_on(l1) and value_is_on(l2):
        out.append(ElasticNet(l1, l2, form=r.l2_form, proximal=r.l1_proximal, include_1d=r.include_1d))
    elif value_is_on(l1):
        out.append(L1(l1, proximal=r.l1_proximal, include_1d=r.include_1d))
    elif value_is_on(l2):
        out.append(L2(l2, form=r.l2_form, include_1d=r.include_1d))
    if r.max_norm is not None:
        out.append(MaxNorm(plain(r.max_norm)))
    return out


def build_callbacks(cfg: RunConfig | Mapping[str, Any]) -> list[Any]:
    """Early stopping and SWA, from ``[early_stopping]`` and ``[optim]``."""
    from trainlab.train import SWA, EarlyStopping

    c = as_run_config(cfg)
    es = c.early_stopping
    out: list[Any] = []
    if es.enabled:
        out.append(EarlyStopping(es.monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta,
                                 restore_best=es.restore_best))
    if c.optim.swa_start is not None:  # after early stopping: the average is what the run ends with
        out.append(SWA(start_epoch=c.optim.swa_start, every=c.optim.swa_every))
    return out


def as_run_config(cfg: RunConfig | Mapping[str, Any]) -> RunConfig:
    """The public entry points take a :class:`~trainlab.config.RunConfig` or a plain dict of given keys,
    which is validated here, once, at the boundary."""
    from trainlab.config import RunConfig

    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)


@dataclass
class Run:
    """Everything a config builds: data splits, the built model, loss, optimizer and trainer."""

    config: RunConfig
    splits: Splits
    model: nn.Sequential
    loss: nn.Loss
    optimizer: Optimizer
    trainer: Trainer


def build_run(cfg: RunConfig | Mapping[str, Any], *, progress: bool = False,
              callbacks: list[Callback] | None = None, splits: Splits | None = None, live: bool = False) -> Run:
    """Load data and build every object a config describes (model built for its population).

    ``cfg``: a :class:`~trainlab.config.RunConfig`, or a dict of given keys (validated here).
    ``splits``: data already loaded for this config (e.g. by the doctor, which builds many runs
    on one data set); the objects and their order of random draws are the same either way.
    ``progress`` / ``live``: the Trainer's console lines / live notebook curves. Members are
    named by :func:`trainlab.labels.member_labels`.
    """
    from trainlab.augment import from_config as build_augmenter
    from trainlab.data import load_splits, plant_faults
    from trainlab.labels import member_labels
    from trainlab.schedule import from_config as build_schedule
    from trainlab.train import Trainer

    c = as_run_config(cfg)
    device = resolve_device(c.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[c.dtype]
    d = c.data
    if splits is None:
        splits = load_splits(d.name, train=d.train, val=d.val, test=d.test, seed=c.seed,
                             preprocess=d.preprocess, flatten=d.flatten, data_dir=d.data_dir,
                             cache_dir=d.cache_dir, download=d.download, device=device, dtype=dtype)
        splits = plant_faults(splits, d.as_dict(), seed=c.seed)
    population = build_population(c)
    model = build_model(c.model, splits.num_classes)
    model.build(splits.input_shape, population, device=device, dtype=dtype)
    loss = build_loss(c.loss)
    loss.build(population.size, device=device, dtype=dtype)
    optimizer = build_optimizer(c.optim, model.parameters())
    build_schedule(c.schedule.as_dict(), optimizer)  # attached to the optimizer; None for the constant default
    augment = build_augmenter(c.augment.as_dict(), population, dataset=d.name, num_classes=splits.num_classes)
    t = c.train
    n_train = int(splits.train.x.shape[0])
    if t.batch_size > n_train:
        import warnings

        warnings.warn(f"train.batch_size {t.batch_size} is larger than the {n_train} training examples: every "
                      f"step is one full batch of {n_train} (full-batch gradient descent); lower batch_size or "
                      "use more data", stacklevel=2)
    trainer = Trainer(model, loss, optimizer, epochs=t.epochs, steps=t.steps, batch_size=t.batch_size,
                      seed=c.seed, eval_every=t.eval_every, eval_train=t.eval_train,
                      eval_batch_size=t.eval_batch_size, progress=progress,
                      callbacks=build_callbacks(c) + list(callbacks or []),
                      regularizers=build_regularizers(c.regularize), augment=augment, live=live,
                      labels=member_labels(c), cuda_graphs=t.cuda_graphs, trace_step=t.trace_step,
                      diverge_factor=t.diverge_factor, diverge_evaluations=t.diverge_evaluations)
    return Run(c, splits, model, loss, optimizer, trainer)
