"""Regularization: norm penalties, max-norm, and which parameters they touch."""

from trainlab.regularize._base import Regularizer, select_parameters
from trainlab.regularize._conventions import (
    half_l2_to_keras_l2,
    half_l2_to_weight_decay,
    keras_l2_to_half_l2,
    keras_l2_to_weight_decay,
    weight_decay_to_half_l2,
    weight_decay_to_keras_l2,
)
from trainlab.regularize._penalties import L1, L2, ElasticNet, MaxNorm

__all__ = ["Regularizer", "select_parameters", "L1", "L2", "ElasticNet", "MaxNorm", "half_l2_to_weight_decay",
           "weight_decay_to_half_l2", "keras_l2_to_weight_decay", "weight_decay_to_keras_l2", "half_l2_to_keras_l2",
           "keras_l2_to_half_l2"]
