"""How many checks each built-in experiment runs at the quick preset: the one place the counts live.

The report counts checks as ``len(result.checks)`` per experiment that ran (see
``trainlab.report._reproduce``). That number cannot be read from the source: some
experiments build checks in a loop whose length depends on the preset (ensembles: one
transfer check per label count the preset trains), or rebuild one in place (activations).
So the counts the README and ``docs/experiments.md`` state -- the quick preset's -- are
written here, once, and held equal to the runs:

* ``tests/experiments_tests/test_exp_quick.py`` (slow) asserts every experiment's quick
  run returns exactly :data:`QUICK_CHECKS` checks and the report's total is
  :func:`total_checks`;
* ``tests/experiments_tests/test_exp_smoke.py`` asserts no smoke run returns more than
  its entry (a check added without updating this table fails there too, in seconds);
* ``tests/docs_tests/test_counts.py`` asserts the sentences of the docs state
  :func:`experiment_count` and :func:`total_checks`, and that every built-in experiment
  has an entry here.

Adding a check or an experiment: update its entry here, then the sentences the docs test
names.
"""

from __future__ import annotations

__all__ = ["QUICK_CHECKS", "check_counts", "total_checks", "experiment_count"]

#: experiment name -> the number of checks its run returns at the quick preset
QUICK_CHECKS: dict[str, int] = {
    "activations": 6,
    "zero-init": 2,
    "init-compare": 2,
    "vanishing-gradient": 5,
    "relu": 4,
    "batchnorm": 4,
    "bn-inference": 2,
    "bn-effects": 5,
    "overfitting": 3,
    "regularizers": 4,
    "model-size": 3,
    "width": 1,
    "l1-vs-l2": 4,
    "dropout": 10,
    "early-stopping": 3,
    "augmentation": 8,
    "small-data": 2,
    "optimizers": 4,
    "schedules": 6,
    "search": 8,
    "whitening": 2,
    "covariate-shift": 2,
    "second-order": 3,
    "ensembles": 5,  # 3 + one transfer check per label count (10 and 50 at quick; fewer at smoke)
}


def check_counts() -> dict[str, int]:
    """``{experiment name: checks at the quick preset}`` for the built-in experiments, in report order."""
    from trainlab.experiments import BUILTIN

    return {name: QUICK_CHECKS[name] for name in BUILTIN if name in QUICK_CHECKS}


def total_checks() -> int:
    """The checks ``trainlab reproduce --preset quick`` runs when every built-in experiment is available."""
    return sum(check_counts().values())


def experiment_count() -> int:
    """The built-in experiments."""
    from trainlab.experiments import BUILTIN

    return len(BUILTIN)
