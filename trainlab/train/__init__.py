"""Training: the Trainer, its History, callbacks and sinks."""

from trainlab.train._history import History, history_html, summarize
from trainlab.train._early_stopping import EarlyStopping
from trainlab.train._trainer import Callback, Trainer, as_arrays
from trainlab.train._console import ConsoleSink, format_duration
from trainlab.train._live import LiveCurves
from trainlab.train._swa import SWA
from trainlab.train._probes import LayerProbe, probe_record
from trainlab.train._watch import watch_training
from trainlab.train._tensorboard import (TensorBoardSink, TrialTensorBoard, check_logdir, member_hparams,
                                         require_tensorboard, tensorboard_sinks)

__all__ = ["Trainer", "History", "Callback", "EarlyStopping", "SWA", "as_arrays", "ConsoleSink", "LiveCurves",
           "summarize", "history_html", "format_duration", "LayerProbe", "probe_record", "watch_training",
           "TensorBoardSink", "TrialTensorBoard", "tensorboard_sinks", "require_tensorboard", "check_logdir",
           "member_hparams"]
