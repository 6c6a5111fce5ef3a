"""How many checks each registered experiment declares, read from its source without running it.

The report counts checks as ``len(result.checks)`` per experiment that ran (see
``trainlab.report._reproduce``). Every built-in experiment builds each of its checks with
one ``Check(...)`` expression in its module (no loops; a ``checks[i] = Check(...)``
replacing one is not counted), so the number of such
expressions is the number of checks its run returns; ``tests/experiments_tests/
test_exp_smoke.py`` holds the two equal for every experiment, and the docs test
(``tests/docs_tests/test_counts.py``) holds the numbers the README and
``docs/experiments.md`` state equal to :func:`total_checks` and :func:`experiment_count`.
So a new check or experiment changes these numbers at once, and the docs test says which
sentence to update.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

__all__ = ["declared_checks", "check_counts", "total_checks", "experiment_count"]


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"experiment module {module!r} not found")
    return Path(spec.origin).read_text(encoding="utf-8")


def _is_check(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None) == "Check"


def declared_checks(module: str) -> int:
    """The number of ``Check(...)`` expressions in the experiment module ``module``.

    A ``Check(...)`` assigned into an existing slot (``checks[-1] = Check(...)``, a check
    rebuilt with another threshold) replaces one and is not counted.
    """
    tree = ast.parse(_source(module))
    replacing: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Subscript) for t in node.targets):
            replacing.update(id(n) for n in ast.walk(node.value) if _is_check(n))
    return sum(1 for n in ast.walk(tree) if _is_check(n) and id(n) not in replacing)


def check_counts() -> dict[str, int]:
    """``{experiment name: declared checks}`` for the built-in experiments, in report order."""
    from trainlab.experiments import BUILTIN

    return {name: declared_checks(module) for name, module in BUILTIN.items()}


def total_checks() -> int:
    """The checks ``trainlab reproduce`` runs when every built-in experiment is available."""
    return sum(check_counts().values())


def experiment_count() -> int:
    """The built-in experiments."""
    from trainlab.experiments import BUILTIN

    return len(BUILTIN)
