"""TOML configs -> validated, defaults-filled dictionaries, with one-line errors.

A config is a TOML file of tables (``[data]``, ``[model]``, ``[loss]``, ``[optim]``,
``[schedule]``, ``[train]``, ``[population]``, ...) plus top-level ``seed`` and ``device``. Every key is
declared in :data:`SCHEMA` with its type, default, allowed range or choices, and
whether it may be given *per member* (a list with one value per population member).
:func:`load_config` reads a file, applies ``--set key=value`` overrides, and returns
the resolved config; every mistake raises :class:`~trainlab.errors.ConfigError`
whose message names the key and what is allowed, e.g.::

    config: optim.lr must be > 0, got -0.1
    config: unknown key 'optim.lrr' (allowed in [optim]: alpha, beta1, ...)

Names (optimizer, activation, data set, ...) are resolved into objects once, in
:mod:`trainlab.build`, never inside the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import copy
from dataclasses import dataclass
import json
import math
from pathlib import Path
import tomllib
from typing import Any

from pydantic import BaseModel

from trainlab._config_tables import (ACTIVATION_NAMES, DATASET_NAMES, OPTIMIZER_NAMES, PREPROCESS_NAMES,
                                     SCHEDULE_NAMES, AugmentConfig, DataConfig, EarlyStoppingConfig, LossConfig,
                                     ModelConfig, OptimConfig, PopulationConfig, RegularizeConfig, RunConfigFields,
                                     ScheduleConfig, Table, TrainConfig, plain)
from trainlab.errors import ConfigError

__all__ = ["RunConfig", "Table", "PopulationConfig", "DataConfig", "ModelConfig", "LossConfig", "OptimConfig",
           "ScheduleConfig", "RegularizeConfig", "EarlyStoppingConfig", "AugmentConfig", "TrainConfig", "plain",
           "REGULARIZATION_OFF", "table_from_dict", "json_schema", "value_is_on", "ACTIVATION_NAMES", "OPTIMIZER_NAMES", "DATASET_NAMES",
           "SCHEDULE_NAMES", "PREPROCESS_NAMES", "Key", "SCHEMA", "load_config", "resolve_config", "parse_override", "dumps", "member_count", "get_key",
           "set_key", "per_member_keys"]

_MAX_INT = 10**9


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is int, float, str, bool, int_list, float_list, str_or_table, table_list."""

    kind: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] = ()
    per_member: bool = False
    optional: bool = False  # None allowed (absent)
    doc: str = ""


def _probability(what: str) -> Key:
    """An augmentation's per-member probability key (AutoAugment-style policies): 1 = always."""
    return Key("float", 1.0, low=0.0, high=1.0, per_member=True, doc=f"probability that a training image {what}")


SCHEMA: dict[str, Any] = {
    "seed": Key("int", 0, low=0, high=2**63 - 1, doc="seed of data splits, shuffling and member seeds"),
    "device": Key("str", "cpu", doc="'cpu', 'cuda' or 'cuda:N'"),
    "dtype": Key("str", "float32", choices=("float32", "float64"), doc="floating-point type of weights and data"),
    "population": {
        "size": Key("int", 1, low=1, high=4096, doc="number of members P trained together"),
        "seeds": Key("int_list", None, optional=True, doc="one seed per member (default seed + i)"),
    },
    "data": {
        "name": Key("str", "mnist-5k", choices=DATASET_NAMES),
        "train": Key("int", None, low=1, high=_MAX_INT, optional=True, doc="training images (default: the rest)"),
        "val": Key("int", 500, low=0, high=_MAX_INT),
        "test": Key("int", 1000, low=0, high=_MAX_INT, optional=True),
        "preprocess": Key("str", "minmax", choices=PREPROCESS_NAMES),
        "flatten": Key("bool", True),
        "data_dir": Key("str", None, optional=True),
        "cache_dir": Key("str", None, optional=True),
        "download": Key("bool", True),
        # fault-planting options (trainlab.data._faults; docs/doctor.md): off by default
        "label_noise": Key("float", 0.0, low=0.0, high=1.0, high_inclusive=False,
                           doc="plant a fault: this fraction of training labels replaced by a random other class"),
        "leak": Key("float", 0.0, low=0.0, high=1.0,
                    doc="plant a fault: this fraction of val and test images copied into the training split"),
        "imbalance": Key("float", 1.0, low=1.0, high=1e6,
                         doc="plant a fault: largest/smallest class ratio of the training split (exponential profile)"),
        "rebalance": Key("bool", False, doc="oversample every training class up to the largest one's count"),
    },
    "model": {
        "type": Key("str", "mlp", choices=("mlp", "sequential", "resnet")),
        "depth": Key("int", 8, low=8, high=1000, doc="resnet: layers with weights, 6n + 2 (8, 14, 20, 32, ...)"),
        "width": Key("int", 16, low=1, high=10_000, doc="resnet: channels of the first stage (then 2x, 4x)"),
        "preact": Key("bool", False, doc="resnet: pre-activation blocks (BN -> act -> conv; He et al. 2016b)"),
        "hidden": Key("int_list", [100, 100], low=1, high=100_000, doc="hidden widths of an mlp"),
        "activation": Key("str", "relu", choices=ACTIVATION_NAMES),
        "slope": Key("float", 0.01, low=0.0, per_member=True, doc="leaky_relu slope"),
        "prelu_init": Key("float", 0.25, per_member=True, doc="prelu: initial learned slope (He et al. 2015: 0.25)"),
        "prelu_shared": Key("bool", False, doc="prelu: one slope per layer instead of one per unit"),
        "maxout_pieces": Key("int", 2, low=2, high=64,
                             doc="maxout: affine pieces per unit k (each hidden Linear is k times wider)"),
        "init": Key("str_or_table", "auto", doc="initializer name; 'auto' = He for ReLU-like, LeCun-normal for SELU, Xavier otherwise"),
        "init_scale": Key("float", 1.0, low=0.0, high=1e6, per_member=True),
        "input_dropout": Key("float", 0.0, low=0.0, high=1.0, high_inclusive=False, per_member=True,
                             doc="dropout rate on the inputs (mlp); the course's 0.2"),
        "dropout": Key("float", 0.0, low=0.0, high=1.0, high_inclusive=False, per_member=True,
                       doc="dropout rate after each hidden activation (mlp; resnet: inside each block); the course's 0.5"),
        "dropout_mode": Key("str", "inverted", choices=("inverted", "classic", "alpha"),
                            doc="'alpha': AlphaDropout (Klambauer et al. 2017), the dropout of SELU nets"),
        "input_noise": Key("float", 0.0, low=0.0, high=1e6, per_member=True,
                           doc="std of Gaussian noise added to the inputs in training (mlp)"),
        "norm": Key("str", "none", choices=("none", "batchnorm", "layernorm"),
                    doc="normalization between each hidden Linear and its activation (mlp)"),
        "bn_momentum": Key("float", 0.1, low=0.0, high=1.0, per_member=True,
                           doc="BatchNorm running-average momentum, PyTorch convention (weight of the new batch)"),
        "bn_running_var": Key("str", "unbiased", choices=("unbiased", "biased"),
                              doc="BatchNorm running variance: of the unbiased batch variance (torch) or the biased "
                                  "one (Keras, the textbook)"),
        "bn_running_var_init": Key("float", 1.0, low=0.0, high=1e6,
                                   doc="BatchNorm running variance at the start (torch, Keras: 1; the textbook: 0)"),
        "bn_eps": Key("float", 1e-5, low=0.0, low_inclusive=False, high=1.0,
                      doc="BatchNorm eps in sqrt(var + eps) (torch 1e-5, Keras 1e-3, the textbook 1e-6)"),
        "bn_inference": Key("str", "running", choices=("running", "population"),
                            doc="BatchNorm statistics at inference: running averages or a pass over the training set"),
        "layers": Key("table_list", None, optional=True, doc="explicit layers for type = 'sequential'"),
    },
    "loss": {
        "name": Key("str", "cross_entropy", choices=("cross_entropy", "mse", "bce", "focal"),
                    doc="'bce': binary cross-entropy on sigmoids (multi-label); 'focal': sigmoid focal loss"),
        "label_smoothing": Key("float", 0.0, low=0.0, high=1.0, high_inclusive=False, per_member=True),
        "class_weights": Key("float_list", None, low=0.0, high=1e6, optional=True,
                             doc="cross-entropy weight of each class (one number per class), as torch's weight="),
        "focal_gamma": Key("float", 2.0, low=0.0, high=100.0, per_member=True,
                           doc="focal loss focusing parameter gamma (Lin et al. 2017; 0 = BCE)"),
        "focal_alpha": Key("float", 0.25, low=0.0, high=1.0, per_member=True,
                           doc="focal loss weight alpha of the positive targets (0.5 = both equal)"),
    },
    "optim": {
        "name": Key("str", "sgd", choices=OPTIMIZER_NAMES),
        "lr": Key("float", 0.01, low=0.0, low_inclusive=False, high=1e6, per_member=True),
        "weight_decay": Key("float", 0.0, low=0.0, high=1e6, per_member=True),
        "decoupled": Key("bool", False, doc="decoupled weight decay (AdamW/SGDW style)"),
        "momentum": Key("float", 0.9, low=0.0, high=1.0, high_inclusive=False, per_member=True),
        "alpha": Key("float", 0.99, low=0.0, high=1.0, high_inclusive=False, per_member=True),
        "beta1": Key("float", 0.9, low=0.0, high=1.0, high_inclusive=False, per_member=True),
        "beta2": Key("float", 0.999, low=0.0, high=1.0, high_inclusive=False, per_member=True),
        "eps": Key("float", None, low=0.0, low_inclusive=False, high=1.0, per_member=True, optional=True,
                   doc="default: the optimizer's own"),
        "rho": Key("float", 0.9, low=0.0, high=1.0, per_member=True, doc="adadelta's running-average decay"),
        "momentum_decay": Key("float", 4e-3, low=0.0, high=1.0, per_member=True,
                              doc="nadam's momentum schedule psi (torch.optim.NAdam)"),
        "centered": Key("bool", False, doc="rmsprop: divide by the estimated gradient std (torch's centered=True)"),
        "history": Key("int", 10, low=1, high=1000, doc="lbfgs: curvature pairs kept"),
        "max_iter": Key("int", 1, low=1, high=10_000, doc="lbfgs: iterations per training step"),
        "lookahead_k": Key("int", 0, low=0, high=_MAX_INT,
                           doc="Lookahead: synchronize the slow weights every k steps (0 = off)"),
        "lookahead_alpha": Key("float", 0.5, low=0.0, high=1.0, per_member=True, doc="Lookahead slow step size"),
        "swa_start": Key("int", None, low=0, high=_MAX_INT, optional=True,
                         doc="SWA: average the weights at the end of every epoch from this one on (absent = off)"),
        "swa_every": Key("int", 1, low=1, high=_MAX_INT, doc="SWA: epochs between averaged snapshots"),
        "clip_norm": Key("float", None, low=0.0, low_inclusive=False, high=1e12, per_member=True, optional=True,
                         doc="clip each member's gradient to this global L2 norm (torch clip_grad_norm_)"),
        "clip_value": Key("float", None, low=0.0, low_inclusive=False, high=1e12, per_member=True, optional=True,
                          doc="clamp each gradient entry to [-v, v] (torch clip_grad_value_)"),
    },
    "schedule": {  # docs/schedules.md; the defaults are torch.optim.lr_scheduler's
        "name": Key("str", "constant", choices=SCHEDULE_NAMES, per_member=True,
                    doc="learning-rate schedule; one per member to compare kinds in one population"),
        "interval": Key("str", "auto", choices=("auto", "epoch", "step"),
                        doc="what t counts: epochs or iterations ('auto': step for onecycle, epoch otherwise)"),
        "warmup": Key("int", 0, low=0, high=_MAX_INT, per_member=True,
                      doc="linear warm-up intervals before the schedule (LinearLR + SequentialLR)"),
        "warmup_start": Key("float", 1 / 3, low=0.0, high=1.0, per_member=True,
                            doc="warm-up starts at this fraction of the rate (LinearLR start_factor)"),
        "step_size": Key("int", 10, low=1, high=_MAX_INT, per_member=True, doc="step: intervals between decays"),
        "gamma": Key("float", None, low=0.0, low_inclusive=False, high=1e6, per_member=True, optional=True,
                     doc="step/multistep/exponential decay factor (default 0.1; exponential 0.95)"),
        "milestones": Key("int_list", [], low=0, high=_MAX_INT, doc="multistep: the counts where the rate drops"),
        "t_max": Key("int", None, low=1, high=_MAX_INT, per_member=True, optional=True,
                     doc="cosine: half-period (default: the training length)"),
        "eta_min": Key("float", 0.0, low=0.0, high=1e6, per_member=True, doc="cosine(_restarts): lowest rate"),
        "t_0": Key("int", 10, low=1, high=_MAX_INT, per_member=True, doc="cosine_restarts: first cycle length"),
        "t_mult": Key("int", 1, low=1, high=1000, per_member=True, doc="cosine_restarts: cycle growth factor"),
        "total": Key("int", None, low=2, high=_MAX_INT, per_member=True, optional=True,
                     doc="onecycle: cycle length (default: the training length)"),
        "pct_start": Key("float", 0.3, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False,
                         per_member=True, doc="onecycle: share of the cycle spent rising"),
        "anneal": Key("str", "cos", choices=("cos", "linear"), doc="onecycle: annealing shape"),
        "div_factor": Key("float", 25.0, low=0.0, low_inclusive=False, high=1e12, per_member=True,
                          doc="onecycle: start rate = lr / div_factor"),
        "final_div_factor": Key("float", 1e4, low=0.0, low_inclusive=False, high=1e12, per_member=True,
                                doc="onecycle: end rate = start rate / final_div_factor"),
        "three_phase": Key("bool", False, doc="onecycle: fast.ai's third phase"),
        "cycle_momentum": Key("bool", None, optional=True,
                              doc="onecycle: cycle momentum/beta1 (default: when the optimizer has one)"),
        "base_momentum": Key("float", 0.85, low=0.0, high=1.0, per_member=True, doc="onecycle: lowest momentum"),
        "max_momentum": Key("float", 0.95, low=0.0, high=1.0, per_member=True, doc="onecycle: highest momentum"),
        "monitor": Key("str", "val_loss", choices=("val_loss", "val_acc", "train_loss", "train_acc"),
                       doc="plateau: the metric watched"),
        "mode": Key("str", "auto", choices=("auto", "min", "max")),
        "factor": Key("float", 0.1, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False, per_member=True,
                      doc="plateau: rate multiplier at each reduction"),
        "patience": Key("int", 10, low=0, high=_MAX_INT, per_member=True,
                        doc="plateau: evaluations without improvement before a reduction"),
        "threshold": Key("float", 1e-4, low=0.0, high=1e6, per_member=True),
        "threshold_mode": Key("str", "rel", choices=("rel", "abs")),
        "cooldown": Key("int", 0, low=0, high=_MAX_INT, per_member=True),
        "min_lr": Key("float", 0.0, low=0.0, high=1e6, per_member=True),
    },
    "regularize": {
        "l2": Key("float", 0.0, low=0.0, high=1e6, per_member=True, doc="L2 penalty lambda"),
        "l2_form": Key("str", "full", choices=("full", "half"),
                       doc="'full': lambda * sum w^2 (Keras); 'half': lambda/2 * sum w^2 (textbook, = SGD weight_decay)"),
        "l1": Key("float", 0.0, low=0.0, high=1e6, per_member=True, doc="L1 penalty alpha"),
        "l1_proximal": Key("bool", False, doc="apply L1 by soft-thresholding after each step (exact zeros)"),
        "max_norm": Key("float", None, low=0.0, low_inclusive=False, high=1e6, per_member=True, optional=True,
                        doc="max-norm constraint c on each unit's incoming weights"),
        "include_1d": Key("bool", False, doc="also penalize biases and normalization parameters"),
    },
    "early_stopping": {
        "enabled": Key("bool", False),
        "monitor": Key("str", "val_loss", choices=("val_loss", "val_acc", "train_loss", "train_acc")),
        "mode": Key("str", "auto", choices=("auto", "min", "max")),
        "patience": Key("int", 10, low=0, high=_MAX_INT,
                        doc="stop at this many evaluations in a row without improvement (Keras' count)"),
        "min_delta": Key("float", 0.0, low=0.0, high=1e6),
        "restore_best": Key("bool", True),
    },
    "augment": {
        "policy_ops": Key("int", 0, low=0, high=10, per_member=True,
                          doc="RandAugment N: ops applied to each training image, drawn uniformly from the data set's "
                              "label-preserving ops (0 = off)"),
        "policy_magnitude": Key("float", 5.0, low=0.0, high=10.0, per_member=True,
                                doc="RandAugment M: every policy op at M/10 of its range (10 = the label-preserving "
                                    "limit; 0 = identity)"),
        "rotate": Key("float", 0.0, low=0.0, high=180.0, per_member=True,
                      doc="max |rotation| in degrees of training images (label-preserving for MNIST: <= 15)"),
        "rotate_p": _probability("is rotated (AutoAugment-style; 1 = always)"),
        "shift": Key("float", 0.0, low=0.0, high=1e4, per_member=True,
                     doc="max translation in pixels along each axis (label-preserving: <= 3)"),
        "shift_p": _probability("is shifted (1 = always)"),
        "scale": Key("float", 0.0, low=0.0, high=1.0, high_inclusive=False, per_member=True,
                     doc="max relative zoom: factor in [1 - scale, 1 + scale] (label-preserving: <= 0.1)"),
        "scale_p": _probability("is zoomed (1 = always)"),
        "hflip": Key("bool", False, doc="mirror left-right with probability 1/2 (Fashion-MNIST only)"),
        "rot90": Key("bool", False, doc="turn by k * 90 degrees, k uniform in 0..3 (no built-in data set allows it)"),
        "elastic": Key("float", 0.0, low=0.0, high=1000.0, per_member=True,
                       doc="elastic distortion alpha in pixels (Simard et al. 2003: 34 on MNIST; 0 = off)"),
        "elastic_sigma": Key("float", 4.0, low=0.0, low_inclusive=False, high=100.0, per_member=True,
                             doc="std in pixels of the Gaussian smoothing the elastic displacement field (Simard: 4)"),
        "elastic_p": _probability("is elastically distorted (1 = always)"),
        "force": Key("bool", False, doc="allow transforms the data set does not declare label-preserving"),
        "cutout": Key("int", 0, low=0, high=10_000, per_member=True,
                      doc="side in pixels of the square zeroed in each training image (0 = off)"),
        "cutout_p": _probability("gets a cutout square (1 = always)"),
        "mixup": Key("float", 0.0, low=0.0, high=1e3, per_member=True,
                     doc="mixup alpha: lambda ~ Beta(alpha, alpha), soft targets (0 = off)"),
        "cutmix": Key("float", 0.0, low=0.0, high=1e3, per_member=True,
                      doc="cutmix alpha: paste a box of area 1 - lambda, labels mixed by area (0 = off)"),
        "noise": Key("float", 0.0, low=0.0, high=1e6, per_member=True,
                     doc="std of Gaussian noise added to training inputs (0 = off)"),
        "noise_p": _probability("gets input noise (1 = always)"),
    },
    "train": {
        "epochs": Key("int", 20, low=1, high=_MAX_INT),
        "steps": Key("int", None, low=1, high=_MAX_INT, optional=True, doc="train this many steps instead of epochs"),
        "batch_size": Key("int", 100, low=1, high=_MAX_INT),
        "eval_every": Key("int", None, low=1, high=_MAX_INT, optional=True, doc="steps between evaluations (default: each epoch)"),
        "eval_train": Key("bool", True, doc="evaluate on the whole training split at each evaluation"),
        "eval_batch_size": Key("int", 1000, low=1, high=_MAX_INT),
        "snapshot_every": Key("int", None, low=1, high=_MAX_INT, optional=True,
                              doc="save the model every K epochs under snapshots/ (snapshot ensembles)"),
        "diverge_factor": Key("float", 1000.0, low=1.0, low_inclusive=False, high=1e300,
                              doc="a member whose mean training loss between evaluations stays above this many "
                                  "times max(its step-0 loss, 1) is diverged (docs/training.md); 1e300: off"),
        "diverge_evaluations": Key("int", 2, low=1, high=_MAX_INT,
                                   doc="... for this many evaluations in a row"),
        "cuda_graphs": Key("bool", False, doc="on a GPU, capture each training step as CUDA graphs and replay "
                           "them (static shapes; no dropout/noise layers, augmentation, L-BFGS, Lookahead or "
                           "clipping); on a CPU the same static-buffer step runs eagerly"),
        "trace_step": Key("bool", False, doc="on a CPU, record the whole training step with torch.jit.trace and "
                          "replay it (same kernels and bits, less Python; checked against the eager step first, "
                          "which it falls back to); the same refusals as cuda_graphs"),
    },
}


def _describe(k: Key) -> str:
    if k.choices:
        return "one of " + ", ".join(repr(c) for c in k.choices) + (" (or a list, one per member)" if k.per_member
                                                                   else "")
    base = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
            "int_list": "a list of integers", "float_list": "a list of numbers", "str_or_table": "a name or a table",
            "table_list": "a list of tables"}[k.kind]
    if k.per_member:
        base += " or a list with one per member"
    return base


def _check_number(path: str, k: Key, v: Any) -> float | int:
    if k.kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                v = int(v)
            else:
                raise ConfigError(f"config: {path} must be an integer, got {v!r}")
    else:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config: {path} must be {_describe(k)}, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ConfigError(f"config: {path} must be a finite number, got {v}")
    if k.low is not None and (v < k.low or (v == k.low and not k.low_inclusive)):
        raise ConfigError(f"config: {path} must be {'>=' if k.low_inclusive else '>'} {k.low:g}, got {v!r}")
    if k.high is not None and (v > k.high or (v == k.high and not k.high_inclusive)):
        raise ConfigError(f"config: {path} must be {'<=' if k.high_inclusive else '<'} {k.high:g}, got {v!r}")
    return v


def _check_value(path: str, k: Key, v: Any) -> Any:
    if v is None:
        if k.optional:
            return None
        raise ConfigError(f"config: {path} must be {_describe(k)}, got nothing")
    if k.kind in ("int", "float"):
        if k.per_member and isinstance(v, list):
            if not v:
                raise ConfigError(f"config: {path} is an empty list; give a number or one per member")
            return [_check_number(f"{path}[{i}]", k, x) for i, x in enumerate(v)]
        return _check_number(path, k, v)
    if k.kind == "str":
        if k.per_member and isinstance(v, list):
            if not v:
                raise ConfigError(f"config: {path} is an empty list; give a name or one per member")
            return [_check_value(f"{path}[{i}]", Key("str", choices=k.choices), x) for i, x in enumerate(v)]
        if not isinstance(v, str):
            raise ConfigError(f"config: {path} must be {_describe(k)}, got {v!r}")
        if k.choices and v not in k.choices:
            raise ConfigError(f"config: {path} must be {_describe(k)}, got {v!r}")
        return v
    if k.kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"config: {path} must be true or false, got {v!r}")
        return v
    if k.kind == "int_list":
        if not isinstance(v, list):
            raise ConfigError(f"config: {path} must be a list of integers, got {v!r}")
        item = Key("int", low=k.low, high=k.high)
        return [_check_number(f"{path}[{i}]", item, x) for i, x in enumerate(v)]
    if k.kind == "float_list":
        if not isinstance(v, list) or not v:
            raise ConfigError(f"config: {path} must be a non-empty list of numbers, got {v!r}")
        item = Key("float", low=k.low, high=k.high)
        return [_check_number(f"{path}[{i}]", item, x) for i, x in enumerate(v)]
    if k.kind == "str_or_table":
        if not isinstance(v, (str, dict)):
            raise ConfigError(f"config: {path} must be a name or a table, got {v!r}")
        return copy.deepcopy(v)
    if k.kind == "table_list":
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise ConfigError(f"config: {path} must be a list of tables ([[{path}]]), got {v!r}")
        return copy.deepcopy(v)
    raise AssertionError(k.kind)


def _resolve(schema: Mapping[str, Any], given: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in given:
        if name not in schema:
            where = f"in [{prefix[:-1]}]" if prefix else "at the top level"
            raise ConfigError(f"config: unknown key '{prefix}{name}' (allowed {where}: {', '.join(sorted(schema))})")
    for name, spec in schema.items():
        path = prefix + name
        if isinstance(spec, dict):
            sub = given.get(name, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"config: {path} must be a table ([{path}]), got {sub!r}")
            out[name] = _resolve(spec, sub, path + ".")
        else:
            out[name] = _check_value(path, spec, given.get(name, copy.deepcopy(spec.default)))
    return out


def member_count(value: Any) -> int | None:
    """Length of a per-member list, or None for a shared scalar."""
    return len(value) if isinstance(value, list) else None


def _check_members(cfg: dict[str, Any], schema: Mapping[str, Any], size: int, prefix: str = "") -> None:
    for name, spec in schema.items():
        if isinstance(spec, dict):
            _check_members(cfg[name], spec, size, prefix + name + ".")
        elif isinstance(spec, Key) and spec.per_member and isinstance(cfg[name], list) and len(cfg[name]) != size:
            raise ConfigError(
                f"config: {prefix}{name} lists {len(cfg[name])} values but population.size is {size}; "
                f"give one number or exactly {size}")


def _optimizer_defaults(optim: dict[str, Any], given: Any) -> None:
    """A key of ``[optim]`` the user did not give takes the chosen optimizer's own default, so
    ``name = "adam"`` means what ``Adam(params)`` means in Python (lr 1e-3, not [optim]'s 0.01;
    AdamW's weight_decay 0.01). Keys the optimizer does not take keep the schema's default."""
    from trainlab.optim import OPTIMIZERS, optimizer_defaults
    from trainlab.second_order import CLOSURE_OPTIMIZERS

    given = given if isinstance(given, Mapping) else {}
    for k, v in optimizer_defaults({**OPTIMIZERS, **CLOSURE_OPTIMIZERS}[optim["name"]]).items():
        if k in optim and k not in given:
            optim[k] = v


def resolve_config(given: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a nested dict against :data:`SCHEMA` and fill defaults."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"config must be a table, got {type(given).__name__}")
    if isinstance(given.get("dtype"), str) and given["dtype"] in ("float16", "bfloat16", "half"):
        raise ConfigError(f"config: dtype {given['dtype']!r} is refused: trainlab trains in 'float32' (default) or "
                          "'float64'; half precision would need loss scaling and float32 master weights, "
                          "which trainlab does not implement")
    cfg = _resolve(SCHEMA, given, "")
    _optimizer_defaults(cfg["optim"], given.get("optim", {}))
    size = cfg["population"]["size"]
    seeds = cfg["population"]["seeds"]
    if seeds is not None and len(seeds) != size:
        raise ConfigError(f"config: population.seeds lists {len(seeds)} seeds but population.size is {size}")
    _check_members(cfg, SCHEMA, size)
    if cfg["train"]["batch_size"] > 1_000_000:
        raise ConfigError(f"config: train.batch_size must be <= 1000000, got {cfg['train']['batch_size']}")
    if cfg["model"]["type"] == "sequential" and not cfg["model"]["layers"]:
        raise ConfigError("config: model.type = 'sequential' needs a non-empty [[model.layers]] list")
    if cfg["model"]["type"] == "resnet" and (cfg["model"]["depth"] - 2) % 6:
        raise ConfigError(f"config: model.depth must be 6n + 2 (8, 14, 20, 32, ...), got {cfg['model']['depth']}")
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.1"`` -> (["optim", "lr"], 0.1). The value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.1), got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"--set key must be dotted names like optim.lr, got {key!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def apply_overrides(given: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(given)
    for text in overrides:
        parts, value = parse_override(text)
        key = ".".join(parts)
        set_key(out, key, value, where=f"--set {key}")
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory, expected a TOML file: {p}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file is not UTF-8 text: {p}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read ``path`` (or start from defaults), apply ``key=value`` overrides, validate."""
    given = read_toml(path) if path is not None else {}
    if path is not None and not given:
        import warnings

        warnings.warn(f"config file {path} is empty (no keys): every setting is its default (see examples/)",
                      stacklevel=2)
    return resolve_config(apply_overrides(given, list(overrides)))


def dumps(cfg: Mapping[str, Any]) -> str:
    """Write a resolved config as TOML (``None`` values are left out)."""
    import tomli_w

    def strip(d: Mapping[str, Any]) -> dict[str, Any]:
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return tomli_w.dumps(strip(dict(cfg)))


def get_key(cfg: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of a (resolved) config, e.g. ``get_key(cfg, "optim.lr")``."""
    node: Any = cfg
    for p in dotted.split("."):
        node = node[p]
    return node


def set_key(cfg: dict[str, Any], dotted: str, value: Any, *, where: str | None = None) -> None:
    """Set the value at a dotted path of a config dict in place.

    Without ``where`` the tables on the way must exist. With it (the name of what asked,
    for the message: ``"--set optim.lr"``), missing tables are created, and a path through a
    value that is not a table is a :class:`ConfigError` naming ``where``.
    """
    parts = dotted.split(".")
    node = cfg
    for p in parts[:-1]:
        if where is None:
            node = node[p]
            continue
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{where}: '{p}' is not a table in the config")
        node = nxt
    node[parts[-1]] = value


def per_member_keys(node: Mapping[str, Any] | None = None, prefix: str = "") -> list[str]:
    """The dotted paths of every schema key that takes one value per population member."""
    out: list[str] = []
    for k, v in (SCHEMA if node is None else node).items():
        if isinstance(v, dict):
            out += per_member_keys(v, prefix + k + ".")
        elif isinstance(v, Key) and v.per_member:
            out.append(prefix + k)
    return out


# --- the typed run configuration ------------------------------------------------------------------------------


def _freeze(v: Any) -> Any:
    """Lists -> tuples, recursively (dict tables stay dicts, deep-copied): the form the frozen models hold."""
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return {k: _freeze(x) for k, x in v.items()}
    return v


def _key(dotted: str) -> Key:
    """The schema entry of a dotted key, or a ConfigError naming the allowed keys."""
    node: Any = SCHEMA
    parts = dotted.split(".")
    for i, p in enumerate(parts):
        if not isinstance(node, dict) or p not in node:
            where = ".".join(parts[:i])
            allowed = ", ".join(sorted(node)) if isinstance(node, dict) else "(none: not a table)"
            raise ConfigError(f"config: unknown key '{dotted}' (allowed {'in [' + where + ']' if where else 'at the top level'}"
                              f": {allowed})")
        node = node[p]
    if not isinstance(node, Key):
        raise ConfigError(f"config: '{dotted}' is a table, not a key")
    return node


def value_is_on(value: Any) -> bool:
    """Whether a config value switches its feature on for at least one member: None, False, 0 and the names
    'none'/'constant' are off; a per-member list is on when any member's value is."""
    if isinstance(value, (list, tuple)):
        return any(value_is_on(v) for v in value)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)):
        return value > 0
    if isinstance(value, str):
        return value not in ("none", "constant")
    return True


#: what "regularization off" sets (the recipe's steps 1 and 2): penalties, decay, dropout, noise, label
#: smoothing, max-norm and early stopping; :meth:`RunConfig.without_regularization` also resets [augment]
REGULARIZATION_OFF: dict[str, Any] = {
    "optim.weight_decay": 0.0,
    "regularize.l1": 0.0,
    "regularize.l2": 0.0,
    "regularize.max_norm": None,
    "model.dropout": 0.0,
    "model.input_dropout": 0.0,
    "model.input_noise": 0.0,
    "loss.label_smoothing": 0.0,
    "early_stopping.enabled": False,
}


class RunConfig(RunConfigFields):
    """One validated, frozen run configuration: the only object the CLI, :mod:`trainlab.build`,
    :mod:`trainlab.run`, the doctor, search and the experiments pass between them.

    Make one with :meth:`load` (a TOML file plus ``--set`` overrides), :meth:`from_dict` (a nested
    dict of the keys given), :meth:`from_toml` or :meth:`from_json`; every mistake is a
    :class:`~trainlab.errors.ConfigError` with the CLI's one-line message. Read it by attribute
    (``cfg.optim.lr``; per-member values and lists are tuples). It is never edited: :meth:`replace`,
    :meth:`member`, :meth:`as_population`, :meth:`stack` and :meth:`without_regularization` return
    new validated configs. Defaults, ranges, choices and help live once, in :data:`SCHEMA`;
    :meth:`json_schema` publishes them (the docs, the CLI's messages and ``trainlab lab``'s form read it).
    """

    # -- making one ----------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, given: Mapping[str, Any]) -> RunConfig:
        """Validate a nested dict of given keys (any subset; the rest take their defaults)."""
        return cls._from_resolved(resolve_config(given))

    @classmethod
    def _from_resolved(cls, resolved: Mapping[str, Any]) -> RunConfig:
        return cls.model_validate(_freeze(dict(resolved)))

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
        """Read a TOML file (or start from the defaults), apply ``key=value`` overrides, validate."""
        return cls._from_resolved(load_config(path, list(overrides)))

    @classmethod
    def default(cls) -> RunConfig:
        """Every key at its default."""
        return cls.from_dict({})

    @classmethod
    def from_toml(cls, text: str) -> RunConfig:
        try:
            given = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config: invalid TOML: {e}") from None
        return cls.from_dict(given)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: invalid JSON: {e}") from None
        return cls.from_dict(given)

    # -- reading it ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as a plain nested dict (lists, ``None`` kept): a new copy each call."""
        return plain(self.model_dump())

    def to_toml(self) -> str:
        """The full resolved config as TOML (``None`` values left out); :meth:`from_toml` reads it back equal."""
        return dumps(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def get(self, dotted: str) -> Any:
        """The value of a dotted key, e.g. ``cfg.get("optim.lr")`` (per-member values are tuples)."""
        _key(dotted)
        node: Any = self
        for p in dotted.split("."):
            node = getattr(node, p)
        return node

    @property
    def size(self) -> int:
        """The number of members P."""
        return self.population.size

    def seeds(self) -> list[int]:
        """Each member's seed (``population.seeds``, else ``seed + i``)."""
        given = self.population.seeds
        return list(given) if given is not None else [self.seed + i for i in range(self.size)]

    def is_on(self, dotted: str) -> bool:
        """Whether the key switches its feature on for any member (see :func:`value_is_on`)."""
        return value_is_on(self.get(dotted))

    def per_member_values(self) -> dict[str, tuple[Any, ...]]:
        """The per-member keys whose members differ (dotted key -> one value per member)."""
        return {k: v for k in per_member_keys() if isinstance(v := self.get(k), tuple)}

    # -- deriving new ones ---------------------------------------------------------------------------------

    def replace(self, changes: Mapping[str, Any]) -> RunConfig:
        """A new validated config with the dotted keys of ``changes`` set; every other key keeps its
        resolved value (an optimizer's defaults are not re-derived when ``optim.name`` changes)."""
        out = self.to_dict()
        for dotted, value in changes.items():
            _key(dotted)
            set_key(out, dotted, plain(value))
        return RunConfig.from_dict(out)

    def member(self, i: int) -> RunConfig:
        """Member ``i`` alone: every per-member list -> its value, P = 1, its own seed."""
        if not 0 <= i < self.size:
            raise ConfigError(f"member must be in [0, {self.size}), got {i}")
        out = self.to_dict()
        for path in per_member_keys():
            v = get_key(out, path)
            if isinstance(v, list):
                set_key(out, path, v[i])
        out["population"] = {"size": 1, "seeds": [self.seeds()[i]]}
        return RunConfig.from_dict(out)

    def as_population(self, values: Mapping[str, Sequence[Any]] | None = None, *, size: int | None = None,
                      seeds: Sequence[int] | None = None) -> RunConfig:
        """A population of this (one-member) config with one member per position of ``values``
        (dotted per-member key -> one value per member; all of one length, or ``size``).

        ``seeds``: one per member; by default every member gets this config's first seed, so all
        start from the same weights and draw the same masks and batches: only the listed values differ.
        """
        values = dict(values or {})
        lengths = {len(v) for v in values.values()}
        if size is None:
            size = lengths.pop() if len(lengths) == 1 else len(seeds) if seeds is not None and not lengths else 0
        if lengths - {size} or size < 1:
            raise ConfigError(f"as_population: give one value per member for every key (lengths {sorted(lengths)}, "
                              f"size {size})")
        out = self.to_dict()
        for dotted, vals in values.items():
            if not _key(dotted).per_member:
                raise ConfigError(f"config: {dotted} takes one value for the whole population, not one per member "
                                  f"(per-member keys: {', '.join(per_member_keys())})")
            set_key(out, dotted, plain(list(vals)))
        first = self.seeds()[0]
        out["population"] = {"size": size, "seeds": [int(s) for s in seeds] if seeds is not None else [first] * size}
        return RunConfig.from_dict(out)

    @classmethod
    def stack(cls, members: Sequence[RunConfig], seeds: Sequence[int]) -> RunConfig:
        """One population training the one-member configs ``members`` with their own ``seeds``: each
        per-member key that differs between them becomes a list. Every other key must be equal."""
        dicts = [m.to_dict() for m in members]
        merged = copy.deepcopy(dicts[0])
        for k in per_member_keys():
            vals = [get_key(d, k) for d in dicts]
            if any(v != vals[0] for v in vals):
                set_key(merged, k, vals)
        merged["population"] = {"size": len(members), "seeds": [int(s) for s in seeds]}
        return cls.from_dict(merged)

    def without_regularization(self) -> tuple[RunConfig, list[str]]:
        """This config with every regularizer off, data augmentation included; also the keys that were on."""
        out = self.to_dict()
        changed = []
        for name, key in SCHEMA["augment"].items():  # every augmentation key back to its default (off)
            path = f"augment.{name}"
            if isinstance(key, Key) and get_key(out, path) != key.default:
                if name != "force":
                    changed.append(path)
                set_key(out, path, copy.deepcopy(key.default))
        for path, off in REGULARIZATION_OFF.items():
            if value_is_on(get_key(out, path)):
                changed.append(path)
            set_key(out, path, off)
        return RunConfig.from_dict(out), changed

    # -- the schema ----------------------------------------------------------------------------------------

    @staticmethod
    def validate_key(dotted: str, value: Any) -> str | None:
        """The CLI's one-line message for ``value`` at ``dotted`` alone, or None when it is allowed
        (the checks that involve other keys, e.g. per-member list lengths, run on the whole config)."""
        try:
            _check_value(dotted, _key(dotted), value)
        except ConfigError as e:
            return str(e)
        return None

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """A JSON Schema (draft 2020-12) of every key: type, default, range, choices, help, and
        ``"x-per-member": true`` where a key takes one value per population member."""
        return json_schema()


def table_from_dict(name: str, given: Mapping[str, Any]) -> Table:
    """One table (``"model"``, ``"optim"``, ...) validated on its own: types, ranges and defaults, but not
    the checks that need the rest of the config (per-member list lengths against population.size)."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"config: {name} must be a table ([{name}]), got {given!r}")
    resolved = _resolve(SCHEMA[name], given, name + ".")
    if name == "optim":
        _optimizer_defaults(resolved, given)
    cls = RunConfigFields.model_fields[name].annotation
    assert isinstance(cls, type) and issubclass(cls, Table)
    return cls.model_validate(_freeze(resolved))


def _number_bounds(k: Key) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if k.low is not None:
        out["minimum" if k.low_inclusive else "exclusiveMinimum"] = k.low
    if k.high is not None:
        out["maximum" if k.high_inclusive else "exclusiveMaximum"] = k.high
    return out


def _key_schema(k: Key) -> dict[str, Any]:
    """The JSON schema of one key, from its :class:`Key` (the one declaration)."""
    scalar: dict[str, Any]
    if k.kind in ("int", "float"):
        scalar = {"type": "integer" if k.kind == "int" else "number", **_number_bounds(k)}
    elif k.kind == "str":
        scalar = {"type": "string", **({"enum": list(k.choices)} if k.choices else {})}
    elif k.kind == "bool":
        scalar = {"type": "boolean"}
    elif k.kind in ("int_list", "float_list"):
        item = {"type": "integer" if k.kind == "int_list" else "number", **_number_bounds(k)}
        scalar = {"type": "array", "items": item, **({"minItems": 1} if k.kind == "float_list" else {})}
    elif k.kind == "str_or_table":
        scalar = {"anyOf": [{"type": "string"}, {"type": "object"}]}
    else:  # table_list
        scalar = {"type": "array", "items": {"type": "object"}}
    arms = [scalar]
    if k.per_member:
        arms.append({"type": "array", "items": scalar, "minItems": 1})
    if k.optional:
        arms.append({"type": "null"})
    out: dict[str, Any] = scalar if len(arms) == 1 else {"anyOf": arms}
    out = dict(out)
    out["default"] = copy.deepcopy(k.default)
    if k.doc:
        out["description"] = k.doc
    out["x-per-member"] = k.per_member
    out["x-kind"] = k.kind
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a run configuration (see :meth:`RunConfig.json_schema`)."""

    def table(spec: Mapping[str, Any], title: str) -> dict[str, Any]:
        props = {n: table(v, f"[{n}]") if isinstance(v, dict) else _key_schema(v) for n, v in spec.items()}
        return {"type": "object", "title": title, "properties": props, "additionalProperties": False}

    out = table(SCHEMA, "trainlab run configuration")
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return out


def _literal_values(ann: Any) -> set[Any]:
    """The strings a ``Literal[...]`` annotation allows, looking inside unions and ``tuple[..., ...]``."""
    import typing

    if typing.get_origin(ann) is typing.Literal:
        return set(typing.get_args(ann))
    return {v for arm in typing.get_args(ann) for v in _literal_values(arm)}


def _check_tables_match_schema() -> None:
    """The typed tables (:mod:`trainlab._config_tables`) and :data:`SCHEMA` name the same keys, with
    the same choices: checked once at import, so a key added to one and not the other fails at once."""
    import typing

    def names(model: type[BaseModel], spec: Mapping[str, Any], where: str) -> None:
        fields = model.model_fields
        if set(fields) != set(spec):
            raise AssertionError(f"{where}: typed fields {sorted(set(fields) ^ set(spec))} differ from SCHEMA")
        for n, v in spec.items():
            ann = fields[n].annotation
            if isinstance(v, dict):
                assert isinstance(ann, type) and issubclass(ann, BaseModel), (where, n)
                names(ann, v, f"{where}{n}.")
            elif v.choices:
                lits = _literal_values(ann)
                if lits != set(v.choices):
                    raise AssertionError(f"{where}{n}: typed choices {sorted(lits)} differ from SCHEMA {v.choices}")

    names(RunConfigFields, SCHEMA, "")


_check_tables_match_schema()
