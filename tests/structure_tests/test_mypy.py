"""mypy, with the project's config (``[tool.mypy]`` in pyproject.toml), reports no error in ``trainlab/``,
and the fully annotated ("clean") modules pass its stricter ``disallow_untyped_defs`` too.

The clean modules are listed in one place: the ``[[tool.mypy.overrides]]`` entry of pyproject.toml that
sets ``disallow_untyped_defs`` (every function annotated). This test reads that list and runs mypy on
exactly those modules. Since issue 15 the list is all of ``trainlab`` (``trainlab``, ``trainlab.*``).

Errors that mypy reports in modules outside the list (it follows imports) do not count here:
``--follow-imports=silent`` reads them for their types but reports nothing about them.
"""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys
import tomllib

import pytest

REPO = Path(__file__).resolve().parents[2]


def clean_modules() -> list[str]:
    """The module patterns of the fully annotated modules, as pyproject.toml lists them."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    overrides = config["tool"]["mypy"].get("overrides", [])
    strict = [o for o in overrides if o.get("disallow_untyped_defs")]
    assert len(strict) == 1, "exactly one [[tool.mypy.overrides]] entry lists the clean modules"
    modules = strict[0]["module"]
    return [modules] if isinstance(modules, str) else list(modules)


def mypy_targets(patterns: list[str]) -> list[str]:
    """``-p package`` for ``package.*`` (it covers the package's ``__init__`` too), else ``-m module``."""
    packages = {p.removesuffix(".*") for p in patterns if p.endswith(".*")}
    args: list[str] = []
    for p in patterns:
        if p.endswith(".*"):
            args += ["-p", p.removesuffix(".*")]
        elif p not in packages:
            args += ["-m", p]
    return args


def test_every_clean_module_exists() -> None:
    # a renamed or deleted module must leave the list too, not silently stop being checked
    for pattern in clean_modules():
        path = REPO / Path(*pattern.removesuffix(".*").split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), pattern


@pytest.mark.slow  # a cold mypy run over the modules and what they import: about a minute on 2 cores
def test_mypy_reports_no_error_in_the_clean_modules() -> None:
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--follow-imports=silent",
           "--no-error-summary", "--cache-dir", str(REPO / ".mypy_cache"), *mypy_targets(clean_modules())]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"mypy found errors in the clean modules:\n{report}"


@pytest.mark.slow  # a cold mypy run over the whole package: about a minute on 2 cores
def test_mypy_reports_no_error_in_trainlab() -> None:
    """Issue 15's bar: ``mypy trainlab`` with the project's config (``check_untyped_defs``) reports 0 errors."""
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
           "--cache-dir", str(REPO / ".mypy_cache"), "trainlab"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"mypy found errors in trainlab/:\n{report}"
