#!/usr/bin/env bash
# The main job, offline, on the embedded MNIST digits: set up, then reproduce the course's
# experiments (quick preset) and write report.html + results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/trainlab reproduce --preset quick "$@"
