"""The typed tables of a run configuration: one frozen pydantic model per TOML table.

These classes give every key its Python type (what mypy and the JSON schema see). The key"s
default, range, choices and help text are declared once, in :data:`trainlab.config.SCHEMA`;
:mod:`trainlab.config` checks at import that both name the same keys with matching choices, and
builds :class:`~trainlab.config.RunConfig` on top of :class:`RunConfigFields`. Lists are tuples and
the models are frozen, so a validated config cannot be edited: derive a new one instead
(``RunConfig.replace``, ``.member``, ``.as_population``, ``.without_regularization``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

__all__ = ["Table", "plain", "RunConfigFields", "PopulationConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimConfig",
           "ScheduleConfig", "RegularizeConfig", "EarlyStoppingConfig", "AugmentConfig", "TrainConfig",
           "ActivationName", "OptimizerName", "DatasetName", "ScheduleName",
           "PreprocessName", "ACTIVATION_NAMES", "OPTIMIZER_NAMES", "DATASET_NAMES", "SCHEDULE_NAMES",
           "PREPROCESS_NAMES"]

ActivationName = Literal["relu", "sigmoid", "tanh", "leaky_relu", "elu", "gelu", "softplus", "identity", "prelu", "maxout",
    "silu", "swish", "mish", "selu", "hardswish"]
OptimizerName = Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "radam", "adamax",
    "adadelta", "lbfgs"]
DatasetName = Literal["mnist-5k", "mnist", "fashion-mnist", "kmnist", "cifar10"]
ScheduleName = Literal["constant", "step", "multistep", "exponential", "cosine", "cosine_restarts", "onecycle", "plateau"]
PreprocessName = Literal["none", "minmax", "minmax-feature", "standardize", "pca-whiten", "zca-whiten", "standardize-channel"]

ACTIVATION_NAMES: tuple[str, ...] = get_args(ActivationName)
OPTIMIZER_NAMES: tuple[str, ...] = get_args(OptimizerName)
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)
PREPROCESS_NAMES: tuple[str, ...] = get_args(PreprocessName)


class Table(BaseModel):
    """A frozen table: unknown keys are refused, values are never edited after validation."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    def as_dict(self) -> dict[str, Any]:
        """The table as a plain dict (tuples as lists): a new copy, for the engine's table-level builders
        (:func:`trainlab.augment.from_config`, :func:`trainlab.schedule.from_config`, ...)."""
        return plain(self.model_dump())


def plain(v: Any) -> Any:
    """Tuples -> lists, recursively (dicts copied): the plain form of a frozen value."""
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


class PopulationConfig(Table):
    """[population]"""

    size: int
    seeds: tuple[int, ...] | None


class DataConfig(Table):
    """[data]"""

    name: DatasetName
    train: int | None
    val: int
    test: int | None
    preprocess: PreprocessName
    flatten: bool
    data_dir: str | None
    cache_dir: str | None
    download: bool
    label_noise: float
    leak: float
    imbalance: float
    rebalance: bool


class ModelConfig(Table):
    """[model]"""

    type: Literal["mlp", "sequential", "resnet"]
    depth: int
    width: int
    preact: bool
    hidden: tuple[int, ...]
    activation: ActivationName
    slope: float | tuple[float, ...]
    prelu_init: float | tuple[float, ...]
    prelu_shared: bool
    maxout_pieces: int
    init: str | dict[str, Any]
    init_scale: float | tuple[float, ...]
    input_dropout: float | tuple[float, ...]
    dropout: float | tuple[float, ...]
    dropout_mode: Literal["inverted", "classic", "alpha"]
    input_noise: float | tuple[float, ...]
    norm: Literal["none", "batchnorm", "layernorm"]
    bn_momentum: float | tuple[float, ...]
    bn_running_var: Literal["unbiased", "biased"]
    bn_running_var_init: float
    bn_eps: float
    bn_inference: Literal["running", "population"]
    layers: tuple[dict[str, Any], ...] | None


class LossConfig(Table):
    """[loss]"""

    name: Literal["cross_entropy", "mse", "bce", "focal"]
    label_smoothing: float | tuple[float, ...]
    class_weights: tuple[float, ...] | None
    focal_gamma: float | tuple[float, ...]
    focal_alpha: float | tuple[float, ...]


class OptimConfig(Table):
    """[optim]"""

    name: OptimizerName
    lr: float | tuple[float, ...]
    weight_decay: float | tuple[float, ...]
    decoupled: bool
    momentum: float | tuple[float, ...]
    alpha: float | tuple[float, ...]
    beta1: float | tuple[float, ...]
    beta2: float | tuple[float, ...]
    eps: float | tuple[float, ...] | None
    rho: float | tuple[float, ...]
    momentum_decay: float | tuple[float, ...]
    centered: bool
    history: int
    max_iter: int
    lookahead_k: int
    lookahead_alpha: float | tuple[float, ...]
    swa_start: int | None
    swa_every: int
    clip_norm: float | tuple[float, ...] | None
    clip_value: float | tuple[float, ...] | None


class ScheduleConfig(Table):
    """[schedule]"""

    name: ScheduleName | tuple[ScheduleName, ...]
    interval: Literal["auto", "epoch", "step"]
    warmup: int | tuple[int, ...]
    warmup_start: float | tuple[float, ...]
    step_size: int | tuple[int, ...]
    gamma: float | tuple[float, ...] | None
    milestones: tuple[int, ...]
    t_max: int | tuple[int, ...] | None
    eta_min: float | tuple[float, ...]
    t_0: int | tuple[int, ...]
    t_mult: int | tuple[int, ...]
    total: int | tuple[int, ...] | None
    pct_start: float | tuple[float, ...]
    anneal: Literal["cos", "linear"]
    div_factor: float | tuple[float, ...]
    final_div_factor: float | tuple[float, ...]
    three_phase: bool
    cycle_momentum: bool | None
    base_momentum: float | tuple[float, ...]
    max_momentum: float | tuple[float, ...]
    monitor: Literal["val_loss", "val_acc", "train_loss", "train_acc"]
    mode: Literal["auto", "min", "max"]
    factor: float | tuple[float, ...]
    patience: int | tuple[int, ...]
    threshold: float | tuple[float, ...]
    threshold_mode: Literal["rel", "abs"]
    cooldown: int | tuple[int, ...]
    min_lr: float | tuple[float, ...]


class RegularizeConfig(Table):
    """[regularize]"""

    l2: float | tuple[float, ...]
    l2_form: Literal["full", "half"]
    l1: float | tuple[float, ...]
    l1_proximal: bool
    max_norm: float | tuple[float, ...] | None
    include_1d: bool


class EarlyStoppingConfig(Table):
    """[early_stopping]"""

    enabled: bool
    monitor: Literal["val_loss", "val_acc", "train_loss", "train_acc"]
    mode: Literal["auto", "min", "max"]
    patience: int
    min_delta: float
    restore_best: bool


class AugmentConfig(Table):
    """[augment]"""

    policy_ops: int | tuple[int, ...]
    policy_magnitude: float | tuple[float, ...]
    rotate: float | tuple[float, ...]
    rotate_p: float | tuple[float, ...]
    shift: float | tuple[float, ...]
    shift_p: float | tuple[float, ...]
    scale: float | tuple[float, ...]
    scale_p: float | tuple[float, ...]
    hflip: bool
    rot90: bool
    elastic: float | tuple[float, ...]
    elastic_sigma: float | tuple[float, ...]
    elastic_p: float | tuple[float, ...]
    force: bool
    cutout: int | tuple[int, ...]
    cutout_p: float | tuple[float, ...]
    mixup: float | tuple[float, ...]
    cutmix: float | tuple[float, ...]
    noise: float | tuple[float, ...]
    noise_p: float | tuple[float, ...]


class TrainConfig(Table):
    """[train]"""

    epochs: int
    steps: int | None
    batch_size: int
    eval_every: int | None
    eval_train: bool
    eval_batch_size: int
    snapshot_every: int | None
    diverge_factor: float
    diverge_evaluations: int
    cuda_graphs: bool
    trace_step: bool


class RunConfigFields(Table):
    seed: int
    device: str
    dtype: Literal["float32", "float64"]
    population: PopulationConfig
    data: DataConfig
    model: ModelConfig
    loss: LossConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    regularize: RegularizeConfig
    early_stopping: EarlyStoppingConfig
    augment: AugmentConfig
    train: TrainConfig

