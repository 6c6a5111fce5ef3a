#!/usr/bin/env bash
# The main job, offline, on the embedded MNIST digits: set up, then train the example MLP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/trainlab train examples/mlp.toml --out runs/mlp "$@"
