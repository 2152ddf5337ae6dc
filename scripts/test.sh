#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite (unit + data + integration).
# Extra arguments go to pytest, e.g. scripts/test.sh -k thresholds
set -euo pipefail
. "$(dirname "$0")/_venv.sh" dev,broker
exec python -m pytest "$@"
