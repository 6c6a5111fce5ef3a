"""trainlab: a laboratory for the art of training deep networks.

Explicit forward/backward math on PyTorch tensors, and a population axis so many
models train as one. See README.md and docs/.
"""

__version__ = "0.1.0"

from trainlab.errors import CheckpointError, ConfigError, DataError, TrainlabError  # noqa: E402
from trainlab.population import Population  # noqa: E402

__all__ = ["__version__", "Population", "TrainlabError", "ConfigError", "DataError", "CheckpointError"]
