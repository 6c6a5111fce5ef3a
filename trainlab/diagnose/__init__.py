"""Diagnosing training: per-layer probes, the LR range test and the training doctor.

* :class:`Probe` -- a trainer callback recording, per layer and per member, activation
  statistics and histograms (saturated sigmoid/tanh outputs, dead ReLU units),
  gradient norms, update/weight ratios and weight histograms, every ``k`` steps and at
  evaluations; :func:`probe_model` measures a model once.
* :func:`lr_range_test` -- one population over a log grid of learning rates; restores
  the trainer bit for bit afterwards.
* :func:`doctor` -- the course's six-step recipe on a config, a verdict per step
  (``trainlab doctor CONFIG.toml``). Each step is a :class:`Step`: ``measure(ctx) -> data``
  (plain numbers and arrays), a pure ``judge(data) -> findings``, and ``figures(data)``; a
  finding's severity and a step's verdict are a :class:`Severity`.
* :func:`judge_run` / :func:`judge_history` -- read a finished run's learning curves (plateau,
  early decay, over/underfitting, noise, a rising loss) from plain numbers
  (``trainlab doctor --history RUN_DIR``).
"""

from trainlab.diagnose._curves import CT as CURVE_THRESHOLDS, Curves, curves_from_history, judge as judge_history, \
    judge_run, load_curves
from trainlab.diagnose._doctor import STEP_NAMES, DoctorOptions, DoctorReport, StepResult, doctor, parse_steps
from trainlab.diagnose._findings import Finding, T as THRESHOLDS, read_curves
from trainlab.diagnose._lr_range import LRRangeResult, judge_curves, log_grid, lr_range_test
from trainlab.diagnose._probe import SATURATION_SLOPE, Probe, layer_table, probe_model, summarize_record
from trainlab.diagnose._severity import Severity
from trainlab.diagnose._step import HistoryArrays, Step

__all__ = [
    "Probe",
    "probe_model",
    "layer_table",
    "summarize_record",
    "SATURATION_SLOPE",
    "lr_range_test",
    "LRRangeResult",
    "log_grid",
    "judge_curves",
    "doctor",
    "DoctorOptions",
    "DoctorReport",
    "StepResult",
    "Finding",
    "Severity",
    "Step",
    "HistoryArrays",
    "THRESHOLDS",
    "STEP_NAMES",
    "parse_steps",
    "read_curves",
    "Curves",
    "load_curves",
    "curves_from_history",
    "judge_history",
    "judge_run",
    "CURVE_THRESHOLDS",
]
