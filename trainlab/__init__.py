"""trainlab: a laboratory for the art of training deep networks.

Explicit forward/backward math on PyTorch tensors, and a population axis so many
models train as one. See README.md and docs/.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from trainlab.errors import CheckpointError, ConfigError, DataError, TrainlabError  # noqa: E402

__all__ = ["__version__", "Population", "TrainlabError", "ConfigError", "DataError", "CheckpointError"]


def __getattr__(name: str) -> Any:
    """``trainlab.Population`` on first use: importing the package does not import torch, so the command
    line's ``main`` starts (and a Ctrl-C during torch's seconds of import is its one line) before torch loads."""
    if name == "Population":
        from trainlab.population import Population

        return Population
    raise AttributeError(f"module 'trainlab' has no attribute {name!r}")
