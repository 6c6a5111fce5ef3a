"""Training: the Trainer, its History, callbacks."""

from trainlab.train._history import History
from trainlab.train._early_stopping import EarlyStopping
from trainlab.train._trainer import Callback, Trainer, as_arrays
from trainlab.train._console import ConsoleSink
from trainlab.train._swa import SWA

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "SWA", "as_arrays", "ConsoleSink"]
