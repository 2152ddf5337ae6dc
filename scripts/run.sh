#!/usr/bin/env bash
# Install into .venv, train a model on the normal records of a labelled file, then score a held-apart
# file through the online threshold and print detection quality.
#   scripts/run.sh [TRAIN_FILE [TEST_FILE [SCHEMA]]]
# Defaults: NSL-KDD KDDTrain+ / KDDTest+ from ../shared/data (beside this checkout).
set -euo pipefail
. "$(dirname "$0")/_venv.sh"
data="$(cd "$root/.." && pwd)/shared/data"
train="${1:-$data/nsl-kdd/KDDTrain+.txt.gz}"
test="${2:-$data/nsl-kdd/KDDTest+.txt.gz}"
schema="${3:-kdd}"
model="${FLOWSENTINEL_MODEL_DIR:-models/quickstart-$schema}"
flowsentinel train --schema "$schema" --data "$train" --out "$model"
flowsentinel score --model "$model" --schema "$schema" --data "$test" --out "$model/scores.csv"
echo "per-record scores with top contributing features: $model/scores.csv"
