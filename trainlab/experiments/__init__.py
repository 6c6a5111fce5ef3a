"""The course's claims, measured: one module per experiment, ``run(preset) -> Result``.

Quick start::

    from trainlab.experiments import REGISTRY
    exp = REGISTRY["batchnorm"]
    result = exp.run("quick")            # data only: settings, numbers, checks, arrays
    for c in result.checks:
        print(c.name, c.measured, c.threshold_text(), c.passed)
    figures = exp.plot(result)           # captioned matplotlib figures

``trainlab.report.reproduce`` runs many and writes the HTML report and results.json.

Adding an experiment is one registration: write a module with ``run``, ``plot`` and
``EXPERIMENT = Experiment(...)`` and add ``"name": "package.module"`` to
:data:`BUILTIN` (or call ``REGISTRY.register(name, experiment_or_module)``). An
experiment whose technique has not landed answers ``available() -> (False, why)``
and is listed in the report as not available.
"""

from __future__ import annotations

from trainlab.experiments._core import (
    PRESETS,
    Check,
    Experiment,
    Figure,
    NotAvailable,
    Preset,
    Registry,
    Result,
    as_preset,
    observe_checks,
)

from trainlab.experiments import _core

__all__ = [
    *_core.__all__,
    "REGISTRY",
    "BUILTIN",
    "as_preset",
    "get_experiment",
    "observe_checks",
]

#: report order: name -> module defining ``EXPERIMENT``
BUILTIN: dict[str, str] = {
    "activations": "trainlab.experiments.activations",
    "zero-init": "trainlab.experiments.zero_init",
    "init-compare": "trainlab.experiments.init_compare",
    "vanishing-gradient": "trainlab.experiments.vanishing_gradient",
    "relu": "trainlab.experiments.relu",
    "batchnorm": "trainlab.experiments.batchnorm",
    "bn-inference": "trainlab.experiments.bn_inference",
    "bn-effects": "trainlab.experiments.bn_effects",
    "overfitting": "trainlab.experiments.overfitting",
    "regularizers": "trainlab.experiments.regularizers",
    "model-size": "trainlab.experiments.model_size",
    "width": "trainlab.experiments.width",
    "l1-vs-l2": "trainlab.experiments.l1_vs_l2",
    "dropout": "trainlab.experiments.dropout",
    "early-stopping": "trainlab.experiments.early_stopping",
    "augmentation": "trainlab.experiments.augmentation",
    "small-data": "trainlab.experiments.small_data",
    "optimizers": "trainlab.experiments.optimizers",
    "schedules": "trainlab.experiments.schedules",
    "search": "trainlab.experiments.search",
    "whitening": "trainlab.experiments.whitening",
    "covariate-shift": "trainlab.experiments.covariate_shift",
    "second-order": "trainlab.experiments.second_order",
    "ensembles": "trainlab.experiments.ensembles",
}

REGISTRY = Registry()
for _name, _module in BUILTIN.items():
    REGISTRY.register(_name, _module)


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; an unknown name is a one-line error listing the known ones."""
    return REGISTRY.get_experiment(name)
