"""Regularization: norm penalties, max-norm, and which parameters they touch."""

from trainlab.regularize._base import Regularizer, select_parameters
from trainlab.regularize._penalties import L1, L2, ElasticNet, MaxNorm

__all__ = ["Regularizer", "select_parameters", "L1", "L2", "ElasticNet", "MaxNorm"]
