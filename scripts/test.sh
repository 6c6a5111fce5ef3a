#!/usr/bin/env bash
# The whole test suite (slow phenomenon tests included), after setting up .venv.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two pytest workers on two cores: one thread each (more threads per worker oversubscribe
# the cores and make small kernels 10-100x slower).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
