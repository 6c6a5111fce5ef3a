#!/usr/bin/env bash
# Create .venv (if needed) and install trainlab with its test dependencies into it.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "trainlab needs Python >= 3.11"' 
  "$PY" -m venv .venv
fi
# torch first, pinned: a range would pull the newest (multi-GB CUDA) build on Linux.
# pyproject.toml states the range users need (torch >= 2.1).
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${TRAINLAB_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
